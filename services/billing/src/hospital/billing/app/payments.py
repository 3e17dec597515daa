"""Payments: cash and card at the desk, VietQR transfers, VNPay and MoMo IPNs, bank-feed webhooks
(SePay, Casso), refunds, and the queue of transfers no invoice could be matched to.

A callback whose ``(provider, provider_txn_id)`` was recorded before is answered from its stored row by
one indexed read, outside any transaction and without waiting for a lock. Any other callback is
settled in one transaction, in a fixed lock order (the invoice row, then the ``provider_callbacks``
row whose unique ``(provider, provider_txn_id)`` is the idempotency key):
1. lock the invoice named by the callback and decide (amount against what is due);
2. insert the callback with its outcome, ``ON CONFLICT DO NOTHING``: a duplicate delivered in parallel
   waits for the first delivery's transaction, finds its row and answers with the stored reply,
   writing nothing;
3. record the payment and the invoice's new totals and status, publish, commit.
On PostgreSQL steps 2 and 3 are one statement (data-modifying CTEs: the payment and the invoice update
happen only when the callback row was inserted), so a paying callback costs BEGIN, the lock, that
statement, the outbox row and COMMIT. Statements are built once with bind parameters (compiled once,
prepared once per connection).

On PostgreSQL, VNPay and MoMo callbacks first take the compare-and-set fast path of ADR 0201
(``adapters/pgsettle.py``: one read, one statement, raw asyncpg); what it cannot settle comes here.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from opentelemetry import propagate
from sqlalchemy import TextClause, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from hospital.billing.adapters import pgsettle
from hospital.billing.adapters.pgsettle import LeanPool, asyncpg_dsn
from hospital.billing.adapters.tables import (
    invoices,
    payments,
    provider_callbacks,
    refund_items,
    rejected_callbacks,
    shifts,
)
from hospital.billing.app.common import derive_status
from hospital.billing.app.invoices import invoice_summary
from hospital.billing.config import BillingSettings
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
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.billing.v1 import events_pb2

log = logging.getLogger(__name__)
DESK_METHODS = ("cash", "card")
REFUND_METHODS = ("cash", "bank_transfer")
SETTLED = ("paid", "refunded")
# Outcomes of a confirmed gateway payment that the bill does not take: the money is given back (refund_items).
NOT_NEEDED = ("already_settled", "unknown_invoice")
_PAYMENT_RECEIVED = events_pb2.PaymentReceived.DESCRIPTOR.full_name


@dataclass(frozen=True)
class Settlement:
    outcome: str
    reply_code: str
    replay: bool = False
    payment_id: str | None = None
    invoice_status: str | None = None


def _received_event(
    pid: str, inv: Any, amount: int, method: str, provider: str, txn: str, status: str, at: Any
) -> events_pb2.PaymentReceived:
    msg = events_pb2.PaymentReceived(
        payment_id=pid,
        invoice_id=inv["id"],
        invoice_number=inv["number"],
        amount=amount,
        method=method,
        provider=provider,
        provider_txn_id=txn,
        invoice_status=status,
    )
    msg.received_at.FromDatetime(at)
    return msg


def _refund_item_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "provider": r["provider"],
        "provider_txn_id": r["provider_txn_id"],
        "callback_id": r["callback_id"],
        "invoice_id": r["invoice_id"],
        "invoice_number": r["invoice_number"],
        "payment_id": r["payment_id"],
        "amount": r["amount"],
        "reason": r["reason"],
        "on_invoice": bool(r["on_invoice"]),
        "status": r["status"],
        "created_at": r["created_at"].isoformat(),
        "resolved_by": r["resolved_by"],
        "resolved_at": r["resolved_at"].isoformat() if r["resolved_at"] else None,
        "refund_reference": r["refund_reference"],
        "note": r["note"],
    }


def _over_paid(inv: Any, paid: int, amount: int) -> int:
    """How much of ``amount`` (just added, making ``paid``) the issued bill does not need."""
    if inv["issued_at"] is None:  # an open invoice takes deposits: its total is not known yet
        return 0
    return max(0, min(amount, paid - inv["patient_amount"]))


def _storable(value: str) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8)."""
    return value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _jsonable(raw: Any) -> Any:
    return json.loads(json.dumps(dict(raw), default=str, ensure_ascii=False))


# ---------------------------------------------------------------------------------- statements
# Built once with bind parameters, so SQLAlchemy compiles each once and asyncpg prepares each once per
# connection. The ON CONFLICT statements are text: SQLAlchemy never caches its dialect ``insert()``
# constructs (``inherit_cache = False``), which recompiled them on every callback.
_CB_COLS = [c.name for c in provider_callbacks.c]
_PAY_COLS = [c.name for c in payments.c]
_STORED_REPLY = select(
    provider_callbacks.c.outcome, provider_callbacks.c.reply_code, provider_callbacks.c.payment_id
).where(
    provider_callbacks.c.provider == bindparam("provider"),
    provider_callbacks.c.provider_txn_id == bindparam("txn"),
)
_LOCK_INVOICE = (
    select(
        invoices.c.id,
        invoices.c.number,
        invoices.c.status,
        invoices.c.patient_amount,
        invoices.c.paid_amount,
        invoices.c.refunded_amount,
        invoices.c.issued_at,
        invoices.c.voided_at,
    )
    .where(invoices.c.number == bindparam("number"))
    .with_for_update()
)
_SET_PAID = (
    update(invoices)
    .where(invoices.c.id == bindparam("inv_id"))
    .values(paid_amount=bindparam("inv_paid"), status=bindparam("inv_status"))
)
_INSERT_PAYMENT = insert(payments)


