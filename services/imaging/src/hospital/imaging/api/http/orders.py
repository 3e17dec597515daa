"""Imaging orders and the MPPS messages received for them (with the ones kept for review)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from hospital.chassis.fields import Limit
from hospital.chassis.web import client_address
from hospital.imaging.api.http import schemas as sc
from hospital.imaging.api.http.deps import Access, Reader, Reviewer, Svc
from hospital.imaging.app.access_audit import http_entry

router = APIRouter(prefix="/api/v1", tags=["orders"])


@router.get("/orders", response_model=sc.OrderPage)
async def list_orders(
    request: Request, svc: Svc, access: Access, who: Reader, status: str | None = None, limit: Limit = 100
) -> dict[str, Any]:
    """Imaging orders by scheduled time; audited ``imaging_order.list`` naming the patients shown."""
    items = await svc.orders.list(status, min(limit, 500))
    shown = [{"PatientID": o["patient_id"]} for o in items]
    entry = http_entry(who, client_address(request), "imaging_order.list", None, shown, status=status)
    await access.record(replace(entry, resource_type="ImagingOrder"))
    return {"items": items}


@router.get("/mpps", response_model=sc.MppsPage)
async def list_mpps(
    request: Request, svc: Svc, access: Access, who: Reviewer, unmatched: bool = False, limit: Limit = 200
) -> dict[str, Any]:
    """MPPS messages received; ``unmatched=true``: those kept for review, ``attention`` saying why:
    ``no_order`` (matched no imaging order), ``order_cancelled`` (named an order that was cancelled;
    the order stays cancelled, ``order_id`` names it), ``already_completed`` (a new MPPS for an order
    already completed; the order stays completed), ``redo_discontinued`` (redid a discontinued order,
    which is in progress again: check its charge) or ``superseded`` (ended after a newer MPPS took over
    its order: its end was not applied), not yet resolved by staff (``POST .../resolve``). Each item
    carries ``resolved_by``, ``resolved_at`` and ``resolution_note`` (null until resolved). ADR 0306.
    Audited ``imaging_mpps.list`` naming the patients and studies shown."""
    items = await svc.orders.list_mpps(unmatched, min(limit, 1000))
    shown = [
        {"PatientID": r.get("patient_id"), "StudyInstanceUID": r.get("study_instance_uid")} for r in items
    ]
    entry = http_entry(who, client_address(request), "imaging_mpps.list", None, shown, unmatched=unmatched)
    await access.record(replace(entry, resource_type="ImagingMpps"))
    return {"items": items}


@router.post(
    "/mpps/{mpps_instance_uid}/resolve",
    response_model=sc.Mpps,
    summary="Mark an MPPS flagged for review as handled",
)
async def resolve_mpps(
    mpps_instance_uid: str, body: sc.MppsResolveBody, svc: Svc, who: Reviewer
) -> dict[str, Any]:
    """Record who resolved an MPPS listed by ``unmatched=true``, when, and the ``note`` (required,
    trimmed, at most 500 characters); audited as ``imaging_mpps.resolved``. The MPPS then leaves the
    ``unmatched=true`` list and is returned with ``resolved_by``, ``resolved_at``, ``resolution_note``.
    No order is changed: staff act on orders through the order APIs. Resolving an MPPS already resolved
    returns it unchanged (whatever the note); 404 ``mpps.not_found`` for an unknown UID, 409
    ``mpps.nothing_to_resolve`` for an MPPS with no ``attention``. An MPPS later flagged for another
    reason is listed again, its resolution cleared."""
    return await svc.orders.resolve_mpps(mpps_instance_uid, body.note, who)
