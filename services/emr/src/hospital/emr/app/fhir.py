"""FHIR R4 read access to the chart: the EMR's rows as Encounter, Observation (vital signs and lab
results), Condition (diagnoses and the problem list), AllergyIntolerance, MedicationRequest (prescription
lines and medication orders), ServiceRequest (lab and imaging orders), DiagnosticReport (lab reports per
order, signed radiology reports), ImagingStudy and DocumentReference. Each read is checked and audited like
a chart read (department, break-the-glass)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid, NotFound
from hospital.emr.adapters.fhir_store import FhirReads
from hospital.emr.app.common import Context, authorize_read
from hospital.emr.app.eprescription import usage_text

Resource = dict[str, Any]

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SYS_LAB_TEST = "urn:hospital:lab-test"
SYS_DRUG = "urn:hospital:drug"
SYS_PLACER = "urn:hospital:placer-order-number"
SYS_ACCESSION = "urn:hospital:accession-number"
SYS_RX_CODE = "urn:vn:ma-don-thuoc"
SYS_VISIT = "urn:hospital:visit-code"

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

# vital sign key → (id suffix, LOINC code, display, UCUM unit)
VITALS: dict[str, tuple[str, str, str, str]] = {
    "pulse": ("hr", "8867-4", "Heart rate", "/min"),
    "temperature_c": ("temp", "8310-5", "Body temperature", "Cel"),
    "spo2": ("spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "respiratory_rate": ("rr", "9279-1", "Respiratory rate", "/min"),
    "weight_kg": ("wt", "29463-7", "Body weight", "kg"),
    "height_cm": ("ht", "8302-2", "Body height", "cm"),
    "bmi": ("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2"),
}
BP = ("bp", "85354-9", "Blood pressure panel with all children optional")
VITAL_SUFFIXES = {v[0]: k for k, v in VITALS.items()} | {BP[0]: "bp"}
VITAL_KEYS = (
    "systolic_bp",
    "diastolic_bp",
    "pulse",
    "temperature_c",
    "spo2",
    "respiratory_rate",
    "weight_kg",
)

DOC_TYPES = {
    "outpatient_note": ("34108-1", "Outpatient Note"),
    "admission_note": ("47039-3", "Hospital Admission history and physical note"),
    "progress_note": ("11506-3", "Progress note"),
    "discharge_summary": ("18842-5", "Discharge summary"),
    "radiology_report": ("18748-4", "Diagnostic imaging study"),
    "prescription": ("57833-6", "Prescription for medication"),
    # the papers a visit produces (QĐ 130 XML7, XML13, XML11, XML14)
    "referral_paper": ("57133-1", "Referral note"),
    "discharge_paper": ("51851-4", "Administrative note"),
    "sick_leave": ("51851-4", "Administrative note"),
    "revisit": ("51851-4", "Administrative note"),
}


def _dt(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    return value.isoformat()


def _prune(value: Any) -> Any:
    """Drop empty values (FHIR allows no empty strings, lists or objects)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (_prune(v) for v in value) if v not in (None, "", [], {})]
    return value


def _patient(pid: str, name: str = "") -> dict[str, str]:
    return {"reference": f"Patient/{pid}", "display": name}


def _enc(encounter_id: str | None) -> dict[str, str] | None:
    return {"reference": f"Encounter/{encounter_id}"} if encounter_id else None


def _interp(flag: str | None) -> list[dict[str, Any]]:
    if flag in ("L", "H", "LL", "HH", "N", "A", "AA"):
        return [{"coding": [{"system": V3_INTERP, "code": flag}]}]
    return []


