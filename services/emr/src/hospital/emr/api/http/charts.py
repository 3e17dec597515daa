"""Encounters, the doctor's queue, the chart, the consultation and ICD-10 search."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Query

from hospital.emr.api.http.deps import BreakGlass, Doctor, Reader, Svc
from hospital.emr.app import schemas as sc

router = APIRouter(prefix="/api/v1", tags=["charts"])


@router.get("/encounters", response_model=sc.EncounterPage, summary="Encounters of a patient or a department")
async def list_encounters(
    svc: Svc,
    caller: Reader,
    reason: BreakGlass,
    patient_id: str | None = None,
    department_code: str | None = None,
    status: Literal["open", "closed"] | None = None,
    kind: Literal["outpatient", "inpatient", "emergency"] | None = None,
    limit: int = Query(50, ge=1, le=500),
    page_token: str | None = None,
) -> sc.EncounterPage:
    return await svc.encounters.list(
        caller,
        patient_id=patient_id,
        department_code=department_code,
        status=status,
        kind=kind,
        limit=limit,
        page_token=page_token,
        reason=reason,
    )


@router.get("/queue", response_model=sc.EncounterPage, summary="The doctor's outpatient queue (ticket order)")
async def my_queue(
    svc: Svc,
    caller: Reader,
    department_code: str | None = None,
    room_code: str | None = None,
    service_date: date | None = None,
    include_closed: bool = False,
) -> sc.EncounterPage:
    return await svc.encounters.queue(
        caller,
        department_code=department_code,
        room_code=room_code,
        service_date=service_date,
        include_closed=include_closed,
    )


@router.get("/encounters/{encounter_id}", response_model=sc.Encounter)
async def get_encounter(encounter_id: str, svc: Svc, caller: Reader, reason: BreakGlass) -> sc.Encounter:
    return await svc.encounters.get(caller, encounter_id, reason)


@router.get("/encounters/{encounter_id}/consultation", response_model=sc.Consultation)
async def get_consultation(
    encounter_id: str, svc: Svc, caller: Reader, reason: BreakGlass
) -> sc.Consultation:
    return await svc.charts.consultation(caller, encounter_id, reason)


@router.put(
    "/encounters/{encounter_id}/consultation",
    response_model=sc.Consultation,
    summary="Save the consultation (optimistic concurrency on expected_version)",
)
async def save_consultation(
    encounter_id: str, body: sc.SaveConsultation, svc: Svc, caller: Doctor
) -> sc.Consultation:
    return await svc.charts.save_consultation(caller, encounter_id, body)


@router.post(
    "/encounters/{encounter_id}/consultation/save",
    response_model=sc.SavedConsultation,
    summary="Save the consultation with its orders, prescription and note: one transaction, all or nothing",
)
async def save_whole_consultation(
    encounter_id: str, body: sc.SaveWholeConsultation, svc: Svc, caller: Doctor
) -> sc.SavedConsultation:
    return await svc.saves.save(caller, encounter_id, body)


@router.get("/patients/{patient_id}/chart", response_model=sc.Chart)
async def get_chart(
    patient_id: str, svc: Svc, caller: Reader, reason: BreakGlass, encounter_id: str | None = None
) -> sc.Chart:
    return await svc.charts.chart(caller, patient_id, encounter_id, reason, svc.chart_extras)


@router.get(
    "/icd10", response_model=sc.Icd10Page, summary="ICD-10 by code or by name, with or without diacritics"
)
async def search_icd10(
    svc: Svc,
    _: Reader,
    q: str = Query(..., min_length=1, max_length=100),
    limit: int = Query(20, ge=1, le=100),
) -> sc.Icd10Page:
    return svc.charts.search_icd10(q, limit)
