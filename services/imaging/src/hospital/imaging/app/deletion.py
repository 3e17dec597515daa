"""Deletion of a study or a series by an administrator, with a reason (retention, a study sent in error).

A durable job (ADR 0312). The request's transaction removes the index rows (study, series, instances, their
conflict copies, reconciliation item and pending routing), writes the ``deletions`` job with every object key
to remove in ``deletion_objects``, audits and publishes ``imaging.study.deleted`` / ``imaging.series.deleted``
(outbox): from its commit no C-FIND, QIDO-RS, WADO-RS, C-MOVE or C-GET finds the study. The deletion worker
then removes the listed objects from the bucket, each one's row after its object is gone (removing a missing
object succeeds, so a pass repeated after a crash is harmless), and marks the job done. An object-store
failure leaves the job pending with its error and a doubling retry delay; a restart resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.db import utcnow
from hospital.chassis.errors import NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.common.v1 import types_pb2 as common
from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.imaging.adapters import tables as t

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

log = logging.getLogger(__name__)

BATCH = 200  # objects removed per transaction


class DeletionService:
    def __init__(self, rt: Runtime[ImagingSettings], settings: ImagingSettings) -> None:
        self.rt, self.s = rt, settings

    # ----------------------------------------------------------------------------------- requests

    async def delete_study(self, study_uid: str, reason: str, actor: Any, source: str = "") -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            st = (
                await s.execute(
                    select(t.studies).where(t.studies.c.study_instance_uid == study_uid).with_for_update()
                )
            ).first()
            if st is None:
                raise NotFound("study.not_found", "no such study")
            sops = select(t.instances.c.sop_instance_uid).where(t.instances.c.study_instance_uid == study_uid)
            keys = await self._object_keys(s, t.instances.c.study_instance_uid == study_uid, sops)
            job_id, now = new_id(), utcnow()
            await self._insert_job(s, job_id, "study", st, None, reason, actor, st.instance_count, keys, now)
            await s.execute(
                delete(t.instance_conflicts).where(t.instance_conflicts.c.sop_instance_uid.in_(sops))
            )
            await s.execute(delete(t.instances).where(t.instances.c.study_instance_uid == study_uid))
            await s.execute(delete(t.series).where(t.series.c.study_instance_uid == study_uid))
            await self._remove_study_rows(s, study_uid)
            msg = ev.StudyDeleted(
                study_instance_uid=study_uid,
                patient_code=st.patient_id,
                accession_number=st.accession_number or "",
                order_id=st.order_id or "",
                series_count=st.series_count,
                instance_count=st.instance_count,
                size_bytes=st.size_bytes,
                reason=reason,
                by=_actor(actor),
                deletion_id=job_id,
            )
            msg.deleted_at.FromDatetime(now)
            uow.publish("imaging.study.deleted", msg)
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_study.delete",
                    resource_type="ImagingStudy",
                    resource_id=study_uid,
                    patient_id=st.patient_id or None,
                    source=source,
                    detail={
                        "reason": reason,
                        "deletion_id": job_id,
                        "accession_number": st.accession_number,
                        "series": st.series_count,
                        "instances": st.instance_count,
                    },
                )
            )
            await uow.commit()
        log.info(
            "study %s deleted from the index by %s; job %s removes %d objects",
            study_uid,
            actor.subject,
            job_id,
            len(keys),
        )
        return await self.get(job_id)

    async def delete_series(
        self, study_uid: str, series_uid: str, reason: str, actor: Any, source: str = ""
    ) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            st = (
                await s.execute(
                    select(t.studies).where(t.studies.c.study_instance_uid == study_uid).with_for_update()
                )
            ).first()
            se = (
                await s.execute(
                    select(t.series).where(
                        t.series.c.series_instance_uid == series_uid,
                        t.series.c.study_instance_uid == study_uid,
                    )
                )
            ).first()
            if st is None or se is None:
                raise NotFound("series.not_found", "no such series in this study")
            where = t.instances.c.series_instance_uid == series_uid
            sops = select(t.instances.c.sop_instance_uid).where(where)
            count, size = (
                await s.execute(
                    select(func.count(), func.coalesce(func.sum(t.instances.c.size), 0)).where(where)
                )
            ).one()
            keys = await self._object_keys(s, where, sops)
            job_id, now = new_id(), utcnow()
            await self._insert_job(s, job_id, "series", st, series_uid, reason, actor, count, keys, now)
            await s.execute(
                delete(t.instance_conflicts).where(t.instance_conflicts.c.sop_instance_uid.in_(sops))
            )
            await s.execute(delete(t.instances).where(where))
            await s.execute(delete(t.series).where(t.series.c.series_instance_uid == series_uid))
            await s.execute(
                delete(t.routing_queue).where(
                    t.routing_queue.c.study_instance_uid == study_uid,
                    t.routing_queue.c.status == "pending",
                    t.routing_queue.c.sop_instance_uid.not_in(
                        select(t.instances.c.sop_instance_uid).where(
                            t.instances.c.study_instance_uid == study_uid
                        )
                    ),
                )
            )
            left = (
                await s.execute(
                    select(t.series.c.modality, t.series.c.instance_count).where(
                        t.series.c.study_instance_uid == study_uid
                    )
                )
            ).all()
            study_removed = not left
            if study_removed:
                await self._remove_study_rows(s, study_uid)
            else:
                modalities = "\\".join(sorted({r.modality for r in left if r.modality}))[:100]
                await s.execute(
                    update(t.studies)
                    .where(t.studies.c.study_instance_uid == study_uid)
                    .values(
                        series_count=len(left),
                        instance_count=sum(r.instance_count for r in left),
                        size_bytes=max(0, st.size_bytes - int(size)),
                        modalities=modalities,
                    )
                )
            msg = ev.SeriesDeleted(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                patient_code=st.patient_id,
                accession_number=st.accession_number or "",
                modality=se.modality or "",
                instance_count=int(count),
                size_bytes=int(size),
                reason=reason,
                by=_actor(actor),
                deletion_id=job_id,
                study_removed=study_removed,
            )
            msg.deleted_at.FromDatetime(now)
            uow.publish("imaging.series.deleted", msg)
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_series.delete",
                    resource_type="ImagingStudy",
                    resource_id=study_uid,
                    patient_id=st.patient_id or None,
                    source=source,
                    detail={
                        "reason": reason,
                        "deletion_id": job_id,
                        "series_instance_uid": series_uid,
                        "instances": int(count),
                        "study_removed": study_removed,
                    },
                )
            )
            await uow.commit()
        log.info(
            "series %s of study %s deleted from the index by %s; job %s removes %d objects",
            series_uid,
            study_uid,
            actor.subject,
            job_id,
            len(keys),
        )
        return await self.get(job_id)

    async def _object_keys(self, s: Any, where: Any, sops: Any) -> list[str]:
        keys = (await s.execute(select(t.instances.c.object_key).where(where))).scalars().all()
        copies = (
            (
                await s.execute(
                    select(t.instance_conflicts.c.object_key).where(
                        t.instance_conflicts.c.sop_instance_uid.in_(sops)
                    )
                )
            )
            .scalars()
            .all()
        )
        return sorted(set(keys) | set(copies))

    async def _insert_job(
        self,
        s: Any,
        job_id: str,
        level: str,
        st: Any,
        series_uid: str | None,
        reason: str,
        actor: Any,
        count: int,
        keys: list[str],
        now: Any,
    ) -> None:
        await s.execute(
            insert(t.deletions).values(
                id=job_id,
                level=level,
                study_instance_uid=st.study_instance_uid,
                series_instance_uid=series_uid,
                patient_id=st.patient_id,
                reason=reason,
                requested_by=actor.subject,
                status="pending" if keys else "done",
                instance_count=int(count),
                objects_total=len(keys),
                next_attempt_at=now,
                created_at=now,
                completed_at=None if keys else now,
            )
        )
        if keys:
            await s.execute(
                insert(t.deletion_objects), [{"deletion_id": job_id, "object_key": k} for k in keys]
            )

    async def _remove_study_rows(self, s: Any, study_uid: str) -> None:
        await s.execute(delete(t.reconciliation).where(t.reconciliation.c.study_instance_uid == study_uid))
        await s.execute(
            delete(t.routing_queue).where(
                t.routing_queue.c.study_instance_uid == study_uid, t.routing_queue.c.status == "pending"
            )
        )
        await s.execute(delete(t.studies).where(t.studies.c.study_instance_uid == study_uid))

    # ----------------------------------------------------------------------------------- reads

    async def get(self, job_id: str) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            row = (await s.execute(select(t.deletions).where(t.deletions.c.id == job_id))).first()
            if row is None:
                raise NotFound("deletion.not_found", "no such deletion")
            left = (
                await s.execute(
                    select(func.count())
                    .select_from(t.deletion_objects)
                    .where(t.deletion_objects.c.deletion_id == job_id)
                )
            ).scalar_one()
        return _job(row, left)

    async def list(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            q = select(t.deletions).order_by(t.deletions.c.created_at.desc()).limit(limit)
            if status:
                q = q.where(t.deletions.c.status == status)
            rows = (await s.execute(q)).all()
        return [_job(r, None) for r in rows]

    # ----------------------------------------------------------------------------------- worker

    async def run(self, stop: asyncio.Event) -> None:
        """Components.worker: remove the objects of pending deletions until none is left."""
        while not stop.is_set():
            try:
                await self.process_due()
            except Exception:
                log.exception("deletion pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.s.deletion_poll_seconds)
            except TimeoutError:
                pass

    async def process_due(self) -> int:
        async with self.rt.db.session() as s:
            due = (
                await s.execute(
                    select(t.deletions.c.id, t.deletions.c.attempts)
                    .where(t.deletions.c.status == "pending", t.deletions.c.next_attempt_at <= utcnow())
                    .order_by(t.deletions.c.created_at)
                    .limit(20)
                )
            ).all()
        done = 0
        for job_id, attempts in due:
            try:
                await self._work(job_id)
                done += 1
            except Exception as exc:  # noqa: BLE001 - the object store's failure is recorded, retried later
                delay = min(
                    self.s.deletion_retry_seconds * (2 ** min(attempts, 16)),
                    self.s.deletion_max_retry_seconds,
                )
                log.warning("deletion %s: %s; retrying in %.0f s", job_id, exc, delay)
                async with self.rt.db.session() as s:
                    await s.execute(
                        update(t.deletions)
                        .where(t.deletions.c.id == job_id)
                        .values(
                            attempts=attempts + 1,
                            last_error=f"{type(exc).__name__}: {exc}"[:2000],
                            next_attempt_at=utcnow() + timedelta(seconds=delay),
                        )
                    )
                    await s.commit()
        return done

    async def _work(self, job_id: str) -> None:
        assert self.rt.store is not None
        while True:
            async with self.rt.db.session() as s:
                keys = (
                    (
                        await s.execute(
                            select(t.deletion_objects.c.object_key)
                            .where(t.deletion_objects.c.deletion_id == job_id)
                            .order_by(t.deletion_objects.c.object_key)
                            .limit(BATCH)
                        )
                    )
                    .scalars()
                    .all()
                )
                if not keys:
                    await s.execute(
                        update(t.deletions)
                        .where(t.deletions.c.id == job_id)
                        .values(status="done", completed_at=utcnow(), last_error=None)
                    )
                    await s.commit()
                    log.info("deletion %s done: its objects are removed", job_id)
                    return
                # An instance received again since (same UID, so the same key) is indexed anew: keep it.
                kept = set(
                    (
                        await s.execute(
                            select(t.instances.c.object_key).where(t.instances.c.object_key.in_(keys))
                        )
                    ).scalars()
                ) | set(
                    (
                        await s.execute(
                            select(t.instance_conflicts.c.object_key).where(
                                t.instance_conflicts.c.object_key.in_(keys)
                            )
                        )
                    ).scalars()
                )
            for key in keys:
                if key not in kept:
                    await self.rt.store.delete(self.s.bucket, key)  # a missing object is not an error
                async with self.rt.db.session() as s:
                    await s.execute(
                        delete(t.deletion_objects).where(
                            t.deletion_objects.c.deletion_id == job_id, t.deletion_objects.c.object_key == key
                        )
                    )
                    await s.commit()


def _actor(actor: Any) -> common.Actor:
    return common.Actor(subject=actor.subject, roles=sorted(actor.roles))


def _job(row: Any, left: int | None) -> dict[str, Any]:
    m = dict(row._mapping)
    for k in ("next_attempt_at", "created_at", "completed_at"):
        m[k] = m[k].isoformat() if m[k] else None
    if left is not None:
        m["objects_left"] = left
    return m
