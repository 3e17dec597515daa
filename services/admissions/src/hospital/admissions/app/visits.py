"""Outpatient visits and clinic-room queues.

A ticket number comes from a per-room, per-day counter incremented in the visit's own transaction
(:func:`hospital.chassis.db.next_value`): concurrent clerks queue on the counter row, so numbers are
never duplicated, and a failed registration releases its number, so none is skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from hospital.admissions.adapters.tables import clinic_rooms, insurance_cards, patients, visits
from hospital.admissions.app.mapping import patient_proto, visit_dict, visit_proto
from hospital.admissions.app.patients import Caller, PatientService
from hospital.admissions.app.queue_display import QueueDisplays
from hospital.admissions.config import AdmissionsSettings
from hospital.chassis.app import Runtime
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.admissions.v1 import events_pb2

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
KINDS = ("insured", "fee_paying", "emergency", "referral")


def service_date(now: datetime | None = None) -> Any:
    return (now or utcnow()).astimezone(LOCAL_TZ).date()


class VisitService:
    def __init__(self, rt: Runtime[AdmissionsSettings], patients_svc: PatientService) -> None:
        self.rt = rt
        self.patients = patients_svc
        self.displays: QueueDisplays | None = None  # live waiting-room displays of this process

    def _changed(self, room: str, event_ids: tuple[str, ...], call: dict[str, Any] | None = None) -> None:
        if self.displays is not None:
            self.displays.changed(room, event_ids=event_ids, call=call)

    async def open(
        self,
        patient_id: str,
        room: str,
        caller: Caller,
        kind: str = "fee_paying",
        insurance_card_number: str | None = None,
        referral_code: str | None = None,
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise Invalid("visit.kind", f"kind must be one of {', '.join(KINDS)}", field="kind")
        if kind == "referral" and not referral_code:
            raise Invalid(
                "visit.referral_code", "a referral visit needs the referral code", field="referral_code"
            )
        async with self.rt.uow() as uow:
            s = uow.session
            room_row = (await s.execute(select(clinic_rooms).where(clinic_rooms.c.code == room))).first()
            if room_row is None or not room_row.active:
                raise Invalid("visit.room", f"no open clinic room {room!r}", field="room")
            patient = await self.patients._load(s, patient_id)
            if patient["merged_into"]:
                raise Conflict(
                    "patient.merged", f"patient was merged into {patient['merged_into']}", field="patient_id"
                )
            now = utcnow()
            day = service_date(now)
            if kind == "insured":
                card = insurance_card_number or patient["bhyt_number"]
                if not card:
                    raise Invalid(
                        "visit.insurance", "an insured visit needs a BHYT card", field="insurance_card_number"
                    )
                row = (
                    (
                        await s.execute(
                            select(insurance_cards).where(
                                insurance_cards.c.patient_id == patient_id, insurance_cards.c.number == card
                            )
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    raise Invalid(
                        "visit.insurance",
                        f"card {card} is not on this patient's record",
                        field="insurance_card_number",
                    )
                if row["valid_to"] and row["valid_to"] < day:
                    raise Invalid(
                        "visit.insurance_expired",
                        f"card {card} expired on {row['valid_to']}",
                        field="insurance_card_number",
                    )
                insurance_card_number = card
            ticket = await next_value(s, f"ticket:{room}:{day.isoformat()}")
            code_seq = await next_value(s, f"visit_code:{day.isoformat()}")
            vid = new_id()
            values = {
                "id": vid,
                "visit_code": f"KB{day:%y%m%d}{code_seq:05d}",
                "patient_id": patient_id,
                "kind": kind,
                "department_code": room_row.department_code,
                "room_code": room,
                "service_date": day,
                "ticket_number": ticket,
                "queue_status": "waiting",
                "call_count": 0,
                "called_at": None,
                "status": "open",
                "insurance_card_number": insurance_card_number,
                "referral_code": referral_code,
                "opened_at": now,
                "closed_at": None,
            }
            await s.execute(visits.insert().values(**values))
            uow.publish(
                "admissions.visit.opened",
                events_pb2.VisitOpened(visit=visit_proto(values), patient=patient_proto(patient)),
            )
            issued = uow.publish(
                "admissions.queue.ticket_issued",
                events_pb2.QueueTicketIssued(
                    visit_id=vid,
                    room_code=room,
                    service_date=day.isoformat(),
                    ticket_number=ticket,
                    patient_display=patient["full_name"],
                ),
            )
            uow.audit(
                caller.audit("visit.open", "Visit", vid, patient_id, room=room, ticket=ticket, kind=kind)
            )
            await uow.commit()
        self._changed(room, (issued,))
        out = visit_dict(values)
        out["patient"] = {
            "id": patient["id"],
            "patient_code": patient["patient_code"],
            "full_name": patient["full_name"],
        }
        return out

    async def get(self, visit_id: str, caller: Caller) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            row = (
                (await uow.session.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            )
            if row is None:
                raise NotFound("visit.not_found", f"no visit {visit_id}")
            uow.audit(caller.audit("visit.read", "Visit", visit_id, row["patient_id"]))
            await uow.commit()
        return visit_dict(row)

    async def call(
        self, room: str, caller: Caller, action: str = "next", ticket: int | None = None
    ) -> dict[str, Any]:
        """Doctor's queue actions: ``next`` calls the lowest waiting ticket, ``recall`` calls the last
        called one again, ``skip`` moves the called (or given) ticket out of the queue."""
        if action not in ("next", "recall", "skip"):
            raise Invalid("queue.action", "action must be next, recall or skip", field="action")
        async with self.rt.uow() as uow:
            s = uow.session
            day = service_date()
            base = select(visits).where(
                visits.c.room_code == room, visits.c.service_date == day, visits.c.status == "open"
            )
            if action == "next":
                await s.execute(
                    update(visits)
                    .where(
                        visits.c.room_code == room,
                        visits.c.service_date == day,
                        visits.c.queue_status == "called",
                    )
                    .values(queue_status="done")
                )
                stmt = (
                    base.where(visits.c.queue_status == "waiting").order_by(visits.c.ticket_number).limit(1)
                )
            elif ticket is not None:
                stmt = base.where(visits.c.ticket_number == ticket)
            else:
                stmt = (
                    base.where(visits.c.queue_status == "called").order_by(visits.c.called_at.desc()).limit(1)
                )
            row = (await s.execute(stmt.with_for_update(skip_locked=action == "next"))).mappings().first()
            if row is None:
                raise NotFound(
                    "queue.empty", f"no {'waiting' if action == 'next' else 'called'} ticket in {room}"
                )
            status = "skipped" if action == "skip" else "called"
            now = utcnow()
            await s.execute(
                update(visits)
                .where(visits.c.id == row["id"])
                .values(
                    queue_status=status,
                    called_at=now,
                    call_count=visits.c.call_count + (0 if action == "skip" else 1),
                )
            )
            called = uow.publish(
                "admissions.queue.ticket_called",
                events_pb2.QueueTicketCalled(
                    visit_id=row["id"],
                    room_code=room,
                    service_date=day.isoformat(),
                    ticket_number=row["ticket_number"],
                    action=action,
                ),
            )
            uow.audit(
                caller.audit(
                    f"queue.{action}",
                    "Visit",
                    row["id"],
                    row["patient_id"],
                    room=room,
                    ticket=row["ticket_number"],
                )
            )
            await uow.commit()
            self._changed(room, (called,), {"ticket_number": row["ticket_number"], "action": action})
            name = (
                await s.execute(select(patients.c.full_name).where(patients.c.id == row["patient_id"]))
            ).scalar()
        return {
            "room": room,
            "ticket_number": row["ticket_number"],
            "visit_id": row["id"],
            "status": status,
            "patient_name": name,
        }

    async def queue(self, room: str) -> dict[str, Any]:
        """The waiting-room display: called tickets and the waiting line (no names beyond the display)."""
        async with self.rt.db.session() as s:
            day = service_date()
            rows = (
                await s.execute(
                    select(visits.c.ticket_number, visits.c.queue_status, visits.c.called_at)
                    .where(
                        visits.c.room_code == room,
                        visits.c.service_date == day,
                        visits.c.queue_status.in_(("waiting", "called")),
                    )
                    .order_by(visits.c.ticket_number)
                )
            ).all()
        called = [
            r.ticket_number
            for r in sorted(
                (r for r in rows if r.queue_status == "called"), key=lambda r: r.called_at, reverse=True
            )
        ]
        return {
            "room": room,
            "service_date": day.isoformat(),
            "now_serving": called[0] if called else None,
            "called": called,
            "waiting": [r.ticket_number for r in rows if r.queue_status == "waiting"],
        }

    async def close(self, visit_id: str, caller: Caller) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            res = await s.execute(
                update(visits)
                .where(visits.c.id == visit_id, visits.c.status == "open")
                .values(status="closed", closed_at=utcnow(), queue_status="done")
            )
            row = (await s.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            if row is None:
                raise NotFound("visit.not_found", f"no visit {visit_id}")
            if res.rowcount == 0:
                raise Conflict("visit.closed", "the visit is already closed")
            closed = uow.publish("admissions.visit.closed", events_pb2.VisitClosed(visit=visit_proto(row)))
            uow.audit(caller.audit("visit.close", "Visit", visit_id, row["patient_id"]))
            await uow.commit()
        self._changed(row["room_code"], (closed,))
        return visit_dict(row)
