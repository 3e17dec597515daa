"""Prescriptions and medication orders from the drug catalogue: allergy, duplicate-drug and duplicate-therapy
alerts that the doctor must override with a reason; the saved draft carries the catalogue's data, the
encounter's diagnoses and a ma_don_thuoc of the documented shape."""

from __future__ import annotations

import re

from emr_testkit import Admissions, Grpc, client, token, wait_encounter

from hospital.contracts.emr.v1 import emr_pb2 as pb


async def _encounter_with_allergy(emr, admissions: Admissions) -> dict:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        r = await doctor.put(
            f"/api/v1/encounters/{enc['id']}/consultation",
            json={
                "chief_complaint": "Đau họng, sốt",
                "diagnoses": [{"icd10_code": "J02.9", "main": True}],
                "allergies_set": True,
                "allergies": [{"substance": "Penicilin", "category": "drug"}],
            },
        )
        assert r.status_code == 200, r.text
    return enc


AMOX = {
    "drug_code": "AMOX500",
    "dose": "1 viên",
    "frequency": "3 lần/ngày",
    "duration_days": 7,
    "quantity": "21",
    "instructions": "Uống sau ăn",
}
IBU = {
    "drug_code": "IBU400",
    "dose": "1 viên",
    "frequency": "2 lần/ngày",
    "duration_days": 3,
    "quantity": "6",
}
DICLO = {
    "drug_code": "DICLO50",
    "dose": "1 viên",
    "frequency": "2 lần/ngày",
    "duration_days": 3,
    "quantity": "6",
}
PARA = {
    "drug_code": "PARA500",
    "dose": "1 viên",
    "frequency": "khi sốt > 38,5°C",
    "duration_days": 3,
    "quantity": "10",
}
EFFE = {"drug_code": "EFFE500", "dose": "1 viên", "frequency": "khi sốt", "duration_days": 3, "quantity": "6"}


async def test_alerts_must_be_overridden_with_a_reason(emr, admissions: Admissions) -> None:
    enc = await _encounter_with_allergy(emr, admissions)
    url = f"/api/v1/encounters/{enc['id']}/prescriptions"
    async with client(emr) as doctor:
        check = (await doctor.post(f"{url}/check", json={"items": [AMOX, IBU, DICLO, PARA, EFFE]})).json()
        refused = await doctor.post(
            url, json={"items": [AMOX, IBU, DICLO, PARA, EFFE], "advice": "Uống nhiều nước"}
        )
        weak = await doctor.post(
            url,
            json={
                "items": [AMOX],
                "overrides": [{"drug_code": "AMOX500", "kind": "allergy", "reason": "ok"}],
            },
        )
        saved = await doctor.post(
            url,
            json={
                "items": [AMOX, PARA],
                "advice": "Uống nhiều nước, tái khám nếu sốt cao",
                "revisit_date": "2026-12-14",
                "request_id": "don-1",
                "overrides": [
                    {
                        "drug_code": "AMOX500",
                        "kind": "allergy",
                        "reason": "Đã test lẩy da âm tính, bệnh nhân xác nhận chỉ nổi mẩn nhẹ",
                    }
                ],
            },
        )
        again = await doctor.post(
            url,
            json={
                "items": [AMOX, PARA],
                "request_id": "don-1",
                "overrides": [
                    {"drug_code": "AMOX500", "kind": "allergy", "reason": "Đã test lẩy da âm tính"}
                ],
            },
        )
    kinds = {(a["drug_code"], a["kind"]) for a in check["alerts"]}
    assert kinds == {("AMOX500", "allergy"), ("DICLO50", "duplicate_therapy"), ("EFFE500", "duplicate_drug")}
    assert check["unresolved"] == check["alerts"]
    assert refused.status_code == 422 and refused.json()["code"] == "prescription.alerts_not_overridden"
    assert {(a["drug_code"], a["kind"]) for a in refused.json()["alerts"]} == kinds
    assert weak.status_code == 422  # a reason of a few letters is no reason
    assert saved.status_code == 201, saved.text
    p = saved.json()
    assert re.fullmatch(r"35001\d{7}-c", p["code"]) and len(p["code"]) == 14
    assert p["status"] == "draft" and p["type"] == "c" and p["national_status"] == "not_sent"
    assert [
        (i["drug_code"], i["drug_name"], i["active_ingredient"], i["unit"], i["route"]) for i in p["items"]
    ] == [
        ("AMOX500", "Amoxicilin 500mg", "Amoxicilin", "viên", "uống"),
        ("PARA500", "Paracetamol 500mg", "Paracetamol", "viên", "uống"),
    ]
    assert [d["icd10_code"] for d in p["diagnoses"]] == ["J02.9"] and p["revisit_date"] == "2026-12-14"
    assert p["overrides"][0]["kind"] == "allergy"
    assert again.json()["id"] == p["id"]  # the same request id: the same prescription