# --- mappers ----------------------------------------------------------------------------------------
def encounter(e: dict[str, Any]) -> Resource:
    cls = {"inpatient": ("IMP", "inpatient encounter"), "emergency": ("EMER", "emergency")}.get(
        e["kind"], ("AMB", "ambulatory")
    )
    place = " / ".join(
        p for p in (e["department_code"], e["ward_code"], e["bed_code"] or e["room_code"]) if p
    )
    return {
        "resourceType": "Encounter",
        "id": e["id"],
        "identifier": [{"system": SYS_VISIT, "value": e["visit_code"]}],
        "status": "in-progress" if e["status"] == "open" else "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": cls[0],
            "display": cls[1],
        },
        "subject": _patient(e["patient_id"]),
        "participant": [{"individual": {"display": e["attending_doctor"]}}] if e["attending_doctor"] else [],
        "period": {"start": _dt(e["opened_at"]), "end": _dt(e["closed_at"])},
        "hospitalization": {"dischargeDisposition": {"text": e["discharge_type"]}},
        "location": [{"location": {"display": place}}],
    }


def nurse_vital_observations(row: dict[str, Any]) -> list[Resource]:
    """A nurse's set of vital signs (``vital_observations``): ids ``<observation id>-vs-<suffix>``."""
    values = {k: row[k] for k in VITAL_KEYS if row.get(k) is not None}
    return vital_observations(
        {
            "vitals": {**values, "flags": row["flags"], "measured_at": _dt(row["measured_at"])},
            "patient_id": row["patient_id"],
            "encounter_id": row["encounter_id"],
            "updated_at": row["recorded_at"],
            "updated_by": row["recorded_by_name"] or row["recorded_by"],
        },
        id_prefix=row["id"],
    )


def vital_observations(c: dict[str, Any], id_prefix: str | None = None) -> list[Resource]:
    """The consultation's vitals (ids ``<encounter id>-vs-<suffix>``) or, with ``id_prefix``, a nurse's."""
    prefix = id_prefix or c["encounter_id"]
    v = c.get("vitals") or {}
    flags = {f["field"]: f["flag"] for f in v.get("flags") or []}
    at = v.get("measured_at") or _dt(c["updated_at"])
    base = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}],
        "subject": _patient(c["patient_id"]),
        "encounter": _enc(c["encounter_id"]),
        "effectiveDateTime": at,
        "performer": [{"display": c["updated_by"]}],
    }
    out: list[Resource] = []
    if v.get("systolic_bp") is not None or v.get("diastolic_bp") is not None:
        comps = [
            {
                "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
                "valueQuantity": {"value": v[key], "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
                "interpretation": _interp(flags.get(key)),
            }
            for key, code, name in (
                ("systolic_bp", "8480-6", "Systolic blood pressure"),
                ("diastolic_bp", "8462-4", "Diastolic blood pressure"),
            )
            if v.get(key) is not None
        ]
        out.append(
            {
                **base,
                "id": f"{prefix}-vs-{BP[0]}",
                "code": {"coding": [{"system": LOINC, "code": BP[1], "display": BP[2]}], "text": "Huyết áp"},
                "component": comps,
            }
        )
    for key, (suffix, code, name, unit) in VITALS.items():
        if v.get(key) is None:
            continue
        out.append(
            {
                **base,
                "id": f"{prefix}-vs-{suffix}",
                "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
                "valueQuantity": {"value": v[key], "unit": unit, "system": UCUM, "code": unit},
                "interpretation": _interp(flags.get(key)),
            }
        )
    return out


LAB_STATUS = {
    "verified": "final",
    "amended": "amended",
    "preliminary": "preliminary",
    "cancelled": "cancelled",
}


def lab_observation(r: dict[str, Any]) -> Resource:
    coding = [{"system": SYS_LAB_TEST, "code": r["test_code"], "display": r["test_name"]}]
    if r["loinc"]:
        coding.insert(0, {"system": LOINC, "code": r["loinc"]})
    value: dict[str, Any]
    if r["numeric_value"] is not None:
        q = {"value": r["numeric_value"], "unit": r["unit"]}
        value = {"valueQuantity": q}
    else:
        value = {"valueString": r["value"]}
    return {
        "resourceType": "Observation",
        "id": r["id"],
        "status": LAB_STATUS.get(r["status"], "final"),
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": coding, "text": r["test_name"]},
        "subject": _patient(r["patient_id"]),
        "encounter": _enc(r["encounter_id"]),
        "basedOn": [{"reference": f"ServiceRequest/{r['order_id']}"}] if r["order_id"] else [],
        "effectiveDateTime": _dt(r["observed_at"]),
        "issued": _dt(r["verified_at"] or r["received_at"]),
        **value,
        "interpretation": _interp(r["flag"]),
        "referenceRange": [{"text": r["reference_range"]}] if r["reference_range"] else [],
    }


def diagnosis_condition(d: dict[str, Any]) -> Resource:
    return {
        "resourceType": "Condition",
        "id": d["id"],
        "clinicalStatus": _coded("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "verificationStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
        ),
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ],
                "text": "Bệnh chính" if d["main"] else "Bệnh kèm theo",
            }
        ],
        "code": {
            "coding": [{"system": ICD10, "code": d["icd10_code"], "display": d["name"]}],
            "text": d["name"],
        },
        "subject": _patient(d["patient_id"]),
        "encounter": _enc(d["encounter_id"]),
        "recordedDate": _dt(d["recorded_at"]),
        "recorder": {"display": d["recorded_by"]},
        "note": [{"text": d["note"]}] if d["note"] else [],
    }