def _typed(stmt: TextClause, table: Any, prefix: str) -> TextClause:
    """Give the JSON and timestamp parameters their column types (serialisation, UTC handling)."""
    return stmt.bindparams(
        *[
            bindparam(f"{prefix}{c.name}", type_=c.type)
            for c in table.c
            if c.name in ("raw", "occurred_at", "received_at")
        ]
    )


_CB_VALUES = ", ".join(f":cb_{c}" for c in _CB_COLS)
# Both dialects (SQLite ≥ 3.35 has RETURNING): a duplicate returns no row.
_INSERT_CALLBACK = _typed(
    text(
        f"INSERT INTO provider_callbacks ({', '.join(_CB_COLS)}) VALUES ({_CB_VALUES}) "
        "ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING id"
    ),
    provider_callbacks,
    "cb_",
)
# PostgreSQL, one round trip: insert the callback; only if it was new, update the invoice and insert the
# payment (data-modifying CTEs). Returns the payment id, or no row for a duplicate.
_PAY_CASTS = {"amount": "BIGINT", "received_at": "TIMESTAMPTZ"}
_SETTLE_PAID_PG = _typed(
    _typed(
        text(
            f"WITH cb AS (INSERT INTO provider_callbacks ({', '.join(_CB_COLS)}) VALUES ({_CB_VALUES}) "
            "ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING id), "
            "upd AS (UPDATE invoices SET paid_amount = :inv_paid, status = :inv_status "
            "WHERE id = :inv_id AND EXISTS (SELECT 1 FROM cb) RETURNING id) "
            f"INSERT INTO payments ({', '.join(_PAY_COLS)}) SELECT "
            + ", ".join(f"CAST(:p_{c} AS {_PAY_CASTS.get(c, 'VARCHAR')})" for c in _PAY_COLS)
            + " FROM upd RETURNING id"
        ),
        provider_callbacks,
        "cb_",
    ),
    payments,
    "p_",
)


def gateway_decision(p: GatewayPayment, inv: Any) -> tuple[VnpRspCode, str]:
    """The reply code and outcome of an authentic gateway callback against the invoice as it is."""
    if inv is None or inv["status"] == "void":
        code = VnpRspCode.ORDER_NOT_FOUND
    else:
        settled = inv["status"] in SETTLED
        due = inv["patient_amount"] if settled else inv["patient_amount"] - inv["paid_amount"]
        code = vnpay_rsp_code(p, order_amount_vnd=due if due > 0 else -1, order_already_settled=settled)
    outcome = {
        VnpRspCode.ORDER_NOT_FOUND: "unknown_invoice",
        VnpRspCode.INVALID_AMOUNT: "amount_mismatch",
        VnpRspCode.ALREADY_CONFIRMED: "already_settled",
    }.get(code, "paid" if p.paid else "failed")
    return code, outcome


