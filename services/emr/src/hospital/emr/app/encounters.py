"""Encounters follow admissions: an outpatient (or emergency) encounter per visit opened, an inpatient one
per admission; transfers move it, a closed visit or a discharge closes it, a patient merge re-points the
merged record's whole chart to the survivor. Each handler runs in the event consumer's transaction (the
chassis inbox applies an event once) and publishes emr.encounter.opened / closed in it."""

from __future__ import annotations

import base64
import json
import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.bus import Event
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Invalid
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import events_pb2 as adm_events
from hospital.contracts.emr.v1 import emr_pb2, events_pb2
from hospital.emr.adapters.store import Encounters, Patients, repoint_patient
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import (
    SOURCE,
    Context,
    authorize_read,
    encounter_model,
    load_encounter,
    local_date,
    ts,
)
from hospital.emr.domain.reference import ward_department

log = logging.getLogger(__name__)
SEX = {adm.SEX_MALE: "male", adm.SEX_FEMALE: "female"}
EMERGENCY_KINDS = {adm.VISIT_KIND_EMERGENCY}


def _birth(p: adm.Patient) -> str | None:
    d = p.birth_date
    if not d.year:
        return None
    return (
        f"{d.year:04d}"
        + (f"-{d.month:02d}" if d.month else "")
        + (f"-{d.day:02d}" if d.month and d.day else "")
    )


def patient_row(p: adm.Patient, now: datetime) -> dict[str, Any]:
    card = p.insurance_cards[0].number if p.insurance_cards else None
    return {
        "id": p.id,
        "patient_code": p.patient_code or None,
        "full_name": p.full_name,
        "birth_date": _birth(p),
        "sex": SEX.get(p.sex, "unknown"),
        "insurance_card_number": card,
        "merged_into": p.merged_into or None,
        "updated_at": now,
    }


def encounter_proto(row: dict[str, Any]) -> emr_pb2.Encounter:
    return sc.to_proto(encounter_model(row), emr_pb2.Encounter)