def problem_condition(p: dict[str, Any]) -> Resource:
    code: dict[str, Any] = {"text": p["description"]}
    if p["icd10_code"]:
        code["coding"] = [{"system": ICD10, "code": p["icd10_code"]}]
    return {
        "resourceType": "Condition",
        "id": p["id"],
        "clinicalStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "resolved" if p["status"] == "resolved" else "active",
        ),
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": code,
        "subject": _patient(p["patient_id"]),
        "onsetDateTime": p["onset_date"],
        "recordedDate": _dt(p["recorded_at"]),
    }


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def allergy(a: dict[str, Any]) -> Resource:
    clinical = {"active": "active", "inactive": "inactive"}.get(a["status"])
    category = {"drug": "medication", "food": "food", "environment": "environment"}.get(a["category"])
    code: dict[str, Any] = {"text": a["substance"]}
    if a["ingredient_code"]:
        code["coding"] = [{"system": "urn:hospital:ingredient-or-atc", "code": a["ingredient_code"]}]
    res: Resource = {
        "resourceType": "AllergyIntolerance",
        "id": a["id"],
        "verificationStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "entered-in-error" if a["status"] == "entered_in_error" else "confirmed",
        ),
        "category": [category] if category else [],
        "criticality": "high" if a["severity"] == "severe" else None,
        "code": code,
        "patient": _patient(a["patient_id"]),
        "recordedDate": _dt(a["recorded_at"]),
        "recorder": {"display": a["recorded_by"]},
        "reaction": [{"manifestation": [{"text": a["reaction"]}], "severity": a["severity"] or None}]
        if a["reaction"]
        else [],
    }
    if clinical:
        res["clinicalStatus"] = _coded(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", clinical
        )
    return res


def _medication(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "coding": [{"system": SYS_DRUG, "code": item["drug_code"], "display": item.get("drug_name") or ""}],
        "text": " ".join(p for p in (item.get("drug_name"), item.get("strength")) if p) or item["drug_code"],
    }


def _dosage(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"text": usage_text(item), "route": {"text": item.get("route") or ""}}]


def prescription_requests(rx: dict[str, Any]) -> list[Resource]:
    status = {"draft": "draft"}.get(rx["status"], "active")
    out = []
    for n, item in enumerate(rx["items"], start=1):
        supply: dict[str, Any] = {}
        qty = str(item.get("quantity") or "").replace(",", ".")
        try:
            supply["quantity"] = {"value": float(qty), "unit": item.get("unit") or ""}
        except ValueError:
            pass
        if item.get("duration_days"):
            supply["expectedSupplyDuration"] = {
                "value": item["duration_days"],
                "unit": "d",
                "system": UCUM,
                "code": "d",
            }
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{rx['id']}-{n}",
                "identifier": [{"system": SYS_RX_CODE, "value": f"{rx['code']}/{n}"}],
                "groupIdentifier": {"system": SYS_RX_CODE, "value": rx["code"]},
                "status": status,
                "intent": "order",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                "code": "outpatient",
                            }
                        ]
                    }
                ],
                "medicationCodeableConcept": _medication(item),
                "subject": _patient(rx["patient_id"]),
                "encounter": _enc(rx["encounter_id"]),
                "authoredOn": _dt(rx["signed_at"] or rx["created_at"]),
                "requester": {"display": rx["prescriber_name"]},
                "reasonCode": [
                    {"coding": [{"system": ICD10, "code": d["icd10_code"], "display": d["name"]}]}
                    for d in rx["diagnoses"]
                ],
                "note": [{"text": rx["advice"]}] if rx["advice"] else [],
                "dosageInstruction": _dosage(item),
                "dispenseRequest": supply,
            }
        )
    return out


