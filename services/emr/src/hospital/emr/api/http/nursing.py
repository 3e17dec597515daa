"""Nursing records of a ward encounter: vital signs (a time series, newest first) and the medication
administration record (each dose of a medication order given, held, refused or missed)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from hospital.emr.api.http.deps import BreakGlass, Reader, Svc, Ward
from hospital.emr.app import schemas as sc

router = APIRouter(prefix="/api/v1", tags=["nursing"])


@router.post(
    "/encounters/{encounter_id}/vitals",
    response_model=sc.VitalObservation,
    status_code=201,
    summary="Record a nurse's vital signs (phiếu theo dõi chức năng sống) on an open ward encounter",
)
async def record_vitals(
    encounter_id: str, body: sc.RecordVitals, svc: Svc, caller: Ward
) -> sc.VitalObservation:
    return await svc.nursing.record_vitals(caller, encounter_id, body)


@router.get(
    "/encounters/{encounter_id}/vitals",
    response_model=sc.VitalObservationPage,
    summary="The encounter's vital signs, newest first",
)
async def list_vitals(
    encounter_id: str,
    svc: Svc,
    caller: Reader,
    reason: BreakGlass,
    limit: int = Query(200, ge=1, le=1000),
) -> sc.VitalObservationPage:
    return await svc.nursing.list_vitals(caller, encounter_id, reason, limit)


@router.post(
    "/orders/{order_id}/administrations",
    response_model=sc.MedicationAdministration,
    status_code=201,
    summary="Record a dose of a medication order: given, held, refused or missed",
)
async def record_administration(
    order_id: str, body: sc.RecordAdministration, svc: Svc, caller: Ward
) -> sc.MedicationAdministration:
    return await svc.nursing.record_administration(caller, order_id, body)


@router.get(
    "/encounters/{encounter_id}/administrations",
    response_model=sc.MedicationAdministrationPage,
    summary="The encounter's medication administration record, newest first",
)
async def list_administrations(
    encounter_id: str,
    svc: Svc,
    caller: Reader,
    reason: BreakGlass,
    order_id: str | None = Query(None, max_length=64),
    limit: int = Query(200, ge=1, le=1000),
) -> sc.MedicationAdministrationPage:
    return await svc.nursing.list_administrations(caller, encounter_id, order_id, reason, limit)
