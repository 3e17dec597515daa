"""HTTP API for the cash desk, the web front end and the payment providers' callbacks
(OpenAPI at /docs). Staff routes need `Authorization: Bearer <token>`; provider callbacks are
authenticated by their signature (VNPay, MoMo, Casso) or API key (SePay) instead."""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from hospital.billing.api.callbacks import CallbackEndpoints
from hospital.billing.api.staff import staff_router
from hospital.billing.domain.callbacks import CASSO_SIGNATURE_HEADER, vnpay_ipn_reply
from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid
from hospital.chassis.fields import Id, Money, code, line, text
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, require_roles

log = logging.getLogger(__name__)
_STATEMENT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CSV: tab, CR and LF only
CLINICAL_READ = ("receptionist", "nurse", "doctor")
READ = ("cashier", "admin", "auditor", *CLINICAL_READ)
DESK = ("cashier", "admin")
OFFICE_READ = ("cashier", "admin", "auditor")


def Role(*roles: str) -> Any:
    return Annotated[Principal, Depends(require_roles(*roles))]


def caller(request: Request, principal: Principal) -> Caller:
    return Caller(principal=principal, source=client_address(request))


class ChargeIn(BaseModel):
    price_code: code(30, min_length=1) = Field(..., examples=["XN-CTM"])
    quantity: code(20) | None = Field(
        None, description="decimal, at most 3 places; default 1", examples=["2"]
    )
    note: text(500) | None = None
    ordered_by: code(50) | None = Field(
        None, description="ordering doctor's practising licence (MA_BAC_SI)", examples=["003456/TB-CCHN"]
    )
    request_id: code(100) | None = Field(None, description="idempotency key")


class CancelIn(BaseModel):
    reason: text(500, min_length=1)


class PaymentIn(BaseModel):
    amount: Money = Field(..., description="whole VND", gt=0)
    method: Literal["cash", "card"] = "cash"
    request_id: code(100) | None = None


class RefundIn(BaseModel):
    amount: Money = Field(..., gt=0)
    method: Literal["cash", "bank_transfer"] = "cash"
    reason: text(500, min_length=1)
    request_id: code(100) | None = Field(None, description="idempotency key")


class VietQrIn(BaseModel):
    amount: Money | None = Field(None, gt=0, description="default: the balance due; give one for a deposit")


class ShiftOpenIn(BaseModel):
    opening_float: Money = Field(0, description="whole VND in the drawer at the start")


class ShiftCloseIn(BaseModel):
    counted_cash: Money = Field(..., description="whole VND counted at the end")


class MatchIn(BaseModel):
    invoice_id: Id


class ResolveIn(BaseModel):
    action: Literal["accept", "refund"] = Field(
        ..., description="accept: a payment of the amount received; refund: the money goes back to the payer"
    )
    reason: text(500, min_length=1)
    refund_reference: code(100) | None = Field(None, description="the provider's refund reference")


IcdCode = code(10, min_length=1)
DiagnosisText = line(500)  # feeds the claim XML: one line, no control characters


class DiagnosisIn(BaseModel):
    code: IcdCode = Field(..., examples=["K80.2"])
    text: DiagnosisText = Field("", examples=["Sỏi túi mật"], description="one line, no control characters")


class CardIn(BaseModel):
    number: code(15, min_length=15) = Field(..., examples=["HT3350120878811"], description="BHYT card number")
    valid_from: date = Field(..., description="first day the card is valid (a day of the visit)")
    valid_to: date
    registered_facility: code(5, min_length=5) = Field(..., examples=["35001"], description="MA_DKBD")
    five_year_date: date | None = Field(
        None, description="5 consecutive years insured from (NAM_NAM_LIEN_TUC)"
    )


class PriceHeldIn(BaseModel):
    price_code: code(30, min_length=1) = Field(..., examples=["XN-CRP"])
    visit_id: code(36) | None = Field(None, description="required when the held line has no visit")
    quantity: code(20) | None = Field(
        None, description="decimal, at most 3 places; default 1", examples=["1"]
    )
    remember: bool = Field(False, description="map the order code to this price item for later orders")


class RefundItemResolveIn(BaseModel):
    refund_reference: code(100) | None = Field(
        None,
        description="the provider's refund id or the bank transfer's reference",
        examples=["FT24215000123"],
    )
    note: text(500, min_length=1) = Field(..., examples=["Đã hoàn tiền qua VNPay cho người bệnh"])


