"""Charge capture from lab and imaging orders, and the cashier's queue of held lines.

Events (each applied once by the chassis inbox, and each charge unique by ``source_key`` as well):

| event | effect |
| --- | --- |
| ``lab.order.received`` | one charge per distinct price item of the ordered tests |
| | (``<event id>#<price code>``) |
| ``lab.order.cancelled`` | reversal of the order's posted charges; its held lines dismissed |
| ``imaging.order.scheduled`` | one charge for the requested procedure |
| ``imaging.order.cancelled`` | reversal of the order's posted charge; its held line dismissed |
| ``imaging.procedure.completed`` | DISCONTINUED: reversal as for a cancellation; COMPLETED: noted, or, |
| | after a DISCONTINUED one (a redo), the reversed item posted again once |

A line billing cannot price by itself (a code with no mapping, no visit to put it on, no price in force
on the day, a void invoice) is held in ``held_charges`` with its reason (``<event id>#code:<code>``),
never dropped; a cashier prices it (which posts the charge under the held line's key, so once) or
dismisses it. ``clinical_orders`` keeps each order's last state, so a cancellation that arrives before
its order stops the order from being charged, and an order event re-published under a new event id
does not charge twice.

An imaging order names its visit in ``visit_ref`` when the EMR gave it: the charge goes on that visit
(a visit billing has not heard of yet gets its record started, as for a lab order). An order without it
(older producers, or an orderer that did not know the visit) falls back to the patient's most recently
opened visit that is still open in billing, else it is held (``no_visit``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import charges, clinical_orders, code_map, held_charges, visits
from hospital.billing.app.charges import (
    ensure_visit,
    post_charge,
    reverse_charge,
    upsert,
)
from hospital.billing.app.common import SessionPublisher, parse_quantity, split_rules
from hospital.billing.app.mapping import charge_dict
from hospital.billing.config import BillingSettings
from hospital.billing.domain.orders import imaging_price_code, lab_lines
from hospital.chassis.app import Runtime
from hospital.chassis.bus import Event
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.imaging.v1 import events_pb2 as img_events  # noqa: F401 - registers the types
from hospital.contracts.lab.v1 import events_pb2 as lab_events  # noqa: F401 - registers the types

log = logging.getLogger(__name__)
SOURCE = "billing"
HOLD_REASONS = {
    "charge.price_code": "no_price",
    "invoice.void": "invoice_void",
    "visit.not_found": "no_visit",
}


def _ts(value: Any) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=__import__("datetime").timezone.utc)


def _event_time(event: Event) -> datetime:
    try:
        return datetime.fromisoformat(event.time)
    except (TypeError, ValueError):
        return utcnow()


async def mapping_of(session: AsyncSession, source: str) -> dict[str, str]:
    rows = await session.execute(
        select(code_map.c.code, code_map.c.price_code).where(code_map.c.source == source)
    )
    return {code.upper(): price for code, price in rows}


async def open_visit_of(session: AsyncSession, patient_id: str) -> str | None:
    """The patient's most recently opened visit still open in billing."""
    if not patient_id:
        return None
    return (
        await session.execute(
            select(visits.c.id)
            .where(visits.c.patient_id == patient_id, visits.c.status == "open")
            .order_by(visits.c.opened_at.desc())
            .limit(1)
        )
    ).scalar()


