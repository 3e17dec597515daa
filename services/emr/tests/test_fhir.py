"""FHIR read API under /fhir: a chart with vitals, diagnoses, problems, allergies, lab/imaging/medication
orders, a signed prescription, lab results, an imaging study with its signed report and notes (one amended)
comes back as Encounter, Observation, Condition, AllergyIntolerance, MedicationRequest, ServiceRequest,
DiagnosticReport, ImagingStudy and DocumentReference, each read by id and searched by patient (searchset
Bundle); every resource is validated with the fhir.resources models; errors are OperationOutcomes; reads
are checked by department (break-the-glass) and audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from emr_testkit import Admissions, client, eventually, wait_encounter
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select

from hospital.chassis.app import Service
from hospital.chassis.db import audit_log_table as audit_log
from hospital.contracts.imaging.v1 import events_pb2 as img_events
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2

FHIR_JSON = "application/fhir+json"
TYPES = (
    "Encounter",
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "ServiceRequest",
    "DiagnosticReport",
    "ImagingStudy",
    "DocumentReference",
)


def validate(resource: dict[str, Any]) -> Any:
    """Parse with the FHIR models (R4B: the R4 structures of these resources); raises on any deviation."""
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def lab_result(patient_id: str, lab_order_id: str, code: str, name: str, value: str, flag: str) -> Any:
    r = lab_pb2.Result(
        id=str(uuid.uuid4()),
        order_id=lab_order_id,
        patient_id=patient_id,
        test_code=code,
        test_name=name,
        loinc="2823-3" if code == "K" else "",
        value=value,
        unit="mmol/L",
        reference_range="3.5-5.1",
        flag=flag,
        status="verified",
        revision=1,
    )
    r.observed_at.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    r.verified_at.FromDatetime(datetime.now(UTC))
    return r


async def _chart(svc: Service, admissions: Admissions) -> dict[str, Any]:
    """A patient with every kind of record; returns the ids."""
    _, patient = await admissions.open_visit(patient=admissions.patient("Đặng Thị Bích Ngọc"))
    enc = (await wait_encounter(svc, patient.id))[0]
    async with client(svc) as doctor:
        r = await doctor.put(
            f"/api/v1/encounters/{enc['id']}/consultation",
            json={
                "chief_complaint": "Ho, sốt 3 ngày",
                "vitals": {
                    "systolic_bp": 150,
                    "diastolic_bp": 95,
                    "pulse": 96,
                    "temperature_c": 38.6,
                    "spo2": 95,
                    "respiratory_rate": 22,
                    "weight_kg": 52,
                    "height_cm": 155,
                },
                "diagnoses": [
                    {"icd10_code": "J18.9", "main": True, "note": "Phổi phải"},
                    {"icd10_code": "I10", "main": False},
                ],
                "allergies_set": True,
                "allergies": [
                    {
                        "substance": "Penicilin",
                        "category": "drug",
                        "reaction": "Nổi mề đay",
                        "severity": "severe",
                    },
                    {"substance": "Tôm", "category": "food"},
                ],
                "problems_set": True,
                "problems": [
                    {"icd10_code": "E11.9", "description": "Đái tháo đường típ 2", "onset_date": "2019"}
                ],
            },
        )
        assert r.status_code == 200, r.text
        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            json={
                "lab": [{"tests": ["K", "NA"], "stat": True, "clinical_note": "Theo dõi điện giải"}],
                "imaging": [
                    {
                        "procedure_code": "XQNGUC",
                        "description": "X-quang ngực thẳng",
                        "modality": "CR",
                        "scheduled_start": datetime.now(UTC).isoformat(),
                    }
                ],
                "medication": [
                    {
                        "item": {
                            "drug_code": "PARA500",
                            "dose": "1 viên",
                            "frequency": "khi sốt",
                            "duration_days": 3,
                            "quantity": "6",
                        }
                    }
                ],
            },
        )
        assert r.status_code == 201, r.text
        orders = r.json()["orders"]
        rx = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/prescriptions",
            json={
                "items": [
                    {
                        "drug_code": "OME20",
                        "dose": "1 viên",
                        "frequency": "1 lần/ngày",
                        "duration_days": 14,
                        "quantity": "14",
                        "instructions": "Uống trước ăn sáng",
                    }
                ],
                "advice": "Tái khám khi khó thở",
            },
        )
        assert rx.status_code == 201, rx.text
        rx = rx.json()
        assert (await doctor.post(f"/api/v1/documents/{rx['document_id']}/sign")).status_code == 200
        note = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/documents",
            json={
                "kind": "outpatient_note",
                "sections": [{"code": "reason", "title": "Lý do khám", "text": "Ho, sốt"}],
            },
        )
        assert note.status_code == 201, note.text
        note = note.json()
        assert (await doctor.post(f"/api/v1/documents/{note['id']}/sign")).status_code == 200
        amended = await doctor.post(
            f"/api/v1/documents/{note['id']}/amend",
            json={
                "reason": "Bổ sung khám lâm sàng",
                "sections": [{"code": "reason", "title": "Lý do khám", "text": "Ho, sốt, đau ngực"}],
            },
        )
        assert amended.status_code in (200, 201), amended.text
        amended = amended.json()
        assert (await doctor.post(f"/api/v1/documents/{amended['id']}/sign")).status_code == 200

    lab_order = str(uuid.uuid4())
    results = [
        lab_result(patient.id, lab_order, "K", "Kali", "5.6", "H"),
        lab_result(patient.id, lab_order, "NA", "Natri", "tan máu", ""),
    ]
    for res in results:
        await admissions.publish("lab.result.verified", lab_events.ResultVerified(result=res))
    imaging = next(o for o in orders if o["kind"] == "imaging")
    uid = f"1.2.840.113619.2.55.3.{uuid.uuid4().int % 10**12}"
    study = img_events.StudyReceived(
        study_instance_uid=uid,
        accession_number=imaging["accession_number"],
        patient_code=patient.patient_code,
        modalities=["CR"],
        series_count=1,
        instance_count=2,
    )
    study.last_received_at.FromDatetime(datetime.now(UTC))
    await admissions.publish("imaging.study.received", study)
    async with client(svc) as doctor:

        async def arrived() -> Any:
            chart = (await doctor.get(f"/api/v1/patients/{patient.id}/chart")).json()
            return len(chart.get("results", [])) == 2 and len(chart.get("studies", [])) == 1

        await eventually(arrived)
    radiologist = dict(subject="user:bs.cdha", name="BS. Hoàng Văn Phúc")
    async with client(svc, "radiologist", **radiologist) as rad:
        report = await rad.post(
            "/api/v1/radiology/reports",
            json={
                "kind": "radiology_report",
                "study_instance_uid": uid,
                "sections": [
                    {"code": "findings", "title": "Mô tả hình ảnh", "text": "Đám mờ thùy dưới phổi phải"},
                    {"code": "conclusion", "title": "Kết luận", "text": "Viêm phổi thùy dưới phải"},
                ],
            },
        )
        assert report.status_code == 201, report.text
        report = report.json()
        assert (await rad.post(f"/api/v1/documents/{report['id']}/sign")).status_code == 200
    return {
        "patient": patient.id,
        "encounter": enc["id"],
        "orders": orders,
        "rx": rx,
        "note": note["id"],
        "amended": amended["id"],
        "lab_order": lab_order,
        "results": [r.id for r in results],
        "study": uid,
        "report": report["id"],
    }


async def test_every_resource_type_read_and_searched_by_patient_and_valid(
    emr: Service, admissions: Admissions
) -> None:
    ids = await _chart(emr, admissions)
    pid = ids["patient"]
    found: dict[str, list[dict[str, Any]]] = {}
    async with client(emr) as doctor:
        for rtype in TYPES:
            r = await doctor.get(f"/fhir/{rtype}", params={"patient": pid})
            assert r.status_code == 200, (rtype, r.text)
            assert r.headers["content-type"].startswith(FHIR_JSON)
            bundle = r.json()
            validate(bundle)
            assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
            found[rtype] = [e["resource"] for e in bundle["entry"]]
            for entry in bundle["entry"]:
                res = entry["resource"]
                validate(res)
                assert entry["fullUrl"].endswith(f"/fhir/{rtype}/{res['id']}")
                subject = res.get("subject") or res.get("patient")
                assert subject["reference"] == f"Patient/{pid}"
                one = await doctor.get(f"/fhir/{rtype}/{res['id']}")
                assert one.status_code == 200, one.text
                assert one.json() == res  # read by id gives the same resource
        by_ref = await doctor.get("/fhir/Encounter", params={"patient": f"Patient/{pid}"})
    assert by_ref.json()["total"] == 1

    enc = found["Encounter"][0]
    assert enc["id"] == ids["encounter"] and enc["status"] == "in-progress" and enc["class"]["code"] == "AMB"

    obs = {o["id"]: o for o in found["Observation"]}
    bp = obs[f"{ids['encounter']}-vs-bp"]
    assert bp["code"]["coding"][0]["code"] == "85354-9"
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in bp["component"]] == [
        ("8480-6", 150),
        ("8462-4", 95),
    ]
    temp = obs[f"{ids['encounter']}-vs-temp"]
    assert temp["valueQuantity"] == {
        "value": 38.6,
        "unit": "Cel",
        "system": "http://unitsofmeasure.org",
        "code": "Cel",
    }
    assert obs[f"{ids['encounter']}-vs-bmi"]["valueQuantity"]["value"] == 21.6
    kali = obs[ids["results"][0]]
    assert kali["category"][0]["coding"][0]["code"] == "laboratory"
    assert kali["code"]["coding"][0] == {"system": "http://loinc.org", "code": "2823-3"}
    assert kali["valueQuantity"]["value"] == 5.6 and kali["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs[ids["results"][1]]["valueString"] == "tan máu"
    assert len(obs) == 8 + 2  # BP panel + 7 single vital signs (BMI computed) + 2 lab results

    conds = {c["code"].get("coding", [{}])[0].get("code"): c for c in found["Condition"]}
    assert conds["J18.9"]["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert conds["J18.9"]["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert conds["E11.9"]["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert conds["E11.9"]["onsetDateTime"] == "2019" and set(conds) == {"J18.9", "I10", "E11.9"}

    allergies = {a["code"]["text"]: a for a in found["AllergyIntolerance"]}
    assert (
        allergies["Penicilin"]["category"] == ["medication"]
        and allergies["Penicilin"]["criticality"] == "high"
    )
    assert allergies["Penicilin"]["reaction"][0]["manifestation"][0]["text"] == "Nổi mề đay"
    assert allergies["Tôm"]["category"] == ["food"]

    meds = {m["id"]: m for m in found["MedicationRequest"]}
    line = meds[f"{ids['rx']['id']}-1"]
    assert line["status"] == "active" and line["groupIdentifier"]["value"] == ids["rx"]["code"]
    assert line["medicationCodeableConcept"]["coding"][0]["code"] == "OME20"
    assert line["dispenseRequest"]["expectedSupplyDuration"]["value"] == 14
    med_order = next(o for o in ids["orders"] if o["kind"] == "medication")
    assert meds[med_order["id"]]["status"] == "active" and len(meds) == 2

    services = {s["id"]: s for s in found["ServiceRequest"]}
    lab = next(o for o in ids["orders"] if o["kind"] == "lab")
    assert services[lab["id"]]["priority"] == "stat" and services[lab["id"]]["status"] == "active"
    assert [c["code"] for c in services[lab["id"]]["code"]["coding"]] == ["K", "NA"]
    imaging = next(o for o in ids["orders"] if o["kind"] == "imaging")
    assert {"system": "urn:hospital:accession-number", "value": imaging["accession_number"]} in services[
        imaging["id"]
    ]["identifier"]

    reports = {r["id"]: r for r in found["DiagnosticReport"]}
    lab_report = reports[ids["lab_order"]]
    assert {x["reference"] for x in lab_report["result"]} == {f"Observation/{i}" for i in ids["results"]}
    assert lab_report["status"] == "final"
    rad = reports[ids["report"]]
    assert rad["conclusion"] == "Viêm phổi thùy dưới phải"
    assert rad["imagingStudy"] == [{"reference": f"ImagingStudy/{ids['study']}"}]
    assert rad["basedOn"] == [{"reference": f"ServiceRequest/{imaging['id']}"}]

    study = found["ImagingStudy"][0]
    assert study["id"] == ids["study"] and study["numberOfInstances"] == 2
    assert study["identifier"][0]["value"] == f"urn:oid:{ids['study']}"
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{imaging['id']}"}]

    docs = {d["id"]: d for d in found["DocumentReference"]}
    assert docs[ids["note"]]["status"] == "superseded"
    assert docs[ids["amended"]]["status"] == "current" and docs[ids["amended"]]["docStatus"] == "amended"
    assert docs[ids["amended"]]["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{ids['note']}"
    assert docs[ids["rx"]["document_id"]]["type"]["coding"][0]["code"] == "57833-6"
    assert docs[ids["report"]]["authenticator"]["display"] == "BS. Hoàng Văn Phúc"

    # every read is in the audit trail
    async with emr.rt.db.session() as s:
        actions = (
            (await s.execute(select(audit_log.c.action).where(audit_log.c.patient_id == pid))).scalars().all()
        )
    assert {f"fhir.{t}.search" for t in TYPES} <= set(actions)
    assert "fhir.Observation.read" in actions


async def test_errors_are_operation_outcomes_and_reads_are_checked(
    emr_sqlite: Service, admissions: Admissions
) -> None:
    svc = emr_sqlite
    _, patient = await admissions.open_visit(patient=admissions.patient("Bùi Quốc Khánh"))
    enc = (await wait_encounter(svc, patient.id))[0]
    outsider = dict(subject="user:bs.tuan", name="BS. Đỗ Anh Tuấn", departments=["NGO"])
    async with client(svc) as doctor, client(svc, **outsider) as other, client(svc, "cashier") as cashier:
        missing = await doctor.get(f"/fhir/Encounter/{uuid.uuid4()}")
        unknown_type = await doctor.get("/fhir/Patient", params={"patient": patient.id})
        no_patient = await doctor.get("/fhir/Observation")
        forbidden = await cashier.get(f"/fhir/Encounter/{enc['id']}")
        glass = await other.get(f"/fhir/Encounter/{enc['id']}")
        stated = await other.get(
            f"/fhir/Encounter/{enc['id']}", params={"break_glass_reason": "Hội chẩn liên khoa cấp cứu"}
        )
        anonymous = await doctor.get(f"/fhir/Encounter/{enc['id']}", headers={"Authorization": ""})
        empty = await doctor.get("/fhir/ImagingStudy", params={"patient": patient.id})
        metadata = await doctor.get("/fhir/metadata")
    for r, status, code in (
        (missing, 404, "not-found"),
        (unknown_type, 404, "not-found"),
        (no_patient, 422, "invalid"),
        (forbidden, 403, "forbidden"),
        (glass, 403, "forbidden"),
        (anonymous, 401, "login"),
    ):
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith(FHIR_JSON)
        outcome = r.json()
        validate(outcome)
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == code
    assert glass.json()["issue"][0]["diagnostics"] == "chart.break_glass_required"
    assert "Patient" in unknown_type.json()["issue"][0]["details"]["text"]
    assert no_patient.json()["issue"][0]["expression"] == ["patient"]
    assert stated.status_code == 200 and validate(stated.json()).id == enc["id"]
    assert empty.status_code == 200 and empty.json()["total"] == 0 and "entry" not in empty.json()
    validate(metadata.json())
    async with svc.rt.db.session() as s:
        actions = (
            (await s.execute(select(audit_log.c.action).where(audit_log.c.patient_id == patient.id)))
            .scalars()
            .all()
        )
    assert "chart.break_glass" in actions and "fhir.Encounter.read" in actions


async def test_search_pages_with_count_and_next_links(emr: Service, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit(patient=admissions.patient("Lương Văn Đức"))
    enc = (await wait_encounter(emr, patient.id))[0]
    vitals = {
        "systolic_bp": 130,
        "diastolic_bp": 85,
        "pulse": 80,
        "temperature_c": 37,
        "spo2": 97,
        "respiratory_rate": 18,
        "weight_kg": 60,
        "height_cm": 165,
    }
    async with client(emr) as doctor:
        r = await doctor.put(f"/api/v1/encounters/{enc['id']}/consultation", json={"vitals": vitals})
        assert r.status_code == 200, r.text
        whole = (await doctor.get("/fhir/Observation", params={"patient": patient.id})).json()
        assert whole["total"] == 8 and len(whole["entry"]) == 8  # bp, hr, temp, spo2, rr, wt, ht, bmi
        assert "next" not in {link["relation"] for link in whole["link"]}

        pages, url, params = [], "/fhir/Observation", {"patient": f"Patient/{patient.id}", "_count": 3}
        while url:
            r = await doctor.get(url, params=params)
            assert r.status_code == 200, r.text
            bundle = r.json()
            validate(bundle)
            pages.append(bundle)
            links = {link["relation"]: link["url"] for link in bundle["link"]}
            url, params = links.get("next"), None
        zero = await doctor.get("/fhir/Observation", params={"patient": patient.id, "_count": 0})
        too_many = await doctor.get("/fhir/Observation", params={"patient": patient.id, "_count": 5000})
        negative = await doctor.get("/fhir/Observation", params={"patient": patient.id, "_offset": -1})
    assert [len(p["entry"]) for p in pages] == [3, 3, 2] and {p["total"] for p in pages} == {8}
    paged = [e["resource"]["id"] for p in pages for e in p["entry"]]
    assert paged == [e["resource"]["id"] for e in whole["entry"]]  # every one once, in the same order
    second = {link["relation"]: link["url"] for link in pages[1]["link"]}
    assert "_count=3&_offset=3" in second["self"] and "_offset=0" in second["previous"]
    assert f"patient=Patient%2F{patient.id}" in second["next"]  # the search's parameters are kept
    assert zero.status_code == 200 and zero.json()["total"] == 8 and "entry" not in zero.json()
    for r in (too_many, negative):
        assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome", r.text
    assert too_many.json()["issue"][0]["expression"] == ["_count"]