def medication_order(o: dict[str, Any]) -> Resource:
    item = o["medication"] or {"drug_code": o["codes"][0] if o["codes"] else "?"}
    status = {"active": "active", "cancelled": "cancelled", "stopped": "stopped", "completed": "completed"}
    return {
        "resourceType": "MedicationRequest",
        "id": o["id"],
        "identifier": [{"system": SYS_PLACER, "value": o["placer_order_number"]}],
        "status": status.get(o["status"], "active"),
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                        "code": "inpatient",
                    }
                ]
            }
        ],
        "medicationCodeableConcept": _medication(item),
        "subject": _patient(o["patient_id"]),
        "encounter": _enc(o["encounter_id"]),
        "authoredOn": _dt(o["ordered_at"]),
        "requester": {"display": o["ordered_by_name"]},
        "note": [{"text": o["clinical_note"]}] if o["clinical_note"] else [],
        "dosageInstruction": _dosage(item),
    }


ORDER_STATUS = {
    "pending": "active",
    "placed": "active",
    "cancel_pending": "active",
    "partial": "active",
    "completed": "completed",
    "resulted": "completed",
    "reported": "completed",
    "cancelled": "revoked",
    "refused": "revoked",
}


def service_request(o: dict[str, Any]) -> Resource:
    lab = o["kind"] == "lab"
    ids = [{"system": SYS_PLACER, "value": o["placer_order_number"]}]
    if o["accession_number"]:
        ids.append({"system": SYS_ACCESSION, "value": o["accession_number"]})
    notes = [o["clinical_note"]]
    if o["refusal_reason"]:
        notes.append(f"Từ chối: {o['refusal_reason']}")
    if o["cancel_reason"]:
        notes.append(f"Hủy: {o['cancel_reason']}")
    return {
        "resourceType": "ServiceRequest",
        "id": o["id"],
        "identifier": ids,
        "status": ORDER_STATUS.get(o["status"], "unknown"),
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "108252007" if lab else "363679005",
                        "display": "Laboratory procedure" if lab else "Imaging",
                    }
                ]
            }
        ],
        "priority": "stat" if o["stat"] else "routine",
        "code": {
            "coding": [
                {"system": SYS_LAB_TEST if lab else "urn:hospital:imaging-procedure", "code": c}
                for c in o["codes"]
            ],
            "text": o["description"],
        },
        "subject": _patient(o["patient_id"]),
        "encounter": _enc(o["encounter_id"]),
        "occurrenceDateTime": (o["details"] or {}).get("scheduled_start"),
        "authoredOn": _dt(o["ordered_at"]),
        "requester": {"display": o["ordered_by_name"]},
        "note": [{"text": n} for n in notes if n],
    }


def lab_report(group: str, results: list[dict[str, Any]], order: dict[str, Any] | None) -> Resource:
    statuses = {LAB_STATUS.get(r["status"], "final") for r in results}
    status = "amended" if "amended" in statuses else ("final" if statuses <= {"final"} else "preliminary")
    first = results[0]
    observed = [r["observed_at"] for r in results if r["observed_at"]]
    verified = [r["verified_at"] or r["received_at"] for r in results]
    return {
        "resourceType": "DiagnosticReport",
        "id": group,
        "identifier": [{"system": SYS_PLACER, "value": order["placer_order_number"]}] if order else [],
        "basedOn": [{"reference": f"ServiceRequest/{order['id']}"}] if order else [],
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "11502-2", "display": "Laboratory report"}],
            "text": (order or {}).get("description") or "Kết quả xét nghiệm",
        },
        "subject": _patient(first["patient_id"]),
        "encounter": _enc(first["encounter_id"]),
        "effectiveDateTime": _dt(min(observed)) if observed else None,
        "issued": _dt(max(verified)),
        "result": [{"reference": f"Observation/{r['id']}", "display": r["test_name"]} for r in results],
    }


