"""A consultation saved and read back on SQLite and PostgreSQL: the encounter opened from
admissions.visit.opened, vitals with the BMI computed and out-of-range values flagged, ICD-10 diagnoses
(one main, secondaries), the allergy and problem lists, optimistic concurrency, and emr.diagnosis.recorded."""

from __future__ import annotations

import uuid

import nats
from emr_testkit import Admissions, Grpc, client, token, wait_encounter

from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import events_pb2

CONSULTATION = {
    "expected_version": 0,
    "chief_complaint": "Ho, sốt 3 ngày",
    "history": "Sốt 38,5°C, ho khạc đờm vàng, đau ngực phải khi ho.",
    "past_history": "Tăng huyết áp 5 năm, dị ứng Penicilin (nổi mẩn).",
    "examination": "Ran nổ đáy phổi phải. Tim đều.",
    "vitals": {
        "systolic_bp": 165,
        "diastolic_bp": 95,
        "pulse": 104,
        "temperature_c": 38.6,
        "spo2": 93,
        "respiratory_rate": 24,
        "weight_kg": 68,
        "height_cm": 160,
    },
    "diagnoses": [
        {"icd10_code": "i10", "main": False},
        {"icd10_code": "J18.9", "main": True, "note": "Viêm phổi cộng đồng"},
    ],
    "treatment_plan": "Kháng sinh, hạ sốt, chụp X-quang ngực.",
    "follow_up_date": "2026-12-14",
    "allergies_set": True,
    "allergies": [
        {
            "substance": "Penicilin",
            "category": "drug",
            "ingredient_code": "J01C",
            "reaction": "Nổi mẩn",
            "severity": "moderate",
        }
    ],
    "problems_set": True,
    "problems": [{"icd10_code": "I10", "description": "Tăng huyết áp"}],
}


async def test_consultation_saved_and_read_back(emr, admissions: Admissions, nats_server) -> None:
    room = f"T{uuid.uuid4().hex[:6]}"  # a room of this test only: the stream holds other tests' visits
    visit_id, patient = await admissions.open_visit(room=room, ticket=7)
    _, other = await admissions.open_visit(room=room, ticket=3)
    enc = (await wait_encounter(emr, patient.id))[0]
    other_enc = (await wait_encounter(emr, other.id))[0]
    assert enc["visit_id"] == visit_id and enc["status"] == "open" and enc["kind"] == "outpatient"
    assert enc["department_code"] == "KKB" and enc["ticket_number"] == 7
    assert enc["patient_name"] == "Nguyễn Thị Hồng Nhung"

    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().subscribe("emr.diagnosis.recorded", ordered_consumer=True)
    try:
        async with client(emr) as doctor:
            r = await doctor.put(f"/api/v1/encounters/{enc['id']}/consultation", json=CONSULTATION)
            assert r.status_code == 200, r.text
            saved = r.json()
            back = (await doctor.get(f"/api/v1/encounters/{enc['id']}/consultation")).json()
            queue = (
                await doctor.get("/api/v1/queue", params={"department_code": "KKB", "room_code": room})
            ).json()
        # the recorded event carries the diagnoses, main first
        while True:
            msg = await sub.next_msg(timeout=10)
            event = events_pb2.DiagnosisRecorded.FromString(msg.data)
            if event.encounter_id == enc["id"]:
                break
    finally:
        await nc.close()
    assert saved == back
    assert back["version"] == 1 and back["updated_by"] == "user:bs.minh"
    assert back["chief_complaint"] == "Ho, sốt 3 ngày" and back["follow_up_date"] == "2026-12-14"
    v = back["vitals"]
    assert v["bmi"] == 26.6  # 68 / 1.6²
    flags = {f["field"]: f["flag"] for f in v["flags"]}
    assert flags == {
        "systolic_bp": "H",
        "diastolic_bp": "H",
        "pulse": "H",
        "temperature_c": "H",
        "spo2": "L",
        "respiratory_rate": "H",
        "bmi": "H",
    }
    assert [(d["icd10_code"], d["main"]) for d in back["diagnoses"]] == [("J18.9", True), ("I10", False)]
    assert back["diagnoses"][0]["name"] == "Viêm phổi, không đặc hiệu"
    assert back["diagnoses"][0]["note"] == "Viêm phổi cộng đồng"
    assert [(a["substance"], a["ingredient_code"], a["status"]) for a in back["allergies"]] == [
        ("Penicilin", "j01c", "active")
    ]
    assert [(p["icd10_code"], p["status"]) for p in back["problems"]] == [("I10", "active")]
    assert [e["id"] for e in queue["items"]] == [other_enc["id"], enc["id"]]  # ticket order
    assert queue["items"][1]["main_diagnosis_code"] == "J18.9"
    assert [d.icd10_code for d in event.diagnoses] == ["J18.9", "I10"] and event.diagnoses[0].main
    assert event.visit_id == visit_id and event.by.subject == "user:bs.minh"


