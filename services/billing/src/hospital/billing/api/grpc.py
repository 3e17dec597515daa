"""gRPC API for other services (contract: proto/hospital/billing/v1/billing.proto)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import grpc

from hospital.billing.app.mapping import charge_proto, invoice_proto, whole_vnd
from hospital.billing.app.prices import parse_day
from hospital.billing.app.services import Services
from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.chassis.rpc import principal
from hospital.contracts.billing.v1 import billing_pb2 as pb
from hospital.contracts.billing.v1 import billing_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["BillingService"].full_name
READ = ("cashier", "admin", "auditor", "receptionist", "nurse", "doctor")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/GetInvoice": READ,
    f"/{SERVICE}/ListInvoices": READ,
    f"/{SERVICE}/PostManualCharge": ("cashier", "admin"),
    f"/{SERVICE}/CancelCharge": ("cashier", "admin"),
    f"/{SERVICE}/CreateVietQr": ("cashier",),
    f"/{SERVICE}/PayAtDesk": ("cashier",),
    f"/{SERVICE}/GetCurrentShift": ("cashier",),
    f"/{SERVICE}/OpenShift": ("cashier",),
    f"/{SERVICE}/CloseShift": ("cashier", "admin"),
    f"/{SERVICE}/RefundPayment": ("cashier", "admin"),
    f"/{SERVICE}/GetDailyReconciliation": ("cashier", "admin", "auditor"),
    f"/{SERVICE}/ListPrices": READ,
    f"/{SERVICE}/SetPrice": ("admin",),
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


class BillingServicer(pb_grpc.BillingServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Any) -> pb.Invoice:
        if not request.id and not request.number:
            raise Invalid("invoice.id", "give the invoice id or number", field="id")
        return invoice_proto(
            await self.s.invoices.get(request.id or None, request.number or None, caller=_caller(context))
        )

    async def ListInvoices(self, request: pb.ListInvoicesRequest, context: Any) -> pb.ListInvoicesResponse:
        items = await self.s.invoices.list(
            caller=_caller(context),
            patient_id=request.patient_id or None,
            visit_id=request.visit_id or None,
            status=request.status or None,
            limit=request.limit or 50,
        )
        return pb.ListInvoicesResponse(items=[invoice_proto(i) for i in items])

    async def PostManualCharge(self, request: pb.PostManualChargeRequest, context: Any) -> pb.Charge:
        c = await self.s.charges.manual(
            request.visit_id,
            request.price_code,
            request.quantity or None,
            _caller(context),
            note=request.note or None,
            request_id=request.request_id or None,
        )
        return charge_proto(c)

    async def CancelCharge(self, request: pb.CancelChargeRequest, context: Any) -> pb.Charge:
        return charge_proto(await self.s.charges.cancel(request.charge_id, request.reason, _caller(context)))

    async def CreateVietQr(self, request: pb.CreateVietQrRequest, context: Any) -> pb.VietQr:
        out = await self.s.payments.vietqr(request.invoice_id, request.amount or None)
        return pb.VietQr(
            invoice_id=out["invoice_id"],
            number=out["number"],
            amount=out["amount"],
            purpose=out["purpose"],
            bank_bin=out["bank_bin"],
            account=out["account"],
            payload=out["payload"],
            png=base64.b64decode(out["png_base64"]),
        )

    async def PayAtDesk(self, request: pb.PayAtDeskRequest, context: Any) -> pb.Invoice:
        if request.amount <= 0:
            raise Invalid("payment.amount", "amount must be a positive number of VND", field="amount")
        out = await self.s.payments.pay_at_desk(
            request.invoice_id,
            request.amount,
            request.method or "cash",
            _caller(context),
            request.request_id or None,
        )
        return invoice_proto(await self.s.invoices.get(out["invoice"]["id"], None, caller=_caller(context)))

    async def GetCurrentShift(self, request: pb.GetCurrentShiftRequest, context: Any) -> pb.Shift:
        return shift_proto(await self.s.office.current(_caller(context)))

    async def OpenShift(self, request: pb.OpenShiftRequest, context: Any) -> pb.Shift:
        return shift_proto(await self.s.office.open_shift(request.opening_float, _caller(context)))

    async def CloseShift(self, request: pb.CloseShiftRequest, context: Any) -> pb.Shift:
        if not request.shift_id:
            raise Invalid("shift.id", "which shift to close", field="shift_id")
        return shift_proto(
            await self.s.office.close_shift(request.shift_id, request.counted_cash, _caller(context))
        )

    async def RefundPayment(self, request: pb.RefundPaymentRequest, context: Any) -> pb.Invoice:
        reason = clean_text(request.reason, field="reason", max_length=500)
        request_id = clean_text(request.request_id, field="request_id", max_length=100) or None
        by = _caller(context)
        out = await self.s.payments.refund(
            request.invoice_id, request.amount, request.method or "cash", reason, by, request_id
        )
        return invoice_proto(await self.s.invoices.get(out["invoice"]["id"], None, caller=by))

    async def GetDailyReconciliation(
        self, request: pb.GetDailyReconciliationRequest, context: Any
    ) -> pb.DailyReconciliation:
        day = parse_day(request.date, "date")
        x = await self.s.office.daily(day, _caller(context))
        return pb.DailyReconciliation(
            date=x["date"],
            by_method=[method_total(k, v) for k, v in sorted(x["by_method"].items())],
            received_total=x["received_total"],
            refunded_total=x["refunded_total"],
            callbacks=[callback_proto(r) for r in x["callbacks"]],
            unmatched=[callback_proto(r) for r in x["unmatched"]],
            refund_items=[
                pb.RefundWorkItem(
                    id=r["id"],
                    reason=r["reason"],
                    amount=r["amount"],
                    invoice_number=r["invoice_number"] or "",
                    provider=r["provider"],
                    status=r["status"],
                )
                for r in x["refund_items"]
            ],
            shifts=[shift_proto(r) for r in x["shifts"]],
        )

    async def ListPrices(self, request: pb.ListPricesRequest, context: Any) -> pb.ListPricesResponse:
        limit = request.limit or 100
        if not 1 <= limit <= 500:
            raise Invalid("price.limit", "limit is 1 to 500", field="limit")
        query = clean_text(request.query, field="query", max_length=100) if request.query else ""
        category = clean_text(request.category, field="category", max_length=20) if request.category else ""
        items = await self.s.price_list.search(
            parse_day(request.date, "date"), category or None, query, limit
        )
        return pb.ListPricesResponse(items=[price_proto(i) for i in items])

    async def SetPrice(self, request: pb.SetPriceRequest, context: Any) -> pb.PriceItem:
        day = parse_day(request.effective_from, "effective_from")
        if day is None:
            raise Invalid("price.date", "the date the new price takes effect", field="effective_from")
        reason = clean_text(request.reason, field="reason", max_length=500)
        item = await self.s.price_list.set_price(
            clean_text(request.code, field="code", max_length=30),
            request.hospital_price,
            None if request.keep_insurance_price else request.insurance_price,
            day,
            reason,
            _caller(context),
        )
        return price_proto(item)


def method_total(method: str, x: dict[str, int]) -> pb.MethodTotal:
    return pb.MethodTotal(method=method, received=x["received"], refunded=x["refunded"], count=x["count"])


def callback_proto(r: dict[str, Any]) -> pb.CallbackItem:
    m = pb.CallbackItem(
        id=r["id"],
        provider=r["provider"],
        reference=r["bank_reference"] or r["provider_txn_id"],
        amount=r["amount"],
        outcome=r["outcome"],
        invoice_number=r["invoice_number"] or "",
        description=r["description"] or "",
    )
    m.received_at.FromDatetime(r["received_at"])
    return m


def price_proto(x: dict[str, Any]) -> pb.PriceItem:
    return pb.PriceItem(
        code=x["code"],
        name=x["name"],
        category=x["category"],
        unit=x["unit"],
        hospital_price=whole_vnd(x["hospital_price"]),  # whole VND; the price list may hold 3 decimals
        insurance_price=whole_vnd(x["insurance_price"]),
        covered=x["covered"],
        effective_from=x["effective_from"],
        effective_to=x["effective_to"] or "",
        next_change=x.get("next_change") or "",
    )


def shift_proto(x: dict[str, Any]) -> pb.Shift:
    m = pb.Shift(
        id=x["id"], status=x["status"], opening_float=x["opening_float"], cashier_name=x["cashier_name"] or ""
    )
    m.opened_at.FromDatetime(datetime.fromisoformat(x["opened_at"]))
    if x.get("closed_at"):
        m.closed_at.FromDatetime(datetime.fromisoformat(x["closed_at"]))
    totals = x.get("totals") or {}
    if totals:
        m.counted_cash = totals.get("counted_cash", 0)
        m.expected_cash = totals.get("expected_cash", 0)
        m.difference = totals.get("difference", 0)
        m.totals.extend(method_total(k, v) for k, v in sorted(totals.get("by_method", {}).items()))
    return m


def register(server: grpc.aio.Server, services: Services) -> None:
    pb_grpc.add_BillingServiceServicer_to_server(BillingServicer(services), server)
