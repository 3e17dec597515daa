"""Charge capture: from admissions events (examination fee, bed-days) and from the cash desk.

Every charge carries a unique ``source_key`` (the producing event's id, with a suffix when one event
yields several charges, or the cashier's request id): the chassis inbox already applies an event once,
and the key makes a second application impossible at the database level too. A cancellation adds a
reversal (negative quantity) and marks the original ``reversed``; nothing is deleted.

Adding a source (lab orders, imaging orders, pharmacy dispensing) is one handler that maps its event
to ``post_charge(session, visit_id=..., price_code=..., source=..., source_key=event.id, ...)``.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import charges, invoices, price_items, stays, visits
from hospital.billing.app.common import (
    LOCAL_TZ,
    SessionPublisher,
    SplitRules,
    later_cards,
    local_date,
    parse_quantity,
    refresh_invoice,
    split_rules,
)
from hospital.billing.app.mapping import charge_dict, charge_proto
from hospital.billing.config import BillingSettings
from hospital.billing.domain.pricing import (
    EXAM_CODE,
    MIN_CHARGED_STAY,
    BedLine,
    bed_price_code,
    dated_lines,
    segment_lines,
)
from hospital.billing.domain.xml130.codelists import ethnic_code, occupation_code
from hospital.chassis.app import Runtime
from hospital.chassis.bus import Event
from hospital.chassis.caller import Caller
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.uow import Publisher
from hospital.contracts.admissions.v1 import admissions_pb2 as adm_pb
from hospital.contracts.admissions.v1 import events_pb2 as adm_events  # noqa: F401 - registers the types
from hospital.contracts.billing.v1 import events_pb2

log = logging.getLogger(__name__)
SOURCE = "billing"
KIND = {
    adm_pb.VISIT_KIND_INSURED: "insured",
    adm_pb.VISIT_KIND_FEE_PAYING: "fee_paying",
    adm_pb.VISIT_KIND_EMERGENCY: "emergency",
    adm_pb.VISIT_KIND_REFERRAL: "referral",
}
SEX = {adm_pb.SEX_MALE: 1, adm_pb.SEX_FEMALE: 2}


def upsert(session: AsyncSession) -> Any:
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _ts(value: Any) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=__import__("datetime").timezone.utc)


def _event_time(event: Event) -> datetime:
    try:
        return datetime.fromisoformat(event.time)
    except (TypeError, ValueError):
        return utcnow()


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


FIRST_DAY_NOTES = {
    "bed-first": "ngày chuyển khoa, nửa ngày theo giường giá cao nhất",
    "bed-first-low": "ngày chuyển khoa, nửa ngày theo giường giá thấp nhất",
}


def _noon(day: date) -> datetime:
    """Midday of a Vietnam calendar day: when a bed-day line that ends on that day is dated."""
    return datetime.combine(day, time(12), LOCAL_TZ)


def _bed_note(line: BedLine, ward: str, start: date, end: date) -> str:
    if not line.first_day:
        return f"{ward} {start}→{end}"
    if line.days == 1:
        return f"{ward} {start}: ngày chuyển khoa, tính theo giường giá cao nhất"
    return f"{ward} {start}: {FIRST_DAY_NOTES[line.key]}"


async def price_at(session: AsyncSession, code: str, day: date) -> Any:
    return (
        (
            await session.execute(
                select(price_items)
                .where(
                    price_items.c.code == code,
                    price_items.c.effective_from <= day,
                    (price_items.c.effective_to.is_(None)) | (price_items.c.effective_to >= day),
                )
                .order_by(price_items.c.effective_from.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )


async def create_invoice(session: AsyncSession, visit_id: str, patient_id: str) -> str:
    existing = (await session.execute(select(invoices.c.id).where(invoices.c.visit_id == visit_id))).scalar()
    if existing:
        return str(existing)
    number = f"HD{await next_value(session, 'invoice'):06d}"
    iid = new_id()
    await session.execute(
        invoices.insert().values(
            id=iid,
            number=number,
            visit_id=visit_id,
            patient_id=patient_id,
            status="open",
            total_amount=0,
            insurance_amount=0,
            patient_amount=0,
            paid_amount=0,
            refunded_amount=0,
            created_at=utcnow(),
            issued_at=None,
            voided_at=None,
        )
    )
    return iid


async def ensure_visit(
    session: AsyncSession,
    visit_id: str,
    patient_id: str,
    *,
    opened_at: datetime,
    department_code: str = "",
    inpatient: bool = False,
) -> None:
    """A visit billing has not heard of (an admission without an outpatient visit, or events older than
    billing's subscription): a minimal fee-paying record, completed later if visit.opened arrives."""
    row = (await session.execute(select(visits.c.id).where(visits.c.id == visit_id))).first()
    if row is None:
        await session.execute(
            visits.insert().values(
                id=visit_id,
                visit_code=f"NT{visit_id[-12:].replace('-', '')}",
                patient_id=patient_id,
                patient_code="",
                patient_name="",
                sex=3,
                cccd="",
                kind="fee_paying",
                department_code=department_code,
                inpatient=inpatient,
                status="open",
                opened_at=opened_at,
            )
        )
        await create_invoice(session, visit_id, patient_id)
    elif inpatient:
        await session.execute(update(visits).where(visits.c.id == visit_id).values(inpatient=True))


async def post_charge(
    session: AsyncSession,
    pub: Publisher,
    *,
    visit_id: str,
    price_code: str,
    qty_milli: int,
    service_at: datetime,
    source: str,
    source_key: str,
    source_event_id: str | None,
    posted_by: str,
    rules: SplitRules,
    department_code: str | None = None,
    bed_code: str | None = None,
    ordered_by: str | None = None,
    note: str | None = None,
    order_ref: str | None = None,
) -> dict[str, Any] | None:
    """Post one charge; ``None`` when ``source_key`` was posted before (nothing written). Raises (before
    writing anything) for an unknown visit, a void invoice or a code with no price in force."""
    visit = (await session.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
    if visit is None:
        raise NotFound("visit.not_found", f"billing knows no visit {visit_id}", field="visit_id")
    inv = (
        (await session.execute(select(invoices).where(invoices.c.visit_id == visit_id).with_for_update()))
        .mappings()
        .one()
    )
    if inv["status"] == "void":
        raise Conflict("invoice.void", f"invoice {inv['number']} is void: no charge can be added")
    price = await price_at(session, price_code, local_date(service_at))
    if price is None:
        raise Invalid(
            "charge.price_code",
            f"no price {price_code!r} in force on {local_date(service_at)}",
            field="price_code",
        )
    values = {
        "id": new_id(),
        "visit_id": visit_id,
        "invoice_id": inv["id"],
        "patient_id": visit["patient_id"],
        "price_code": price_code,
        "name": price["name"],
        "category": price["category"],
        "unit": price["unit"],
        "qty_milli": qty_milli,
        "hospital_unit_price": price["hospital_price"],
        "insurance_unit_price": price["insurance_price"],
        "covered": price["covered"],
        "payment_ratio": price["payment_ratio"],
        "high_cost": price["high_cost"],
        "service_ratio": 100,
        "bhyt_code": price["bhyt_code"],
        "xml_group": price["xml_group"],
        "department_code": department_code or visit["department_code"] or "KKB",
        "bed_code": bed_code,
        "ordered_by": ordered_by,
        "service_at": service_at,
        "source": source,
        "source_key": source_key,
        "source_event_id": source_event_id,
        "reverses_charge_id": None,
        "status": "posted",
        "note": note,
        "posted_by": posted_by,
        "created_at": utcnow(),
        "order_ref": order_ref,
    }
    stmt = upsert(session)(charges).values(**values).on_conflict_do_nothing(index_elements=["source_key"])
    if (await session.execute(stmt.returning(charges.c.id))).first() is None:
        return None
    await refresh_invoice(session, inv["id"], rules)
    pub.publish(
        "billing.charge.posted", events_pb2.ChargePosted(charge=charge_proto(values), invoice_id=inv["id"])
    )
    return values


async def reverse_charge(
    session: AsyncSession,
    pub: Publisher,
    orig: Any,
    reason: str,
    posted_by: str,
    rules: SplitRules,
    *,
    source: str = "cancellation",
    source_event_id: str | None = None,
) -> dict[str, Any]:
    """Add the reversal of a posted charge (a negative copy; the original is marked ``reversed``), refresh
    the invoice and publish ``billing.charge.posted``. Raises Conflict on a void invoice."""
    inv = (
        (await session.execute(select(invoices).where(invoices.c.id == orig["invoice_id"]).with_for_update()))
        .mappings()
        .one()
    )
    if inv["status"] == "void":
        raise Conflict("invoice.void", "the invoice is void")
    values = {
        **orig,
        "id": new_id(),
        "qty_milli": -orig["qty_milli"],
        "source": source,
        "source_key": f"cancel:{orig['id']}",
        "source_event_id": source_event_id,
        "reverses_charge_id": orig["id"],
        "status": "reversal",
        "note": reason[:500],
        "posted_by": posted_by,
        "created_at": utcnow(),
    }
    await session.execute(charges.insert().values(**values))
    await session.execute(update(charges).where(charges.c.id == orig["id"]).values(status="reversed"))
    await refresh_invoice(session, inv["id"], rules)
    pub.publish(
        "billing.charge.posted", events_pb2.ChargePosted(charge=charge_proto(values), invoice_id=inv["id"])
    )
    return values


class ChargeService:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt
        self.rules = split_rules(rt.settings)

    # ---------------------------------------------------------------------------- cash desk
    async def manual(
        self,
        visit_id: str,
        price_code: str,
        quantity: str | None,
        caller: Caller,
        *,
        note: str | None = None,
        request_id: str | None = None,
        ordered_by: str | None = None,
    ) -> dict[str, Any]:
        qty = parse_quantity(quantity)
        key = f"manual:{request_id}" if request_id else f"manual:{new_id()}"
        async with self.rt.uow() as uow:
            pub = SessionPublisher(uow.session, SOURCE)
            row = await post_charge(
                uow.session,
                pub,
                visit_id=visit_id,
                price_code=price_code,
                qty_milli=qty,
                service_at=utcnow(),
                source="manual",
                source_key=key,
                source_event_id=request_id,
                posted_by=caller.subject,
                rules=self.rules,
                ordered_by=ordered_by,
                note=note,
            )
            if row is None:  # a retried request: answer with the charge it created
                found = (
                    (await uow.session.execute(select(charges).where(charges.c.source_key == key)))
                    .mappings()
                    .one()
                )
                if (
                    found["visit_id"] != visit_id
                    or found["price_code"] != price_code
                    or found["qty_milli"] != qty
                ):
                    raise Conflict(
                        "charge.request_id_reused",
                        "request_id was used for a different charge",
                        field="request_id",
                    )
                return charge_dict(found)
            await pub.flush()
            uow.audit(
                caller.audit(
                    "charge.post",
                    "Charge",
                    row["id"],
                    row["patient_id"],
                    visit_id=visit_id,
                    price_code=price_code,
                    quantity=quantity or "1",
                )
            )
            await uow.commit()
        return charge_dict(row)

    async def cancel(self, charge_id: str, reason: str, caller: Caller) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("charge.reason", "a cancellation needs a reason", field="reason")
        async with self.rt.uow() as uow:
            s = uow.session
            orig = (
                (await s.execute(select(charges).where(charges.c.id == charge_id).with_for_update()))
                .mappings()
                .first()
            )
            if orig is None:
                raise NotFound("charge.not_found", f"no charge {charge_id}")
            if orig["status"] != "posted":
                raise Conflict(
                    f"charge.{orig['status']}", f"charge is {orig['status']}: it cannot be cancelled"
                )
            values = await reverse_charge(s, uow, orig, reason, caller.subject, self.rules)
            uow.audit(caller.audit("charge.cancel", "Charge", charge_id, orig["patient_id"], reason=reason))
            await uow.commit()
        return charge_dict(values)

    # ---------------------------------------------------------------------------- admissions events
    async def on_visit_opened(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        v, p = msg.visit, msg.patient
        card = next((c for c in p.insurance_cards if c.number == v.insurance_card_number), None)
        kind = KIND.get(v.kind, "fee_paying")
        opened_at = _ts(v.opened_at) or _event_time(event)
        values = {
            "visit_code": v.visit_code,
            "patient_id": v.patient_id,
            "patient_code": p.patient_code,
            "patient_name": p.full_name,
            "birth_year": p.birth_date.year or None,
            "birth_month": p.birth_date.month or None,
            "birth_day": p.birth_date.day or None,
            "sex": SEX.get(p.sex, 3),
            "cccd": p.cccd,
            "kind": kind,
            "card_number": v.insurance_card_number or None,
            "card_valid_from": _date(card.valid_from) if card else None,
            "card_valid_to": _date(card.valid_to) if card else None,
            "card_facility": card.registered_facility if card else None,
            "card_five_year_date": _date(card.five_year_date) if card else None,
            "department_code": v.department_code,
            "opened_at": opened_at,
            "address": ", ".join(
                x for x in (p.address.line, p.address.ward, p.address.district, p.address.province) if x
            )
            or None,
            "province_code": p.address.province_code[-2:] or None,
            "phone": p.phone or None,
            "referral_code": v.referral_code or None,
            "ethnicity_code": ethnic_code(p.ethnicity) or None,
            "occupation_code": occupation_code(p.occupation) or None,
        }
        exists = (await session.execute(select(visits.c.id).where(visits.c.id == v.id))).first()
        if exists:
            await session.execute(update(visits).where(visits.c.id == v.id).values(**values))
        else:
            await session.execute(visits.insert().values(id=v.id, inpatient=False, status="open", **values))
        await create_invoice(session, v.id, v.patient_id)
        pub = SessionPublisher(session, SOURCE)
        await post_charge(
            session,
            pub,
            visit_id=v.id,
            price_code=EXAM_CODE,
            qty_milli=1000,
            service_at=opened_at,
            source="admissions.visit.opened",
            source_key=event.id,
            source_event_id=event.id,
            posted_by="service:admissions",
            rules=self.rules,
            department_code=v.department_code,
        )
        await pub.flush()

    async def on_visit_closed(self, session: AsyncSession, event: Event) -> None:
        v = event.message().visit
        await ensure_visit(
            session,
            v.id,
            v.patient_id,
            opened_at=_ts(v.opened_at) or _event_time(event),
            department_code=v.department_code,
        )
        await session.execute(
            update(visits)
            .where(visits.c.id == v.id)
            .values(status="closed", closed_at=_ts(v.closed_at) or _event_time(event))
        )

    async def on_admitted(self, session: AsyncSession, event: Event) -> None:
        a = event.message().admission
        visit_id = a.visit_id or a.id
        admitted_at = _ts(a.admitted_at) or _event_time(event)
        await ensure_visit(session, visit_id, a.patient_id, opened_at=admitted_at, inpatient=True)
        stmt = upsert(session)(stays).values(
            admission_id=a.id,
            visit_id=visit_id,
            ward_code=a.ward_code,
            bed_code=a.bed_code,
            admitted_at=admitted_at,
            segment_start=admitted_at,
            status="active",
        )
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["admission_id"]))

    async def _stay(self, session: AsyncSession, a: Any, event: Event, ward: str, bed: str) -> Any:
        stay = (await session.execute(select(stays).where(stays.c.admission_id == a.id))).mappings().first()
        if stay is None:  # admitted before billing subscribed: start from the admission itself
            await self.on_admitted(session, event)
            admitted_at = _ts(a.admitted_at) or _event_time(event)
            await session.execute(
                update(stays)
                .where(stays.c.admission_id == a.id)
                .values(ward_code=ward, bed_code=bed, segment_start=admitted_at)
            )
            stay = (await session.execute(select(stays).where(stays.c.admission_id == a.id))).mappings().one()
        return stay

    async def _charge_segment(
        self, session: AsyncSession, stay: Any, end: datetime, *, last: bool, event: Event
    ) -> None:
        """Post the segment's bed-days (``domain.pricing.segment_lines``): ``<event id>#bed`` for the days
        at the ward's class; a transfer day as ``<event id>#bed-first`` (half a day at the dearest class of
        that day) and ``<event id>#bed-first-low`` (half at the cheapest)."""
        start = local_date(stay["segment_start"])
        lines = segment_lines(
            start,
            local_date(end),
            bed_price_code(stay["ward_code"]),
            stay["day_class"],
            last_segment=last,
            day_low_class=stay["day_low_class"],
        )
        if not lines:
            return
        # a card issued during the stay: the segment's days before it and from it are separate lines
        changes = [c["valid_from"] for c in await later_cards(session, stay["visit_id"])]
        pub = SessionPublisher(session, SOURCE)
        for line, day in dated_lines(lines, start, local_date(end), last_segment=last, changes=changes):
            at = end if day is None else stay["segment_start"] if day == start else _noon(day)
            await post_charge(
                session,
                pub,
                visit_id=stay["visit_id"],
                price_code=line.price_code,
                qty_milli=int(line.days * 1000),
                service_at=at,
                source=event.subject,
                source_key=f"{event.id}#{line.key}",
                source_event_id=event.id,
                posted_by="service:admissions",
                rules=self.rules,
                department_code=stay["ward_code"],  # the ward is the department that treated (XML3 MA_KHOA)
                bed_code=stay["bed_code"],
                note=_bed_note(line, stay["ward_code"], start, local_date(end)),
            )
        await pub.flush()

    async def _class_range(self, session: AsyncSession, classes: list[str], day: date) -> tuple[str, str]:
        """The dearest and the cheapest of ``classes`` by hospital price on ``day`` (the earlier one on a
        tie; a class without a price in force is left out unless none has one)."""
        priced = []
        for order, code in enumerate(dict.fromkeys(classes)):
            item = await price_at(session, code, day)
            if item is not None:
                priced.append((item["hospital_price"], order, code))
        if not priced:
            return classes[0], classes[0]
        dear = min(priced, key=lambda p: (-p[0], p[1]))[2]
        cheap = min(priced, key=lambda p: (p[0], p[1]))[2]
        return dear, cheap

    async def on_transferred(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        a = msg.admission
        stay = await self._stay(
            session, a, event, msg.from_ward_code or a.ward_code, msg.from_bed_code or a.bed_code
        )
        if stay["status"] != "active":
            log.warning("transfer of discharged admission %s ignored", a.id)
            return
        at = _event_time(event)
        await self._charge_segment(session, stay, at, last=False, event=event)
        # the transfer day: half a day at the dearest, half at the cheapest class of the wards of that day
        left = bed_price_code(stay["ward_code"])
        new = bed_price_code(a.ward_code)
        same_day = local_date(stay["segment_start"]) == local_date(at)
        earlier = [c for c in (stay["day_class"], stay["day_low_class"]) if c] if same_day else []
        dear, cheap = await self._class_range(session, [*earlier, left, new], local_date(at))
        plain = dear == cheap == new
        await session.execute(
            update(stays)
            .where(stays.c.admission_id == a.id)
            .values(
                ward_code=a.ward_code,
                bed_code=a.bed_code,
                segment_start=at,
                day_class=None if plain else dear,
                day_low_class=None if plain else cheap,
            )
        )

    async def on_discharged(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        a = msg.admission
        stay = await self._stay(session, a, event, a.ward_code, a.bed_code)
        if stay["status"] != "active":
            return
        at = _ts(msg.discharged_at) or _event_time(event)
        if at - stay["admitted_at"] >= MIN_CHARGED_STAY:
            await self._charge_segment(session, stay, at, last=True, event=event)
        else:
            log.info(
                "stay %s lasted %s: under %s, no bed-day", a.id, at - stay["admitted_at"], MIN_CHARGED_STAY
            )
        await session.execute(update(stays).where(stays.c.admission_id == a.id).values(status="discharged"))
        await session.execute(
            update(visits)
            .where(visits.c.id == stay["visit_id"])
            .values(discharge_type=msg.discharge_type or None)
        )

    async def on_patient_merged(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        for table in (visits, invoices, charges):
            await session.execute(
                update(table).where(table.c.patient_id == msg.merged_id).values(patient_id=msg.survivor_id)
            )