async def test_second_save_needs_the_version_read_and_replaces_the_lists(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    url = f"/api/v1/encounters/{enc['id']}/consultation"
    async with client(emr) as doctor:
        first = (await doctor.put(url, json=CONSULTATION)).json()
        stale = await doctor.put(url, json={**CONSULTATION, "chief_complaint": "Bản cũ"})
        assert stale.status_code == 409 and stale.json()["code"] == "consultation.version_conflict"
        allergy_id = first["allergies"][0]["id"]
        r = await doctor.put(
            url,
            json={
                **CONSULTATION,
                "expected_version": 1,
                "chief_complaint": "Ho giảm",
                "vitals": {"systolic_bp": 128, "diastolic_bp": 78},
                "diagnoses": [{"icd10_code": "J18.9", "main": True}],
                "allergies": [
                    {
                        "id": allergy_id,
                        "substance": "Penicilin",
                        "ingredient_code": "J01C",
                        "reaction": "Mày đay",
                        "severity": "severe",
                    },
                    {"substance": "Hải sản", "category": "food"},
                ],
                "problems": [],
            },
        )
        assert r.status_code == 200, r.text
        second = r.json()
    assert second["version"] == 2 and second["chief_complaint"] == "Ho giảm"
    assert second["vitals"]["flags"] == [] and second["vitals"]["bmi"] is None
    assert [d["icd10_code"] for d in second["diagnoses"]] == ["J18.9"]
    by_name = {a["substance"]: a for a in second["allergies"]}
    assert by_name["Penicilin"]["id"] == allergy_id and by_name["Penicilin"]["severity"] == "severe"
    assert by_name["Hải sản"]["category"] == "food"
    assert [p["status"] for p in second["problems"]] == ["resolved"]  # never deleted


async def test_bad_consultations_are_refused_and_leave_nothing(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    url = f"/api/v1/encounters/{enc['id']}/consultation"
    cases = [
        (
            {"diagnoses": [{"icd10_code": "Q99.9", "main": True}]},
            "diagnosis.unknown_code",
            "diagnoses.0.icd10_code",
        ),
        (
            {"diagnoses": [{"icd10_code": "J18.9", "main": True}, {"icd10_code": "I10", "main": True}]},
            "diagnosis.main",
            "diagnoses",
        ),
        ({"diagnoses": [{"icd10_code": "I10"}]}, "diagnosis.main", "diagnoses"),
        (
            {"diagnoses": [{"icd10_code": "I10", "main": True}, {"icd10_code": "i10"}]},
            "diagnosis.duplicate",
            "diagnoses.1.icd10_code",
        ),
        ({"vitals": {"systolic_bp": 400}}, "vitals.implausible", "vitals.systolic_bp"),
        ({"vitals": {"systolic_bp": 80, "diastolic_bp": 90}}, "vitals.bp_order", "vitals.diastolic_bp"),
    ]
    async with client(emr) as doctor:
        for body, code, field in cases:
            r = await doctor.put(url, json={**CONSULTATION, **body})
            assert r.status_code == 422, (body, r.text)
            assert (r.json()["code"], r.json()["field"]) == (code, field)
        nul = await doctor.put(url, json={**CONSULTATION, "chief_complaint": "Ho\u0000 sốt"})
        assert nul.status_code == 422 and nul.json()["errors"][0]["field"] == "chief_complaint"
        back = (await doctor.get(url)).json()
    assert back["version"] == 0 and back["diagnoses"] == [] and back["allergies"] == []


async def test_grpc_save_consultation_and_get_chart(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    async with Grpc(emr, token(emr)) as g:
        req = pb.SaveConsultationRequest(
            encounter_id=enc["id"],
            chief_complaint="Đau đầu, chóng mặt",
            diagnoses=[pb.Diagnosis(icd10_code="I10", main=True)],
        )
        req.vitals.systolic_bp, req.vitals.diastolic_bp = 185, 100
        req.vitals.weight_kg, req.vitals.height_cm = 50, 165
        saved = await g.stub.SaveConsultation(req, metadata=g.md)
        chart = await g.stub.GetChart(pb.GetChartRequest(patient_id=patient.id), metadata=g.md)
        hits = await g.stub.SearchIcd10(pb.SearchIcd10Request(query="tang huyet ap"), metadata=g.md)
    assert saved.version == 1 and saved.vitals.bmi == 18.4
    assert {(f.field, f.flag) for f in saved.vitals.flags} == {
        ("systolic_bp", "HH"),
        ("diastolic_bp", "H"),
        ("bmi", "L"),
    }
    assert not saved.vitals.HasField("pulse")
    assert chart.patient.full_name == "Nguyễn Thị Hồng Nhung" and chart.patient.sex == "female"
    assert chart.encounter.id == enc["id"] and chart.consultation.chief_complaint == "Đau đầu, chóng mặt"
    assert [e.id for e in chart.encounters] == [enc["id"]] and not chart.break_glass
    assert "I10" in [c.code for c in hits.items]
