"""gRPC API for other services (contract: proto/hospital/billing/v1/billing.proto)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import grpc

from hospital.billing.app.mapping import charge_proto, invoice_proto
from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid
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
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


class BillingServicer(pb_grpc.BillingServiceServicer):
    def __init__(self, services: Any) -> None:
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


def shift_proto(x: dict[str, Any]) -> pb.Shift:
    m = pb.Shift(
        id=x["id"], status=x["status"], opening_float=x["opening_float"], cashier_name=x["cashier_name"] or ""
    )
    m.opened_at.FromDatetime(datetime.fromisoformat(x["opened_at"]))
    return m


def register(server: grpc.aio.Server, services: Any) -> None:
    pb_grpc.add_BillingServiceServicer_to_server(BillingServicer(services), server)
