"""HTTP API for the cash desk, the web front end and the payment providers' callbacks (OpenAPI at /docs):
one router per module, a response model on every route. Staff routes need `Authorization: Bearer <token>`;
provider callbacks are authenticated by their signature (VNPay, MoMo, Casso) or API key (SePay) instead."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from hospital.billing.api.callbacks import CallbackEndpoints
from hospital.billing.api.http import cashoffice, charges, claims, invoices, payments, providers, staff
from hospital.billing.app.services import Services


class BillingApp(FastAPI):
    """FastAPI, except that the providers' callbacks are answered before its middleware and routing."""

    lean: CallbackEndpoints

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            handler = self.lean.matches(scope)
            if handler is not None:
                await self.lean.handle(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def build_http(services: Services) -> FastAPI:
    app = BillingApp(
        title="Billing",
        version="1.0",
        description="Charges, invoices with the BHYT split, payments (cash, VietQR, VNPay, MoMo, bank "
        "feeds), refunds, cashier shifts, reconciliation and QĐ130 claim export.",
    )
    app.lean = CallbackEndpoints(services.payments, services.settings)
    app.state.services = services
    # A day's bank statement (CSV) may pass the chassis's default request limit.
    app.state.body_limits = {"/api/v1/reconciliations": 16 * 1024 * 1024}
    for module in (charges, claims, invoices, payments, providers, cashoffice, staff):
        app.include_router(module.router)
    return app