class DismissIn(BaseModel):
    reason: text(500, min_length=1)


class VoidIn(BaseModel):
    reason: text(500, min_length=1)


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


def build_http(services: Any) -> FastAPI:
    app = BillingApp(
        title="Billing",
        version="1.0",
        description="Charges, invoices with the BHYT split, payments (cash, VietQR, VNPay, MoMo, bank "
        "feeds), refunds, cashier shifts, reconciliation and QĐ130 claim export.",
    )
    app.lean = CallbackEndpoints(services.payments, services.settings)
    # A day's bank statement (CSV) may pass the chassis's default request limit.
    app.state.body_limits = {"/api/v1/reconciliations": 16 * 1024 * 1024}
    api = APIRouter(prefix="/api/v1")
    charges, invoices, pays, office, claims = (
        services.charges,
        services.invoices,
        services.payments,
        services.office,
        services.claims,
    )
    settings = services.settings

    # ------------------------------------------------------------------ price list and charges
    @api.get("/prices", tags=["charges"], summary="Price list in force on a day")
    async def prices(_: Role(*READ), on: date | None = None, category: str | None = None) -> dict[str, Any]:
        return {"items": await services.prices(on, category)}

    @api.post("/visits/{visit_id}/charges", status_code=201, tags=["charges"], summary="Post a manual charge")
    async def post_charge(
        visit_id: str, body: ChargeIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await charges.manual(
            visit_id,
            body.price_code,
            body.quantity,
            caller(request, who),
            note=body.note,
            request_id=body.request_id,
            ordered_by=body.ordered_by,
        )

    @api.post("/charges/{charge_id}/cancel", tags=["charges"], summary="Reverse a charge (never deleted)")
    async def cancel_charge(
        charge_id: str, body: CancelIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await charges.cancel(charge_id, body.reason, caller(request, who))

    @api.get("/held-charges", tags=["charges"], summary="Order lines waiting for a cashier to price them")
    async def held(
        _: Role(*OFFICE_READ),
        status: Literal["held", "priced", "dismissed"] | None = "held",
        visit_id: str | None = None,
        limit: int = Query(200, ge=1, le=1000),
    ) -> dict[str, Any]:
        return {"items": await services.orders.list_held(status, visit_id, limit)}

    @api.post(
        "/held-charges/{held_id}/price", tags=["charges"], summary="Price a held order line (posts it once)"
    )
    async def price_held(
        held_id: str, body: PriceHeldIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await services.orders.price_held(
            held_id,
            body.price_code,
            caller(request, who),
            visit_id=body.visit_id,
            quantity=body.quantity,
            remember=body.remember,
        )

    @api.post("/held-charges/{held_id}/dismiss", tags=["charges"], summary="Dismiss a held order line")
    async def dismiss_held(
        held_id: str, body: DismissIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await services.orders.dismiss_held(held_id, body.reason, caller(request, who))

    @api.put("/visits/{visit_id}/diagnosis", tags=["claims"], summary="Main diagnosis (ICD-10) for the claim")
    async def diagnosis(
        visit_id: str, body: DiagnosisIn, request: Request, who: Role("doctor", "cashier", "admin")
    ) -> dict[str, Any]:
        return await claims.set_diagnosis(visit_id, body.code, body.text, caller(request, who))

    @api.post(
        "/visits/{visit_id}/cards",
        tags=["claims"],
        summary="Record a BHYT card issued during the visit (lines from its first day are paid under it)",
    )
    async def record_card(visit_id: str, body: CardIn, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await claims.record_card(
            visit_id,
            body.number,
            body.valid_from,
            body.valid_to,
            body.registered_facility,
            body.five_year_date,
            caller(request, who),
        )

    # ------------------------------------------------------------------ invoices
    @api.get("/invoices", tags=["invoices"])
    async def list_invoices(
        request: Request,
        who: Role(*READ),
        patient_id: str | None = None,
        visit_id: str | None = None,
        status: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        return {
            "items": await invoices.list(
                caller=caller(request, who),
                patient_id=patient_id,
                visit_id=visit_id,
                status=status,
                limit=limit,
            )
        }

    @api.get("/invoices/{invoice_id}", tags=["invoices"], summary="Invoice with lines, split and payments")
    async def get_invoice(invoice_id: str, request: Request, who: Role(*READ)) -> dict[str, Any]:
        return await invoices.get(invoice_id, caller=caller(request, who))

    @api.get("/visits/{visit_id}/invoice", tags=["invoices"])
    async def visit_invoice(visit_id: str, request: Request, who: Role(*READ)) -> dict[str, Any]:
        return await invoices.for_visit(visit_id, caller=caller(request, who))

    @api.post("/invoices/{invoice_id}/issue", tags=["invoices"])
    async def issue(invoice_id: str, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await invoices.issue(invoice_id, caller(request, who))

    @api.post("/invoices/{invoice_id}/void", tags=["invoices"])
    async def void(invoice_id: str, body: VoidIn, request: Request, who: Role("admin")) -> dict[str, Any]:
        return await invoices.void(invoice_id, body.reason, caller(request, who))

    @api.get(
        "/invoices/{invoice_id}/receipt",
        tags=["invoices"],
        summary="Printable receipt (HTML, or ?format=pdf)",
    )
    async def receipt(
        invoice_id: str, request: Request, who: Role(*READ), format: Literal["html", "pdf"] = "html"
    ) -> Response:
        by = caller(request, who)
        if format == "pdf":
            return Response(
                await invoices.receipt_pdf(invoice_id, settings.facility_name, caller=by),
                media_type="application/pdf",
            )
        return HTMLResponse(await invoices.receipt_html(invoice_id, settings.facility_name, caller=by))

    # ------------------------------------------------------------------ payments at the desk
    @api.post(
        "/invoices/{invoice_id}/payments",
        status_code=201,
        tags=["payments"],
        summary="Cash or card at the desk (a deposit while the invoice is open)",
    )
    async def pay(invoice_id: str, body: PaymentIn, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await pays.pay_at_desk(
            invoice_id, body.amount, body.method, caller(request, who), body.request_id
        )

    @api.post("/invoices/{invoice_id}/refunds", status_code=201, tags=["payments"])
    async def refund(invoice_id: str, body: RefundIn, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await pays.refund(
            invoice_id, body.amount, body.method, body.reason, caller(request, who), body.request_id
        )

    @api.post(
        "/invoices/{invoice_id}/vietqr",
        tags=["payments"],
        summary="VietQR for the balance (JSON, or PNG with ?format=png)",
    )
    async def vietqr(
        invoice_id: str, _: Role(*DESK), body: VietQrIn | None = None, format: Literal["json", "png"] = "json"
    ) -> Any:
        out = await pays.vietqr(invoice_id, body.amount if body else None)
        if format == "png":
            import base64

            return Response(
                base64.b64decode(out["png_base64"]),
                media_type="image/png",
                headers={"X-VietQR-Payload": out["payload"]},
            )
        return out

    @api.get("/bank-transfers/unmatched", tags=["payments"], summary="Transfers waiting for a cashier")
    async def unmatched(_: Role(*OFFICE_READ)) -> dict[str, Any]:
        return {"items": await pays.unmatched()}

    @api.post("/bank-transfers/{callback_id}/match", tags=["payments"])
    async def match(callback_id: str, body: MatchIn, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await pays.match(callback_id, body.invoice_id, caller(request, who))

    @api.post(
        "/callbacks/{callback_id}/resolve",
        tags=["payments"],
        summary="Resolve a gateway callback whose amount did not match (accept as payment, or refund)",
    )
    async def resolve(
        callback_id: str, body: ResolveIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await pays.resolve_mismatch(
            callback_id, body.action, body.reason, caller(request, who), body.refund_reference
        )

    @api.get(
        "/refund-items",
        tags=["payments"],
        summary="Money to give back: confirmed payments the bill did not need (work items, oldest first)",
    )
    async def refund_items(
        _: Role(*OFFICE_READ),
        status: Literal["open", "refunded", "all"] = "open",
        limit: int = Query(200, ge=1, le=1000),
    ) -> dict[str, Any]:
        """A second confirmed payment of a paid invoice (VNPay/MoMo answered `02`/`204`), a confirmed
        payment for a void or unknown invoice (`reason` `already_settled`, `unknown_invoice`: the money
        never went on the invoice) and the part of a bank transfer (SePay, Casso, VietQR) or an accepted
        callback above the balance (`over_payment`, `on_invoice: true`: the invoice's balance is negative
        by `amount`). Each is one item per provider transaction."""
        return {"items": await pays.refund_items(None if status == "all" else status, limit)}

    @api.post(
        "/refund-items/{item_id}/resolve",
        tags=["payments"],
        summary="Record that the money went back to the payer",
    )
    async def resolve_refund_item(
        item_id: str, body: RefundItemResolveIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        """Marks the item `refunded` with the reference and note (audited). For an `on_invoice` item the
        amount is also taken off the invoice as a refund (`billing.payment.refunded`). An item already
        resolved is returned unchanged."""
        return await pays.resolve_refund_item(item_id, body.refund_reference, body.note, caller(request, who))

    # ------------------------------------------------------------------ provider callbacks
    # Served by the lean ASGI handler before FastAPI (BillingApp.__call__); these routes document them in
    # OpenAPI and run the same code if FastAPI is reached directly.
    lean = app.lean

    @api.get("/payments/vnpay/ipn", tags=["callbacks"], summary="VNPay IPN (v2.1.0)")
    async def vnpay_ipn(request: Request) -> JSONResponse:
        code = await lean.vnpay(dict(request.query_params), client_address(request))
        return JSONResponse(vnpay_ipn_reply(code))

    @api.post("/payments/momo/ipn", tags=["callbacks"], summary="MoMo IPN: 204 when handled")
    async def momo_ipn(request: Request) -> Response:
        return await lean.momo(await request.body(), client_address(request))

    @api.post(
        "/payments/bank-webhook",
        tags=["callbacks"],
        summary="Bank feed (SePay API key or Casso v2 signature)",
    )
    async def bank_webhook(request: Request) -> Response:
        return await lean.bank(
            await request.body(),
            request.headers.get(CASSO_SIGNATURE_HEADER),
            request.headers.get("authorization"),
            client_address(request),
        )

    # ------------------------------------------------------------------ cash office
    @api.post("/shifts", status_code=201, tags=["cash office"], summary="Open my cashier shift")
    async def open_shift(body: ShiftOpenIn, request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await office.open_shift(body.opening_float, caller(request, who))

    @api.get("/shifts/current", tags=["cash office"])
    async def current_shift(request: Request, who: Role(*DESK)) -> dict[str, Any]:
        return await office.current(caller(request, who))

    @api.post(
        "/shifts/{shift_id}/close", tags=["cash office"], summary="Close: totals by method, cash difference"
    )
    async def close_shift(
        shift_id: str, body: ShiftCloseIn, request: Request, who: Role(*DESK)
    ) -> dict[str, Any]:
        return await office.close_shift(shift_id, body.counted_cash, caller(request, who))

    @api.post(
        "/reconciliations",
        tags=["cash office"],
        summary="Reconcile a day's bank-feed payments against "
        "the bank statement (CSV body: date,reference,amount,description)",
    )
    async def reconcile(
        request: Request, who: Role(*DESK), on: date = Query(..., alias="date")
    ) -> dict[str, Any]:
        try:
            statement = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(
                "statement.encoding", "the statement must be UTF-8 CSV", field="statement"
            ) from None
        bad = _STATEMENT_CONTROL.search(statement)
        if bad:
            line = statement.count("\n", 0, bad.start()) + 1
            raise Invalid(
                "statement.control_character",
                f"line {line} of the statement holds a control character (U+{ord(bad.group()):04X})",
                field="statement",
            )
        return await office.reconcile(on, statement, caller(request, who))

    # ------------------------------------------------------------------ claims
    @api.get(
        "/claims/{visit_id}/xml130",
        tags=["claims"],
        summary="Signed QĐ130 GIAMDINHHS of a closed insured visit",
    )
    async def xml130(
        visit_id: str,
        request: Request,
        who: Role(*DESK),
        ma_bac_si: str | None = Query(None, max_length=50, description="doctor for lines that name none"),
    ) -> Response:
        claim = await claims.export(visit_id, caller(request, who), ma_bac_si)
        headers = {"Content-Disposition": f'attachment; filename="xml130-{visit_id}.xml"'}
        if claim.incomplete:  # elements BHXH review needs that reception or the EMR have not given yet
            headers["Hospital-Claim-Incomplete"] = ",".join(claim.incomplete)
        return Response(claim.document, media_type="application/xml", headers=headers)

    app.include_router(api)
    app.include_router(staff_router(services))
    return app
