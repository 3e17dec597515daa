"""FHIR R4 read access: Patient (by id, by identifier) and Encounter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from hospital.admissions.api.http.deps import Clinical, Svc
from hospital.chassis.errors import Invalid
from hospital.chassis.responses import FhirBundle, FhirJSONResponse, FhirResource

SYS_CCCD = "urn:vn:cccd"
SYS_BHYT = "urn:vn:bhyt"
SYS_CODE = "urn:hospital:patient-code"
SYSTEM_KIND = {SYS_CCCD: "cccd", SYS_BHYT: "bhyt", SYS_CODE: "patient_code"}
router = APIRouter(prefix="/fhir", tags=["fhir"], default_response_class=FhirJSONResponse)


def fhir(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return FhirJSONResponse(body, status_code=status)


def patient_resource(p: dict[str, Any]) -> dict[str, Any]:
    ids = [{"system": SYS_CODE, "value": p["patient_code"]}]
    if p["cccd"]:
        ids.append({"system": SYS_CCCD, "value": p["cccd"]})
    ids += [
        {
            "system": SYS_BHYT,
            "value": c["number"],
            "period": {k: v for k, v in (("start", c["valid_from"]), ("end", c["valid_to"])) if v},
        }
        for c in p["insurance_cards"]
    ]
    words = p["full_name"].split()
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": p["id"],
        "identifier": ids,
        "active": not p["merged_into"],
        "name": [{"use": "official", "text": p["full_name"], "family": words[0], "given": words[1:]}],
        "gender": p["sex"],
        "birthDate": p["birth_date"],
    }
    if p["phone"]:
        res["telecom"] = [{"system": "phone", "value": p["phone"]}]
    if p["merged_into"]:
        res["link"] = [{"other": {"reference": f"Patient/{p['merged_into']}"}, "type": "replaced-by"}]
    return res


@router.get(
    "/Patient/{patient_id}",
    response_model=FhirResource,
    description="Patient: identifier (patient code, CCCD, BHYT cards with their period), active, name, "
    "gender, birthDate, telecom, link (replaced-by, for a merged record)",
)
async def read_patient(patient_id: str, svc: Svc, who: Clinical) -> JSONResponse:
    return fhir(patient_resource(await svc.patients.get(patient_id, who)))


@router.get("/Patient", response_model=FhirBundle, description="A searchset Bundle of Patient resources")
async def search_patient(
    svc: Svc, who: Clinical, identifier: str = Query(..., description="system|value")
) -> JSONResponse:
    system, sep, value = identifier.rpartition("|")
    if not sep or system not in (SYS_CCCD, SYS_BHYT, SYS_CODE) or not value:
        raise Invalid(
            "fhir.identifier",
            f"identifier must be <{SYS_CCCD}|{SYS_BHYT}|{SYS_CODE}>|value",
            field="identifier",
        )
    # that system's identifier, exactly: a value that is not one finds nobody (no search fallback)
    items = await svc.patients.search(value, who, 10, only=SYSTEM_KIND[system])
    entries = [{"resource": patient_resource(await svc.patients.get(p["id"], who))} for p in items]
    return fhir({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})


@router.get(
    "/Encounter/{visit_id}",
    response_model=FhirResource,
    description="Encounter of a visit: identifier (visit code), status, class (AMB or EMER), subject, "
    "period, location (the room)",
)
async def read_encounter(visit_id: str, svc: Svc, who: Clinical) -> JSONResponse:
    v = await svc.visits.get(visit_id, who)
    return fhir(
        {
            "resourceType": "Encounter",
            "id": v["id"],
            "identifier": [{"system": "urn:hospital:visit-code", "value": v["visit_code"]}],
            "status": "finished" if v["status"] == "closed" else "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "EMER" if v["kind"] == "emergency" else "AMB",
            },
            "subject": {"reference": f"Patient/{v['patient_id']}"},
            "period": {k: val for k, val in (("start", v["opened_at"]), ("end", v["closed_at"])) if val},
            "location": [{"location": {"identifier": {"value": v["room"]}}}],
        }
    )
