"""The price list, manual charges and their reversal, and order lines held for a cashier to price."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Query

from hospital.billing.api.http import schemas as sc
from hospital.billing.api.http.deps import Desk, Office, Reader, Svc

router = APIRouter(prefix="/api/v1", tags=["charges"])


@router.get("/prices", response_model=sc.PricePage, summary="Price list in force on a day")
async def prices(svc: Svc, _: Reader, on: date | None = None, category: str | None = None) -> dict[str, Any]:
    return {"items": await svc.prices(on, category)}


@router.post(
    "/visits/{visit_id}/charges", status_code=201, response_model=sc.Charge, summary="Post a manual charge"
)
async def post_charge(visit_id: str, body: sc.ChargeIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.charges.manual(
        visit_id,
        body.price_code,
        body.quantity,
        who,
        note=body.note,
        request_id=body.request_id,
        ordered_by=body.ordered_by,
    )


@router.post(
    "/charges/{charge_id}/cancel", response_model=sc.Charge, summary="Reverse a charge (never deleted)"
)
async def cancel_charge(charge_id: str, body: sc.CancelIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.charges.cancel(charge_id, body.reason, who)


@router.get(
    "/held-charges", response_model=sc.HeldPage, summary="Order lines waiting for a cashier to price them"
)
async def held(
    svc: Svc,
    _: Office,
    status: Literal["held", "priced", "dismissed"] | None = "held",
    visit_id: str | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    return {"items": await svc.orders.list_held(status, visit_id, limit)}


@router.post(
    "/held-charges/{held_id}/price",
    response_model=sc.PricedHeld,
    summary="Price a held order line (posts it once)",
)
async def price_held(held_id: str, body: sc.PriceHeldIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.orders.price_held(
        held_id, body.price_code, who, visit_id=body.visit_id, quantity=body.quantity, remember=body.remember
    )


@router.post(
    "/held-charges/{held_id}/dismiss", response_model=sc.HeldCharge, summary="Dismiss a held order line"
)
async def dismiss_held(held_id: str, body: sc.DismissIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.orders.dismiss_held(held_id, body.reason, who)