class EncounterService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- event handlers (ADMISSIONS stream) ----------------------------------------------------------
    async def on_patient_changed(self, session: AsyncSession, event: Event) -> None:
        msg = event.message()
        await Patients(session).save(patient_row(msg.patient, utcnow()))

    async def on_visit_opened(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.VisitOpened = event.message()
        v, now = msg.visit, utcnow()
        if msg.patient.id:
            await Patients(session).save(patient_row(msg.patient, now))
        else:
            await Patients(session).ensure(v.patient_id, now)
        repo = Encounters(session)
        if await repo.find(v.id, None) is not None:
            return  # already opened (e.g. an event replayed under a new id)
        opened = ts(v.opened_at) or event_time(event)
        row = {
            "id": new_id(),
            "patient_id": v.patient_id,
            "visit_id": v.id,
            "admission_id": None,
            "kind": "emergency" if v.kind in EMERGENCY_KINDS else "outpatient",
            "status": "open",
            "department_code": v.department_code or "KKB",
            "room_code": v.room_code or None,
            "ward_code": None,
            "bed_code": None,
            "ticket_number": v.ticket_number or None,
            "visit_code": v.visit_code or None,
            "insurance_card_number": v.insurance_card_number or None,
            "service_date": local_date(opened),
            "opened_at": opened,
            "closed_at": None,
            "attending_doctor": None,
            "main_diagnosis_code": None,
            "discharge_type": None,
            "source_event_id": event.id,
        }
        await repo.add(row)
        await self._publish_opened(session, row["id"], event.id)

    async def on_admitted(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.InpatientAdmitted = event.message()
        a, now = msg.admission, utcnow()
        repo = Encounters(session)
        if await repo.by_admission(a.id) is not None:
            return
        await Patients(session).ensure(a.patient_id, now)
        visit = await repo.find(a.visit_id, None) if a.visit_id else None
        opened = ts(a.admitted_at) or event_time(event)
        row = {
            "id": new_id(),
            "patient_id": a.patient_id,
            "visit_id": a.visit_id or None,
            "admission_id": a.id,
            "kind": "inpatient",
            "status": "open",
            "department_code": ward_department(a.ward_code),
            "room_code": None,
            "ward_code": a.ward_code or None,
            "bed_code": a.bed_code or None,
            "ticket_number": None,
            "visit_code": visit["visit_code"] if visit else None,
            "insurance_card_number": visit["insurance_card_number"] if visit else None,
            "service_date": local_date(opened),
            "opened_at": opened,
            "closed_at": None,
            "attending_doctor": None,
            "main_diagnosis_code": None,
            "discharge_type": None,
            "source_event_id": event.id,
        }
        await repo.add(row)
        await self._publish_opened(session, row["id"], event.id)

    async def on_transferred(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.InpatientTransferred = event.message()
        a = msg.admission
        repo = Encounters(session)
        enc = await repo.by_admission(a.id)
        if enc is None:
            raise LookupError(f"transfer of admission {a.id} before its admission reached the EMR")
        await repo.update(
            enc["id"],
            ward_code=a.ward_code or None,
            bed_code=a.bed_code or None,
            department_code=ward_department(a.ward_code),
        )

    async def on_discharged(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.InpatientDischarged = event.message()
        repo = Encounters(session)
        enc = await repo.by_admission(msg.admission.id)
        if enc is None:
            raise LookupError(
                f"discharge of admission {msg.admission.id} before its admission reached the EMR"
            )
        if enc["status"] == "closed":
            return
        await repo.update(
            enc["id"],
            status="closed",
            closed_at=ts(msg.discharged_at) or event_time(event),
            discharge_type=msg.discharge_type or None,
        )
        await self._publish_closed(session, enc["id"], event.id)

    async def on_visit_closed(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.VisitClosed = event.message()
        repo = Encounters(session)
        for enc in await repo.open_outpatient_of_visit(msg.visit.id):
            await repo.update(
                enc["id"], status="closed", closed_at=ts(msg.visit.closed_at) or event_time(event)
            )
            await self._publish_closed(session, enc["id"], event.id)

    async def on_patient_merged(self, session: AsyncSession, event: Event) -> None:
        msg: adm_events.PatientMerged = event.message()
        now = utcnow()
        await Patients(session).ensure(msg.survivor_id, now)
        moved = await repoint_patient(session, msg.merged_id, msg.survivor_id)
        await Patients(session).mark_merged(msg.merged_id, msg.survivor_id, now)
        uow = UnitOfWork.joining(session, source=SOURCE)
        uow.audit(
            Caller_for_event(msg.by).audit(
                "chart.merge",
                "Patient",
                msg.survivor_id,
                msg.survivor_id,
                merged_id=msg.merged_id,
                rows=moved,
            )
        )
        await uow.flush_pending()

    async def _publish_opened(self, session: AsyncSession, encounter_id: str, source_event: str) -> None:
        enc = await Encounters(session).get(encounter_id)
        assert enc is not None
        uow = UnitOfWork.joining(session, source=SOURCE)
        uow.publish(
            "emr.encounter.opened",
            events_pb2.EncounterOpened(encounter=encounter_proto(enc), source_event_id=source_event),
        )
        await uow.flush_pending()

    async def _publish_closed(self, session: AsyncSession, encounter_id: str, source_event: str) -> None:
        enc = await Encounters(session).get(encounter_id)
        assert enc is not None
        uow = UnitOfWork.joining(session, source=SOURCE)
        uow.publish(
            "emr.encounter.closed",
            events_pb2.EncounterClosed(encounter=encounter_proto(enc), source_event_id=source_event),
        )
        await uow.flush_pending()

    # --- reads ------------------------------------------------------------------------------------------
    async def list(
        self,
        caller: Caller,
        *,
        patient_id: str | None,
        department_code: str | None,
        status: str | None,
        kind: str | None,
        limit: int,
        page_token: str | None,
        reason: str | None = None,
    ) -> sc.EncounterPage:
        limit = max(1, min(limit or 50, 500))
        before = _decode_token(page_token) if page_token else None
        if not patient_id and not department_code:
            raise Invalid(
                "encounters.filter_required", "give patient_id or department_code", field="patient_id"
            )
        outside = department_code not in self.ctx.departments(caller)
        if not caller.principal.is_service and not patient_id and outside:
            raise Invalid(
                "encounters.department",
                f"khoa {department_code} không phải khoa của bạn",
                field="department_code",
                status=403,
            )
        async with self.ctx.uow() as uow:
            if patient_id:
                await authorize_read(self.ctx, uow, caller, patient_id, None, reason, "encounter.list")
            else:
                uow.audit(caller.audit("encounter.list", "Department", department_code, None, status=status))
            rows = await Encounters(uow.session).search(
                patient_id=patient_id,
                department_code=department_code,
                status=status,
                kind=kind,
                before=before,
                limit=limit + 1,
            )
            await uow.commit()
        token = _encode_token(rows[limit - 1]) if len(rows) > limit else ""
        return sc.EncounterPage(items=[encounter_model(r) for r in rows[:limit]], next_page_token=token)

    async def queue(
        self,
        caller: Caller,
        *,
        department_code: str | None,
        room_code: str | None,
        service_date: date | None,
        include_closed: bool,
    ) -> sc.EncounterPage:
        mine = self.ctx.departments(caller)
        dept = department_code or (min(mine) if len(mine) == 1 else ("KKB" if "KKB" in mine else ""))
        if not dept:
            raise Invalid("queue.department_required", "give department_code", field="department_code")
        if not caller.principal.is_service and dept not in mine:
            raise Invalid(
                "queue.department",
                f"khoa {dept} không phải khoa của bạn",
                field="department_code",
                status=403,
            )
        day = service_date or local_date(utcnow())
        async with self.ctx.uow() as uow:
            rows = await Encounters(uow.session).queue(
                department_code=dept, room_code=room_code, service_date=day, include_closed=include_closed
            )
            uow.audit(
                caller.audit(
                    "encounter.queue",
                    "Department",
                    dept,
                    None,
                    room=room_code,
                    service_date=day.isoformat(),
                    count=len(rows),
                )
            )
            await uow.commit()
        return sc.EncounterPage(items=[encounter_model(r) for r in rows])

    async def get(self, caller: Caller, encounter_id: str, reason: str | None = None) -> sc.Encounter:
        async with self.ctx.uow() as uow:
            row = await load_encounter(uow.session, encounter_id)
            await authorize_read(
                self.ctx, uow, caller, row["patient_id"], encounter_id, reason, "encounter.read"
            )
            await uow.commit()
        return encounter_model(row)


def _encode_token(row: dict[str, Any]) -> str:
    raw = json.dumps([row["opened_at"].isoformat(), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        at, eid = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(at), str(eid)
    except (ValueError, TypeError) as exc:
        raise Invalid(
            "page_token.invalid", "page_token is not one this service returned", field="page_token"
        ) from exc


def event_time(event: Event) -> datetime:
    try:
        return datetime.fromisoformat(event.time) if event.time else utcnow()
    except ValueError:
        return utcnow()


def Caller_for_event(actor: Any) -> Caller:
    from hospital.chassis.security import Principal

    subject = actor.subject if actor and actor.subject else "service:admissions"
    return Caller(
        principal=Principal(
            subject=subject,
            name=actor.display if actor else subject,
            roles=frozenset(actor.roles if actor else ["service"]),
        ),
        source="admissions",
    )
