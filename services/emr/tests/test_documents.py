"""Signed documents: a note from a template signed by its author (Ed25519 JWS over canonical JSON), immutable
once signed, verification that detects tampering, amendments as new signed versions pointing to the old one;
a prescription signed the same way (emr.prescription.signed)."""

from __future__ import annotations

import json

import nats
from emr_testkit import Admissions, Grpc, client, token, wait_encounter
from sqlalchemy import update

from hospital.chassis.db import Database
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import events_pb2
from hospital.emr.adapters.tables import documents
from hospital.emr.domain import signing


async def _next(sub, cls, match) -> object:
    while True:
        ev = cls.FromString((await sub.next_msg(timeout=10)).data)
        if match(ev):
            return ev


async def test_note_signed_verified_tamper_detected_and_amended(
    emr, admissions: Admissions, nats_server
) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    nc = await nats.connect(nats_server.url)
    signed_sub = await nc.jetstream().subscribe("emr.note.signed", ordered_consumer=True)
    try:
        async with client(emr) as doctor:
            r = await doctor.post(
                f"/api/v1/encounters/{enc['id']}/documents", json={"kind": "outpatient_note"}
            )
            assert r.status_code == 201, r.text
            draft = r.json()
            assert draft["status"] == "draft" and draft["title"] == "Phiếu khám bệnh ngoại trú"
            assert [s["code"] for s in draft["sections"]][:3] == ["reason", "history", "examination"]
            sections = [{"code": "reason", "text": "Sốt, ho 3 ngày"}, {"code": "diagnosis", "text": "J18.9"}]
            r = await doctor.put(f"/api/v1/documents/{draft['id']}", json={"sections": sections})
            assert r.json()["sections"][0]["title"] == ""  # a draft changes freely
            async with client(emr, subject="user:bs.hai", name="BS. Hải", departments=["KKB"]) as other:
                stranger = await other.post(f"/api/v1/documents/{draft['id']}/sign")
            assert stranger.status_code == 403  # only the author signs
            r = await doctor.post(f"/api/v1/documents/{draft['id']}/sign")
            assert r.status_code == 200, r.text
            signed = r.json()
            again = await doctor.put(f"/api/v1/documents/{draft['id']}", json={"sections": sections[:1]})
            ok = (await doctor.get(f"/api/v1/documents/{draft['id']}/verify")).json()
        sig = signed["signature"]
        assert (
            signed["status"] == "signed" and sig["algorithm"] == "EdDSA" and sig["signer"] == "user:bs.minh"
        )
        header = json.loads(signing.unb64url(sig["jws"].split(".")[0]))
        assert header["alg"] == "EdDSA" and header["kid"] == sig["key_id"] and sig["jws"].split(".")[1] == ""
        assert again.status_code == 409 and again.json()["code"] == "document.signed"
        assert ok["valid"] is True and ok["signed"] and ok["signature"]["signer"] == "user:bs.minh"
        event = await _next(signed_sub, events_pb2.NoteSigned, lambda e: e.document.id == draft["id"])
        assert event.document.signature.key_id == sig["key_id"] and event.by.subject == "user:bs.minh"

        # someone edits the stored row behind the application's back: verification says so
        db = Database(emr.settings.database_url)
        try:
            async with db.session() as s:
                await s.execute(
                    update(documents)
                    .where(documents.c.id == draft["id"])
                    .values(sections=[{"code": "reason", "title": "", "text": "Ho 1 ngày"}])
                )
                await s.commit()
            async with client(emr) as doctor:
                bad = (await doctor.get(f"/api/v1/documents/{draft['id']}/verify")).json()
            async with db.session() as s:  # put it back
                await s.execute(
                    update(documents).where(documents.c.id == draft["id"]).values(sections=signed["sections"])
                )
                await s.commit()
        finally:
            await db.dispose()
        assert bad["valid"] is False and "thay đổi" in bad["reason"]

        async with client(emr) as doctor:
            short = await doctor.post(
                f"/api/v1/documents/{draft['id']}/amend", json={"reason": "x", "sections": []}
            )
            r = await doctor.post(
                f"/api/v1/documents/{draft['id']}/amend",
                json={
                    "reason": "Bổ sung kết quả X-quang",
                    "sections": [
                        *sections,
                        {"code": "paraclinical", "text": "X-quang: đám mờ đáy phổi phải"},
                    ],
                },
            )
            assert r.status_code == 201, r.text
            amendment = r.json()
            signed2 = (await doctor.post(f"/api/v1/documents/{amendment['id']}/sign")).json()
            old = (await doctor.get(f"/api/v1/documents/{draft['id']}")).json()
            old_verified = (await doctor.get(f"/api/v1/documents/{draft['id']}/verify")).json()
            twice = await doctor.post(
                f"/api/v1/documents/{draft['id']}/amend",
                json={"reason": "Bổ sung lần hai", "sections": sections},
            )
        assert short.status_code == 422
        assert amendment["version"] == 2 and amendment["amends_document_id"] == draft["id"]
        assert signed2["status"] == "signed" and signed2["amendment_reason"] == "Bổ sung kết quả X-quang"
        assert old["status"] == "superseded" and old["amended_by_document_id"] == amendment["id"]
        assert old_verified["valid"] is True and old_verified["amended_by_document_id"] == amendment["id"]
        assert twice.status_code == 409  # only the current version is amended
    finally:
        await nc.close()


async def test_prescription_signed_by_its_author(emr, admissions: Admissions, nats_server) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().subscribe("emr.prescription.signed", ordered_consumer=True)
    try:
        async with client(emr) as doctor:
            await doctor.put(
                f"/api/v1/encounters/{enc['id']}/consultation",
                json={"diagnoses": [{"icd10_code": "J02.9", "main": True}]},
            )
            p = (
                await doctor.post(
                    f"/api/v1/encounters/{enc['id']}/prescriptions",
                    json={
                        "items": [
                            {
                                "drug_code": "PARA500",
                                "dose": "1 viên",
                                "frequency": "khi sốt",
                                "duration_days": 3,
                                "quantity": "10",
                            }
                        ],
                        "advice": "Uống nhiều nước",
                    },
                )
            ).json()
        assert p["document_id"]
        async with Grpc(emr, token(emr)) as g:
            doc = await g.stub.SignDocument(
                pb.SignDocumentRequest(document_id=p["document_id"]), metadata=g.md
            )
            verified = await g.stub.VerifyDocument(
                pb.VerifyDocumentRequest(document_id=p["document_id"]), metadata=g.md
            )
            chart = await g.stub.GetChart(pb.GetChartRequest(patient_id=patient.id), metadata=g.md)
        assert doc.status == "signed" and doc.kind == "prescription" and verified.valid
        assert [x.status for x in chart.prescriptions] == ["signed"]
        event = await _next(sub, events_pb2.PrescriptionSigned, lambda e: e.prescription.id == p["id"])
        assert event.prescription.code == p["code"] and event.prescription.items[0].drug_code == "PARA500"
        assert event.signature.algorithm == "EdDSA" and event.prescription.status == "signed"
        async with client(emr) as doctor:
            changed = await doctor.post(
                f"/api/v1/encounters/{enc['id']}/prescriptions",
                json={"prescription_id": p["id"], "items": [{"drug_code": "IBU400", "dose": "1 viên"}]},
            )
        assert changed.status_code == 409
    finally:
        await nc.close()
