"""The patient index: card scanning, registration, search, corrections, cards, duplicates and merges."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hospital.admissions.api.http import schemas as sc
from hospital.admissions.api.http.deps import Clinical, Receptionist, Svc, caller_for
from hospital.admissions.app.patients import NewPatient
from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["patients"])
Scanner = Annotated[Caller, caller_for("receptionist", "nurse", "doctor")]
Registrar = Annotated[Caller, caller_for("receptionist", "admin")]


@router.post(
    "/patients/scan", response_model=sc.Scan, summary="Parse a CCCD/BHYT QR; candidates and conflicts"
)
async def scan(body: sc.ScanIn, svc: Svc, who: Scanner) -> dict[str, Any]:
    return await svc.patients.scan(body.qr, who)


@router.post("/patients", status_code=201, response_model=sc.Patient, summary="Register a patient")
async def register(body: sc.PatientIn, svc: Svc, who: Receptionist) -> dict[str, Any]:
    return await svc.patients.register(NewPatient(**body.model_dump()), who)


@router.get(
    "/patients",
    response_model=sc.PatientPage,
    summary="Search: name (with or without diacritics), CCCD, BHYT, "
    "phone, patient code, birth year; best match first",
)
async def search(
    svc: Svc,
    who: Clinical,
    q: str = Query(..., min_length=1),
    limit: int = Query(20, ge=1, le=100),
) -> dict[str, Any]:
    return {"items": await svc.patients.search(q, who, limit)}


@router.get("/patients/{patient_id}", response_model=sc.Patient, summary="Read a patient (audited)")
async def get_patient(patient_id: str, svc: Svc, who: Clinical) -> dict[str, Any]:
    return await svc.patients.get(patient_id, who)


@router.patch("/patients/{patient_id}", response_model=sc.Patient, summary="Correct demographic fields")
async def update_patient(
    patient_id: str, body: sc.PatientPatch, svc: Svc, who: Receptionist
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid("patient.no_changes", "nothing to change")
    return await svc.patients.update(patient_id, changes, who)


@router.post("/patients/{patient_id}/cards", response_model=sc.Patient, summary="Add a BHYT card")
async def add_card(patient_id: str, body: sc.CardIn, svc: Svc, who: Receptionist) -> dict[str, Any]:
    return await svc.patients.add_card(
        patient_id,
        body.number,
        who,
        body.valid_from,
        body.valid_to,
        body.registered_facility,
        body.five_year_date,
    )


@router.get(
    "/patients/{patient_id}/duplicates", response_model=sc.DuplicatePage, summary="Likely duplicate records"
)
async def duplicates(patient_id: str, svc: Svc, who: Registrar) -> dict[str, Any]:
    return {"items": await svc.merge.candidates(patient_id, who)}


@router.post(
    "/patients/{patient_id}/merge",
    response_model=sc.Patient,
    summary="Merge a duplicate into this patient (identifiers and history move here)",
)
async def merge(patient_id: str, body: sc.MergeIn, svc: Svc, who: Registrar) -> dict[str, Any]:
    return await svc.merge.merge(patient_id, body.merged_id, who)
