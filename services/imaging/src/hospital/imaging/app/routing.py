"""Routing: rules forward received instances to other AEs over C-STORE from a persistent queue.

Jobs are written in the same transaction that indexes the instance, so a routed instance is never
lost between indexing and forwarding. The router sends due jobs grouped by destination, one
association per group; a destination that is down, unknown or refusing keeps its jobs `pending`
with the error and a growing back-off (never dropped). Status: GET /api/v1/routing/queue.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from io import BytesIO
from typing import TYPE_CHECKING, Any

import pydicom
from pynetdicom import AE, build_context
from sqlalchemy import delete, func, select, update

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.imaging.adapters import tables as t
from hospital.imaging.app.ingest import RULE_ATTRIBUTES
from hospital.imaging.domain.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

log = logging.getLogger(__name__)


class RoutingService:
    def __init__(self, rt: Runtime[ImagingSettings], settings: ImagingSettings) -> None:
        self.rt, self.s = rt, settings

    # ---------------------------------------------------------------- rules
    async def add_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        dest = str(body.get("destination_ae") or "").strip()
        if not dest or len(dest) > 16:
            raise Invalid("routing.destination", "destination_ae: an AE title", field="destination_ae")
        if dest not in self.s.peers:
            raise Invalid(
                "routing.unknown_destination",
                f"{dest} is not in known_aes (HOSPITAL_IMAGING_KNOWN_AES)",
                field="destination_ae",
            )
        attributes = body.get("attributes") or {}
        unknown = [k for k in attributes if k not in RULE_ATTRIBUTES]
        if unknown:
            raise Invalid(
                "routing.attribute",
                f"cannot route on {', '.join(unknown)}; use one of {', '.join(sorted(RULE_ATTRIBUTES))}",
                field="attributes",
            )
        row = {
            "id": new_id(),
            "name": str(body.get("name") or dest)[:100],
            "destination_ae": dest,
            "modality": (body.get("modality") or None),
            "source_ae": (body.get("source_ae") or None),
            "attributes": {k: str(v) for k, v in attributes.items()},
            "enabled": bool(body.get("enabled", True)),
            "created_at": utcnow(),
        }
        async with self.rt.uow() as uow:
            await uow.session.execute(t.routing_rules.insert().values(**row))
            await uow.commit()
        row["created_at"] = row["created_at"].isoformat()
        return row

    async def rules(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (await s.execute(select(t.routing_rules).order_by(t.routing_rules.c.created_at))).all()
        return [dict(r._mapping, created_at=r.created_at.isoformat()) for r in rows]

    async def delete_rule(self, rule_id: str) -> None:
        async with self.rt.uow() as uow:
            res = await uow.session.execute(delete(t.routing_rules).where(t.routing_rules.c.id == rule_id))
            if res.rowcount != 1:
                raise NotFound("routing.rule_not_found", "no such routing rule")
            await uow.commit()

    async def queue_status(self, limit: int = 100) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            if s.bind.dialect.name == "postgresql":  # counts and list from one snapshot, not two
                await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            counts = (
                await s.execute(
                    select(t.routing_queue.c.destination_ae, t.routing_queue.c.status, func.count()).group_by(
                        t.routing_queue.c.destination_ae, t.routing_queue.c.status
                    )
                )
            ).all()
            recent = (
                await s.execute(
                    select(t.routing_queue)
                    .where(t.routing_queue.c.status != "sent")
                    .order_by(t.routing_queue.c.seq)
                    .limit(limit)
                )
            ).all()
        by_dest: dict[str, dict[str, int]] = {}
        for dest, status, n in counts:
            by_dest.setdefault(dest, {})[status] = n
        return {
            "destinations": by_dest,
            "waiting": [
                {
                    "seq": r.seq,
                    "destination_ae": r.destination_ae,
                    "sop_instance_uid": r.sop_instance_uid,
                    "study_instance_uid": r.study_instance_uid,
                    "status": r.status,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "next_attempt_at": r.next_attempt_at.isoformat(),
                }
                for r in recent
            ],
        }

    async def retry(self, destination: str | None, actor: Any, source: str = "") -> int:
        """Make the forwards waiting for ``destination`` (or every destination) due now, pending again if
        a destination had refused them; the router sends them on its next pass. Audited
        ``imaging_routing.retry`` with the number rescheduled."""
        if destination is not None and len(destination) > 16:
            raise Invalid("routing.destination", "destination_ae: an AE title", field="destination_ae")
        async with self.rt.uow() as uow:
            stmt = update(t.routing_queue).where(t.routing_queue.c.status.in_(("pending", "failed")))
            if destination:
                stmt = stmt.where(t.routing_queue.c.destination_ae == destination)
            res = await uow.session.execute(stmt.values(status="pending", next_attempt_at=utcnow()))
            n = int(res.rowcount or 0)
            uow.audit(
                AuditEntry(
                    actor=actor.subject,
                    actor_roles=tuple(sorted(actor.roles)),
                    action="imaging_routing.retry",
                    resource_type="RoutingDestination",
                    resource_id=destination or None,
                    source=source,
                    detail={"rescheduled": n},
                )
            )
            await uow.commit()
        return n

    # ---------------------------------------------------------------- router
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.route_once()
            except Exception:
                log.exception("routing pass failed")
                sent = 0
            if not sent:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.s.routing_poll_seconds)
                except TimeoutError:
                    pass

    async def route_once(self) -> int:
        now = utcnow()
        async with self.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(
                        t.routing_queue.c.seq,
                        t.routing_queue.c.destination_ae,
                        t.routing_queue.c.attempts,
                        t.instances.c.object_key,
                        t.instances.c.sop_class_uid,
                        t.instances.c.transfer_syntax_uid,
                    )
                    .join(t.instances, t.instances.c.sop_instance_uid == t.routing_queue.c.sop_instance_uid)
                    .where(t.routing_queue.c.status == "pending", t.routing_queue.c.next_attempt_at <= now)
                    .order_by(t.routing_queue.c.seq)
                    .limit(200)
                )
            ).all()
        groups: dict[str, list[Any]] = {}
        for r in rows:
            groups.setdefault(r.destination_ae, []).append(r)
        sent = 0
        for dest, jobs in groups.items():
            peer = self.s.peers.get(dest)
            if peer is None:
                results = {j.seq: f"{dest} is not in known_aes" for j in jobs}
            else:
                results = await asyncio.to_thread(self._send, dest, peer, jobs)
            sent += await self._record(jobs, results)
        return sent

    def _send(self, dest: str, peer: tuple[str, int], jobs: list[Any]) -> dict[int, str | None]:
        """C-STORE each job's object; {seq: None on success, else the error}."""
        ae = AE(ae_title=self.s.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        pairs = sorted({(j.sop_class_uid, j.transfer_syntax_uid) for j in jobs})[:128]
        contexts = [build_context(c, [ts]) for c, ts in pairs]
        assoc = ae.associate(peer[0], peer[1], contexts=contexts, ae_title=dest)
        if not assoc.is_established:
            return {j.seq: f"association with {dest} at {peer[0]}:{peer[1]} failed" for j in jobs}
        out: dict[int, str | None] = {}
        try:
            for j in jobs:
                if not assoc.is_established:
                    out[j.seq] = "association lost"
                    continue
                try:
                    resp = self.rt.store.client.get_object(self.s.bucket, j.object_key)
                    try:
                        data = resp.read()
                    finally:
                        resp.close()
                        resp.release_conn()
                    status = assoc.send_c_store(pydicom.dcmread(BytesIO(data)))
                except Exception as exc:  # noqa: BLE001
                    out[j.seq] = f"{type(exc).__name__}: {exc}"
                    continue
                code = status.get("Status") if status else None
                out[j.seq] = (
                    None
                    if code in (0x0000, 0xB000, 0xB006, 0xB007)
                    else (f"destination answered 0x{code:04X}" if code is not None else "no response")
                )
        finally:
            if assoc.is_established:
                assoc.release()
        return out

    async def _record(self, jobs: list[Any], results: dict[int, str | None]) -> int:
        now = utcnow()
        ok = [seq for seq, err in results.items() if err is None]
        async with self.rt.uow() as uow:
            if ok:
                await uow.session.execute(
                    update(t.routing_queue)
                    .where(t.routing_queue.c.seq.in_(ok))
                    .values(
                        status="sent", sent_at=now, attempts=t.routing_queue.c.attempts + 1, last_error=None
                    )
                )
            for j in jobs:
                err = results.get(j.seq, "not attempted")
                if err is None:
                    continue
                delay = min(
                    self.s.routing_retry_seconds * (2 ** min(j.attempts, 10)),
                    self.s.routing_max_retry_seconds,
                )
                await uow.session.execute(
                    update(t.routing_queue)
                    .where(t.routing_queue.c.seq == j.seq)
                    .values(
                        attempts=j.attempts + 1,
                        last_error=err[:500],
                        next_attempt_at=now + timedelta(seconds=delay),
                    )
                )
            await uow.commit()
        failed = len(jobs) - len(ok)
        if failed:
            log.warning(
                "routing to %s: %d sent, %d waiting for retry (%s)",
                jobs[0].destination_ae,
                len(ok),
                failed,
                next(e for e in results.values() if e),
            )
        return len(ok)
