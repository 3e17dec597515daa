"""Review queues: studies waiting to be matched to an order, and instances received again with different
bytes (conflicts)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from hospital.chassis.fields import Limit
from hospital.chassis.web import client_address
from hospital.imaging.api.http import schemas as sc
from hospital.imaging.api.http.deps import Access, Reviewer, Staff, Svc
from hospital.imaging.app.access_audit import http_entry

router = APIRouter(prefix="/api/v1", tags=["review"])


@router.get("/reconciliation", response_model=sc.ReconciliationPage)
async def list_reconciliation(
    request: Request, svc: Svc, access: Access, who: Staff, status: str = "open"
) -> dict[str, Any]:
    """Studies waiting to be matched to an order; audited ``imaging_reconciliation.list`` naming the
    patients and studies shown."""
    items = await svc.studies.list_reconciliation(status)
    shown = [{"PatientID": r["patient_id"], "StudyInstanceUID": r["study_instance_uid"]} for r in items]
    entry = http_entry(
        who, client_address(request), "imaging_reconciliation.list", None, shown, status=status
    )
    await access.record(entry)
    return {"items": items}


@router.post("/reconciliation/{item_id}/resolve", response_model=sc.Reconciled)
async def resolve(item_id: str, body: sc.ResolveBody, svc: Svc, who: Staff) -> dict[str, Any]:
    return await svc.studies.resolve(item_id, body.order_id, who)


@router.get("/conflicts", response_model=sc.ConflictPage)
async def list_conflicts(
    request: Request,
    svc: Svc,
    access: Access,
    who: Reviewer,
    status: Literal["open", "resolved", "all"] = "open",
    limit: Limit = 200,
) -> dict[str, Any]:
    """Instances received again with different bytes; audited ``imaging_conflict.list`` naming the
    studies shown."""
    items = await svc.conflicts.list(status, min(limit, 1000))
    shown = [{"StudyInstanceUID": r.get("study_instance_uid")} for r in items]
    entry = http_entry(who, client_address(request), "imaging_conflict.list", None, shown, status=status)
    await access.record(entry)
    return {"items": items}


@router.post("/conflicts/{conflict_id}/resolve", response_model=sc.ConflictResolved)
async def resolve_conflict(
    conflict_id: str, body: sc.ConflictResolveBody, svc: Svc, who: Staff
) -> dict[str, Any]:
    return await svc.conflicts.resolve(conflict_id, body.action, who)
