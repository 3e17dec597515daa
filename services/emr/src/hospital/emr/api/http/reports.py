"""Reports: break-the-glass accesses and time to acknowledge critical values (admin, auditor)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from hospital.chassis.caller import Caller
from hospital.emr.api.http.deps import Svc, caller_for
from hospital.emr.app import schemas as sc

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
Officer = Annotated[Caller, caller_for("admin", "auditor")]


@router.get(
    "/break-glass",
    response_model=sc.BreakGlassReport,
    summary="Chart reads outside the reader's departments, with the reason given, newest first",
)
async def break_glass(
    svc: Svc, caller: Officer, since: datetime | None = None, limit: int = Query(500, ge=1, le=5000)
) -> sc.BreakGlassReport:
    return await svc.reports.break_glass(caller, since, limit)


@router.get(
    "/critical-values",
    response_model=sc.CriticalReport,
    summary="Critical values per department: raised, acknowledged, open, escalated, time to acknowledge",
)
async def critical_values(svc: Svc, caller: Officer, since: datetime | None = None) -> sc.CriticalReport:
    return await svc.reports.criticals(caller, since)