async def test_medication_orders_are_checked_against_active_ones(emr, admissions: Admissions) -> None:
    enc = await _encounter_with_allergy(emr, admissions)
    async with Grpc(emr, token(emr)) as g:
        first = await g.stub.PlaceOrders(
            pb.PlaceOrdersRequest(
                encounter_id=enc["id"],
                medication=[
                    pb.MedicationOrderRequest(
                        item=pb.PrescriptionItem(drug_code="OME20", dose="1 viên", frequency="1 lần/ngày")
                    )
                ],
            ),
            metadata=g.md,
        )
        try:
            await g.stub.PlaceOrders(
                pb.PlaceOrdersRequest(
                    encounter_id=enc["id"],
                    medication=[
                        pb.MedicationOrderRequest(
                            item=pb.PrescriptionItem(drug_code="ESO40", dose="1 viên", frequency="1 lần/ngày")
                        )
                    ],
                ),
                metadata=g.md,
            )
            raise AssertionError("a second proton-pump inhibitor was accepted without an override")
        except Exception as exc:  # noqa: BLE001 - grpc.aio.AioRpcError
            assert (
                "INVALID_ARGUMENT" in str(exc.code())
                and "prescription.alerts_not_overridden" in exc.details()
            )
        second = await g.stub.PlaceOrders(
            pb.PlaceOrdersRequest(
                encounter_id=enc["id"],
                overrides=[
                    pb.AlertOverride(
                        drug_code="ESO40",
                        kind="duplicate_therapy",
                        reason="Chuyển sang esomeprazol, ngừng omeprazol",
                    )
                ],
                medication=[
                    pb.MedicationOrderRequest(
                        item=pb.PrescriptionItem(drug_code="ESO40", dose="1 viên", frequency="1 lần/ngày")
                    )
                ],
            ),
            metadata=g.md,
        )
        drugs = await g.stub.SearchDrugs(pb.SearchDrugsRequest(query="esomeprazol"), metadata=g.md)
    assert first.orders[0].status == "active" and first.orders[0].medication.drug_name == "Omeprazol 20mg"
    assert second.orders[0].status == "active" and second.orders[0].overrides[0].kind == "duplicate_therapy"
    assert [d.code for d in drugs.items] == ["ESO40"] and drugs.items[0].atc_code == "A02BC05"


async def test_unknown_drug_and_narcotic_on_a_normal_prescription_are_refused(
    emr, admissions: Admissions
) -> None:
    enc = await _encounter_with_allergy(emr, admissions)
    url = f"/api/v1/encounters/{enc['id']}/prescriptions"
    async with client(emr) as doctor:
        unknown = await doctor.post(url, json={"items": [{**PARA, "drug_code": "NOPE"}]})
        narcotic = await doctor.post(url, json={"items": [{**PARA, "drug_code": "MORP10"}]})
    assert (unknown.status_code, unknown.json()["field"]) == (422, "items.0.drug_code")
    assert narcotic.status_code == 422 and narcotic.json()["code"] == "prescription.type"