def visit_ref_of(value: str) -> str | None:
    """The visit an order names (canonical UUID form), or None when it names none or an unusable one."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        log.warning("visit_ref %r is not a visit id: ignored", value[:60])
        return None


def held_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "source": r["source"],
        "source_event_id": r["source_event_id"],
        "order_ref": r["order_ref"],
        "order_number": r["order_number"],
        "visit_id": r["visit_id"],
        "patient_id": r["patient_id"],
        "code": r["code"],
        "description": r["description"],
        "quantity": str(r["qty_milli"] // 1000 if r["qty_milli"] % 1000 == 0 else r["qty_milli"] / 1000),
        "ordered_by": r["ordered_by"],
        "service_at": r["service_at"].isoformat(),
        "reason": r["reason"],
        "status": r["status"],
        "charge_id": r["charge_id"],
        "resolved_by": r["resolved_by"],
        "resolved_at": r["resolved_at"].isoformat() if r["resolved_at"] else None,
        "note": r["note"],
    }


class OrderCharges:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt
        self.rules = split_rules(rt.settings)

    # ---------------------------------------------------------------------------- shared steps
    async def _claim_order(
        self,
        session: AsyncSession,
        ref: str,
        source: str,
        event: Event,
        *,
        number: str,
        visit_id: str | None,
        patient_id: str | None,
    ) -> bool:
        """Record the order as active and charged by ``event``; False when it must not be charged (it was
        cancelled or discontinued already, or another event charged it)."""
        row = (
            (
                await session.execute(
                    select(clinical_orders).where(clinical_orders.c.order_ref == ref).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            await session.execute(
                clinical_orders.insert().values(
                    order_ref=ref,
                    source=source,
                    order_number=number or None,
                    visit_id=visit_id,
                    patient_id=patient_id,
                    status="active",
                    charged_event_id=event.id,
                    updated_at=utcnow(),
                )
            )
            return True
        if row["status"] in ("cancelled", "discontinued"):
            log.info("order %s is %s: not charged", ref, row["status"])
            return False
        if row["charged_event_id"] not in (None, event.id):
            log.warning(
                "order %s already charged by event %s: event %s ignored",
                ref,
                row["charged_event_id"],
                event.id,
            )
            return False
        await session.execute(
            update(clinical_orders)
            .where(clinical_orders.c.order_ref == ref)
            .values(
                charged_event_id=event.id,
                visit_id=visit_id,
                patient_id=patient_id,
                order_number=number or None,
                updated_at=utcnow(),
            )
        )
        return True

    async def _hold(
        self,
        session: AsyncSession,
        event: Event,
        *,
        code: str,
        description: str,
        reason: str,
        ref: str,
        number: str,
        visit_id: str | None,
        patient_id: str | None,
        service_at: datetime,
        ordered_by: str | None,
    ) -> None:
        stmt = upsert(session)(held_charges).values(
            id=new_id(),
            source=event.subject,
            source_key=f"{event.id}#code:{code}",
            source_event_id=event.id,
            order_ref=ref,
            order_number=number or None,
            visit_id=visit_id,
            patient_id=patient_id or None,
            code=code[:64],
            description=description[:300],
            qty_milli=1000,
            ordered_by=ordered_by,
            service_at=service_at,
            reason=reason,
            status="held",
            charge_id=None,
            resolved_by=None,
            resolved_at=None,
            note=None,
            created_at=utcnow(),
        )
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["source_key"]))
        log.warning("%s %s: %s held for a cashier (%s)", event.subject, ref, code, reason)

    async def _charge(
        self,
        session: AsyncSession,
        pub: SessionPublisher,
        event: Event,
        *,
        price_code: str,
        codes: tuple[str, ...],
        description: str,
        ref: str,
        number: str,
        visit_id: str | None,
        patient_id: str | None,
        service_at: datetime,
        ordered_by: str | None,
        note: str,
    ) -> None:
        """Post one order line, or hold it when billing cannot (nothing half-written either way)."""
        if visit_id is None:
            reason = "no_visit"
        else:
            try:
                await post_charge(
                    session,
                    pub,
                    visit_id=visit_id,
                    price_code=price_code,
                    qty_milli=1000,
                    service_at=service_at,
                    source=event.subject,
                    source_key=f"{event.id}#{price_code}",
                    source_event_id=event.id,
                    posted_by=f"service:{event.subject.split('.')[0]}",
                    rules=self.rules,
                    ordered_by=ordered_by,
                    note=note[:500],
                    order_ref=ref,
                )
                return
            except DomainError as exc:  # raised before anything was written
                reason = HOLD_REASONS.get(exc.code, exc.code[:30])
        for code in codes:
            await self._hold(
                session,
                event,
                code=code,
                description=description,
                reason=reason,
                ref=ref,
                number=number,
                visit_id=visit_id,
                patient_id=patient_id,
                service_at=service_at,
                ordered_by=ordered_by,
            )

    async def _withdraw(
        self,
        session: AsyncSession,
        ref: str,
        source: str,
        status: str,
        event: Event,
        *,
        reason: str,
        number: str = "",
        visit_id: str | None = None,
        patient_id: str | None = None,
    ) -> None:
        """The order will not be performed: remember it, reverse its posted charges, dismiss its held
        lines."""
        stmt = upsert(session)(clinical_orders).values(
            order_ref=ref,
            source=source,
            order_number=number or None,
            visit_id=visit_id,
            patient_id=patient_id,
            status=status,
            charged_event_id=None,
            updated_at=utcnow(),
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["order_ref"], set_={"status": status, "updated_at": utcnow()}
            )
        )
        posted = (
            (
                await session.execute(
                    select(charges)
                    .where(charges.c.order_ref == ref, charges.c.status == "posted")
                    .order_by(charges.c.created_at)
                    .with_for_update()
                )
            )
            .mappings()
            .all()
        )
        pub = SessionPublisher(session, SOURCE)
        for orig in posted:
            try:
                await reverse_charge(
                    session,
                    pub,
                    orig,
                    reason,
                    f"service:{source}",
                    self.rules,
                    source=event.subject,
                    source_event_id=event.id,
                )
            except Conflict:
                log.warning("charge %s of %s is on a void invoice: not reversed", orig["id"], ref)
        await pub.flush()
        await session.execute(
            update(held_charges)
            .where(held_charges.c.order_ref == ref, held_charges.c.status == "held")
            .values(
                status="dismissed", resolved_by=f"service:{source}", resolved_at=utcnow(), note=reason[:500]
            )
        )

    # ---------------------------------------------------------------------------- lab
    async def on_lab_order_received(self, session: AsyncSession, event: Event) -> None:
        o = event.message().order
        ref, patient_id = f"lab:{o.id}", o.patient.id or None
        visit_id = o.visit_id or None
        ordered_at = _ts(o.ordered_at) or _event_time(event)
        if visit_id:  # lab events may overtake admissions.visit.opened: start the visit's record
            await ensure_visit(session, visit_id, o.patient.id, opened_at=ordered_at)
        if not await self._claim_order(
            session, ref, "lab", event, number=o.order_number, visit_id=visit_id, patient_id=patient_id
        ):
            return
        names = {i.test_code.upper(): i.test_name or i.test_code for i in o.items}
        lines = lab_lines(
            [i.test_code for i in o.items if i.status != "cancelled"], await mapping_of(session, "lab")
        )
        pub = SessionPublisher(session, SOURCE)
        common: dict[str, Any] = {
            "ref": ref,
            "number": o.order_number,
            "visit_id": visit_id,
            "patient_id": patient_id,
            "service_at": ordered_at,
            "ordered_by": o.ordering_doctor[:50] or None,
        }
        for line in lines.lines:
            await self._charge(
                session,
                pub,
                event,
                price_code=line.price_code,
                codes=line.codes,
                description=", ".join(names.get(c, c) for c in line.codes),
                note=f"XN {o.order_number}: {' '.join(line.codes)}",
                **common,
            )
        for code in lines.unknown:
            await self._hold(
                session, event, code=code, description=names.get(code, code), reason="unknown_code", **common
            )
        await pub.flush()

    async def on_lab_order_cancelled(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        o = msg.order
        await self._withdraw(
            session,
            f"lab:{o.id}",
            "lab",
            "cancelled",
            event,
            reason=f"Huỷ chỉ định xét nghiệm {o.order_number}: {msg.reason or o.cancel_reason}",
            number=o.order_number,
            visit_id=o.visit_id or None,
            patient_id=o.patient.id or None,
        )

    # ---------------------------------------------------------------------------- imaging
    async def on_imaging_order_scheduled(self, session: AsyncSession, event: Event) -> None:
        o = event.message().order
        ref, patient_id = f"imaging:{o.id}", o.patient.patient_ref or None
        visit_id = visit_ref_of(o.visit_ref)
        if visit_id:  # as for lab orders: the event may overtake admissions.visit.opened
            await ensure_visit(session, visit_id, o.patient.patient_ref, opened_at=_event_time(event))
        else:
            visit_id = await open_visit_of(session, o.patient.patient_ref)
        if not await self._claim_order(
            session,
            ref,
            "imaging",
            event,
            number=o.accession_number,
            visit_id=visit_id,
            patient_id=patient_id,
        ):
            return
        code = (o.requested_procedure_id or o.modality or "?").strip().upper()
        description = o.requested_procedure_description or code
        common: dict[str, Any] = {
            "ref": ref,
            "number": o.accession_number,
            "visit_id": visit_id,
            "patient_id": patient_id,
            "service_at": _ts(o.scheduled_start) or _event_time(event),
            "ordered_by": None,
        }  # referring_physician is a DICOM name, not MA_BAC_SI
        price = imaging_price_code(o.requested_procedure_id, o.modality, await mapping_of(session, "imaging"))
        if price is None:
            await self._hold(
                session, event, code=code, description=description, reason="unknown_code", **common
            )
            return
        pub = SessionPublisher(session, SOURCE)
        await self._charge(
            session,
            pub,
            event,
            price_code=price,
            codes=(code,),
            description=description,
            note=f"CĐHA {o.accession_number} {o.modality}: {description}",
            **common,
        )
        await pub.flush()

    async def on_imaging_order_cancelled(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        o = msg.order
        reason = f"Huỷ chỉ định CĐHA {o.accession_number}" + (f": {msg.reason}" if msg.reason else "")
        await self._withdraw(
            session,
            f"imaging:{o.id}",
            "imaging",
            "cancelled",
            event,
            reason=reason,
            number=o.accession_number,
            visit_id=visit_ref_of(o.visit_ref),
            patient_id=o.patient.patient_ref or None,
        )

    async def on_imaging_procedure_completed(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        ref = f"imaging:{msg.order_id}"
        if msg.status == "DISCONTINUED":
            await self._withdraw(
                session,
                ref,
                "imaging",
                "discontinued",
                event,
                reason=f"Máy chụp báo dừng thực hiện (MPPS DISCONTINUED) {msg.accession_number}",
                number=msg.accession_number,
            )
            return
        order = (
            (
                await session.execute(
                    select(clinical_orders).where(clinical_orders.c.order_ref == ref).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if order is None or order["status"] != "discontinued":
            await session.execute(
                update(clinical_orders)
                .where(clinical_orders.c.order_ref == ref, clinical_orders.c.status == "active")
                .values(status="completed", updated_at=utcnow())
            )
            return
        # Performed again after a DISCONTINUED one (imaging applies such a redo, ADR 0306): its charge was
        # reversed, so post the same item again, once (keyed by this event), on the same visit.
        orig = (
            (
                await session.execute(
                    select(charges)
                    .where(charges.c.order_ref == ref, charges.c.status == "reversed")
                    .order_by(charges.c.created_at.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        await session.execute(
            update(clinical_orders)
            .where(clinical_orders.c.order_ref == ref)
            .values(status="completed", charged_event_id=event.id, updated_at=utcnow())
        )
        if orig is None:  # it was never posted (held, then dismissed): the cashier's queue has the order
            log.warning(
                "imaging order %s redone after DISCONTINUED but no reversed charge to post again", ref
            )
            return
        pub = SessionPublisher(session, SOURCE)
        await self._charge(
            session,
            pub,
            event,
            price_code=orig["price_code"],
            codes=(orig["price_code"],),
            description=orig["name"],
            ref=ref,
            number=msg.accession_number,
            visit_id=orig["visit_id"],
            patient_id=orig["patient_id"],
            service_at=_ts(msg.ended_at) or _event_time(event),
            ordered_by=orig["ordered_by"],
            note=f"CĐHA {msg.accession_number} thực hiện lại sau khi dừng (MPPS {msg.mpps_instance_uid})",
        )
        await pub.flush()

    # ---------------------------------------------------------------------------- the cashier's queue
    async def list_held(
        self, status: str | None = "held", visit_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        stmt = select(held_charges).order_by(held_charges.c.created_at).limit(limit)
        if status:
            stmt = stmt.where(held_charges.c.status == status)
        if visit_id:
            stmt = stmt.where(held_charges.c.visit_id == visit_id)
        async with self.rt.db.session() as s:
            return [held_dict(r) for r in (await s.execute(stmt)).mappings().all()]

    async def _held_for_update(self, s: AsyncSession, held_id: str) -> Any:
        row = (
            (await s.execute(select(held_charges).where(held_charges.c.id == held_id).with_for_update()))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound("held_charge.not_found", f"no held charge {held_id}")
        return row

    async def price_held(
        self,
        held_id: str,
        price_code: str,
        caller: Caller,
        *,
        visit_id: str | None = None,
        quantity: str | None = None,
        remember: bool = False,
    ) -> dict[str, Any]:
        """Post the held line as a charge (once: under the held line's own key). ``remember`` adds the
        order code to the mapping so later orders of it are priced automatically."""
        qty = parse_quantity(quantity)
        async with self.rt.uow() as uow:
            s = uow.session
            held = await self._held_for_update(s, held_id)
            if held["status"] == "priced":
                found = (
                    (await s.execute(select(charges).where(charges.c.id == held["charge_id"])))
                    .mappings()
                    .one()
                )
                if found["price_code"] != price_code:
                    raise Conflict("held_charge.priced", f"already priced as {found['price_code']}")
                return {"held": held_dict(held), "charge": charge_dict(found)}
            if held["status"] != "held":
                raise Conflict(f"held_charge.{held['status']}", f"the held charge is {held['status']}")
            target = visit_id or held["visit_id"]
            if not target:
                raise Invalid(
                    "held_charge.visit_id",
                    "this line has no visit: give the visit to charge",
                    field="visit_id",
                )
            if held["order_ref"]:
                state = (
                    await s.execute(
                        select(clinical_orders.c.status).where(
                            clinical_orders.c.order_ref == held["order_ref"]
                        )
                    )
                ).scalar()
                if state in ("cancelled", "discontinued"):
                    raise Conflict("held_charge.order_withdrawn", f"the order was {state}")
            source = held["source"].split(".")[0]
            if remember and source in ("lab", "imaging"):  # an unknown price_code fails below: rolled back
                stmt = upsert(s)(code_map).values(
                    source=source, code=held["code"].upper(), price_code=price_code
                )
                await s.execute(stmt.on_conflict_do_nothing(index_elements=["source", "code"]))
            row = await post_charge(
                s,
                uow,
                visit_id=target,
                price_code=price_code,
                qty_milli=qty,
                service_at=held["service_at"],
                source=held["source"],
                source_key=held["source_key"],
                source_event_id=held["source_event_id"],
                posted_by=caller.subject,
                rules=self.rules,
                ordered_by=held["ordered_by"],
                order_ref=held["order_ref"],
                note=f"{held['code']} ({held['description']}) priced by the cash desk"[:500],
            )
            if row is None:  # cannot happen while the held row is locked and 'held'
                raise Conflict("held_charge.already_posted", "a charge with this key exists already")
            now = utcnow()
            await s.execute(
                update(held_charges)
                .where(held_charges.c.id == held_id)
                .values(
                    status="priced",
                    charge_id=row["id"],
                    visit_id=target,
                    resolved_by=caller.subject,
                    resolved_at=now,
                )
            )
            patient = row["patient_id"]
            uow.audit(
                caller.audit(
                    "held_charge.price",
                    "Charge",
                    row["id"],
                    patient,
                    held_id=held_id,
                    code=held["code"],
                    price_code=price_code,
                    remember=remember,
                )
            )
            await uow.commit()
            held = {
                **held,
                "status": "priced",
                "charge_id": row["id"],
                "visit_id": target,
                "resolved_by": caller.subject,
                "resolved_at": now,
            }
        return {"held": held_dict(held), "charge": charge_dict(row)}

    async def dismiss_held(self, held_id: str, reason: str, caller: Caller) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("held_charge.reason", "dismissing a held line needs a reason", field="reason")
        async with self.rt.uow() as uow:
            s = uow.session
            held = await self._held_for_update(s, held_id)
            if held["status"] != "held":
                raise Conflict(f"held_charge.{held['status']}", f"the held charge is {held['status']}")
            now = utcnow()
            await s.execute(
                update(held_charges)
                .where(held_charges.c.id == held_id)
                .values(status="dismissed", resolved_by=caller.subject, resolved_at=now, note=reason[:500])
            )
            uow.audit(
                caller.audit("held_charge.dismiss", "HeldCharge", held_id, held["patient_id"], reason=reason)
            )
            await uow.commit()
        return held_dict(
            {
                **held,
                "status": "dismissed",
                "resolved_by": caller.subject,
                "resolved_at": now,
                "note": reason[:500],
            }
        )
