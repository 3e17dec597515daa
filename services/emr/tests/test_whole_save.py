"""The doctor's save in one request (ADR 0505): the consultation, its orders, a prescription and a signed
note are committed together, or, when any part is refused, nothing of it is."""

from __future__ import annotations

from emr_testkit import Admissions, client, wait_encounter

PARA = {
    "drug_code": "PARA500",
    "dose": "1 viên",
    "frequency": "khi sốt > 38,5°C",
    "duration_days": 3,
    "quantity": "10",
}
AMOX = {
    "drug_code": "AMOX500",
    "dose": "1 viên",
    "frequency": "3 lần/ngày",
    "duration_days": 7,
    "quantity": "21",
}


def _body(items: list[dict]) -> dict:
    return {
        "consultation": {
            "expected_version": 0,
            "chief_complaint": "Sốt, đau họng 2 ngày",
            "examination": "Họng đỏ, amidan sưng",
            "vitals": {"temperature_c": 38.6, "pulse": 96, "systolic_bp": 118, "diastolic_bp": 76},
            "diagnoses": [{"icd10_code": "J02.9", "main": True}, {"icd10_code": "R50.9"}],
            "allergies_set": True,
            "allergies": [{"substance": "Penicilin", "category": "drug"}],
        },
        "orders": {"request_id": "kham-1-cls", "lab": [{"tests": ["CBC"], "clinical_note": "Sốt"}]},
        "prescription": {"items": items, "advice": "Uống nhiều nước", "request_id": "kham-1-don"},
        "note": {
            "kind": "outpatient_note",
            "sections": [{"code": "assessment", "title": "", "text": "Viêm họng cấp"}],
            "request_id": "kham-1-phieu",
        },
        "sign_note": True,
        "sign_prescription": True,
    }


async def test_everything_is_saved_and_signed_in_one_request(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        r = await doctor.post(f"/api/v1/encounters/{enc['id']}/consultation/save", json=_body([PARA]))
        assert r.status_code == 200, r.text
        saved = r.json()
        assert saved["consultation"]["version"] == 1
        assert [d["icd10_code"] for d in saved["consultation"]["diagnoses"]] == ["J02.9", "R50.9"]
        assert [o["codes"] for o in saved["orders"]] == [["CBC"]]
        assert saved["prescription"]["status"] == "signed" and saved["prescription"]["signed_at"]
        assert saved["note"]["status"] == "signed" and saved["note"]["signature"]["key_id"]

        orders = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
        assert [o["id"] for o in orders] == [saved["orders"][0]["id"]]
        again = (await doctor.get(f"/api/v1/encounters/{enc['id']}/consultation")).json()
        assert again["version"] == 1 and again["chief_complaint"] == "Sốt, đau họng 2 ngày"
        verified = await doctor.get(f"/api/v1/documents/{saved['note']['id']}/verify")
        assert verified.status_code == 200 and verified.json()["valid"] is True, verified.text


async def test_a_refused_part_leaves_nothing_saved(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        # amoxicillin for a patient this very save records as allergic to penicillin, not overridden
        r = await doctor.post(f"/api/v1/encounters/{enc['id']}/consultation/save", json=_body([AMOX]))
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "prescription.alerts_not_overridden"

        assert (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"] == []
        consultation = await doctor.get(f"/api/v1/encounters/{enc['id']}/consultation")
        assert consultation.status_code == 404 or consultation.json()["version"] == 0, consultation.text

        # the same save with the alert overridden goes through, whole
        body = _body([AMOX])
        body["prescription"]["overrides"] = [
            {"drug_code": "AMOX500", "kind": "allergy", "reason": "Đã test lẩy da âm tính"}
        ]
        r = await doctor.post(f"/api/v1/encounters/{enc['id']}/consultation/save", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["consultation"]["version"] == 1 and len(r.json()["orders"]) == 1


async def test_signing_without_a_note_is_refused(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with client(emr) as doctor:
        body = {"consultation": {"expected_version": 0, "chief_complaint": "Ho"}, "sign_note": True}
        r = await doctor.post(f"/api/v1/encounters/{enc['id']}/consultation/save", json=body)
        assert r.status_code == 422 and r.json()["field"] == "sign_note", r.text
