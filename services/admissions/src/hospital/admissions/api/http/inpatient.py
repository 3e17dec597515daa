"""Inpatient ADT: admit into a bed, transfer, discharge, and the bed board."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from hospital.admissions.api.http import schemas as sc
from hospital.admissions.api.http.deps import Svc, caller_for
from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["inpatient"])
Ward = Annotated[Caller, caller_for("nurse", "doctor")]
BedReader = Annotated[Caller, caller_for("nurse", "doctor", "receptionist")]


@router.post("/admissions", status_code=201, response_model=sc.Stay, summary="Admit into a bed")
async def admit(body: sc.AdmitIn, svc: Svc, who: Ward) -> dict[str, Any]:
    return await svc.inpatient.admit(body.patient_id, body.bed, who, body.visit_id)


@router.post("/admissions/{admission_id}/transfer", response_model=sc.Stay)
async def transfer(admission_id: str, body: sc.TransferIn, svc: Svc, who: Ward) -> dict[str, Any]:
    return await svc.inpatient.transfer(admission_id, body.bed, who)


@router.post("/admissions/{admission_id}/discharge", response_model=sc.Stay)
async def discharge(admission_id: str, body: sc.DischargeIn, svc: Svc, who: Ward) -> dict[str, Any]:
    return await svc.inpatient.discharge(admission_id, body.discharge_type, who)


@router.get("/beds", response_model=sc.BedPage, summary="Bed board (all wards, or one)")
async def bed_board(svc: Svc, who: BedReader, ward: str | None = None) -> dict[str, Any]:
    items = await svc.inpatient.bed_board(ward, who)
    if ward and not items:
        raise Invalid("ward.unknown", f"no ward {ward!r}", field="ward")
    return {"items": items}
