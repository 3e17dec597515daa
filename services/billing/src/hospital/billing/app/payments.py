"""Payments: cash and card at the desk, VietQR transfers, VNPay and MoMo IPNs, bank-feed webhooks
(SePay, Casso), refunds, and the queue of transfers no invoice could be matched to.

A callback is settled in one transaction, in a fixed lock order (the invoice row, then the
``provider_callbacks`` row whose unique ``(provider, provider_txn_id)`` is the idempotency key):
1. lock the invoice named by the callback and decide (amount against what is due);
2. insert the callback with its outcome, ``ON CONFLICT DO NOTHING``: a duplicate waits for the first
   delivery's transaction, finds its row and answers with the stored reply, writing nothing;
3. record the payment and the invoice's new totals and status, publish, commit.
"""
from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from hospital.billing.adapters.tables import (
    invoices,
    payments,
    provider_callbacks,
    rejected_callbacks,
    shifts,
)
from hospital.billing.app.charges import upsert
from hospital.billing.app.common import derive_status
from hospital.billing.app.invoices import invoice_summary
from hospital.billing.domain.callbacks import (
    AmbiguousInvoiceCode,
    BankTransfer,
    GatewayPayment,
    VnpRspCode,
    find_invoice_code,
    vnpay_rsp_code,
)
from hospital.billing.domain.vietqr import VietQRError, build_vietqr, vietqr_png
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.billing.v1 import events_pb2

log = logging.getLogger(__name__)
DESK_METHODS = ("cash", "card")
REFUND_METHODS = ("cash", "bank_transfer")
SETTLED = ("paid", "refunded")


@dataclass(frozen=True)
class Settlement:
    outcome: str
    reply_code: str
    replay: bool = False
    payment_id: str | None = None
    invoice_status: str | None = None


def _received_event(pid: str, inv: Any, amount: int, method: str, provider: str, txn: str, status: str,
                    at: Any) -> events_pb2.PaymentReceived:
    msg = events_pb2.PaymentReceived(payment_id=pid, invoice_id=inv["id"], invoice_number=inv["number"],
                                     amount=amount, method=method, provider=provider, provider_txn_id=txn,
                                     invoice_status=status)
    msg.received_at.FromDatetime(at)
    return msg


def _jsonable(raw: Any) -> Any:
    return json.loads(json.dumps(dict(raw), default=str, ensure_ascii=False))


