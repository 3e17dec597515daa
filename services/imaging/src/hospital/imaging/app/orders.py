"""Imaging orders (from the EMR over gRPC), the modality worklist they feed, and MPPS updates."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydicom.uid import generate_uid
from sqlalchemy import select, update

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.common.v1 import types_pb2
from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.imaging.adapters import tables as t
from hospital.imaging.app.studies import requeue_linked_studies
from hospital.imaging.domain.matching import dicom_date

VN = ZoneInfo("Asia/Ho_Chi_Minh")
_SH = re.compile(r"^[\x20-\x7e]{1,16}$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
STATUS_PB = {
    "scheduled": pb.ORDER_STATUS_SCHEDULED,
    "in_progress": pb.ORDER_STATUS_IN_PROGRESS,
    "completed": pb.ORDER_STATUS_COMPLETED,
    "discontinued": pb.ORDER_STATUS_DISCONTINUED,
    "cancelled": pb.ORDER_STATUS_CANCELLED,
}


# Why a recorded MPPS needs staff review (``mpps.attention``).
MPPS_NO_ORDER = "no_order"  # matches no order
MPPS_ORDER_CANCELLED = "order_cancelled"  # names an order that was cancelled: the order stays cancelled
MPPS_ALREADY_COMPLETED = "already_completed"  # a new MPPS for an order already completed: it stays completed
MPPS_REDO_DISCONTINUED = (
    "redo_discontinued"  # a new MPPS redoing a discontinued order: applied, charge to check
)
MPPS_SUPERSEDED = "superseded"  # ended after a newer MPPS took over its order: its end is not applied
# MPPS recorded against their order but never applied to it (their N-SETs only update the ``mpps`` row).
MPPS_NOT_APPLIED = (MPPS_ORDER_CANCELLED, MPPS_ALREADY_COMPLETED)
# A resolution (``resolve_mpps``) is cleared when an MPPS gets another ``attention``: a new reason to review.
UNRESOLVED = {"resolved_by": None, "resolved_at": None, "resolution_note": None}


@dataclass(frozen=True)
class MppsLink:
    """What an MPPS N-CREATE / N-SET did: the order it names (None: none) and why it needs review."""

    order_id: str | None
    attention: str | None = None


@dataclass
class NewOrder:
    accession_number: str
    requested_procedure_id: str
    requested_procedure_description: str
    modality: str
    station_ae_title: str
    scheduled_start: datetime | None
    patient_ref: str
    patient_code: str
    full_name: str
    birth_date: str
    sex: str
    referring_physician: str = ""
    order_ref: str = ""
    request_id: str = ""
    visit_ref: str = ""  # the admissions visit (UUID), optional


def to_pn(full_name: str) -> str:
    """'Nguyễn Văn An' -> 'Nguyễn^Văn An' (family name first, as Vietnamese names are written)."""
    parts = full_name.split()
    if "^" in full_name or len(parts) < 2:
        return full_name.strip()
    return f"{parts[0]}^{' '.join(parts[1:])}"


def validate(o: NewOrder) -> None:
    def bad(field: str, msg: str) -> Invalid:
        return Invalid(f"order.{field}", msg, field=field)

    if not _SH.match(o.accession_number or "") or "\\" in o.accession_number:
        raise bad("accession_number", "accession number: 1-16 printable ASCII characters (DICOM SH)")
    if not _CS.match(o.modality or ""):
        raise bad("modality", "modality: a DICOM modality code such as CT, MR, DX, US")
    if o.station_ae_title and (
        len(o.station_ae_title) > 16 or not o.station_ae_title.isascii() or "\\" in o.station_ae_title
    ):
        raise bad("station_ae_title", "station AE title: at most 16 ASCII characters")
    if not o.patient_code or len(o.patient_code) > 64 or "\\" in o.patient_code:
        raise bad("patient.patient_code", "patient code (DICOM PatientID) is required, at most 64 characters")
    if not o.full_name.strip() or len(o.full_name) > 200:
        raise bad("patient.full_name", "patient name is required")
    if not o.requested_procedure_description.strip():
        raise bad("requested_procedure_description", "procedure description is required")
    if o.sex not in ("", "M", "F", "O"):
        raise bad("patient.sex", "sex: M, F, O or empty")
    try:
        dicom_date(o.birth_date)
    except ValueError:
        raise bad("patient.birth_date", "birth date: YYYY-MM-DD, YYYY-MM or YYYY") from None
    if o.scheduled_start is None:
        raise bad("scheduled_start", "scheduled start time is required")
    if o.visit_ref:
        try:
            o.visit_ref = str(uuid.UUID(o.visit_ref))  # canonical form, as admissions writes its ids
        except ValueError:
            raise bad(
                "visit_ref", "visit_ref: the id of the visit in admissions (a UUID), or empty"
            ) from None


def order_proto(r: Any) -> pb.Order:
    m = r._mapping if hasattr(r, "_mapping") else r
    o = pb.Order(
        id=m["id"],
        accession_number=m["accession_number"],
        requested_procedure_id=m["requested_procedure_id"],
        requested_procedure_description=m["requested_procedure_description"],
        modality=m["modality"],
        station_ae_title=m["station_ae_title"] or "",
        referring_physician=m["referring_physician"] or "",
        order_ref=m["order_ref"] or "",
        visit_ref=m["visit_ref"] or "",
        status=STATUS_PB.get(m["status"], 0),
        study_instance_uid=m["study_instance_uid"] or "",
        mpps_instance_uid=m["mpps_instance_uid"] or "",
        patient=pb.OrderPatient(
            patient_ref=m["patient_ref"] or "",
            patient_code=m["patient_id"],
            full_name=m["patient_name"],
            birth_date=m["patient_birth_date"] or "",
            sex=m["patient_sex"] or "",
        ),
    )
    o.scheduled_start.FromDatetime(m["scheduled_start"])
    return o


def order_json(r: Any) -> dict[str, Any]:
    m = dict(r._mapping)
    for k in ("scheduled_start", "created_at", "updated_at"):
        m[k] = m[k].isoformat() if m[k] else None
    return m


class OrderService:
    def __init__(self, rt: Runtime[Any]) -> None:
        self.rt = rt

    async def schedule(self, o: NewOrder, actor: Any) -> pb.Order:
        validate(o)
        now = utcnow()
        start = o.scheduled_start
        assert start is not None
        async with self.rt.uow() as uow:
            s = uow.session
            if o.request_id:
                row = (await s.execute(select(t.orders).where(t.orders.c.request_id == o.request_id))).first()
                if row is not None:
                    return order_proto(row)
            if (
                await s.execute(
                    select(t.orders.c.id).where(t.orders.c.accession_number == o.accession_number)
                )
            ).first():
                raise Conflict(
                    "order.accession_exists",
                    f"accession number {o.accession_number} is already used",
                    field="accession_number",
                )
            values = {
                "id": new_id(),
                "accession_number": o.accession_number,
                "request_id": o.request_id or None,
                "order_ref": o.order_ref or None,
                "requested_procedure_id": (o.requested_procedure_id or o.accession_number)[:16],
                "requested_procedure_description": o.requested_procedure_description[:64],
                "modality": o.modality,
                "station_ae_title": o.station_ae_title or None,
                "scheduled_start": start,
                "scheduled_date": start.astimezone(VN).strftime("%Y%m%d"),
                "patient_ref": o.patient_ref or None,
                "patient_id": o.patient_code,
                "patient_name": to_pn(o.full_name),
                "patient_birth_date": dicom_date(o.birth_date),
                "patient_sex": o.sex or None,
                "referring_physician": to_pn(o.referring_physician) if o.referring_physician else None,
                "visit_ref": o.visit_ref or None,
                "status": "scheduled",
                "study_instance_uid": generate_uid(),
                "mpps_instance_uid": None,
                "created_at": now,
                "updated_at": now,
            }
            await s.execute(t.orders.insert().values(**values))
            proto = order_proto(values)
            uow.publish("imaging.order.scheduled", ev.OrderScheduled(order=proto))
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_order.schedule",
                    resource_type="ImagingOrder",
                    resource_id=values["id"],
                    patient_id=o.patient_ref or None,
                    detail={
                        "accession_number": o.accession_number,
                        "modality": o.modality,
                        "visit_ref": o.visit_ref or None,
                    },
                )
            )
            await uow.commit()
            return proto

    async def get(self, order_id: str = "", accession_number: str = "") -> Any:
        async with self.rt.db.session() as s:
            q = select(t.orders)
            q = (
                q.where(t.orders.c.id == order_id)
                if order_id
                else q.where(t.orders.c.accession_number == accession_number)
            )
            row = (await s.execute(q)).first()
        if row is None:
            raise NotFound("order.not_found", "no such imaging order")
        return row

    async def cancel(self, order_id: str, actor: Any, reason: str = "") -> pb.Order:
        """Cancel a scheduled order and publish ``imaging.order.cancelled`` in the same transaction.

        An order already cancelled is returned as it is (a retried call publishes nothing again); one the
        modality has started or ended (in progress, completed, discontinued) cannot be cancelled. A study
        already linked to the order (a modality that sends no MPPS) is re-evaluated in the same
        transaction (ADR 0317): unlinked and queued for reconciliation with reason ``order_cancelled`` and
        the order as candidate, as a study naming an order cancelled before its images arrived is. The
        status guard in the UPDATE makes concurrent cancellations publish once."""
        reason = reason.strip()
        async with self.rt.uow() as uow:
            s = uow.session
            now = utcnow()
            res = await s.execute(
                update(t.orders)
                .where(t.orders.c.id == order_id, t.orders.c.status == "scheduled")
                .values(status="cancelled", updated_at=now)
            )
            row = (await s.execute(select(t.orders).where(t.orders.c.id == order_id))).first()
            if row is None:
                raise NotFound("order.not_found", "no such imaging order")
            if res.rowcount != 1:
                if row.status == "cancelled":
                    return order_proto(row)
                raise Conflict(
                    "order.not_cancellable", f"order is {row.status}; only scheduled orders can be cancelled"
                )
            detail = f"order {row.accession_number} was cancelled after its images were linked to it"
            if reason:
                detail += f" ({reason})"
            requeued = await requeue_linked_studies(s, row, "order_cancelled", detail)
            proto = order_proto(row)
            msg = ev.OrderCancelled(
                order=proto,
                reason=reason,
                by=types_pb2.Actor(subject=actor.subject, display=actor.name, roles=sorted(actor.roles)),
            )
            msg.cancelled_at.FromDatetime(now)
            uow.publish("imaging.order.cancelled", msg)
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_order.cancel",
                    resource_type="ImagingOrder",
                    resource_id=order_id,
                    patient_id=row.patient_ref,
                    detail={
                        "accession_number": row.accession_number,
                        "reason": reason or None,
                        "studies_requeued": [st.study_instance_uid for st in requeued],
                    },
                )
            )
            _audit_requeued(uow, actor, row, requeued, "order_cancelled")
            await uow.commit()
        return proto

    async def reschedule(
        self,
        order_id: str,
        scheduled_start: datetime | None,
        actor: Any,
        *,
        station_ae_title: str = "",
        reason: str = "",
    ) -> pb.Order:
        """Move a scheduled order to another time (and station) and publish ``imaging.order.rescheduled``.

        Only a scheduled order can be moved (the modality has not started it). The same time and station
        again changes nothing and publishes nothing. A study already linked to the order (images taken
        before the new appointment) is re-evaluated (ADR 0317): unlinked and queued for reconciliation with
        reason ``order_rescheduled`` and the order as candidate (staff link it back if it was the exam),
        and the order gets a new Study Instance UID on the worklist so the new performance is not filed
        into the old study."""
        reason = reason.strip()
        if scheduled_start is None:
            raise Invalid(
                "order.scheduled_start", "scheduled start time is required", field="scheduled_start"
            )
        if len(reason) > 500:
            raise Invalid("order.reason", "reason: at most 500 characters", field="reason")
        station = station_ae_title.strip()
        if station and (len(station) > 16 or not station.isascii() or "\\" in station):
            raise Invalid(
                "order.station_ae_title",
                "station AE title: at most 16 ASCII characters",
                field="station_ae_title",
            )
        async with self.rt.uow() as uow:
            s = uow.session
            row = (
                await s.execute(select(t.orders).where(t.orders.c.id == order_id).with_for_update())
            ).first()
            if row is None:
                raise NotFound("order.not_found", "no such imaging order")
            if row.status != "scheduled":
                raise Conflict(
                    "order.not_reschedulable",
                    f"order is {row.status}; only scheduled orders can be rescheduled",
                )
            station = station or (row.station_ae_title or "")
            if row.scheduled_start == scheduled_start and (row.station_ae_title or "") == station:
                return order_proto(row)
            now = utcnow()
            detail = (
                f"order {row.accession_number} was rescheduled from "
                f"{row.scheduled_start.astimezone(VN):%Y-%m-%d %H:%M} to "
                f"{scheduled_start.astimezone(VN):%Y-%m-%d %H:%M}"
                " after its images were linked to it"
            )
            if reason:
                detail += f" ({reason})"
            requeued = await requeue_linked_studies(s, row, "order_rescheduled", detail)
            values: dict[str, Any] = {
                "scheduled_start": scheduled_start,
                "scheduled_date": scheduled_start.astimezone(VN).strftime("%Y%m%d"),
                "station_ae_title": station or None,
                "updated_at": now,
            }
            if requeued:  # the worklist's study UID was the received study's: the redo gets its own
                values["study_instance_uid"] = generate_uid()
            await s.execute(update(t.orders).where(t.orders.c.id == order_id).values(**values))
            row = (await s.execute(select(t.orders).where(t.orders.c.id == order_id))).one()
            proto = order_proto(row)
            msg = ev.OrderRescheduled(
                order=proto,
                reason=reason,
                by=types_pb2.Actor(subject=actor.subject, display=actor.name, roles=sorted(actor.roles)),
                studies_requeued=[st.study_instance_uid for st in requeued],
            )
            msg.rescheduled_at.FromDatetime(now)
            uow.publish("imaging.order.rescheduled", msg)
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_order.reschedule",
                    resource_type="ImagingOrder",
                    resource_id=order_id,
                    patient_id=row.patient_ref,
                    detail={
                        "accession_number": row.accession_number,
                        "scheduled_start": scheduled_start.isoformat(),
                        "station_ae_title": station or None,
                        "reason": reason or None,
                        "studies_requeued": [st.study_instance_uid for st in requeued],
                    },
                )
            )
            _audit_requeued(uow, actor, row, requeued, "order_rescheduled")
            await uow.commit()
        return proto

    async def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            q = select(t.orders).order_by(t.orders.c.scheduled_start).limit(limit)
            if status:
                q = q.where(t.orders.c.status == status)
            return [order_json(r) for r in (await s.execute(q)).all()]

    async def list_rows(self, statuses: list[str], modality: str | None, limit: int) -> list[Any]:
        """Orders in these statuses (of one modality, or all) by scheduled time: the imaging desk's
        worklist (gRPC ListOrders)."""
        unknown = [x for x in statuses if x not in STATUS_PB]
        if unknown:
            raise Invalid("order.status", f"no order status {unknown[0]!r}", field="statuses")
        async with self.rt.db.session() as s:
            q = select(t.orders).where(t.orders.c.status.in_(statuses))
            if modality:
                q = q.where(t.orders.c.modality == modality)
            return list((await s.execute(q.order_by(t.orders.c.scheduled_start).limit(limit))).all())

    # --- modality worklist and MPPS (called from DICOM handlers through the event loop) ---

    async def worklist(
        self,
        *,
        modality: str | None,
        station_ae: str | None,
        date_low: str | None,
        date_high: str | None,
        patient_id: str | None,
        accession: str | None,
        name_like: str | None,
        limit: int,
    ) -> list[Any]:
        from hospital.imaging.domain.matching import fold

        async with self.rt.db.session() as s:
            q = select(t.orders).where(t.orders.c.status == "scheduled")
            if modality:
                q = q.where(t.orders.c.modality == modality)
            if station_ae:
                q = q.where(t.orders.c.station_ae_title == station_ae)
            if date_low:
                q = q.where(t.orders.c.scheduled_date >= date_low)
            if date_high:
                q = q.where(t.orders.c.scheduled_date <= date_high)
            if patient_id:
                q = q.where(t.orders.c.patient_id == patient_id)
            if accession:
                q = q.where(t.orders.c.accession_number == accession)
            rows = (await s.execute(q.order_by(t.orders.c.scheduled_start).limit(limit))).all()
        if name_like:
            import fnmatch

            pattern = fold(name_like) or ""
            rows = [r for r in rows if fnmatch.fnmatchcase(fold(r.patient_name) or "", pattern)]
        return rows

    async def mpps_created(
        self,
        mpps_uid: str,
        accession: str | None,
        study_uid: str | None,
        status: str,
        *,
        patient_id: str | None = None,
        patient_name: str | None = None,
        calling_ae: str | None = None,
    ) -> MppsLink:
        """N-CREATE: link the MPPS to its order (by accession, else by the worklist's Study Instance UID).

        Every MPPS is recorded in ``mpps``; one that matches no order is kept there with no order (listed
        by ``GET /api/v1/mpps?unmatched=true``, ``attention`` "no_order"), never dropped. What it does to
        its order depends on the order's status (ADR 0306):

        * scheduled: the order goes ``in_progress`` with this MPPS linked (the normal case);
        * in progress with another MPPS: this newer MPPS takes over the order (a restarted step); the older
          one's later N-SETs are recorded but not applied (flagged "superseded" if they end it);
        * discontinued: a real new performance (IHE SWF: a modality redoes a discontinued step with a new
          MPPS): the order goes back ``in_progress`` with this MPPS, so its N-SET publishes
          ``imaging.procedure.completed`` again; flagged "redo_discontinued" because billing reversed the
          charge on the DISCONTINUED and must be checked;
        * completed: the order stays completed and keeps its MPPS (no second
          ``imaging.procedure.completed``); recorded with ``attention`` "already_completed";
        * cancelled: the order stays cancelled and unlinked (billing has reversed the charge and must not be
          told the procedure was done as if it were ordered); ``attention`` "order_cancelled".

        A repeated N-CREATE of the MPPS already linked to its order changes nothing. The order row is
        locked, so a concurrent ``CancelOrder`` either comes first (the MPPS is flagged) or finds the order
        in progress (refused, ``order.not_cancellable``), and two N-CREATEs for one order apply in turn.
        """
        async with self.rt.uow() as uow:
            s = uow.session
            row = None
            if accession:
                row = (
                    await s.execute(
                        select(t.orders).where(t.orders.c.accession_number == accession).with_for_update()
                    )
                ).first()
            if row is None and study_uid:
                row = (
                    await s.execute(
                        select(t.orders).where(t.orders.c.study_instance_uid == study_uid).with_for_update()
                    )
                ).first()
            if row is not None and row.mpps_instance_uid == mpps_uid:  # the same N-CREATE again
                await uow.commit()
                return MppsLink(str(row.id), None)
            attention = (
                MPPS_NO_ORDER
                if row is None
                else MPPS_ORDER_CANCELLED
                if row.status == "cancelled"
                else MPPS_ALREADY_COMPLETED
                if row.status == "completed"
                else MPPS_REDO_DISCONTINUED
                if row.status == "discontinued"
                else None
            )
            now = utcnow()
            existing = (
                await s.execute(
                    select(t.mpps.c.mpps_instance_uid, t.mpps.c.attention).where(
                        t.mpps.c.mpps_instance_uid == mpps_uid
                    )
                )
            ).first()
            values: dict[str, Any] = {
                "order_id": row.id if row is not None else None,
                "accession_number": accession,
                "study_instance_uid": study_uid,
                "patient_id": patient_id,
                "patient_name": patient_name,
                "calling_ae": calling_ae,
                "status": status,
                "attention": attention,
                "updated_at": now,
            }
            if existing is None:
                await s.execute(t.mpps.insert().values(mpps_instance_uid=mpps_uid, created_at=now, **values))
            else:
                if existing.attention != attention:  # another reason for review: staff must look again
                    values.update(UNRESOLVED)
                await s.execute(update(t.mpps).where(t.mpps.c.mpps_instance_uid == mpps_uid).values(**values))
            if row is None:
                uow.audit(
                    AuditEntry(
                        actor="modality",
                        action="imaging_mpps.unmatched",
                        resource_type="Mpps",
                        resource_id=mpps_uid,
                        detail={"accession": accession, "study": study_uid, "calling_ae": calling_ae},
                    )
                )
                await uow.commit()
                return MppsLink(None, attention)
            if attention in MPPS_NOT_APPLIED:
                uow.audit(
                    AuditEntry(
                        actor="modality",
                        action=f"imaging_mpps.{attention}",
                        resource_type="Mpps",
                        resource_id=mpps_uid,
                        patient_id=row.patient_ref,
                        detail={
                            "order_id": row.id,
                            "accession": row.accession_number,
                            "status": status,
                            "calling_ae": calling_ae,
                            "order_mpps": row.mpps_instance_uid,
                        },
                    )
                )
                await uow.commit()
                return MppsLink(str(row.id), attention)
            await s.execute(
                update(t.orders)
                .where(t.orders.c.id == row.id)
                .values(status="in_progress", mpps_instance_uid=mpps_uid, updated_at=now)
            )
            detail = {"mpps": mpps_uid, "status": status}
            if row.mpps_instance_uid:
                detail.update(previous_mpps=row.mpps_instance_uid, previous_status=row.status)
            action = {
                "in_progress": "imaging_order.mpps_superseded",
                "discontinued": "imaging_order.mpps_redo",
            }.get(row.status, "imaging_order.mpps_in_progress")
            uow.audit(
                AuditEntry(
                    actor="modality",
                    action=action,
                    resource_type="ImagingOrder",
                    resource_id=row.id,
                    patient_id=row.patient_ref,
                    detail=detail,
                )
            )
            await uow.commit()
            return MppsLink(str(row.id), attention)

    async def mpps_set(self, mpps_uid: str, status: str, study_uid: str | None) -> MppsLink | None:
        """N-SET: COMPLETED / DISCONTINUED end the procedure. Returns the MPPS's order (None for an
        unmatched one, whose status is kept up to date) and why it needs review, or None for an MPPS never
        created. An MPPS flagged "order_cancelled" or "already_completed" only has its status recorded: the
        order keeps its status and ``imaging.procedure.completed`` is not published. Neither is it for an
        MPPS a newer one has taken over its order from: its COMPLETED/DISCONTINUED is recorded and flagged
        "superseded" for review. Only the order's current MPPS ends it, once (guarded update)."""
        final = {"COMPLETED": "completed", "DISCONTINUED": "discontinued"}.get(status)
        async with self.rt.uow() as uow:
            s = uow.session
            now = utcnow()
            logged = (
                await s.execute(
                    update(t.mpps)
                    .where(t.mpps.c.mpps_instance_uid == mpps_uid)
                    .values(status=status or t.mpps.c.status, updated_at=now)
                    .returning(t.mpps.c.order_id, t.mpps.c.attention)
                )
            ).first()
            if logged is not None and logged.attention in MPPS_NOT_APPLIED:
                if status:
                    uow.audit(
                        AuditEntry(
                            actor="modality",
                            action=f"imaging_mpps.{logged.attention}",
                            resource_type="Mpps",
                            resource_id=mpps_uid,
                            detail={"order_id": logged.order_id, "status": status},
                        )
                    )
                await uow.commit()
                return MppsLink(logged.order_id, logged.attention)
            row = (await s.execute(select(t.orders).where(t.orders.c.mpps_instance_uid == mpps_uid))).first()
            if row is None:
                if logged is not None and logged.order_id is not None and final:
                    # linked to an order when created, since taken over by a newer MPPS of that order
                    await s.execute(
                        update(t.mpps)
                        .where(t.mpps.c.mpps_instance_uid == mpps_uid)
                        .values(
                            attention=MPPS_SUPERSEDED,
                            **(UNRESOLVED if logged.attention != MPPS_SUPERSEDED else {}),
                        )
                    )
                    uow.audit(
                        AuditEntry(
                            actor="modality",
                            action="imaging_mpps.superseded",
                            resource_type="Mpps",
                            resource_id=mpps_uid,
                            detail={"order_id": logged.order_id, "status": status},
                        )
                    )
                    await uow.commit()
                    return MppsLink(logged.order_id, MPPS_SUPERSEDED)
                await uow.commit()
                return MppsLink(logged.order_id, logged.attention) if logged is not None else None
            if final and row.status == "in_progress":
                ended = await s.execute(
                    update(t.orders)
                    .where(
                        t.orders.c.id == row.id,
                        t.orders.c.mpps_instance_uid == mpps_uid,
                        t.orders.c.status == "in_progress",
                    )
                    .values(status=final, updated_at=now)
                )
                if ended.rowcount == 1:
                    msg = ev.ProcedureCompleted(
                        order_id=row.id,
                        accession_number=row.accession_number,
                        mpps_instance_uid=mpps_uid,
                        status=status,
                        study_instance_uid=study_uid or row.study_instance_uid,
                    )
                    msg.ended_at.FromDatetime(now)
                    uow.publish("imaging.procedure.completed", msg)
                    uow.audit(
                        AuditEntry(
                            actor="modality",
                            action=f"imaging_order.mpps_{final}",
                            resource_type="ImagingOrder",
                            resource_id=row.id,
                            detail={"mpps": mpps_uid},
                        )
                    )
            await uow.commit()
            return MppsLink(str(row.id), logged.attention if logged is not None else None)

    async def list_mpps(self, unmatched: bool, limit: int) -> list[dict[str, Any]]:
        """MPPS received, newest first; ``unmatched``: those needing review (``attention`` set: no order,
        a cancelled order, an order already completed, a redo of a discontinued order, superseded) and not
        yet resolved by staff (``resolve_mpps``)."""
        q = select(t.mpps).order_by(t.mpps.c.created_at.desc()).limit(limit)
        if unmatched:
            q = q.where(t.mpps.c.attention.is_not(None), t.mpps.c.resolved_at.is_(None))
        async with self.rt.db.session() as s:
            rows = (await s.execute(q)).all()
        return [mpps_json(r) for r in rows]

    async def resolve_mpps(self, mpps_uid: str, note: str, actor: Any) -> dict[str, Any]:
        """Mark an MPPS flagged for review (``attention`` set) as handled: who, when and the note are
        recorded and audited (``imaging_mpps.resolved``), and it leaves ``list_mpps(unmatched=True)``. It
        changes no order: staff act on orders through the order APIs. An MPPS already resolved is returned
        unchanged (a retried call, whatever its note); one with no attention is refused
        (``mpps.nothing_to_resolve``). The update is guarded (``resolved_at IS NULL``), so two concurrent
        calls record one resolution."""
        note = (note or "").strip()
        if not note or len(note) > 500:
            raise Invalid("mpps.note", "note: 1-500 characters saying how the MPPS was handled", field="note")
        async with self.rt.uow() as uow:
            s = uow.session
            row = (await s.execute(select(t.mpps).where(t.mpps.c.mpps_instance_uid == mpps_uid))).first()
            if row is None:
                raise NotFound("mpps.not_found", "no such MPPS")
            if row.resolved_at is not None:
                return mpps_json(row)
            if row.attention is None:
                raise Conflict(
                    "mpps.nothing_to_resolve",
                    "this MPPS was applied to its order normally; it needs no review",
                )
            now = utcnow()
            done = await s.execute(
                update(t.mpps)
                .where(
                    t.mpps.c.mpps_instance_uid == mpps_uid,
                    t.mpps.c.resolved_at.is_(None),
                    t.mpps.c.attention.is_not(None),
                )
                .values(resolved_by=actor.subject, resolved_at=now, resolution_note=note)
            )
            if done.rowcount == 1:
                patient_ref = None
                if row.order_id:
                    patient_ref = (
                        await s.execute(select(t.orders.c.patient_ref).where(t.orders.c.id == row.order_id))
                    ).scalar()
                uow.audit(
                    AuditEntry(
                        actor=actor.subject,
                        actor_roles=tuple(sorted(actor.roles)),
                        action="imaging_mpps.resolved",
                        resource_type="Mpps",
                        resource_id=mpps_uid,
                        patient_id=patient_ref,
                        detail={
                            "attention": row.attention,
                            "order_id": row.order_id,
                            "accession": row.accession_number,
                            "note": note,
                        },
                    )
                )
            row = (await s.execute(select(t.mpps).where(t.mpps.c.mpps_instance_uid == mpps_uid))).one()
            await uow.commit()
        return mpps_json(row)


def _audit_requeued(uow: Any, actor: Any, order: Any, requeued: list[Any], reason: str) -> None:
    for st in requeued:
        uow.audit(
            AuditEntry(
                actor=actor.subject,
                actor_roles=tuple(sorted(actor.roles)),
                action="imaging_study.reevaluated",
                resource_type="ImagingStudy",
                resource_id=st.study_instance_uid,
                patient_id=order.patient_ref,
                detail={"order_id": order.id, "accession": order.accession_number, "outcome": reason},
            )
        )


def mpps_json(r: Any) -> dict[str, Any]:
    m = dict(r._mapping)
    for k in ("created_at", "updated_at", "resolved_at"):
        m[k] = m[k].isoformat() if m[k] else None
    return m


def proto_time(ts: Any) -> datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)