def _sections(doc: dict[str, Any]) -> dict[str, str]:
    return {s.get("code", ""): s.get("text", "") for s in doc["sections"] or []}


def radiology_report(doc: dict[str, Any]) -> Resource:
    sections = _sections(doc)
    return {
        "resourceType": "DiagnosticReport",
        "id": doc["id"],
        "basedOn": [{"reference": f"ServiceRequest/{doc['order_id']}"}] if doc["order_id"] else [],
        "status": "amended" if doc["amends_document_id"] else "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": doc["title"],
        },
        "subject": _patient(doc["patient_id"]),
        "encounter": _enc(doc["encounter_id"]),
        "issued": _dt(doc["signed_at"]),
        "resultsInterpreter": [{"display": doc["signer_name"] or doc["author_name"]}],
        "imagingStudy": [{"reference": f"ImagingStudy/{doc['study_instance_uid']}"}]
        if doc["study_instance_uid"]
        else [],
        "conclusion": sections.get("conclusion") or None,
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "title": doc["title"],
                "data": _b64(sections.get("findings") or ""),
            }
        ]
        if sections.get("findings")
        else [],
    }


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def imaging_study(s: dict[str, Any], report: dict[str, Any] | None) -> Resource:
    return {
        "resourceType": "ImagingStudy",
        "id": s["study_instance_uid"],
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{s['study_instance_uid']}"},
            *([{"system": SYS_ACCESSION, "value": s["accession_number"]}] if s["accession_number"] else []),
        ],
        "status": "available",
        "modality": [
            {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": m} for m in s["modalities"]
        ],
        "subject": _patient(s["patient_id"]),
        "encounter": _enc(s["encounter_id"]),
        "started": _dt(s["received_at"]),
        "basedOn": [{"reference": f"ServiceRequest/{s['order_id']}"}] if s["order_id"] else [],
        "numberOfSeries": s["series_count"],
        "numberOfInstances": s["instance_count"],
        "description": s["description"],
        "note": [{"text": f"Báo cáo: DiagnosticReport/{report['id']}"}] if report else [],
    }


def document_reference(doc: dict[str, Any], base_url: str) -> Resource:
    code, name = DOC_TYPES.get(doc["kind"], ("11506-3", "Progress note"))
    signed = doc["status"] in ("signed", "superseded")
    return {
        "resourceType": "DocumentReference",
        "id": doc["id"],
        "status": "superseded" if doc["status"] == "superseded" else "current",
        "docStatus": ("amended" if doc["amends_document_id"] else "final") if signed else "preliminary",
        "type": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": doc["title"]},
        "category": [{"text": doc["kind"]}],
        "subject": _patient(doc["patient_id"]),
        "date": _dt(doc["signed_at"] or doc["updated_at"]),
        "author": [{"display": doc["author_name"]}],
        "authenticator": {"display": doc["signer_name"]} if signed else None,
        "relatesTo": [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{doc['amends_document_id']}"}}
        ]
        if doc["amends_document_id"]
        else [],
        "description": f"phiên bản {doc['version']}",
        "content": [
            {
                "attachment": {
                    "contentType": "application/json",
                    "url": f"{base_url}/api/v1/documents/{doc['id']}",
                    "title": doc["title"],
                    "creation": _dt(doc["created_at"]),
                }
            }
        ],
        "context": {"encounter": [{"reference": f"Encounter/{doc['encounter_id']}"}]},
    }


# --- reads ------------------------------------------------------------------------------------------
#: Search paging: ``_count`` (page size, default and maximum) and ``_offset`` (where the page starts).
DEFAULT_COUNT = 100
MAX_COUNT = 1000


