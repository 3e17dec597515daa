"""The papers a visit produces (QĐ 130 XML7, XML13, XML11, XML14): saved on the encounter with the
consultation's diagnoses and a number, checked (bad input is 422 naming the field and writes nothing),
signed by their author with the document signature (verifiable; the signature covers the paper's fields),
immutable once signed, replaced by a new paper naming the old one, published as emr.paper.signed; over
HTTP and gRPC."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import nats
import pytest
from emr_testkit import Admissions, Grpc, client, token, wait_encounter
from sqlalchemy import update

from hospital.chassis.db import Database
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import events_pb2
from hospital.emr.adapters.tables import encounter_papers

TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()  # the EMR's service dates are Vietnam days
CONSULTATION = {
    "expected_version": 0,
    "chief_complaint": "Ho, sốt 3 ngày",
    "diagnoses": [
        {"icd10_code": "J18.9", "main": True},
        {"icd10_code": "I10"},
    ],
}
SICK_LEAVE = {
    "from_date": TODAY.isoformat(),
    "to_date": (TODAY + timedelta(days=4)).isoformat(),
    "social_insurance_number": "3521234567",
    "employer": "Công ty TNHH May Thái Bình",
    "treatment_method": "Kháng sinh uống, hạ sốt",
}
REFERRAL = {
    "to_facility_code": "01929",
    "to_facility_name": "Bệnh viện Bạch Mai",
    "reason_code": 1,
    "clinical_signs": "Sốt 39 độ, khó thở, SpO2 90%",
    "course": "Viêm phổi không đáp ứng kháng sinh sau 48 giờ",
    "results_summary": "X-quang: đám mờ phổi phải",
    "treatment_direction": "Điều trị kháng sinh phổ rộng, hồi sức hô hấp",
    "transport": "Xe cứu thương",
    "escort": "Phạm Thị Hạnh",
    "escort_title": "Điều dưỡng",
}


async def _next(sub, match) -> events_pb2.PaperSigned:
    while True:
        ev = events_pb2.PaperSigned.FromString((await sub.next_msg(timeout=10)).data)
        if match(ev):
            return ev


async def _consulted(doctor, encounter_id: str) -> None:
    r = await doctor.put(f"/api/v1/encounters/{encounter_id}/consultation", json=CONSULTATION)
    assert r.status_code == 200, r.text


async def test_outpatient_papers_saved_checked_signed_replaced_and_published(
    emr, admissions: Admissions, nats_server
) -> None:
    visit_id, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().subscribe("emr.paper.signed", ordered_consumer=True)
    url = f"/api/v1/encounters/{enc['id']}/papers"
    revisit_day = (TODAY + timedelta(days=14)).isoformat()
    try:
        async with client(emr) as doctor:
            # no paper before the consultation has a main diagnosis
            r = await doctor.post(url, json={"kind": "revisit", "revisit": {"revisit_date": revisit_day}})
            assert r.status_code == 422 and r.json()["code"] == "paper.no_diagnosis", r.text
            await _consulted(doctor, enc["id"])

            # bad input: each refused naming its field, nothing written
            bad = [
                ({"kind": "revisit", "revisit": {"revisit_date": TODAY.isoformat()}}, "revisit.date"),
                ({"kind": "revisit"}, "paper.data"),
                (
                    {
                        "kind": "discharge_paper",
                        "discharge": {"treatment_result": 1, "treatment_method": "Nội khoa"},
                    },
                    "paper.not_inpatient",
                ),
                (
                    {
                        "kind": "sick_leave",
                        "sick_leave": {**SICK_LEAVE, "to_date": (TODAY + timedelta(days=30)).isoformat()},
                    },
                    "sick_leave.too_long",
                ),
                ({"kind": "sick_leave", "sick_leave": {**SICK_LEAVE, "days": 3}}, "sick_leave.days"),
                (
                    {
                        "kind": "sick_leave",
                        "sick_leave": {**SICK_LEAVE, "to_date": (TODAY - timedelta(days=1)).isoformat()},
                    },
                    "sick_leave.period",
                ),
                ({"kind": "referral_paper", "referral": REFERRAL}, "referral.services_given"),
            ]
            for body, code in bad:
                r = await doctor.post(url, json=body)
                assert r.status_code == 422 and r.json()["code"] == code, (code, r.text)
            r = await doctor.post(
                url,
                json={"kind": "sick_leave", "sick_leave": {**SICK_LEAVE, "social_insurance_number": "12345"}},
            )
            assert r.status_code == 422 and "social_insurance_number" in r.text, r.text
            assert (await doctor.get(url)).json()["items"] == []

            # a re-visit appointment: numbered, with the consultation's diagnoses (main first)
            r = await doctor.post(
                url,
                json={
                    "kind": "revisit",
                    "revisit": {"revisit_date": revisit_day, "note": "Mang theo đơn thuốc cũ"},
                },
            )
            assert r.status_code == 201, r.text
            revisit = r.json()
            assert revisit["status"] == "draft" and revisit["number"] == "35001-HK" + revisit["number"][-7:]
            assert [d["icd10_code"] for d in revisit["diagnoses"]] == ["J18.9", "I10"]
            assert revisit["revisit"]["revisit_date"] == revisit_day
            # a second draft of the same kind is refused: the doctor edits the draft
            r = await doctor.post(url, json={"kind": "revisit", "revisit": {"revisit_date": revisit_day}})
            assert r.status_code == 409 and r.json()["code"] == "paper.draft_exists"
            later = (TODAY + timedelta(days=21)).isoformat()
            r = await doctor.post(
                url, json={"kind": "revisit", "paper_id": revisit["id"], "revisit": {"revisit_date": later}}
            )
            assert r.status_code == 201 and r.json()["revisit"]["revisit_date"] == later, r.text
            async with client(emr, subject="user:bs.hai", name="BS. Hải", departments=["KKB"]) as other:
                assert (
                    await other.post(f"/api/v1/documents/{revisit['document_id']}/sign")
                ).status_code == 403
            r = await doctor.post(f"/api/v1/documents/{revisit['document_id']}/sign")
            assert r.status_code == 200, r.text
            assert r.json()["kind"] == "revisit" and r.json()["signature"]["algorithm"] == "EdDSA"
            event = await _next(sub, lambda e: e.paper.id == revisit["id"])
            assert event.visit_id == visit_id and event.patient_id == patient.id
            assert event.paper.kind == "revisit" and event.paper.status == "signed"
            assert event.paper.revisit.revisit_date == later and event.by.subject == "user:bs.minh"
            assert event.paper.number == revisit["number"] and event.paper.diagnoses[0].icd10_code == "J18.9"
            assert event.encounter_kind == "outpatient" and event.paper.signed_at.seconds > 0

            # signed: immutable, verifiable; the signature covers the paper's fields
            r = await doctor.post(
                url,
                json={"kind": "revisit", "paper_id": revisit["id"], "revisit": {"revisit_date": revisit_day}},
            )
            assert r.status_code == 409 and r.json()["code"] == "paper.signed"
            r = await doctor.post(
                f"/api/v1/documents/{revisit['document_id']}/amend",
                json={"reason": "đổi ngày hẹn", "sections": [{"code": "x", "text": "y"}]},
            )
            assert r.status_code == 409 and r.json()["code"] == "document.paper"
            assert (await doctor.get(f"/api/v1/documents/{revisit['document_id']}/verify")).json()[
                "valid"
            ] is True
            db = Database(emr.settings.database_url)
            try:
                async with db.session() as s:
                    await s.execute(
                        update(encounter_papers)
                        .where(encounter_papers.c.id == revisit["id"])
                        .values(data={"revisit_date": revisit_day, "note": ""})
                    )
                    await s.commit()
            finally:
                await db.dispose()
            tampered = (await doctor.get(f"/api/v1/documents/{revisit['document_id']}/verify")).json()
            assert tampered["valid"] is False and "thay đổi" in tampered["reason"]

            # a new appointment must name the signed one it replaces; once signed it supersedes it
            r = await doctor.post(url, json={"kind": "revisit", "revisit": {"revisit_date": revisit_day}})
            assert r.status_code == 409 and r.json()["code"] == "paper.exists"
            r = await doctor.post(
                url,
                json={
                    "kind": "revisit",
                    "replaces_paper_id": revisit["id"],
                    "revisit": {"revisit_date": revisit_day},
                },
            )
            assert r.status_code == 201, r.text
            second = r.json()
            assert second["version"] == 2 and second["replaces_paper_id"] == revisit["id"]
            assert (await doctor.post(f"/api/v1/documents/{second['document_id']}/sign")).status_code == 200
            event = await _next(sub, lambda e: e.paper.id == second["id"])
            assert event.paper.replaces_paper_id == revisit["id"] and event.paper.version == 2

            # a sick-leave certificate: the days counted, the serial and the visit code filled
            r = await doctor.post(url, json={"kind": "sick_leave", "sick_leave": SICK_LEAVE})
            assert r.status_code == 201, r.text
            leave = r.json()
            assert leave["sick_leave"]["days"] == 5 and leave["sick_leave"]["form"] == "CT07"
            assert leave["sick_leave"]["serial"] and leave["sick_leave"]["record_number"] == enc["visit_code"]
            assert (await doctor.post(f"/api/v1/documents/{leave['document_id']}/sign")).status_code == 200
            event = await _next(sub, lambda e: e.paper.id == leave["id"])
            assert event.paper.sick_leave.social_insurance_number == "3521234567"
            assert event.paper.sick_leave.days == 5

            papers = (await doctor.get(url)).json()["items"]
            assert [(p["kind"], p["status"]) for p in papers] == [
                ("revisit", "superseded"),
                ("revisit", "signed"),
                ("sick_leave", "signed"),
            ]
    finally:
        await nc.close()


async def test_inpatient_discharge_paper_and_referral_over_grpc(
    emr_sqlite, admissions: Admissions, nats_server
) -> None:
    emr = emr_sqlite
    visit_id, patient = await admissions.open_visit()
    await wait_encounter(emr, patient.id)
    await admissions.admit(visit_id, patient.id)
    enc = (await wait_encounter(emr, patient.id, kind="inpatient"))[0]
    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().subscribe("emr.paper.signed", ordered_consumer=True)
    try:
        async with client(emr) as doctor:
            await _consulted(doctor, enc["id"])
        async with Grpc(emr, token(emr)) as g:
            death = pb.SavePaperRequest(
                encounter_id=enc["id"],
                kind="discharge_paper",
                discharge=pb.DischargePaper(treatment_result=5, treatment_method="Hồi sức"),
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await g.stub.SavePaper(death, metadata=g.md)
            assert (
                err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "paper.death" in err.value.details()
            )
            paper = await g.stub.SavePaper(
                pb.SavePaperRequest(
                    encounter_id=enc["id"],
                    kind="discharge_paper",
                    discharge=pb.DischargePaper(
                        discharge_type=1,
                        treatment_result=2,
                        treatment_method="Kháng sinh tĩnh mạch 7 ngày",
                        note="Tái khám sau 2 tuần",
                        leave_days=5,
                        outpatient_from=(TODAY + timedelta(days=1)).isoformat(),
                        outpatient_to=(TODAY + timedelta(days=10)).isoformat(),
                    ),
                ),
                metadata=g.md,
            )
            assert paper.status == "draft" and paper.discharge.department_code == enc["department_code"]
            assert paper.number.startswith("35001-RV")
            await g.stub.SignDocument(pb.SignDocumentRequest(document_id=paper.document_id), metadata=g.md)
            event = await _next(sub, lambda e: e.paper.id == paper.id)
            assert event.encounter_kind == "inpatient" and event.admission_id
            assert event.paper.discharge.treatment_result == 2 and event.paper.discharge.leave_days == 5

            # a referral: the services given default to the encounter's orders, else the doctor writes them
            referral = await g.stub.SavePaper(
                pb.SavePaperRequest(
                    encounter_id=enc["id"],
                    kind="referral_paper",
                    referral=pb.Referral(
                        **REFERRAL, services_given="Chụp X-quang ngực thẳng; Tổng phân tích tế bào máu"
                    ),
                ),
                metadata=g.md,
            )
            assert (
                referral.referral.referral_type == "expertise"
                and referral.referral.paper_code == referral.number
            )
            assert referral.referral.record_number  # the visit code
            await g.stub.SignDocument(pb.SignDocumentRequest(document_id=referral.document_id), metadata=g.md)
            event = await _next(sub, lambda e: e.paper.id == referral.id)
            assert event.paper.referral.to_facility_code == "01929" and event.paper.referral.reason_code == 1
            chart = await g.stub.GetChart(
                pb.GetChartRequest(patient_id=patient.id, encounter_id=enc["id"]), metadata=g.md
            )
            assert {p.number for p in chart.papers} == {paper.number, referral.number}
            # the signed discharge summary's event carries the papers' data (emr.discharge.signed)
            summary_sub = await nc.jetstream().subscribe("emr.discharge.signed", ordered_consumer=True)
            summary = await g.stub.SaveDocument(
                pb.SaveDocumentRequest(encounter_id=enc["id"], kind="discharge_summary"), metadata=g.md
            )
            await g.stub.SignDocument(pb.SignDocumentRequest(document_id=summary.id), metadata=g.md)
            while True:
                signed = events_pb2.DischargeSigned.FromString((await summary_sub.next_msg(timeout=10)).data)
                if signed.document.id == summary.id:
                    break
            assert (
                signed.discharge.treatment_result == "2" and signed.discharge.advice == "Tái khám sau 2 tuần"
            )
            assert signed.discharge.referral.to_facility_code == "01929"
            assert signed.discharge.diagnoses[0].icd10_code == "J18.9"
            listed = await g.stub.ListPapers(pb.ListPapersRequest(encounter_id=enc["id"]), metadata=g.md)
            assert {(p.kind, p.status) for p in listed.items} == {
                ("discharge_paper", "signed"),
                ("referral_paper", "signed"),
            }
        async with client(emr, subject="user:bs.khac", departments=["NGT"]) as outsider:
            r = await outsider.post(
                f"/api/v1/encounters/{enc['id']}/papers",
                json={
                    "kind": "revisit",
                    "revisit": {"revisit_date": (TODAY + timedelta(days=7)).isoformat()},
                },
            )
            assert r.status_code == 403  # a doctor of another department writes no paper here
    finally:
        await nc.close()
