"""Study completion ("received" after a quiet period), order matching and the reconciliation queue."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.imaging.adapters import tables as t

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

log = logging.getLogger(__name__)


class StudyService:
    def __init__(self, rt: Runtime[ImagingSettings], settings: ImagingSettings) -> None:
        self.rt, self.s = rt, settings

    async def run_announcer(self, stop: asyncio.Event) -> None:
        """Components.worker: announce studies that have been quiet for `study_quiet_seconds`."""
        interval = max(0.2, min(self.s.study_quiet_seconds / 2, 5.0))
        while not stop.is_set():
            try:
                await self.announce_due()
            except Exception:
                log.exception("study announcer pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def announce_due(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self.s.study_quiet_seconds)
        async with self.rt.db.session() as s:
            due = (
                (
                    await s.execute(
                        select(t.studies.c.study_instance_uid)
                        .where(
                            t.studies.c.last_received_at <= cutoff,
                            or_(
                                t.studies.c.announced_at.is_(None),
                                t.studies.c.announced_at < t.studies.c.last_received_at,
                            ),
                        )
                        .limit(100)
                    )
                )
                .scalars()
                .all()
            )
        for uid in due:
            await self._announce(uid)
        return len(due)

    async def _announce(self, study_uid: str) -> None:
        async with self.rt.uow() as uow:
            s = uow.session
            st = (
                await s.execute(select(t.studies).where(t.studies.c.study_instance_uid == study_uid))
            ).first()
            if st is None:
                return
            order_id = st.order_id
            if st.reconciliation == "new":
                order_id = await self._match(s, st)
            msg = ev.StudyReceived(
                study_instance_uid=study_uid,
                accession_number=st.accession_number or "",
                patient_code=st.patient_id,
                modalities=[m for m in st.modalities.split("\\") if m],
                series_count=st.series_count,
                instance_count=st.instance_count,
                bucket=self.s.bucket,
                key_prefix=f"studies/{study_uid}/",
                source_ae_title=st.source_ae or "",
                order_id=order_id or "",
            )
            msg.last_received_at.FromDatetime(st.last_received_at)
            uow.publish("imaging.study.received", msg)
            await s.execute(
                update(t.studies)
                .where(t.studies.c.study_instance_uid == study_uid)
                .values(announced_at=st.last_received_at)
            )
            await uow.commit()

    async def _match(self, s: Any, st: Any) -> str | None:
        """Match by accession number + patient ID; anything else goes to the reconciliation queue.

        A study naming a **cancelled** order is not linked to it (the order stays cancelled, billing has
        reversed its charge): it is queued with reason ``order_cancelled`` and the order as candidate, and
        announced with no order, for staff to decide (re-order the exam, link it, or accept it unordered)."""
        order = None
        aliases = await same_patient_codes(s, st.patient_id)
        if st.accession_number:
            order = (
                await s.execute(select(t.orders).where(t.orders.c.accession_number == st.accession_number))
            ).first()
        if order is None:
            order = (
                await s.execute(
                    select(t.orders).where(t.orders.c.study_instance_uid == st.study_instance_uid)
                )
            ).first()
        if order is not None and order.status == "cancelled":
            reason = "order_cancelled"
            detail = f"order {order.accession_number} was cancelled"
            if order.patient_id != st.patient_id:
                detail += (
                    f"; it is for patient {order.patient_id}, the study names {st.patient_id or '(none)'}"
                )
        elif order is not None and order.patient_id in aliases:  # the same code, or merged records
            await self._link(s, st.study_instance_uid, order.id, "matched")
            return str(order.id)
        elif order is not None:
            reason = "patient_mismatch"
            detail = (
                f"order {order.accession_number} is for patient {order.patient_id}, "
                f"the study names {st.patient_id or '(none)'}"
            )
        elif st.accession_number:
            reason, detail = "unknown_accession", f"no order has accession number {st.accession_number}"
        else:
            reason, detail = "no_accession", "the study carries no accession number and matches no order"
        await queue_for_review(
            s, st.study_instance_uid, reason, detail, order.id if order is not None else None
        )
        (log.warning if reason == "order_cancelled" else log.info)(
            "study %s queued for reconciliation (%s): %s", st.study_instance_uid, reason, detail
        )
        return None

    async def _link(self, s: Any, study_uid: str, order_id: str, state: str) -> None:
        await link_study(s, study_uid, order_id, state)

    async def list_reconciliation(self, status: str = "open") -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(
                        t.reconciliation,
                        t.studies.c.patient_id,
                        t.studies.c.patient_name,
                        t.studies.c.accession_number,
                        t.studies.c.study_date,
                        t.studies.c.modalities,
                    )
                    .join(t.studies, t.studies.c.study_instance_uid == t.reconciliation.c.study_instance_uid)
                    .where(t.reconciliation.c.status == status)
                    .order_by(t.reconciliation.c.created_at)
                )
            ).all()
        out = []
        for r in rows:
            m = dict(r._mapping)
            m["created_at"] = m["created_at"].isoformat()
            m["resolved_at"] = m["resolved_at"].isoformat() if m["resolved_at"] else None
            out.append(m)
        return out

    async def resolve(self, item_id: str, order_id: str | None, actor: Any) -> dict[str, Any]:
        """Link the study to `order_id` (or accept it as unordered when None) -> imaging.study.reconciled."""
        async with self.rt.uow() as uow:
            s = uow.session
            item = (await s.execute(select(t.reconciliation).where(t.reconciliation.c.id == item_id))).first()
            if item is None:
                raise NotFound("reconciliation.not_found", "no such reconciliation item")
            if item.status != "open":
                raise Conflict("reconciliation.resolved", "this item is already resolved")
            st = (
                await s.execute(
                    select(t.studies).where(t.studies.c.study_instance_uid == item.study_instance_uid)
                )
            ).first()
            accession = st.accession_number or ""
            if order_id:
                order = (await s.execute(select(t.orders).where(t.orders.c.id == order_id))).first()
                if order is None:
                    raise NotFound("order.not_found", "no such imaging order", field="order_id")
                linked = (
                    await s.execute(
                        select(t.studies.c.study_instance_uid).where(
                            t.studies.c.order_id == order_id,
                            t.studies.c.study_instance_uid != item.study_instance_uid,
                        )
                    )
                ).first()
                if linked is not None:
                    raise Conflict(
                        "order.has_study", f"order is already linked to study {linked[0]}", field="order_id"
                    )
                await self._link(s, item.study_instance_uid, order_id, "resolved")
                accession = order.accession_number
            else:
                await s.execute(
                    update(t.studies)
                    .where(t.studies.c.study_instance_uid == item.study_instance_uid)
                    .values(reconciliation="resolved")
                )
            now = utcnow()
            await s.execute(
                update(t.reconciliation)
                .where(t.reconciliation.c.id == item_id)
                .values(
                    status="resolved", resolved_order_id=order_id, resolved_by=actor.subject, resolved_at=now
                )
            )
            uow.publish(
                "imaging.study.reconciled",
                ev.StudyReconciled(
                    study_instance_uid=item.study_instance_uid,
                    order_id=order_id or "",
                    accession_number=accession,
                    patient_code=st.patient_id,
                    reason=item.reason,
                    resolved_by=actor.subject,
                ),
            )
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_study.reconcile",
                    resource_type="ImagingStudy",
                    resource_id=item.study_instance_uid,
                    detail={"order_id": order_id, "reason": item.reason},
                )
            )
            await uow.commit()
        return {
            "id": item_id,
            "status": "resolved",
            "order_id": order_id,
            "study_instance_uid": item.study_instance_uid,
        }

    async def get(self, study_uid: str) -> pb.Study:
        async with self.rt.db.session() as s:
            st = (
                await s.execute(select(t.studies).where(t.studies.c.study_instance_uid == study_uid))
            ).first()
            if st is None:
                raise NotFound("study.not_found", "no such study")
            series = (
                await s.execute(
                    select(t.series)
                    .where(t.series.c.study_instance_uid == study_uid)
                    .order_by(t.series.c.series_number)
                )
            ).all()
        return study_proto(st, series)

    async def list(self, patient_code: str = "", accession: str = "", limit: int = 50) -> list[pb.Study]:
        async with self.rt.db.session() as s:
            q = select(t.studies).order_by(t.studies.c.last_received_at.desc()).limit(min(limit or 50, 500))
            if patient_code:
                q = q.where(t.studies.c.patient_id == patient_code)
            if accession:
                q = q.where(t.studies.c.accession_number == accession)
            return [study_proto(r, []) for r in (await s.execute(q)).all()]


async def link_study(s: Any, study_uid: str, order_id: str, state: str) -> None:
    """Link a study to its order (``state``: matched, resolved); the order names the study from then on."""
    await s.execute(
        update(t.studies)
        .where(t.studies.c.study_instance_uid == study_uid)
        .values(order_id=order_id, reconciliation=state)
    )
    await s.execute(
        update(t.orders)
        .where(t.orders.c.id == order_id)
        .values(study_instance_uid=study_uid, updated_at=utcnow())
    )


async def queue_for_review(
    s: Any, study_uid: str, reason: str, detail: str, candidate_order_id: str | None
) -> None:
    """Put a study on the reconciliation queue, unlinked from any order. A study has one queue item
    (``reconciliation.study_instance_uid`` is unique): one resolved earlier is opened again with the new
    reason, its former resolution cleared."""
    now = utcnow()
    values = {
        "reason": reason,
        "detail": detail,
        "candidate_order_id": candidate_order_id,
        "status": "open",
        "resolved_order_id": None,
        "resolved_by": None,
        "resolved_at": None,
        "created_at": now,
    }
    reopened = await s.execute(
        update(t.reconciliation).where(t.reconciliation.c.study_instance_uid == study_uid).values(**values)
    )
    if reopened.rowcount == 0:
        await s.execute(t.reconciliation.insert().values(id=new_id(), study_instance_uid=study_uid, **values))
    await s.execute(
        update(t.studies)
        .where(t.studies.c.study_instance_uid == study_uid)
        .values(order_id=None, reconciliation="pending")
    )


async def requeue_linked_studies(s: Any, order: Any, reason: str, detail: str) -> list[Any]:
    """Re-evaluate the studies linked to ``order`` after the order changed under them (cancelled,
    rescheduled): each is unlinked and queued for review with ``reason`` and the order as candidate.
    Returns the studies re-queued (study_instance_uid, patient_id)."""
    linked = (
        await s.execute(
            select(t.studies.c.study_instance_uid, t.studies.c.patient_id).where(
                t.studies.c.order_id == order.id
            )
        )
    ).all()
    for st in linked:
        await queue_for_review(s, st.study_instance_uid, reason, detail, order.id)
        log.warning(
            "study %s unlinked from order %s and queued for reconciliation (%s): %s",
            st.study_instance_uid,
            order.accession_number,
            reason,
            detail,
        )
    return linked


async def same_patient_codes(s: Any, code: str | None) -> set[str]:
    """The patient codes naming the same person as ``code``: itself, the record it was merged into
    (``patient_merges``, from admissions.patient.merged) and every record merged into that one."""
    if not code:
        return {code or ""}
    survivor = (
        await s.execute(
            select(t.patient_merges.c.survivor_code).where(t.patient_merges.c.merged_code == code)
        )
    ).scalar() or code
    merged = (
        await s.execute(
            select(t.patient_merges.c.merged_code).where(t.patient_merges.c.survivor_code == survivor)
        )
    ).scalars()
    return {code, survivor, *merged}


def study_proto(st: Any, series: list[Any]) -> pb.Study:
    return pb.Study(
        study_instance_uid=st.study_instance_uid,
        patient_code=st.patient_id,
        patient_name=st.patient_name or "",
        accession_number=st.accession_number or "",
        study_date=st.study_date or "",
        description=st.study_description or "",
        modalities=[m for m in st.modalities.split("\\") if m],
        series_count=st.series_count,
        instance_count=st.instance_count,
        order_id=st.order_id or "",
        reconciliation=st.reconciliation,
        size_bytes=st.size_bytes,
        series=[
            pb.Series(
                series_instance_uid=r.series_instance_uid,
                modality=r.modality or "",
                series_number=r.series_number or 0,
                description=r.series_description or "",
                body_part=r.body_part or "",
                instance_count=r.instance_count,
            )
            for r in series
        ],
    )
