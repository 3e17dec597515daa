"""Bounded, clean input on the EMR's write paths (libs/chassis fields): NUL and other control characters,
lone UTF-16 surrogates, over-long text and non-finite vitals are refused with 422 naming the field (over
gRPC: INVALID_ARGUMENT naming it), and nothing is written."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from emr_testkit import Admissions, Grpc, client, token, wait_encounter

from hospital.contracts.emr.v1 import emr_pb2 as pb

GOOD = {
    "expected_version": 0,
    "chief_complaint": "Đau bụng quanh rốn",
    "examination": "Bụng mềm, ấn đau hố chậu phải.",
    "vitals": {"temperature_c": 37.8, "pulse": 96},
    "diagnoses": [{"icd10_code": "K35.8", "main": True, "note": "Theo dõi viêm ruột thừa"}],
}


def raw(body: Any) -> dict[str, Any]:
    """The body as a client could send it: lone surrogates as \\ud800 escapes, NaN/Infinity literals."""
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


async def test_unclean_or_unbounded_consultations_are_refused_and_leave_nothing(
    emr, admissions: Admissions
) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    url = f"/api/v1/encounters/{enc['id']}/consultation"
    cases = [
        (
            {"diagnoses": [{"icd10_code": "K35.8", "main": True, "note": "Viêm\x00ruột thừa"}]},
            "diagnoses.0.note",
        ),
        ({"diagnoses": [{"icd10_code": "K35.8", "main": True, "name": "Viêm \ud800"}]}, "diagnoses.0.name"),
        ({"examination": "Bụng mềm\x07"}, "examination"),
        ({"chief_complaint": "Đau bụng " * 300}, "chief_complaint"),
        ({"vitals": {"temperature_c": float("nan")}}, "vitals.temperature_c"),
        ({"vitals": {"weight_kg": float("inf")}}, "vitals.weight_kg"),
        ({"vitals": {"height_cm": float("-inf")}}, "vitals.height_cm"),
        ({"vitals": {"pulse": 2**40}}, "vitals.pulse"),
        ({"allergies_set": True, "allergies": [{"substance": "Penicilin\x00"}]}, "allergies.0.substance"),
    ]
    async with client(emr) as doctor:
        for body, field in cases:
            r = await doctor.put(url, **raw({**GOOD, **body}))
            assert r.status_code == 422, (body, r.text)
            assert r.json()["field"] == field, r.text
        back = (await doctor.get(url)).json()
        assert back["version"] == 0 and back["chief_complaint"] == "" and back["diagnoses"] == []
        # the clean body is stored, normalised: Vietnamese typed as base letter + combining mark becomes NFC
        r = await doctor.put(url, json={**GOOD, "chief_complaint": "  Đau bu\u0323ng quanh rốn  "})
        assert r.status_code == 200, r.text
        assert r.json()["chief_complaint"] == "Đau bụng quanh rốn"


async def test_unclean_document_and_order_text_is_refused(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/documents",
            json={
                "kind": "progress_note",
                "title": "Diễn biến",
                "sections": [{"code": "progress", "title": "Diễn biến", "text": "Tỉnh\x00táo"}],
            },
        )
        assert r.status_code == 422 and r.json()["field"] == "sections.0.text", r.text
        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            **raw({"lab": [{"tests": ["GLU"], "clinical_note": "Nhịn ăn\ud800"}]}),
        )
        assert r.status_code == 422 and r.json()["field"] == "lab.0.clinical_note", r.text
        docs = (await doctor.get(f"/api/v1/patients/{patient.id}/chart")).json()
        assert docs["documents"] == [] and docs["orders"] == []


async def test_grpc_refuses_unclean_text_naming_the_field(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with Grpc(emr, token(emr)) as g:
        req = pb.SaveConsultationRequest(
            encounter_id=enc["id"],
            chief_complaint="Sốt\x00cao",
            diagnoses=[pb.Diagnosis(icd10_code="A90", main=True)],
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.SaveConsultation(req, metadata=g.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "chief_complaint" in (err.value.details() or "")
        req = pb.SaveConsultationRequest(
            encounter_id=enc["id"], diagnoses=[pb.Diagnosis(icd10_code="A90", main=True)]
        )
        req.vitals.temperature_c = float("nan")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.SaveConsultation(req, metadata=g.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "vitals.temperature_c" in (err.value.details() or "")
        back = await g.stub.GetConsultation(pb.GetConsultationRequest(encounter_id=enc["id"]), metadata=g.md)
    assert back.version == 0 and back.chief_complaint == ""


async def test_break_glass_and_cancel_reasons_are_clean(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        # the header is percent-encoded UTF-8: %00 would decode to NUL
        r = await doctor.get(
            f"/api/v1/patients/{patient.id}/chart",
            headers={"X-Break-Glass-Reason": "C%E1%BA%A5p%20c%E1%BB%A9u%00"},
        )
        assert r.status_code == 422 and r.json()["field"] == "break_glass_reason", r.text
        r = await doctor.get(
            f"/api/v1/patients/{patient.id}/chart", headers={"X-Break-Glass-Reason": quote("Cấp cứu " * 80)}
        )
        assert r.status_code == 422 and r.json()["field"] == "break_glass_reason", r.text
    async with Grpc(emr, token(emr)) as g:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.GetChart(
                pb.GetChartRequest(patient_id=patient.id, break_glass_reason="Cấp\x00cứu"), metadata=g.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "break_glass_reason" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.CancelOrder(
                pb.CancelOrderRequest(order_id=enc["id"], reason="Nhầm\x1b[2J"), metadata=g.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in (
            err.value.details() or ""
        )