class PaymentService:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.fast: LeanPool | None = None
        if not rt.db.is_sqlite and rt.settings.callback_pool_size > 0:
            self.fast = LeanPool(asyncpg_dsn(rt.settings.database_url), rt.settings.callback_pool_size)
        self._source = rt.settings.service
        self.fast_settled = self.fast_fallbacks = 0  # counters (tests, diagnostics)

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()

    async def _settle_gateway_fast(self, p: GatewayPayment) -> Settlement | None:
        """PostgreSQL, two round trips and no explicit transaction (ADR 0201): read the stored outcome and
        the invoice; decide; write the decision in one statement that only applies if the invoice is
        still as read. None: not settled here (the locking path decides)."""
        assert self.fast is not None
        provider, txn = p.provider.value, p.provider_txn_id
        async with self.fast.connection() as conn:
            row = await conn.fetchrow(pgsettle.READ, provider, txn, p.order_id)
            if row["outcome"] is not None:
                return Settlement(
                    row["outcome"], row["reply_code"], replay=True, payment_id=row["payment_id"]
                )
            inv = (
                None
                if row["inv_id"] is None
                else {
                    "id": row["inv_id"],
                    "number": row["number"],
                    "status": row["status"],
                    "patient_amount": row["patient_amount"],
                    "paid_amount": row["paid_amount"],
                    "refunded_amount": row["refunded_amount"],
                    "issued_at": row["issued_at"],
                    "voided_at": row["voided_at"],
                }
            )
            code, outcome = gateway_decision(p, inv)
            if p.paid and outcome in NOT_NEEDED:  # rare: the locking path records the refund work item
                self.fast_fallbacks += 1
                return None
            now = utcnow()
            raw = json.dumps(dict(p.raw), default=str, ensure_ascii=False)
            description = p.description[:500]
            if outcome != "paid":
                if inv is None:
                    done = await conn.fetchval(
                        pgsettle.RECORD_WITHOUT_INVOICE,
                        new_id(),
                        provider,
                        txn,
                        p.order_id,
                        None,
                        p.amount_vnd,
                        outcome,
                        code.value,
                        description,
                        None,
                        p.paid_at,
                        raw,
                        now,
                    )
                else:
                    done = await conn.fetchval(
                        pgsettle.RECORD_WITH_INVOICE,
                        new_id(),
                        provider,
                        txn,
                        p.order_id,
                        inv["id"],
                        p.amount_vnd,
                        outcome,
                        code.value,
                        description,
                        None,
                        p.paid_at,
                        raw,
                        now,
                        inv["status"],
                        inv["paid_amount"],
                        inv["patient_amount"],
                        inv["refunded_amount"],
                    )
                if done is None:
                    self.fast_fallbacks += 1
                    return None
                log.warning("%s callback %s for %s: %s", provider, txn, p.order_id, outcome)
                self.fast_settled += 1
                return Settlement(
                    outcome, code.value, invoice_status=inv["status"] if inv is not None else None
                )
            assert inv is not None
            pid = new_id()
            kind = "deposit" if inv["issued_at"] is None else "payment"
            paid = inv["paid_amount"] + p.amount_vnd
            status = derive_status(inv, paid=paid)
            event = _received_event(pid, inv, p.amount_vnd, provider, provider, txn, status, now)
            eid = new_id()
            headers: dict[str, str] = {}
            propagate.inject(headers)
            headers.update(
                {
                    "Hospital-Event-Id": eid,
                    "Hospital-Event-Type": _PAYMENT_RECEIVED,
                    "Hospital-Event-Source": self._source,
                    "Hospital-Event-Time": now.isoformat(),
                }
            )
            try:
                settled = await conn.fetchval(
                    pgsettle.SETTLE_PAID,
                    inv["id"],
                    paid,
                    status,
                    inv["status"],
                    inv["paid_amount"],
                    inv["patient_amount"],
                    inv["refunded_amount"],
                    new_id(),
                    provider,
                    txn,
                    p.order_id,
                    p.amount_vnd,
                    code.value,
                    pid,
                    description,
                    p.paid_at,
                    raw,
                    now,
                    kind,
                    provider,
                    f"provider:{provider}",
                    eid,
                    "billing.payment.received",
                    _PAYMENT_RECEIVED,
                    event.SerializeToString(),
                    json.dumps(headers),
                )
            except asyncpg.DivisionByZeroError:  # the callback row appeared meanwhile: rolled back whole
                settled = 0
            if not settled:
                self.fast_fallbacks += 1
                return None
        self.fast_settled += 1
        if self.rt.relay is not None:
            self.rt.relay.notify()
        return Settlement(outcome, code.value, payment_id=pid, invoice_status=status)

    # ------------------------------------------------------------------------------ shared steps
    async def _apply(self, s: Any, inv: Any, amount: int) -> tuple[str, str, int]:
        """Add ``amount`` to the invoice; returns (payment kind, new status, new paid amount)."""
        kind = "deposit" if inv["issued_at"] is None else "payment"
        paid = inv["paid_amount"] + amount
        status = derive_status(inv, paid=paid)
        await s.execute(
            update(invoices).where(invoices.c.id == inv["id"]).values(paid_amount=paid, status=status)
        )
        return kind, status, paid

    async def stored_reply(self, provider: str, txn: str) -> Settlement | None:
        """The stored answer to a callback recorded before (a retry, a replay), by one indexed read on
        the unique ``(provider, provider_txn_id)``; None for a callback not seen (or not committed) yet.
        On PostgreSQL the read runs in autocommit (no BEGIN/ROLLBACK round trips, no lock)."""
        db = self.rt.db
        params = {"provider": provider, "txn": txn}
        if db.is_sqlite:  # the chassis' BEGIN IMMEDIATE runs on autocommit connections too
            async with db.session() as s:
                row = (await s.execute(_STORED_REPLY, params)).first()
        else:
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (await conn.execute(_STORED_REPLY, params)).first()
        if row is None:
            return None
        return Settlement(row.outcome, row.reply_code, replay=True, payment_id=row.payment_id)

    async def _replay(self, provider: str, txn: str) -> Settlement:
        """After losing the insert race: the first delivery's transaction has committed its row."""
        found = await self.stored_reply(provider, txn)
        if found is None:
            raise RuntimeError(f"{provider} callback {txn} conflicted but is not stored")
        return found

    async def _settle(
        self,
        uow: UnitOfWork,
        *,
        provider: str,
        txn: str,
        number: str | None,
        inv: Any,
        invoice_id: str | None,
        amount: int,
        outcome: str,
        reply: str,
        description: str,
        bank_reference: str | None,
        occurred_at: Any,
        raw: Any,
        method: str,
        confirmed: bool = True,
    ) -> tuple[str | None, str | None] | None:
        """Record the callback (``invoice_id`` on its row) and, when its outcome is ``paid``, the payment on
        ``inv``, the invoice's new totals and the ``billing.payment.received`` event, in the caller's
        transaction (the invoice is locked). Returns (payment id, new invoice status), (None, None) for
        an outcome that pays nothing, or None when the callback was recorded before (a duplicate): the
        caller rolls back and answers from the stored row. A ``confirmed`` payment the bill does not need
        (``NOT_NEEDED``, or the part above the balance) leaves a refund work item."""
        s = uow.session
        now = utcnow()
        pid = new_id() if outcome == "paid" else None
        cb = {
            "id": new_id(),
            "provider": provider,
            "provider_txn_id": txn,
            "invoice_number": number,
            "invoice_id": invoice_id,
            "amount": amount,
            "outcome": outcome,
            "reply_code": reply,
            "payment_id": pid,
            "description": description[:500],
            "bank_reference": bank_reference,
            "occurred_at": occurred_at,
            "raw": _jsonable(raw),
            "received_at": now,
            "resolved_by": None,
        }
        if pid is None:
            if (await s.execute(_INSERT_CALLBACK, {f"cb_{k}": v for k, v in cb.items()})).first() is None:
                return None
            if confirmed and outcome in NOT_NEEDED:
                await self._refund_item(
                    s,
                    provider=provider,
                    txn=txn,
                    callback_id=cb["id"],
                    inv=inv,
                    number=number,
                    payment_id=None,
                    amount=amount,
                    reason=outcome,
                    on_invoice=False,
                )
            return None, None
        kind = "deposit" if inv["issued_at"] is None else "payment"
        paid = inv["paid_amount"] + amount
        status = derive_status(inv, paid=paid)
        pay = {
            "id": pid,
            "invoice_id": inv["id"],
            "kind": kind,
            "amount": amount,
            "method": method,
            "provider": provider,
            "provider_txn_id": txn,
            "bank_reference": bank_reference,
            "shift_id": None,
            "refund_of": None,
            "reason": None,
            "received_by": f"provider:{provider}",
            "received_at": now,
            "request_id": None,
        }
        if not self.rt.db.is_sqlite:  # PostgreSQL: one statement
            params = {
                **{f"cb_{k}": v for k, v in cb.items()},
                **{f"p_{k}": v for k, v in pay.items()},
                "inv_id": inv["id"],
                "inv_paid": paid,
                "inv_status": status,
            }
            if (await s.execute(_SETTLE_PAID_PG, params)).first() is None:
                return None
        else:
            if (await s.execute(_INSERT_CALLBACK, {f"cb_{k}": v for k, v in cb.items()})).first() is None:
                return None
            await s.execute(_SET_PAID, {"inv_id": inv["id"], "inv_paid": paid, "inv_status": status})
            await s.execute(_INSERT_PAYMENT, pay)
        over = _over_paid(inv, paid, amount)
        if over:
            await self._refund_item(
                s,
                provider=provider,
                txn=txn,
                callback_id=cb["id"],
                inv=inv,
                number=number,
                payment_id=pid,
                amount=over,
                reason="over_payment",
                on_invoice=True,
            )
        uow.publish(
            "billing.payment.received", _received_event(pid, inv, amount, method, provider, txn, status, now)
        )
        return pid, status

    async def _refund_item(
        self,
        s: Any,
        *,
        provider: str,
        txn: str,
        callback_id: str | None,
        inv: Any,
        number: str | None,
        payment_id: str | None,
        amount: int,
        reason: str,
        on_invoice: bool,
    ) -> None:
        """Record money the bill does not need as a work item for a cashier (in the caller's transaction,
        after the callback's row: a duplicate never gets here)."""
        await s.execute(
            refund_items.insert().values(
                id=new_id(),
                provider=provider,
                provider_txn_id=txn,
                callback_id=callback_id,
                invoice_id=inv["id"] if inv is not None else None,
                invoice_number=inv["number"] if inv is not None else number,
                payment_id=payment_id,
                amount=amount,
                reason=reason,
                on_invoice=on_invoice,
                status="open",
                created_at=utcnow(),
            )
        )
        log.warning("%s %s for %s: %s VND to give back (%s)", provider, txn, number, amount, reason)

    async def reject(self, provider: str, reason: str, client: str, raw: Any) -> None:
        """A forged, stale or malformed call: logged and kept, never applied."""
        log.warning("rejected %s callback from %s: %s", provider, client, reason)
        text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
        async with self.rt.db.session() as s, s.begin():
            await s.execute(
                rejected_callbacks.insert().values(
                    id=new_id(),
                    provider=provider,
                    reason=_storable(reason[:500]),
                    client=_storable(client[:100]),
                    raw=_storable(text[:20000]),
                    received_at=utcnow(),
                )
            )

    # ------------------------------------------------------------------------------ gateways
    async def settle_gateway(self, p: GatewayPayment) -> Settlement:
        """VNPay / MoMo: the order id is the invoice number; the amount must equal what is due. On
        PostgreSQL the compare-and-set fast path (ADR 0201) settles it in one statement; whatever it
        cannot settle (the invoice changed under it, a duplicate in flight) takes the locking path."""
        if self.fast is not None:
            done = await self._settle_gateway_fast(p)
            if done is not None:
                return done
        return await self.settle_gateway_locked(p)

    async def settle_gateway_locked(self, p: GatewayPayment) -> Settlement:
        """The locking path (ADR 0200): stored reply, else lock the invoice, decide, record, commit."""
        provider = p.provider.value
        stored = await self.stored_reply(provider, p.provider_txn_id)
        if stored is not None:
            return stored
        async with self.rt.uow() as uow:
            s = uow.session
            inv = (await s.execute(_LOCK_INVOICE, {"number": p.order_id})).mappings().first()
            code, outcome = gateway_decision(p, inv)
            done = await self._settle(
                uow,
                provider=provider,
                txn=p.provider_txn_id,
                number=p.order_id,
                inv=inv,
                invoice_id=inv["id"] if inv is not None else None,
                amount=p.amount_vnd,
                outcome=outcome,
                reply=code.value,
                description=p.description,
                bank_reference=None,
                occurred_at=p.paid_at,
                raw=p.raw,
                method=provider,
                confirmed=p.paid,
            )
            if done is None:
                await s.rollback()
                return await self._replay(provider, p.provider_txn_id)
            pid, status = done
            if pid is None:
                status = inv["status"] if inv is not None else None
            if outcome != "paid":
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
        stored = await self.stored_reply(provider, t.provider_txn_id)
        if stored is not None:
            return stored
        try:
            number = find_invoice_code(t.description)
        except AmbiguousInvoiceCode:
            number = None
        async with self.rt.uow() as uow:
            s = uow.session
            inv = None
            if number is not None and t.incoming:
                inv = (await s.execute(_LOCK_INVOICE, {"number": number})).mappings().first()
            if not t.incoming:
                outcome = "outgoing"
            elif inv is None or inv["status"] == "void":
                outcome = "unmatched"
            else:
                outcome = "paid"
            done = await self._settle(
                uow,
                provider=provider,
                txn=t.provider_txn_id,
                number=number,
                inv=inv,
                invoice_id=inv["id"] if outcome == "paid" else None,
                amount=t.amount_vnd,
                outcome=outcome,
                reply="ok",
                description=t.description,
                bank_reference=t.bank_reference or None,
                occurred_at=t.occurred_at,
                raw=t.raw,
                method="bank_transfer",
            )
            if done is None:
                await s.rollback()
                return await self._replay(provider, t.provider_txn_id)
            pid, status = done
            if pid is None:
                log.info("%s transfer %s queued for a cashier: %s", provider, t.provider_txn_id, outcome)
            await uow.commit()
        return Settlement(outcome, "ok", payment_id=pid, invoice_status=status)

    async def _pay_transfer(
        self,
        uow: UnitOfWork,
        inv: Any,
        pid: str,
        amount: int,
        provider: str,
        txn: str,
        bank_reference: str | None,
        received_by: str | None = None,
        callback_id: str | None = None,
    ) -> str:
        now = utcnow()
        kind, status, paid = await self._apply(uow.session, inv, amount)
        over = _over_paid(inv, paid, amount)
        if over:
            await self._refund_item(
                uow.session,
                provider=provider,
                txn=txn,
                callback_id=callback_id,
                inv=inv,
                number=inv["number"],
                payment_id=pid,
                amount=over,
                reason="over_payment",
                on_invoice=True,
            )
        await uow.session.execute(
            payments.insert().values(
                id=pid,
                invoice_id=inv["id"],
                kind=kind,
                amount=amount,
                method="bank_transfer",
                provider=provider,
                provider_txn_id=txn,
                bank_reference=bank_reference or None,
                shift_id=None,
                refund_of=None,
                reason=None,
                received_by=received_by or f"provider:{provider}",
                received_at=now,
                request_id=None,
            )
        )
        uow.publish(
            "billing.payment.received",
            _received_event(pid, inv, amount, "bank_transfer", provider, txn, status, now),
        )
        return status

    async def unmatched(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (
                (
                    await s.execute(
                        select(provider_callbacks)
                        .where(provider_callbacks.c.outcome.in_(("unmatched", "outgoing", "amount_mismatch")))
                        .order_by(provider_callbacks.c.received_at)
                    )
                )
                .mappings()
                .all()
            )
        return [
            {
                "id": r["id"],
                "provider": r["provider"],
                "provider_txn_id": r["provider_txn_id"],
                "outcome": r["outcome"],
                "amount": r["amount"],
                "description": r["description"],
                "invoice_number": r["invoice_number"],
                "bank_reference": r["bank_reference"],
                "received_at": r["received_at"].isoformat(),
            }
            for r in rows
        ]

    async def match(self, callback_id: str, invoice_id: str, caller: Caller) -> dict[str, Any]:
        """A cashier assigns an unmatched incoming transfer to an invoice."""
        async with self.rt.uow() as uow:
            s = uow.session
            inv = (
                (await s.execute(select(invoices).where(invoices.c.id == invoice_id).with_for_update()))
                .mappings()
                .first()
            )
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}", field="invoice_id")
            if inv["status"] == "void":
                raise Conflict("invoice.void", "the invoice is void")
            cb = (
                (
                    await s.execute(
                        select(provider_callbacks)
                        .where(provider_callbacks.c.id == callback_id)
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if cb is None:
                raise NotFound("transfer.not_found", f"no queued transfer {callback_id}")
            if cb["outcome"] != "unmatched":
                raise Conflict(
                    "transfer.not_unmatched",
                    f"transfer is {cb['outcome']}: only unmatched incoming transfers can be assigned",
                )
            pid = new_id()
            status = await self._pay_transfer(
                uow,
                inv,
                pid,
                cb["amount"],
                cb["provider"],
                cb["provider_txn_id"],
                cb["bank_reference"],
                received_by=caller.subject,
                callback_id=callback_id,
            )
            await s.execute(
                update(provider_callbacks)
                .where(provider_callbacks.c.id == callback_id)
                .values(outcome="matched", payment_id=pid, invoice_id=invoice_id, resolved_by=caller.subject)
            )
            uow.audit(
                caller.audit(
                    "transfer.match",
                    "Invoice",
                    invoice_id,
                    inv["patient_id"],
                    callback_id=callback_id,
                    amount=cb["amount"],
                )
            )
            await uow.commit()
        return {"payment_id": pid, "invoice_id": invoice_id, "invoice_status": status}

    async def resolve_mismatch(
        self, callback_id: str, action: str, reason: str, caller: Caller, refund_reference: str | None = None
    ) -> dict[str, Any]:
        """A cashier settles a gateway callback kept as ``amount_mismatch`` (the money moved, but not the
        amount due): ``accept`` records it as a payment of the amount received (a partial payment, or an
        over-payment left as a negative balance to refund); ``refund`` records that the money goes back to
        the payer through the provider (nothing is put on the invoice). Each callback is resolved once."""
        if action not in ("accept", "refund"):
            raise Invalid("callback.action", "action must be accept or refund", field="action")
        if not reason.strip():
            raise Invalid("callback.reason", "resolving a callback needs a reason", field="reason")
        async with self.rt.uow() as uow:
            s = uow.session
            cb = (
                (await s.execute(select(provider_callbacks).where(provider_callbacks.c.id == callback_id)))
                .mappings()
                .first()
            )
            if cb is None:
                raise NotFound("callback.not_found", f"no callback {callback_id}")
            inv = None
            if cb["invoice_id"]:  # lock order as for callbacks: the invoice, then the callback
                inv = (
                    (
                        await s.execute(
                            select(invoices).where(invoices.c.id == cb["invoice_id"]).with_for_update()
                        )
                    )
                    .mappings()
                    .first()
                )
            cb = (
                (
                    await s.execute(
                        select(provider_callbacks)
                        .where(provider_callbacks.c.id == callback_id)
                        .with_for_update()
                    )
                )
                .mappings()
                .one()
            )
            if cb["outcome"] != "amount_mismatch":
                raise Conflict(
                    "callback.not_mismatch",
                    f"callback is {cb['outcome']}: only amount_mismatch callbacks are resolved here",
                )
            pid = status = None
            if action == "accept":
                if inv is None or inv["status"] in ("void", "refunded"):
                    raise Conflict(
                        "invoice.not_payable",
                        "the callback's invoice is missing, void or refunded: refund the money instead",
                    )
                now = utcnow()
                pid = new_id()
                kind, status, paid = await self._apply(s, inv, cb["amount"])
                over = _over_paid(inv, paid, cb["amount"])
                if over:
                    await self._refund_item(
                        s,
                        provider=cb["provider"],
                        txn=cb["provider_txn_id"],
                        callback_id=callback_id,
                        inv=inv,
                        number=inv["number"],
                        payment_id=pid,
                        amount=over,
                        reason="over_payment",
                        on_invoice=True,
                    )
                await s.execute(
                    payments.insert().values(
                        id=pid,
                        invoice_id=inv["id"],
                        kind=kind,
                        amount=cb["amount"],
                        method=cb["provider"],
                        provider=cb["provider"],
                        provider_txn_id=cb["provider_txn_id"],
                        bank_reference=None,
                        shift_id=None,
                        refund_of=None,
                        reason=reason[:500],
                        received_by=caller.subject,
                        received_at=now,
                        request_id=None,
                    )
                )
                uow.publish(
                    "billing.payment.received",
                    _received_event(
                        pid,
                        inv,
                        cb["amount"],
                        cb["provider"],
                        cb["provider"],
                        cb["provider_txn_id"],
                        status,
                        now,
                    ),
                )
            await s.execute(
                update(provider_callbacks)
                .where(provider_callbacks.c.id == callback_id)
                .values(
                    outcome="accepted" if action == "accept" else "returned",
                    payment_id=pid,
                    resolved_by=caller.subject,
                    bank_reference=(refund_reference or cb["bank_reference"] or None),
                )
            )
            uow.audit(
                caller.audit(
                    f"callback.{action}",
                    "Invoice",
                    cb["invoice_id"],
                    inv["patient_id"] if inv is not None else None,
                    callback_id=callback_id,
                    amount=cb["amount"],
                    provider=cb["provider"],
                    reason=reason,
                    refund_reference=refund_reference,
                )
            )
            await uow.commit()
        return {
            "callback_id": callback_id,
            "outcome": "accepted" if action == "accept" else "returned",
            "payment_id": pid,
            "invoice_id": cb["invoice_id"],
            "invoice_status": status,
            "amount": cb["amount"],
        }

    # ------------------------------------------------------------------------------ refund work items
    async def refund_items(self, status: str | None = "open", limit: int = 200) -> list[dict[str, Any]]:
        """Money payers sent that their bills do not need, oldest first: a second confirmed payment of a
        paid invoice, a payment for a void or unknown invoice, the part of a transfer above the balance."""
        q = select(refund_items).order_by(refund_items.c.created_at, refund_items.c.id).limit(limit)
        if status is not None:
            q = q.where(refund_items.c.status == status)
        async with self.rt.db.session() as s:
            rows = (await s.execute(q)).mappings().all()
        return [_refund_item_dict(r) for r in rows]

    async def resolve_refund_item(
        self, item_id: str, refund_reference: str | None, note: str, caller: Caller
    ) -> dict[str, Any]:
        """A cashier records that the money went back to the payer (``refund_reference``: the provider's
        or the bank's reference). Money that is on the invoice (``on_invoice``: its balance is negative by
        the amount) is taken off it as a refund in the same transaction. Resolving an item already
        resolved returns it unchanged."""
        async with self.rt.uow() as uow:
            s = uow.session
            item = (
                (await s.execute(select(refund_items).where(refund_items.c.id == item_id))).mappings().first()
            )
            if item is None:
                raise NotFound("refund_item.not_found", f"no refund work item {item_id}")
            inv = None
            if item["invoice_id"]:  # lock order as for callbacks: the invoice, then the item
                inv = (
                    (
                        await s.execute(
                            select(invoices).where(invoices.c.id == item["invoice_id"]).with_for_update()
                        )
                    )
                    .mappings()
                    .first()
                )
            item = (
                (await s.execute(select(refund_items).where(refund_items.c.id == item_id).with_for_update()))
                .mappings()
                .one()
            )
            if item["status"] != "open":
                return _refund_item_dict(item)
            now = utcnow()
            if item["on_invoice"] and inv is not None:
                amount = item["amount"]
                if amount > inv["paid_amount"]:
                    raise Conflict(
                        "refund.exceeds_paid",
                        f"{amount} is more than the {inv['paid_amount']} received on {inv['number']} now",
                    )
                paid, refunded = inv["paid_amount"] - amount, inv["refunded_amount"] + amount
                status = derive_status(inv, paid=paid, refunded=refunded)
                method = "bank_transfer" if item["provider"] in ("sepay", "casso") else item["provider"]
                rid = new_id()
                await s.execute(
                    update(invoices)
                    .where(invoices.c.id == inv["id"])
                    .values(paid_amount=paid, refunded_amount=refunded, status=status)
                )
                await s.execute(
                    payments.insert().values(
                        id=rid,
                        invoice_id=inv["id"],
                        kind="refund",
                        amount=amount,
                        method=method,
                        provider=None,
                        provider_txn_id=None,
                        bank_reference=refund_reference,
                        shift_id=None,
                        refund_of=item["payment_id"],
                        reason=note[:500],
                        received_by=caller.subject,
                        received_at=now,
                        request_id=None,
                    )
                )
                uow.publish(
                    "billing.payment.refunded",
                    events_pb2.PaymentRefunded(
                        refund_id=rid,
                        invoice_id=inv["id"],
                        amount=amount,
                        method=method,
                        reason=note,
                        invoice_status=status,
                        by=caller.actor(),
                    ),
                )
            values = {
                "status": "refunded",
                "resolved_by": caller.subject,
                "resolved_at": now,
                "refund_reference": refund_reference,
                "note": note[:500],
            }
            await s.execute(update(refund_items).where(refund_items.c.id == item_id).values(**values))
            uow.audit(
                caller.audit(
                    "refund_item.resolve",
                    "Invoice",
                    item["invoice_id"],
                    inv["patient_id"] if inv is not None else None,
                    refund_item_id=item_id,
                    amount=item["amount"],
                    provider=item["provider"],
                    refund_reference=refund_reference,
                )
            )
            await uow.commit()
        return _refund_item_dict({**item, **values})

    # ------------------------------------------------------------------------------ desk
    async def _open_shift(self, s: Any, caller: Caller) -> str:
        sid = (
            await s.execute(
                select(shifts.c.id).where(shifts.c.cashier == caller.subject, shifts.c.status == "open")
            )
        ).scalar()
        if sid is None:
            raise Conflict(
                "shift.not_open", "open a cashier shift before taking or giving back money at the desk"
            )
        return str(sid)

    async def pay_at_desk(
        self, invoice_id: str, amount: int, method: str, caller: Caller, request_id: str | None = None
    ) -> dict[str, Any]:
        if method not in DESK_METHODS:
            raise Invalid(
                "payment.method", f"method must be one of {', '.join(DESK_METHODS)}", field="method"
            )
        if amount <= 0:
            raise Invalid("payment.amount", "amount must be a positive number of VND", field="amount")
        async with self.rt.uow() as uow:
            s = uow.session
            if request_id:
                prior = (
                    (await s.execute(select(payments).where(payments.c.request_id == request_id)))
                    .mappings()
                    .first()
                )
                if prior is not None:
                    if prior["invoice_id"] != invoice_id or prior["amount"] != amount:
                        raise Conflict(
                            "payment.request_id_reused",
                            "request_id was used for another payment",
                            field="request_id",
                        )
                    inv = (
                        (await s.execute(select(invoices).where(invoices.c.id == invoice_id)))
                        .mappings()
                        .one()
                    )
                    return {"payment_id": prior["id"], "kind": prior["kind"], "invoice": invoice_summary(inv)}
            shift_id = await self._open_shift(s, caller)
            inv = (
                (await s.execute(select(invoices).where(invoices.c.id == invoice_id).with_for_update()))
                .mappings()
                .first()
            )
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
            if inv["status"] in ("void", "refunded"):
                raise Conflict(f"invoice.{inv['status']}", f"invoice {inv['number']} is {inv['status']}")
            balance = inv["patient_amount"] - inv["paid_amount"]
            if inv["issued_at"] is not None and amount > balance:
                raise Invalid(
                    "payment.exceeds_balance",
                    f"amount {amount} is more than the balance {balance}; give change instead",
                    field="amount",
                )
            pid, now = new_id(), utcnow()
            kind, status, paid = await self._apply(s, inv, amount)
            await s.execute(
                payments.insert().values(
                    id=pid,
                    invoice_id=invoice_id,
                    kind=kind,
                    amount=amount,
                    method=method,
                    provider=None,
                    provider_txn_id=None,
                    bank_reference=None,
                    shift_id=shift_id,
                    refund_of=None,
                    reason=None,
                    received_by=caller.subject,
                    received_at=now,
                    request_id=request_id,
                )
            )
            uow.publish(
                "billing.payment.received", _received_event(pid, inv, amount, method, "", "", status, now)
            )
            uow.audit(
                caller.audit(
                    f"payment.{kind}", "Invoice", invoice_id, inv["patient_id"], amount=amount, method=method
                )
            )
            await uow.commit()
        return {
            "payment_id": pid,
            "kind": kind,
            "invoice": invoice_summary({**inv, "paid_amount": paid, "status": status}),
        }

    async def refund(
        self,
        invoice_id: str,
        amount: int,
        method: str,
        reason: str,
        caller: Caller,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Give money received on the invoice back: at most what it holds (``paid_amount``), a cash refund
        from the cashier's open shift, above ``refund_cashier_limit`` only by an admin. ``request_id``
        makes it idempotent: the same key returns the first refund (ADR 0209)."""
        if method not in REFUND_METHODS:
            raise Invalid(
                "refund.method", f"method must be one of {', '.join(REFUND_METHODS)}", field="method"
            )
        if amount <= 0:
            raise Invalid("refund.amount", "amount must be a positive number of VND", field="amount")
        if not reason.strip():
            raise Invalid("refund.reason", "a refund needs a reason", field="reason")
        limit = getattr(self.rt.settings, "refund_cashier_limit", 0)
        if limit and amount > limit and "admin" not in caller.principal.roles:
            raise Conflict(
                "refund.over_cashier_limit",
                f"a refund above {limit} VND needs an admin",
                field="amount",
            )
        try:
            return await self._refund(invoice_id, amount, method, reason, caller, request_id)
        except IntegrityError:
            if not request_id:
                raise
            # the same request sent twice at once: the other one stored it; answer as it did
            return await self._refund(invoice_id, amount, method, reason, caller, request_id)

    async def _refund(
        self,
        invoice_id: str,
        amount: int,
        method: str,
        reason: str,
        caller: Caller,
        request_id: str | None,
    ) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            if request_id:
                prior = (
                    (await s.execute(select(payments).where(payments.c.request_id == request_id)))
                    .mappings()
                    .first()
                )
                if prior is not None:
                    same = prior["invoice_id"] == invoice_id and prior["amount"] == amount
                    if not same or prior["kind"] != "refund":
                        raise Conflict(
                            "refund.request_id_reused",
                            "request_id was used for another payment or refund",
                            field="request_id",
                        )
                    inv = (
                        (await s.execute(select(invoices).where(invoices.c.id == invoice_id)))
                        .mappings()
                        .one()
                    )
                    return {"refund_id": prior["id"], "invoice": invoice_summary(inv)}
            shift_id = await self._open_shift(s, caller) if method == "cash" else None
            inv = (
                (await s.execute(select(invoices).where(invoices.c.id == invoice_id).with_for_update()))
                .mappings()
                .first()
            )
            if inv is None:
                raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
            if amount > inv["paid_amount"]:
                raise Conflict(
                    "refund.exceeds_paid",
                    f"refund {amount} is more than the {inv['paid_amount']} received on this invoice",
                    field="amount",
                )
            paid, refunded = inv["paid_amount"] - amount, inv["refunded_amount"] + amount
            status = derive_status(inv, paid=paid, refunded=refunded)
            rid = new_id()
            await s.execute(
                update(invoices)
                .where(invoices.c.id == invoice_id)
                .values(paid_amount=paid, refunded_amount=refunded, status=status)
            )
            await s.execute(
                payments.insert().values(
                    id=rid,
                    invoice_id=invoice_id,
                    kind="refund",
                    amount=amount,
                    method=method,
                    provider=None,
                    provider_txn_id=None,
                    bank_reference=None,
                    shift_id=shift_id,
                    refund_of=None,
                    reason=reason[:500],
                    received_by=caller.subject,
                    received_at=utcnow(),
                    request_id=request_id,
                )
            )
            uow.publish(
                "billing.payment.refunded",
                events_pb2.PaymentRefunded(
                    refund_id=rid,
                    invoice_id=invoice_id,
                    amount=amount,
                    method=method,
                    reason=reason,
                    invoice_status=status,
                    by=caller.actor(),
                ),
            )
            uow.audit(
                caller.audit(
                    "payment.refund",
                    "Invoice",
                    invoice_id,
                    inv["patient_id"],
                    amount=amount,
                    method=method,
                    reason=reason,
                )
            )
            await uow.commit()
        return {
            "refund_id": rid,
            "invoice": invoice_summary(
                {**inv, "paid_amount": paid, "refunded_amount": refunded, "status": status}
            ),
        }

    # ------------------------------------------------------------------------------ VietQR
    async def vietqr(self, invoice_id: str, amount: int | None = None) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            inv = (await s.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().first()
        if inv is None:
            raise NotFound("invoice.not_found", f"no invoice {invoice_id}")
        if inv["status"] in ("void", "refunded", "paid"):
            raise Conflict(
                f"invoice.{inv['status']}", f"invoice {inv['number']} is {inv['status']}: nothing to pay"
            )
        balance = inv["patient_amount"] - inv["paid_amount"]
        if amount is None:
            amount = balance
        if amount <= 0:
            raise Conflict(
                "invoice.nothing_due", "nothing is due on this invoice; give an amount for a deposit"
            )
        if inv["issued_at"] is not None and amount > balance:
            raise Invalid(
                "vietqr.amount", f"amount {amount} is more than the balance {balance}", field="amount"
            )
        st = self.settings
        purpose = f"TT {inv['number']}"
        try:
            payload = build_vietqr(
                st.bank_bin,
                st.bank_account,
                amount,
                purpose=purpose,
                bill_number=inv["number"],
            )
        except VietQRError as exc:
            raise Invalid("vietqr.invalid", str(exc)) from exc
        return {
            "invoice_id": invoice_id,
            "number": inv["number"],
            "amount": amount,
            "purpose": purpose,
            "bank_bin": st.bank_bin,
            "account": st.bank_account,
            "payload": payload,
            "png_base64": base64.b64encode(vietqr_png(payload)).decode("ascii"),
        }


__all__ = ["IntegrityError", "PaymentService", "Settlement"]
