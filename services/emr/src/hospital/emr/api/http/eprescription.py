"""National e-prescription: a signed prescription's delivery status, and resending one that failed."""

from __future__ import annotations

from fastapi import APIRouter

from hospital.emr.api.http.deps import BreakGlass, Doctor, Reader, Svc
from hospital.emr.app import schemas as sc
from hospital.emr.app.eprescription import EPrescriptionService

router = APIRouter(prefix="/api/v1", tags=["prescriptions"])


def _svc(svc: Svc) -> EPrescriptionService:
    return svc.eprescriptions


@router.get(
    "/prescriptions/{prescription_id}/national",
    response_model=sc.NationalStatus,
    summary="Delivery to the national e-prescription system: queued / sent / failed, attempts, last error",
)
async def national_status(
    prescription_id: str, svc: Svc, caller: Reader, reason: BreakGlass
) -> sc.NationalStatus:
    return await _svc(svc).status(caller, prescription_id, reason)


@router.post(
    "/prescriptions/{prescription_id}/national/resend",
    response_model=sc.NationalStatus,
    summary="Queue a failed prescription again (after its cause was corrected)",
)
async def resend_prescription(prescription_id: str, svc: Svc, caller: Doctor) -> sc.NationalStatus:
    return await _svc(svc).resend(caller, prescription_id)
