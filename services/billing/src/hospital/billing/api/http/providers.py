"""The payment providers' callbacks. They are served by the lean ASGI handler before FastAPI
(``BillingApp.__call__``); these routes document them in the OpenAPI and run the same code if FastAPI is
reached directly. Authenticated by the provider's signature (VNPay, MoMo, Casso) or API key (SePay)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hospital.billing.api.callbacks import CallbackEndpoints
from hospital.billing.api.http import schemas as sc
from hospital.billing.domain.callbacks import CASSO_SIGNATURE_HEADER, vnpay_ipn_reply
from hospital.chassis.web import client_address

router = APIRouter(prefix="/api/v1/payments", tags=["callbacks"])


def _lean(request: Request) -> CallbackEndpoints:
    lean: CallbackEndpoints = request.app.lean
    return lean


@router.get("/vnpay/ipn", response_model=sc.VnpayReply, summary="VNPay IPN (v2.1.0)")
async def vnpay_ipn(request: Request) -> JSONResponse:
    code = await _lean(request).vnpay(dict(request.query_params), client_address(request))
    return JSONResponse(vnpay_ipn_reply(code))


@router.post(
    "/momo/ipn",
    status_code=204,
    response_class=Response,
    summary="MoMo IPN: 204 when handled",
)
async def momo_ipn(request: Request) -> Response:
    return await _lean(request).momo(await request.body(), client_address(request))


@router.post(
    "/bank-webhook",
    response_model=sc.BankWebhookReply,
    summary="Bank feed (SePay API key or Casso v2 signature)",
)
async def bank_webhook(request: Request) -> Response:
    return await _lean(request).bank(
        await request.body(),
        request.headers.get(CASSO_SIGNATURE_HEADER),
        request.headers.get("authorization"),
        client_address(request),
    )