class PaymentService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings

    # ------------------------------------------------------------------------------ shared steps
    async def _apply(self, s: Any, inv: Any, amount: int) -> tuple[str, str, int]:
        """Add ``amount`` to the invoice; returns (payment kind, new status, new paid amount)."""
        kind = "deposit" if inv["issued_at"] is None else "payment"
        paid = inv["paid_amount"] + amount
        status = derive_status(inv, paid=paid)
        await s.execute(update(invoices).where(invoices.c.id == inv["id"]).values(paid_amount=paid, status=status))
        return kind, status, paid

    async def _record_callback(self, s: Any, *, provider: str, txn: str, number: str | None, inv: Any,
                               amount: int, outcome: str, reply: str, payment_id: str | None, description: str,
                               bank_reference: str | None, occurred_at: Any, raw: Any) -> bool:
        """Insert the callback row; False when this (provider, txn) was recorded before (a replay)."""
        stmt = upsert(s)(provider_callbacks).values(
            id=new_id(), provider=provider, provider_txn_id=txn, invoice_number=number,
            invoice_id=inv["id"] if inv is not None else None, amount=amount, outcome=outcome, reply_code=reply,
            payment_id=payment_id, description=description[:500], bank_reference=bank_reference,
            occurred_at=occurred_at, raw=_jsonable(raw), received_at=utcnow(), resolved_by=None,
        ).on_conflict_do_nothing(index_elements=["provider", "provider_txn_id"])
        return (await s.execute(stmt.returning(provider_callbacks.c.id))).first() is not None

    async def _replay(self, provider: str, txn: str) -> Settlement:
        async with self.rt.db.session() as s:
            row = (await s.execute(select(provider_callbacks.c.outcome, provider_callbacks.c.reply_code,
                                          provider_callbacks.c.payment_id).where(
                provider_callbacks.c.provider == provider, provider_callbacks.c.provider_txn_id == txn))).one()
        return Settlement(row.outcome, row.reply_code, replay=True, payment_id=row.payment_id)

    async def reject(self, provider: str, reason: str, client: str, raw: Any) -> None:
        """A forged, stale or malformed call: logged and kept, never applied."""
        log.warning("rejected %s callback from %s: %s", provider, client, reason)
        async with self.rt.db.session() as s, s.begin():
            await s.execute(rejected_callbacks.insert().values(
                id=new_id(), provider=provider, reason=reason[:500], client=client[:100],
                raw=(raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False))[:20000],
                received_at=utcnow()))

    # ------------------------------------------------------------------------------ gateways
    async def settle_gateway(self, p: GatewayPayment) -> Settlement:
        """VNPay / MoMo: the order id is the invoice number; the amount must equal what is due."""
        provider = p.provider.value
        async with self.rt.uow() as uow:
            s = uow.session
            inv = (await s.execute(select(invoices).where(invoices.c.number == p.order_id)
                                   .with_for_update())).mappings().first()
            if inv is None or inv["status"] == "void":
                code = VnpRspCode.ORDER_NOT_FOUND
            else:
                settled = inv["status"] in SETTLED
                due = inv["patient_amount"] if settled else inv["patient_amount"] - inv["paid_amount"]
                code = vnpay_rsp_code(p, order_amount_vnd=due if due > 0 else -1, order_already_settled=settled)
            outcome = {VnpRspCode.ORDER_NOT_FOUND: "unknown_invoice", VnpRspCode.INVALID_AMOUNT: "amount_mismatch",
                       VnpRspCode.ALREADY_CONFIRMED: "already_settled"}.get(code, "paid" if p.paid else "failed")
            pid = new_id() if outcome == "paid" else None
            fresh = await self._record_callback(
                s, provider=provider, txn=p.provider_txn_id, number=p.order_id, inv=inv, amount=p.amount_vnd,
                outcome=outcome, reply=code.value, payment_id=pid, description=p.description, bank_reference=None,
                occurred_at=p.paid_at, raw=p.raw)
            if not fresh:
                await s.rollback()
                return await self._replay(provider, p.provider_txn_id)
            status = inv["status"] if inv is not None else None
            if pid is not None:
                now = utcnow()
                kind, status, _ = await self._apply(s, inv, p.amount_vnd)
                await s.execute(payments.insert().values(
                    id=pid, invoice_id=inv["id"], kind=kind, amount=p.amount_vnd, method=provider, provider=provider,
                    provider_txn_id=p.provider_txn_id, bank_reference=None, shift_id=None, refund_of=None,
                    reason=None, received_by=f"provider:{provider}", received_at=now, request_id=None))
                uow.publish("billing.payment.received", _received_event(
                    pid, inv, p.amount_vnd, provider, provider, p.provider_txn_id, status, now))
            elif outcome != "paid":
                log.warning("%s callback %s for %s: %s", provider, p.provider_txn_id, p.order_id, outcome)
            await uow.commit()
        return Settlement(outcome, code.value, payment_id=pid, invoice_status=status)

    # ------------------------------------------------------------------------------ bank feed
    async def settle_transfer(self, t: BankTransfer) -> Settlement:
        """SePay / Casso: match the invoice by the code in the transfer text. Partial and over-payments
        are recorded as they are (status partly_paid; paid with a negative balance to give back);
        transfers without a usable code, outgoing transfers and transfers to a void invoice wait for a
        cashier in the unmatched queue."""
        provider = t.provider.value
        try:
            number = find_invoice_code(t.description)
        except AmbiguousInvoiceCode:
            number = None
        async with self.rt.uow() as uow:
            s = uow.session
            inv = None
            if number is not None and t.incoming:
                inv = (await s.execute(select(invoices).where(invoices.c.number == number)
                                       .with_for_update())).mappings().first()
            if not t.incoming:
                outcome = "outgoing"
            elif inv is None or inv["status"] == "void":
                outcome = "unmatched"
            else:
                outcome = "paid"
            pid = new_id() if outcome == "paid" else None
            fresh = await self._record_callback(
                s, provider=provider, txn=t.provider_txn_id, number=number, inv=inv if pid else None,
                amount=t.amount_vnd, outcome=outcome, reply="ok", payment_id=pid, description=t.description,
                bank_reference=t.bank_reference or None, occurred_at=t.occurred_at, raw=t.raw)
            if not fresh:
                await s.rollback()
                return await self._replay(provider, t.provider_txn_id)
            status = None
            if pid is not None:
                status = await self._pay_transfer(uow, inv, pid, t.amount_vnd, provider, t.provider_txn_id,
                                                  t.bank_reference)
            else:
                log.info("%s transfer %s queued for a cashier: %s", provider, t.provider_txn_id, outcome)
            await uow.commit()
        return Settlement(outcome, "ok", payment_id=pid, invoice_status=status)

    async def _pay_transfer(self, uow: Any, inv: Any, pid: str, amount: int, provider: str, txn: str,
                            bank_reference: str | None, received_by: str | None = None) -> str:
        now = utcnow()
        kind, status, _ = await self._apply(uow.session, inv, amount)
        await uow.session.execute(payments.insert().values(
            id=pid, invoice_id=inv["id"], kind=kind, amount=amount, method="bank_transfer", provider=provider,
            provider_txn_id=txn, bank_reference=bank_reference or None, shift_id=None, refund_of=None, reason=None,
            received_by=received_by or f"provider:{provider}", received_at=now, request_id=None))
        uow.publish("billing.payment.received", _received_event(pid, inv, amount, "bank_transfer", provider, txn,
                                                                status, now))
        return status

    async def unmatched(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (await s.execute(select(provider_callbacks).where(
                provider_callbacks.c.outcome.in_(("unmatched", "outgoing", "amount_mismatch")))
                .order_by(provider_callbacks.c.received_at))).mappings().all()
        return [{"id": r["id"], "provider": r["provider"], "provider_txn_id": r["provider_txn_id"],
                 "outcome": r["outcome"], "amount": r["amount"], "description": r["description"],
                 "invoice_number": r["invoice_number"], "bank_reference": r["bank_reference"],
                 "received_at": r["received_at"].isoformat()} for r in rows]

    async def match(self, callback_id: str, invoice_id: str, caller: Caller) -> dict[str, Any]:
        """A cashier assigns an unmatched incoming transfer to an invoice."""
        async with self.rt.uow() as uow:
            s = uow.session
            inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id)
                                   .with_for_update())).mappings().first()
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}", field="invoice_id")
            if inv["status"] == "void":
                raise Conflict("invoice.void", "the invoice is void")
            cb = (await s.execute(select(provider_callbacks).where(provider_callbacks.c.id == callback_id)
                                  .with_for_update())).mappings().first()
            if cb is None:
                raise NotFound("transfer.not_found", f"no queued transfer {callback_id}")
            if cb["outcome"] != "unmatched":
                raise Conflict("transfer.not_unmatched", f"transfer is {cb['outcome']}: only unmatched incoming "
                               "transfers can be assigned")
            pid = new_id()
            status = await self._pay_transfer(uow, inv, pid, cb["amount"], cb["provider"], cb["provider_txn_id"],
                                              cb["bank_reference"], received_by=caller.subject)
            await s.execute(update(provider_callbacks).where(provider_callbacks.c.id == callback_id).values(
                outcome="matched", payment_id=pid, invoice_id=invoice_id, resolved_by=caller.subject))
            uow.audit(caller.audit("transfer.match", "Invoice", invoice_id, inv["patient_id"],
                                   callback_id=callback_id, amount=cb["amount"]))
            await uow.commit()
        return {"payment_id": pid, "invoice_id": invoice_id, "invoice_status": status}

    # ------------------------------------------------------------------------------ desk
    async def _open_shift(self, s: Any, caller: Caller) -> str:
        sid = (await s.execute(select(shifts.c.id).where(shifts.c.cashier == caller.subject,
                                                         shifts.c.status == "open"))).scalar()
        if sid is None:
            raise Conflict("shift.not_open", "open a cashier shift before taking or giving back money at the desk")
        return str(sid)

    async def pay_at_desk(self, invoice_id: str, amount: int, method: str, caller: Caller,
                          request_id: str | None = None) -> dict[str, Any]:
        if method not in DESK_METHODS:
            raise Invalid("payment.method", f"method must be one of {', '.join(DESK_METHODS)}", field="method")
        if amount <= 0:
            raise Invalid("payment.amount", "amount must be a positive number of VND", field="amount")
        async with self.rt.uow() as uow:
            s = uow.session
            if request_id:
                prior = (await s.execute(select(payments).where(payments.c.request_id == request_id))).mappings().first()
                if prior is not None:
                    if prior["invoice_id"] != invoice_id or prior["amount"] != amount:
                        raise Conflict("payment.request_id_reused", "request_id was used for another payment",
                                       field="request_id")
                    inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().one()
                    return {"payment_id": prior["id"], "invoice": invoice_summary(inv)}
            shift_id = await self._open_shift(s, caller)
            inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id)
                                   .with_for_update())).mappings().first()
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
            if inv["status"] in ("void", "refunded"):
                raise Conflict(f"invoice.{inv['status']}", f"invoice {inv['number']} is {inv['status']}")
            balance = inv["patient_amount"] - inv["paid_amount"]
            if inv["issued_at"] is not None and amount > balance:
                raise Invalid("payment.exceeds_balance", f"amount {amount} is more than the balance {balance}; "
                              "give change instead", field="amount")
            pid, now = new_id(), utcnow()
            kind, status, paid = await self._apply(s, inv, amount)
            await s.execute(payments.insert().values(
                id=pid, invoice_id=invoice_id, kind=kind, amount=amount, method=method, provider=None,
                provider_txn_id=None, bank_reference=None, shift_id=shift_id, refund_of=None, reason=None,
                received_by=caller.subject, received_at=now, request_id=request_id))
            uow.publish("billing.payment.received", _received_event(pid, inv, amount, method, "", "", status, now))
            uow.audit(caller.audit(f"payment.{kind}", "Invoice", invoice_id, inv["patient_id"], amount=amount,
                                   method=method))
            await uow.commit()
        return {"payment_id": pid, "kind": kind,
                "invoice": invoice_summary({**inv, "paid_amount": paid, "status": status})}

    async def refund(self, invoice_id: str, amount: int, method: str, reason: str, caller: Caller) -> dict[str, Any]:
        if method not in REFUND_METHODS:
            raise Invalid("refund.method", f"method must be one of {', '.join(REFUND_METHODS)}", field="method")
        if amount <= 0:
            raise Invalid("refund.amount", "amount must be a positive number of VND", field="amount")
        if not reason.strip():
            raise Invalid("refund.reason", "a refund needs a reason", field="reason")
        async with self.rt.uow() as uow:
            s = uow.session
            shift_id = await self._open_shift(s, caller) if method == "cash" else None
            inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id)
                                   .with_for_update())).mappings().first()
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
            if amount > inv["paid_amount"]:
                raise Conflict("refund.exceeds_paid", f"refund {amount} is more than the {inv['paid_amount']} "
                               "received on this invoice", field="amount")
            paid, refunded = inv["paid_amount"] - amount, inv["refunded_amount"] + amount
            status = derive_status(inv, paid=paid, refunded=refunded)
            rid = new_id()
            await s.execute(update(invoices).where(invoices.c.id == invoice_id).values(
                paid_amount=paid, refunded_amount=refunded, status=status))
            await s.execute(payments.insert().values(
                id=rid, invoice_id=invoice_id, kind="refund", amount=amount, method=method, provider=None,
                provider_txn_id=None, bank_reference=None, shift_id=shift_id, refund_of=None, reason=reason[:500],
                received_by=caller.subject, received_at=utcnow(), request_id=None))
            uow.publish("billing.payment.refunded", events_pb2.PaymentRefunded(
                refund_id=rid, invoice_id=invoice_id, amount=amount, method=method, reason=reason,
                invoice_status=status, by=caller.actor()))
            uow.audit(caller.audit("payment.refund", "Invoice", invoice_id, inv["patient_id"], amount=amount,
                                   method=method, reason=reason))
            await uow.commit()
        return {"refund_id": rid, "invoice": invoice_summary({**inv, "paid_amount": paid, "refunded_amount": refunded,
                                                              "status": status})}

    # ------------------------------------------------------------------------------ VietQR
    async def vietqr(self, invoice_id: str, amount: int | None = None) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().first()
        if inv is None:
            raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
        if inv["status"] in ("void", "refunded", "paid"):
            raise Conflict(f"invoice.{inv['status']}", f"invoice {inv['number']} is {inv['status']}: nothing to pay")
        balance = inv["patient_amount"] - inv["paid_amount"]
        if amount is None:
            amount = balance
        if amount <= 0:
            raise Conflict("invoice.nothing_due", "nothing is due on this invoice; give an amount for a deposit")
        if inv["issued_at"] is not None and amount > balance:
            raise Invalid("vietqr.amount", f"amount {amount} is more than the balance {balance}", field="amount")
        st = self.settings
        purpose = f"TT {inv['number']}"
        try:
            payload = build_vietqr(st.bank_bin, st.bank_account, amount, purpose=purpose,  # type: ignore[attr-defined]
                                   bill_number=inv["number"])
        except VietQRError as exc:
            raise Invalid("vietqr.invalid", str(exc)) from exc
        return {"invoice_id": invoice_id, "number": inv["number"], "amount": amount, "purpose": purpose,
                "bank_bin": st.bank_bin, "account": st.bank_account, "payload": payload,  # type: ignore[attr-defined]
                "png_base64": base64.b64encode(vietqr_png(payload)).decode("ascii")}


__all__ = ["IntegrityError", "PaymentService", "Settlement"]
