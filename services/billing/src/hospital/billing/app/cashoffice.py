"""Cash office: cashier shifts (open, close with totals by method and the counted-cash difference)
and the daily reconciliation of bank-feed payments against the bank's statement (CSV)."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from hospital.billing.adapters.tables import (
    payments,
    provider_callbacks,
    reconciliations,
    refund_items,
    shifts,
)
from hospital.billing.app.common import LOCAL_TZ, local_date
from hospital.billing.config import BillingSettings
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id

BANK_PROVIDERS = ("sepay", "casso")
# accepted header names (English or Vietnamese without diacritics)
COLUMNS = {
    "date": ("date", "ngay", "ngay_gd", "transaction_date"),
    "reference": ("reference", "so_tham_chieu", "ma_gd", "ref"),
    "amount": ("amount", "so_tien", "credit"),
    "description": ("description", "noi_dung", "content"),
}


def _shift_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "cashier": r["cashier"],
        "cashier_name": r["cashier_name"],
        "status": r["status"],
        "opened_at": r["opened_at"].isoformat(),
        "closed_at": r["closed_at"].isoformat() if r["closed_at"] else None,
        "opening_float": r["opening_float"],
        "counted_cash": r["counted_cash"],
        "totals": r["totals"],
    }


class CashOfficeService:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt

    async def open_shift(self, opening_float: int, caller: Caller) -> dict[str, Any]:
        if opening_float < 0:
            raise Invalid("shift.opening_float", "opening float cannot be negative", field="opening_float")
        values = {
            "id": new_id(),
            "cashier": caller.subject,
            "cashier_name": caller.principal.name,
            "opened_at": utcnow(),
            "closed_at": None,
            "opening_float": opening_float,
            "counted_cash": None,
            "status": "open",
            "totals": None,
        }
        try:
            async with self.rt.uow() as uow:
                await uow.session.execute(shifts.insert().values(**values))
                uow.audit(
                    caller.audit(
                        "shift.open", "CashierShift", values["id"], None, opening_float=opening_float
                    )
                )
                await uow.commit()
        except IntegrityError:
            raise Conflict("shift.already_open", "you already have an open shift; close it first") from None
        return _shift_dict(values)

    async def current(self, caller: Caller) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            row = (
                (
                    await s.execute(
                        select(shifts).where(shifts.c.cashier == caller.subject, shifts.c.status == "open")
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound("shift.not_open", "no open shift")
        return _shift_dict(row)

    async def close_shift(self, shift_id: str, counted_cash: int, caller: Caller) -> dict[str, Any]:
        if counted_cash < 0:
            raise Invalid("shift.counted_cash", "counted cash cannot be negative", field="counted_cash")
        async with self.rt.uow() as uow:
            s = uow.session
            row = (
                (await s.execute(select(shifts).where(shifts.c.id == shift_id).with_for_update()))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound("shift.not_found", f"no shift {shift_id}")
            if row["cashier"] != caller.subject and "admin" not in caller.principal.roles:
                raise Conflict("shift.not_yours", "only its cashier (or an admin) closes a shift")
            if row["status"] != "open":
                raise Conflict("shift.closed", "shift is already closed")
            pays = (
                await s.execute(
                    select(payments.c.kind, payments.c.method, payments.c.amount).where(
                        payments.c.shift_id == shift_id
                    )
                )
            ).all()
            by_method: dict[str, dict[str, int]] = {}
            for p in pays:
                m = by_method.setdefault(p.method, {"received": 0, "refunded": 0, "count": 0})
                m["refunded" if p.kind == "refund" else "received"] += p.amount
                m["count"] += 1
            cash = by_method.get("cash", {"received": 0, "refunded": 0})
            expected = row["opening_float"] + cash["received"] - cash["refunded"]
            totals = {
                "by_method": by_method,
                "expected_cash": expected,
                "counted_cash": counted_cash,
                "difference": counted_cash - expected,
            }
            await s.execute(
                update(shifts)
                .where(shifts.c.id == shift_id)
                .values(status="closed", closed_at=utcnow(), counted_cash=counted_cash, totals=totals)
            )
            uow.audit(caller.audit("shift.close", "CashierShift", shift_id, None, **totals))
            await uow.commit()
            row = (await s.execute(select(shifts).where(shifts.c.id == shift_id))).mappings().one()
        return _shift_dict(row)

    # ------------------------------------------------------------------------------ the day's money
    async def daily(self, day: date | None, caller: Caller) -> dict[str, Any]:
        """The day's money (hospital's local date): payments and refunds by method, the bank and gateway
        callbacks received that day with the invoices they went to, the shifts opened that day, and what
        still waits for a cashier: unmatched or mismatched transfers (any day) and money to give back."""
        day = day or local_date(utcnow())
        start = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
        end = start + timedelta(days=1)
        cb = provider_callbacks.c
        async with self.rt.db.session() as s:
            pays = (
                await s.execute(
                    select(payments.c.kind, payments.c.method, payments.c.amount).where(
                        payments.c.received_at >= start, payments.c.received_at < end
                    )
                )
            ).all()
            callbacks = (
                (
                    await s.execute(
                        select(provider_callbacks)
                        .where(cb.received_at >= start, cb.received_at < end, cb.outcome != "outgoing")
                        .order_by(cb.received_at)
                    )
                )
                .mappings()
                .all()
            )
            waiting = (
                (
                    await s.execute(
                        select(provider_callbacks)
                        .where(cb.outcome.in_(("unmatched", "amount_mismatch")))
                        .order_by(cb.received_at)
                        .limit(500)
                    )
                )
                .mappings()
                .all()
            )
            give_back = (
                (
                    await s.execute(
                        select(refund_items)
                        .where(refund_items.c.status == "open")
                        .order_by(refund_items.c.created_at)
                        .limit(500)
                    )
                )
                .mappings()
                .all()
            )
            day_shifts = (
                (
                    await s.execute(
                        select(shifts)
                        .where(shifts.c.opened_at >= start, shifts.c.opened_at < end)
                        .order_by(shifts.c.opened_at)
                    )
                )
                .mappings()
                .all()
            )
        by_method: dict[str, dict[str, int]] = {}
        for p in pays:
            m = by_method.setdefault(p.method, {"received": 0, "refunded": 0, "count": 0})
            m["refunded" if p.kind == "refund" else "received"] += p.amount
            m["count"] += 1
        async with self.rt.uow() as uow:
            uow.audit(
                caller.audit(
                    "reconciliation.daily_read",
                    "Reconciliation",
                    day.isoformat(),
                    None,
                    callbacks=len(callbacks),
                    unmatched=len(waiting),
                    refund_items=len(give_back),
                )
            )
            await uow.commit()
        return {
            "date": day.isoformat(),
            "by_method": by_method,
            "received_total": sum(m["received"] for m in by_method.values()),
            "refunded_total": sum(m["refunded"] for m in by_method.values()),
            "callbacks": [dict(r) for r in callbacks],
            "unmatched": [dict(r) for r in waiting],
            "refund_items": [dict(r) for r in give_back],
            "shifts": [_shift_dict(r) for r in day_shifts],
        }

    # ------------------------------------------------------------------------------ reconciliation
    @staticmethod
    def parse_statement(text: str) -> list[dict[str, Any]]:
        reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise Invalid("statement.empty", "the statement is empty", field="statement") from None
        idx: dict[str, int] = {}
        for key, names in COLUMNS.items():
            found = next((i for i, h in enumerate(header) if h in names), None)
            if found is None and key != "description":
                raise Invalid(
                    "statement.header",
                    f"statement header lacks a {key!r} column (one of {', '.join(names)})",
                    field="statement",
                )
            if found is not None:
                idx[key] = found
        out = []
        for n, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            try:
                amount = int(row[idx["amount"]].strip().replace(".", "").replace(",", ""))
                ref = row[idx["reference"]].strip()
                day = row[idx["date"]].strip()[:10]
                parsed = date.fromisoformat(day) if "-" in day else datetime.strptime(day, "%d/%m/%Y").date()
            except (ValueError, IndexError):
                raise Invalid(
                    "statement.row",
                    f"line {n}: needs date (YYYY-MM-DD or DD/MM/YYYY), reference and a whole VND amount",
                    field="statement",
                ) from None
            if not ref:
                raise Invalid("statement.row", f"line {n}: reference is empty", field="statement")
            out.append(
                {
                    "line": n,
                    "date": parsed.isoformat(),
                    "reference": ref,
                    "amount": amount,
                    "description": row[idx["description"]].strip() if "description" in idx else "",
                }
            )
        return out

    async def reconcile(self, day: date, statement_csv: str, caller: Caller) -> dict[str, Any]:
        lines = [
            ln
            for ln in self.parse_statement(statement_csv)
            if ln["amount"] > 0 and ln["date"] == day.isoformat()
        ]
        start = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
        end = start + timedelta(days=1)
        async with self.rt.db.session() as s:
            rows = (
                (
                    await s.execute(
                        select(provider_callbacks).where(
                            provider_callbacks.c.provider.in_(BANK_PROVIDERS),
                            provider_callbacks.c.outcome != "outgoing",
                            provider_callbacks.c.received_at >= start,
                            provider_callbacks.c.received_at < end,
                        )
                    )
                )
                .mappings()
                .all()
            )
        ours = {r["bank_reference"] or r["provider_txn_id"]: r for r in rows}
        matched, differs, missing_in_system = [], [], []
        seen = set()
        for ln in lines:
            r = ours.get(ln["reference"])
            if r is None:
                missing_in_system.append(ln)
                continue
            seen.add(ln["reference"])
            item = {
                "reference": ln["reference"],
                "statement_amount": ln["amount"],
                "recorded_amount": r["amount"],
                "invoice_number": r["invoice_number"],
                "outcome": r["outcome"],
            }
            (matched if r["amount"] == ln["amount"] else differs).append(item)
        missing_in_statement = [
            {
                "reference": k,
                "amount": r["amount"],
                "invoice_number": r["invoice_number"],
                "provider": r["provider"],
                "outcome": r["outcome"],
            }
            for k, r in ours.items()
            if k not in seen
        ]
        unmatched = [m for m in matched if m["outcome"] == "unmatched"]
        report = {
            "date": day.isoformat(),
            "statement": {"lines": len(lines), "total": sum(ln["amount"] for ln in lines)},
            "recorded": {"transfers": len(rows), "total": sum(r["amount"] for r in rows)},
            "matched": matched,
            "amount_differs": differs,
            "missing_in_system": missing_in_system,
            "missing_in_statement": missing_in_statement,
            "received_but_unassigned": unmatched,
            "balanced": not (differs or missing_in_system or missing_in_statement),
        }
        rid = new_id()
        async with self.rt.uow() as uow:
            await uow.session.execute(
                reconciliations.insert().values(
                    id=rid,
                    business_date=day,
                    statement_sha256=hashlib.sha256(statement_csv.encode()).hexdigest(),
                    report=report,
                    created_by=caller.subject,
                    created_at=utcnow(),
                )
            )
            uow.audit(
                caller.audit(
                    "reconciliation.run",
                    "Reconciliation",
                    rid,
                    None,
                    date=day.isoformat(),
                    balanced=report["balanced"],
                )
            )
            await uow.commit()
        return {"id": rid, **report}
