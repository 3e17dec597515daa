"""Helpers shared by the billing use cases: the caller, quantities, local dates, the invoice's split
and status, and publishing from inside a consumer's transaction."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import charges, invoices, visit_cards, visits
from hospital.billing.config import BillingSettings
from hospital.billing.domain.insurance import (
    DEFAULT_RULES,
    LAW51_FROM,
    ChargeLine,
    InsuranceCard,
    InsuranceError,
    Route,
    RuleSchedule,
    VisitSplit,
    facility_rules,
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


@dataclass(frozen=True)
class SplitRules:
    """What the BHYT split takes from the settings: a fixed base salary (0: the one in force each day),
    the facility's dated rules under Law 51/2024 and the day they start. A visit is judged by the rules
    of the day it started: one opened before ``law51_from`` keeps the earlier rules to its end."""

    base_salary: int = 0
    law51_from: date = LAW51_FROM
    law51: RuleSchedule = field(default_factory=facility_rules)
    facility_code: str = ""  # MA_CSKCB: a card registered elsewhere, without a referral, is self-referred

    def schedule(self, visit_day: date) -> RuleSchedule:
        return self.law51 if visit_day >= self.law51_from else DEFAULT_RULES


def split_rules(settings: BillingSettings) -> SplitRules:
    """The rules of the settings (BASE_SALARY_VND, LAW51_FROM, FACILITY_LEVEL, FACILITY_FORMER_TIER)."""
    return SplitRules(
        base_salary=settings.base_salary_vnd,
        law51_from=settings.law51_from,
        law51=facility_rules(settings.facility_level, settings.facility_former_tier, settings.law51_from),
        facility_code=settings.facility_code,
    )


def route_of(visit: Any, facility_code: str) -> Route:
    """How the patient came: an emergency or a referral as admissions recorded it; an insured visit on
    a card registered at another facility (5 digits of MA_DKBD known and not this facility's) without a
    referral paper is self-referred (trái tuyến); otherwise the registered route."""
    route = ROUTE_BY_KIND.get(visit["kind"], Route.REGISTERED)
    registered = re.sub(r"[^0-9]", "", visit["card_facility"] or "")
    if route is Route.REGISTERED and facility_code and len(registered) == 5 and registered != facility_code:
        return Route.SELF_REFERRED
    return route


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


def cards_of(visit: Any, later: list[Any]) -> tuple[InsuranceCard, ...]:
    """The cards of a visit: the one it opened with, then those recorded during it (``visit_cards``
    rows, a card issued during the stay), in the order they started."""
    first = card_of(visit)
    if first is None:
        return ()
    cards = [first]
    for row in later:
        try:
            cards.append(InsuranceCard(row["card_number"], row["valid_from"], row["valid_to"]))
        except InsuranceError as exc:
            log.warning("visit %s: card %s not usable: %s", visit["id"], row["card_number"], exc)
    return tuple(cards)


async def later_cards(session: AsyncSession, visit_id: str) -> list[Any]:
    """The cards recorded during a visit after the one it opened with, in the order they started."""
    return list(
        (
            await session.execute(
                select(visit_cards)
                .where(visit_cards.c.visit_id == visit_id)
                .order_by(visit_cards.c.valid_from, visit_cards.c.recorded_at)
            )
        ).mappings()
    )


def split_for(
    visit: Any, rows: list[Any], rules: SplitRules, *, places: int = 0, later: list[Any] | None = None
) -> VisitSplit:
    """The BHYT split of the visit's posted charges (reversed pairs are left out), each line under the
    card valid on its day (``later``: the cards recorded during the visit)."""
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
        cards_of(visit, later or []),
        route=route_of(visit, rules.facility_code),
        inpatient=visit["inpatient"],
        base_salary=rules.base_salary or None,  # 0: the dated rules
        rules=rules.schedule(local_date(visit["opened_at"])),
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


async def refresh_invoice(session: AsyncSession, invoice_id: str, rules: SplitRules) -> dict[str, Any]:
    """Recompute an invoice's totals from its posted charges and its status; returns the new row."""
    inv = (await session.execute(select(invoices).where(invoices.c.id == invoice_id))).mappings().one()
    visit = (await session.execute(select(visits).where(visits.c.id == inv["visit_id"]))).mappings().one()
    rows = await posted_charges(session, inv["visit_id"])
    split = split_for(visit, rows, rules, later=await later_cards(session, inv["visit_id"]))
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
