"""Payments at the desk, refunds, VietQR, bank transfers waiting for a cashier, mismatched gateway
callbacks and the money to give back (refund work items)."""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hospital.billing.api.http import schemas as sc
from hospital.billing.api.http.deps import Desk, Office, Svc

router = APIRouter(prefix="/api/v1", tags=["payments"])


@router.post(
    "/invoices/{invoice_id}/payments",
    status_code=201,
    response_model=sc.DeskPayment,
    summary="Cash or card at the desk (a deposit while the invoice is open)",
)
async def pay(invoice_id: str, body: sc.PaymentIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.payments.pay_at_desk(invoice_id, body.amount, body.method, who, body.request_id)


@router.post("/invoices/{invoice_id}/refunds", status_code=201, response_model=sc.Refund)
async def refund(invoice_id: str, body: sc.RefundIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.payments.refund(invoice_id, body.amount, body.method, body.reason, who, body.request_id)


@router.post(
    "/invoices/{invoice_id}/vietqr",
    response_model=sc.VietQr,
    summary="VietQR for the balance (JSON, or PNG with ?format=png)",
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"X-VietQR-Payload": {"description": "with format=png: the QR's text"}},
        }
    },
)
async def vietqr(
    invoice_id: str,
    svc: Svc,
    _: Desk,
    body: sc.VietQrIn | None = None,
    format: Literal["json", "png"] = "json",
) -> Any:
    out = await svc.payments.vietqr(invoice_id, body.amount if body else None)
    if format == "png":
        return Response(
            base64.b64decode(out["png_base64"]),
            media_type="image/png",
            headers={"X-VietQR-Payload": out["payload"]},
        )
    return out


@router.get(
    "/bank-transfers/unmatched", response_model=sc.TransferPage, summary="Transfers waiting for a cashier"
)
async def unmatched(svc: Svc, _: Office) -> dict[str, Any]:
    return {"items": await svc.payments.unmatched()}


@router.post("/bank-transfers/{callback_id}/match", response_model=sc.Matched)
async def match(callback_id: str, body: sc.MatchIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.payments.match(callback_id, body.invoice_id, who)


@router.post(
    "/callbacks/{callback_id}/resolve",
    response_model=sc.Resolved,
    summary="Resolve a gateway callback whose amount did not match (accept as payment, or refund)",
)
async def resolve(callback_id: str, body: sc.ResolveIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.payments.resolve_mismatch(
        callback_id, body.action, body.reason, who, body.refund_reference
    )


@router.get(
    "/refund-items",
    response_model=sc.RefundItemPage,
    summary="Money to give back: confirmed payments the bill did not need (work items, oldest first)",
)
async def refund_items(
    svc: Svc,
    _: Office,
    status: Literal["open", "refunded", "all"] = "open",
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    """A second confirmed payment of a paid invoice (VNPay/MoMo answered `02`/`204`), a confirmed
    payment for a void or unknown invoice (`reason` `already_settled`, `unknown_invoice`: the money
    never went on the invoice) and the part of a bank transfer (SePay, Casso, VietQR) or an accepted
    callback above the balance (`over_payment`, `on_invoice: true`: the invoice's balance is negative
    by `amount`). Each is one item per provider transaction."""
    return {"items": await svc.payments.refund_items(None if status == "all" else status, limit)}


@router.post(
    "/refund-items/{item_id}/resolve",
    response_model=sc.RefundItem,
    summary="Record that the money went back to the payer",
)
async def resolve_refund_item(
    item_id: str, body: sc.RefundItemResolveIn, svc: Svc, who: Desk
) -> dict[str, Any]:
    """Marks the item `refunded` with the reference and note (audited). For an `on_invoice` item the
    amount is also taken off the invoice as a refund (`billing.payment.refunded`). An item already
    resolved is returned unchanged."""
    return await svc.payments.resolve_refund_item(item_id, body.refund_reference, body.note, who)
