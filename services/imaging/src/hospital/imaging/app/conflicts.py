"""Review of flagged conflicts: the same SOP Instance UID received again with other content.

The pipeline never overwrites an indexed instance: a differing copy is uploaded under
``conflicts/<sop>/<digest>.dcm`` and flagged in ``instance_conflicts`` (ADR 0300). A radiographer or
radiologist then decides:

* ``keep_existing``: the indexed instance stays; the flagged copy stays in storage, marked resolved;
* ``take_new``: the indexed instance is first copied aside under ``conflicts/<sop>/<old digest>.dcm``
  (nothing is ever lost), the new copy replaces it at the instance's key, and the index row takes the
  new copy's digest, size and attributes.

Either way the decision is audited, and resolving twice is refused.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from minio.commonconfig import CopySource
from sqlalchemy import select, update

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.imaging.adapters import tables as t
from hospital.imaging.app.ingest import conflict_key
from hospital.imaging.domain.header import read_index_attributes

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

ACTIONS = ("keep_existing", "take_new")


class ConflictService:
    def __init__(self, rt: Runtime[ImagingSettings], settings: ImagingSettings) -> None:
        self.rt, self.s = rt, settings

    async def list(self, status: str = "open", limit: int = 200) -> list[dict[str, Any]]:
        c, i = t.instance_conflicts, t.instances
        q = (
            select(
                c,
                i.c.digest.label("existing_digest"),
                i.c.study_instance_uid,
                i.c.series_instance_uid,
                i.c.object_key.label("existing_object_key"),
                i.c.source_ae.label("existing_source_ae"),
                i.c.received_at.label("existing_received_at"),
            )
            .select_from(c.outerjoin(i, i.c.sop_instance_uid == c.c.sop_instance_uid))
            .order_by(c.c.received_at)
            .limit(limit)
        )
        if status != "all":
            q = q.where(c.c.status == status)
        async with self.rt.db.session() as s:
            rows = (await s.execute(q)).all()
        out = []
        for r in rows:
            m = dict(r._mapping)
            for k in ("received_at", "resolved_at", "existing_received_at"):
                m[k] = m[k].isoformat() if m.get(k) else None
            out.append(m)
        return out

    async def resolve(self, conflict_id: str, action: str, actor: Any) -> dict[str, Any]:
        if action not in ACTIONS:
            raise Invalid("conflict.action", f"action must be one of {', '.join(ACTIONS)}", field="action")
        async with self.rt.uow() as uow:
            s = uow.session
            c = (
                await s.execute(
                    select(t.instance_conflicts)
                    .where(t.instance_conflicts.c.id == conflict_id)
                    .with_for_update()
                )
            ).first()
            if c is None:
                raise NotFound("conflict.not_found", "no such conflict")
            if c.status != "open":
                raise Conflict("conflict.resolved", f"this conflict is already resolved ({c.resolution})")
            inst = (
                await s.execute(
                    select(t.instances).where(t.instances.c.sop_instance_uid == c.sop_instance_uid)
                )
            ).first()
            if inst is None:
                raise Conflict("conflict.no_instance", "the instance this conflict is about is not indexed")
            detail: dict[str, Any] = {
                "sop_instance_uid": c.sop_instance_uid,
                "action": action,
                "kept_digest": inst.digest if action == "keep_existing" else c.digest,
            }
            if action == "take_new":
                superseded = conflict_key(c.sop_instance_uid, inst.digest)
                values = await asyncio.to_thread(self._swap, inst.object_key, c.object_key, superseded)
                await s.execute(
                    update(t.instances)
                    .where(t.instances.c.sop_instance_uid == c.sop_instance_uid)
                    .values(digest=c.digest, source_ae=c.source_ae, **values)
                )
                delta = values["size"] - inst.size
                if delta:
                    await s.execute(
                        update(t.studies)
                        .where(t.studies.c.study_instance_uid == inst.study_instance_uid)
                        .values(size_bytes=t.studies.c.size_bytes + delta)
                    )
                detail["superseded_copy"] = superseded
            now = utcnow()
            await s.execute(
                update(t.instance_conflicts)
                .where(t.instance_conflicts.c.id == conflict_id)
                .values(status="resolved", resolution=action, resolved_by=actor.subject, resolved_at=now)
            )
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action=f"imaging_conflict.{action}",
                    resource_type="DicomInstance",
                    resource_id=c.sop_instance_uid,
                    detail=detail,
                )
            )
            await uow.commit()
        return {"id": conflict_id, "status": "resolved", "resolution": action, **detail}

    def _swap(self, instance_key: str, new_key: str, superseded_key: str) -> dict[str, Any]:
        """Copy the current object aside, then the new copy over it; the new copy's index attributes."""
        client, bucket = self.rt.store.client, self.s.bucket
        client.copy_object(bucket, superseded_key, CopySource(bucket, instance_key))
        client.copy_object(bucket, instance_key, CopySource(bucket, new_key))
        resp = client.get_object(bucket, instance_key)
        try:
            data = resp.read()
        finally:
            resp.close()
            resp.release_conn()
        ix = read_index_attributes(data)
        return {
            "size": len(data),
            "transfer_syntax_uid": ix.transfer_syntax_uid,
            "rows": ix.rows,
            "columns": ix.columns,
            "frames": ix.number_of_frames,
            "instance_number": ix.instance_number,
        }
