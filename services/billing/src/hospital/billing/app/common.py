"""Helpers shared by the billing use cases: the caller, quantities, local dates, the invoice's split
and status, and publishing from inside a consumer's transaction."""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import charges, invoices, visits
from hospital.billing.domain.insurance import (
    ChargeLine,
    InsuranceCard,
    InsuranceError,
    Route,
    VisitSplit,
    split_visit,
)
from hospital.chassis.audit import AuditEntry
from hospital.chassis.errors import Invalid
from hospital.chassis.uow import UnitOfWork

log = logging.getLogger(__name__)
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ROUTE_BY_KIND = {"insured": Route.REGISTERED, "referral": Route.REFERRED, "emergency": Route.EMERGENCY}


def local_date(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


def parse_quantity(text: str | None, field: str = "quantity") -> int:
    """Decimal text (at most 3 decimals, > 0, ≤ 10,000) → thousandths."""
    if text is None or str(text).strip() == "":
        return 1000
    try:
        q = Decimal(str(text).strip().replace(",", "."))
    except InvalidOperation:
        raise Invalid("charge.quantity", f"quantity must be a number, got {text!r}", field=field) from None
    if not q.is_finite() or q <= 0 or q > 10_000:
        raise Invalid("charge.quantity", f"quantity must be > 0 and ≤ 10000, got {text}", field=field)
    if q != q.quantize(Decimal("0.001")):
        raise Invalid("charge.quantity", "quantity allows at most 3 decimals (XML130 SO_LUONG)", field=field)
    return int(q * 1000)


def quantity_of(milli: int) -> int | Decimal:
    return milli // 1000 if milli % 1000 == 0 else Decimal(milli) / 1000


def quantity_text(milli: int) -> str:
    return str(quantity_of(milli))


def card_of(visit: Any) -> InsuranceCard | None:
    if not visit["card_number"] or visit["kind"] not in ROUTE_BY_KIND:
        return None
    try:
        return InsuranceCard(
            visit["card_number"],
            visit["card_valid_from"] or date(1900, 1, 1),
            visit["card_valid_to"] or date(9999, 12, 31),
        )
    except InsuranceError as exc:
        log.warning("visit %s: card %s not usable: %s", visit["id"], visit["card_number"], exc)
        return None


def split_for(visit: Any, rows: list[Any], base_salary: int, *, places: int = 0) -> VisitSplit:
    """The BHYT split of the visit's posted charges (reversed pairs are left out)."""
    lines = [
        ChargeLine(
            service_date=local_date(r["service_at"]),
            covered=r["covered"],
            hospital_unit_price=r["hospital_unit_price"],
            insurance_unit_price=r["insurance_unit_price"],
            quantity=quantity_of(r["qty_milli"]),
            payment_ratio=r["payment_ratio"],
            service_ratio=r["service_ratio"],
            high_cost=r["high_cost"],
        )
        for r in rows
    ]
    return split_visit(
        lines,
        card_of(visit),
        route=ROUTE_BY_KIND.get(visit["kind"], Route.REGISTERED),
        inpatient=visit["inpatient"],
        base_salary=base_salary or None,  # 0: the dated rules (domain.insurance.DEFAULT_RULES)
        places=places,  # 0: whole VND (invoices); 2: the decision's rounding (claims, ADR 0204)
    )


def derive_status(
    inv: Any, *, patient_amount: int | None = None, paid: int | None = None, refunded: int | None = None
) -> str:
    patient_amount = inv["patient_amount"] if patient_amount is None else patient_amount
    paid = inv["paid_amount"] if paid is None else paid
    refunded = inv["refunded_amount"] if refunded is None else refunded
    if inv["voided_at"] is not None:
        return "void"
    if refunded > 0 and paid <= 0:
        return "refunded"
    if inv["issued_at"] is None:
        return "open"
    if paid >= patient_amount:
        return "paid"
    return "partly_paid" if paid > 0 else "issued"


async def posted_charges(session: AsyncSession, visit_id: str) -> list[Any]:
    return list(
        (
            await session.execute(
                select(charges)
                .where(charges.c.visit_id == visit_id, charges.c.status == "posted")
                .order_by(charges.c.service_at, charges.c.created_at, charges.c.id)
            )
        ).mappings()
    )


async def refresh_invoice(session: AsyncSession, invoice_id: str, base_salary: int) -> dict[str, Any]:
    """Recompute an invoice's totals from its posted charges and its status; returns the new row."""
    inv = (await session.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().one()
    visit = (await session.execute(select(visits).where(visits.c.id == inv["visit_id"]))).mappings().one()
    split = split_for(visit, await posted_charges(session, inv["visit_id"]), base_salary)
    patient = split.t_bncct + split.t_bntt
    values = {"total_amount": split.t_tongchi_bv, "insurance_amount": split.t_bhtt, "patient_amount": patient}
    values["status"] = derive_status(inv, patient_amount=patient)
    await session.execute(update(invoices).where(invoices.c.id == invoice_id).values(**values))
    return {**inv, **values}


class SessionPublisher:
    """Outbox rows and audit entries written with a given session (a consumer's transaction): the
    chassis :class:`UnitOfWork` joining a session it did not open."""

    def __init__(self, session: AsyncSession, source: str) -> None:
        self._uow = UnitOfWork.joining(session, source=source)

    def publish(self, subject: str, message: Message) -> str:
        return self._uow.publish(subject, message)

    def audit(self, entry: AuditEntry) -> None:
        self._uow.audit(entry)

    async def flush(self) -> None:
        await self._uow.flush_pending()