def page_url(url: str, count: int, offset: int) -> str:
    """The search URL with ``_count`` and ``_offset`` set (other parameters kept, in their order)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("_count", "_offset")
    ]
    query += [("_count", str(count)), ("_offset", str(offset))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def patient_param(value: str) -> str:
    pid = value.removeprefix("Patient/").strip()
    if not pid or "/" in pid or len(pid) > 64:
        raise Invalid("fhir.patient", "patient must be a patient id or Patient/<id>", field="patient")
    return pid


class FhirService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def read(self, caller: Caller, rtype: str, rid: str, reason: str | None, base_url: str) -> Resource:
        async with self.ctx.uow() as uow:
            reads = FhirReads(uow.session)
            found = await self._find(reads, rtype, rid, base_url)
            if found is None:
                raise NotFound("fhir.not_found", f"{rtype}/{rid} is not known", field="id")
            patient_id, encounter_id, resource = found
            await authorize_read(
                self.ctx, uow, caller, patient_id, encounter_id, reason, f"fhir.{rtype}.read"
            )
            await uow.commit()
        return _prune(resource)

    async def search(
        self,
        caller: Caller,
        rtype: str,
        patient: str,
        reason: str | None,
        base_url: str,
        self_url: str,
        count: int = DEFAULT_COUNT,
        offset: int = 0,
    ) -> Resource:
        """A searchset Bundle of one page: ``count`` resources from ``offset`` (``_count=0``: the total only),
        with ``self``, ``first``, ``previous`` and ``next`` links that keep the other parameters."""
        pid = patient_param(patient)
        async with self.ctx.uow() as uow:
            reads = FhirReads(uow.session)
            await authorize_read(self.ctx, uow, caller, pid, None, reason, f"fhir.{rtype}.search")
            resources = await SEARCHES[rtype](reads, pid, base_url)
            await uow.commit()
        page = resources[offset : offset + count]
        links = [{"relation": "self", "url": page_url(self_url, count, offset)}]
        if count:
            links.append({"relation": "first", "url": page_url(self_url, count, 0)})
            if offset > 0:
                links.append(
                    {"relation": "previous", "url": page_url(self_url, count, max(offset - count, 0))}
                )
            if offset + count < len(resources):
                links.append({"relation": "next", "url": page_url(self_url, count, offset + count)})
        return _prune(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(resources),
                "link": links,
                "entry": [
                    {
                        "fullUrl": f"{base_url}/fhir/{r['resourceType']}/{r['id']}",
                        "resource": _prune(r),
                        "search": {"mode": "match"},
                    }
                    for r in page
                ],
            }
        )

    async def _find(
        self, reads: FhirReads, rtype: str, rid: str, base_url: str
    ) -> tuple[str, str | None, Resource] | None:
        if rtype == "Encounter":
            e = await reads.encounter(rid)
            return (e["patient_id"], e["id"], encounter(e)) if e else None
        if rtype == "Observation":
            head, sep, suffix = rid.rpartition("-vs-")
            if sep and suffix in VITAL_SUFFIXES:
                c = await reads.consultation(head)
                if c is not None:
                    match = [o for o in vital_observations(c) if o["id"] == rid]
                    return (c["patient_id"], c["encounter_id"], match[0]) if match else None
                n = await reads.nurse_vital(head)
                match = [o for o in nurse_vital_observations(n) if o["id"] == rid] if n else []
                return (n["patient_id"], n["encounter_id"], match[0]) if n and match else None
            r = await reads.lab_result(rid)
            return (r["patient_id"], r["encounter_id"], lab_observation(r)) if r else None
        if rtype == "Condition":
            d = await reads.diagnosis(rid)
            if d:
                return d["patient_id"], d["encounter_id"], diagnosis_condition(d)
            p = await reads.problem(rid)
            return (p["patient_id"], None, problem_condition(p)) if p else None
        if rtype == "AllergyIntolerance":
            a = await reads.allergy(rid)
            return (a["patient_id"], None, allergy(a)) if a else None
        if rtype == "MedicationRequest":
            head, _, n = rid.rpartition("-")
            rx = await reads.prescription(head) if n.isdigit() else None
            if rx and 1 <= int(n) <= len(rx["items"]):
                return rx["patient_id"], rx["encounter_id"], prescription_requests(rx)[int(n) - 1]
            o = await reads.order(rid)
            return (
                (o["patient_id"], o["encounter_id"], medication_order(o))
                if o and o["kind"] == "medication"
                else None
            )
        if rtype == "ServiceRequest":
            o = await reads.order(rid)
            return (
                (o["patient_id"], o["encounter_id"], service_request(o))
                if o and o["kind"] != "medication"
                else None
            )
        if rtype == "DiagnosticReport":
            results = await reads.lab_results_of(rid)
            if results:
                order = await reads.order(results[0]["order_id"]) if results[0]["order_id"] else None
                return results[0]["patient_id"], results[0]["encounter_id"], lab_report(rid, results, order)
            doc = await reads.document(rid)
            if doc and doc["kind"] == "radiology_report" and doc["status"] in ("signed", "superseded"):
                return doc["patient_id"], doc["encounter_id"], radiology_report(doc)
            return None
        if rtype == "ImagingStudy":
            s = await reads.study(rid)
            if not s or not s["patient_id"]:
                return None
            return s["patient_id"], s["encounter_id"], imaging_study(s, await reads.report_of_study(rid))
        if rtype == "DocumentReference":
            doc = await reads.document(rid)
            return (
                (doc["patient_id"], doc["encounter_id"], document_reference(doc, base_url)) if doc else None
            )
        raise NotFound("fhir.unsupported_type", f"resource type {rtype} is not served here", field="type")


async def _encounters(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    return [encounter(e) for e in await reads.encounters(pid)]


async def _observations(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    vitals = [o for c in await reads.consultations(pid) for o in vital_observations(c)]
    vitals += [o for n in await reads.nurse_vitals(pid) for o in nurse_vital_observations(n)]
    return vitals + [lab_observation(r) for r in await reads.lab_results(pid)]


async def _conditions(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    return [diagnosis_condition(d) for d in await reads.diagnoses(pid)] + [
        problem_condition(p) for p in await reads.problems(pid)
    ]


async def _allergies(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    return [allergy(a) for a in await reads.allergies(pid)]


async def _medication_requests(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    lines = [m for rx in await reads.prescriptions(pid) for m in prescription_requests(rx)]
    return lines + [medication_order(o) for o in await reads.orders(pid, ("medication",))]


async def _service_requests(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    return [service_request(o) for o in await reads.orders(pid, ("lab", "imaging"))]


async def _reports(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in await reads.lab_results(pid):
        groups[r["order_id"] or r["lab_order_id"] or r["id"]].append(r)
    out = []
    for key, results in groups.items():
        results.sort(key=lambda r: r["test_code"])
        order = await reads.order(results[0]["order_id"]) if results[0]["order_id"] else None
        out.append(lab_report(key, results, order))
    docs = await reads.documents(pid, ("radiology_report",))
    return out + [radiology_report(d) for d in docs if d["status"] in ("signed", "superseded")]


async def _studies(reads: FhirReads, pid: str, _: str) -> list[Resource]:
    return [
        imaging_study(s, await reads.report_of_study(s["study_instance_uid"]))
        for s in await reads.studies(pid)
    ]


async def _documents(reads: FhirReads, pid: str, base_url: str) -> list[Resource]:
    return [document_reference(d, base_url) for d in await reads.documents(pid)]


SEARCHES: dict[str, Callable[[FhirReads, str, str], Awaitable[list[Resource]]]] = {
    "Encounter": _encounters,
    "Observation": _observations,
    "Condition": _conditions,
    "AllergyIntolerance": _allergies,
    "MedicationRequest": _medication_requests,
    "ServiceRequest": _service_requests,
    "DiagnosticReport": _reports,
    "ImagingStudy": _studies,
    "DocumentReference": _documents,
}
