"""Quality control: control lots, QC results, Levey-Jennings data, QC state per instrument and test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hospital.lab.api.http import schemas as sc
from hospital.lab.api.http.deps import Svc, Tech

router = APIRouter(prefix="/api/v1/qc", tags=["qc"])


@router.get("/lots", response_model=sc.QcLotPage)
async def qc_lots(svc: Svc, _: Tech) -> dict[str, Any]:
    return {"items": await svc.qc.lots()}


@router.post(
    "/lots", status_code=201, response_model=sc.QcLot, summary="Register a control lot with its targets"
)
async def qc_lot(body: sc.QcLotIn, svc: Svc, who: Tech) -> dict[str, Any]:
    await svc.ingest.ensure_catalogue()
    return await svc.qc.create_lot(body.model_dump(), who)


@router.post("/lots/{lot_id}/results", status_code=201, response_model=sc.QcRun, summary="Enter a QC result")
async def qc_result(lot_id: str, body: sc.QcResultIn, svc: Svc, who: Tech) -> dict[str, Any]:
    return await svc.qc.record_manual(lot_id, body.value, body.measured_at, who)


@router.get(
    "/lots/{lot_id}/levey-jennings", response_model=sc.LeveyJennings, summary="Levey-Jennings chart data"
)
async def lj(lot_id: str, svc: Svc, _: Tech) -> dict[str, Any]:
    return await svc.qc.levey_jennings(lot_id)


@router.get(
    "/status",
    response_model=sc.QcStatePage,
    summary="QC state per instrument and test (gates auto-verification)",
)
async def qc_state(svc: Svc, _: Tech) -> dict[str, Any]:
    return {"items": await svc.qc.status()}
