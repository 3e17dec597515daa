"""Storage Commitment Push Model SCP (PS3.4 annex J, SOP Class 1.2.840.10008.1.20.1). ADR 0315.

A modality asks (N-ACTION, action type 1) whether the archive has really kept a list of instances before it
deletes its own copies. The N-ACTION is answered Success at once (the request is accepted); the result
follows as an N-EVENT-REPORT on a new association to the requester's AE (its address from ``KNOWN_AES``;
the archive proposes Storage Commitment in the SCP role). An instance is committed only when it is in the
index, which the pipeline writes after the object is in object storage: instances still in the spool are
waited for up to ``COMMITMENT_WAIT_SECONDS``, then reported failed (reason 0x0110, processing failure);
unknown instances fail with 0x0112 (no such object instance), a SOP class differing from the stored one
with 0x0119 (class / instance conflict). Event type 1 when all are committed, 2 when any failed.

Requests are durable (ADR 0318): the N-ACTION is answered Success only once the request is written to
``storage_commitments``; the worker waits, decides and reports from that table, so a restart loses
neither a pending request nor the state of its N-EVENT-REPORT.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.events import Event
from sqlalchemy import select, update

from hospital.chassis.db import utcnow
from hospital.chassis.ids import new_id
from hospital.imaging.adapters import tables as t
from hospital.imaging.domain.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger(__name__)

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP instance
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
PROCESSING_FAILURE, NO_SUCH_INSTANCE, CLASS_INSTANCE_CONFLICT = 0x0110, 0x0112, 0x0119


def add_commitment_contexts(ae: AE) -> None:
    ae.add_supported_context(STORAGE_COMMITMENT, TRANSFER_SYNTAXES)


class StorageCommitmentHandler:
    """The N-ACTION side: the request is written to ``storage_commitments`` before it is answered (a
    request the archive could not record is answered 0x0110, so the modality keeps its copies and asks
    again); :class:`CommitmentWorker` decides and reports it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rt: Any, settings: Any, worker: CommitmentWorker
    ) -> None:
        self.loop, self.rt, self.s, self.worker = loop, rt, settings, worker

    def handlers(self) -> list[tuple[evt.EventType, Any]]:
        return [(evt.EVT_N_ACTION, self.on_n_action)]

    def on_n_action(self, event: Event) -> tuple[int, Dataset | None]:
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title).strip()
        if str(event.request.RequestedSOPClassUID) != STORAGE_COMMITMENT:
            return 0x0122, None  # SOP class not supported
        if event.action_type != 1:
            return 0x0123, None  # no such action
        try:
            info = event.action_information
            transaction = str(info.TransactionUID)
            refs = [
                (str(r.ReferencedSOPClassUID), str(r.ReferencedSOPInstanceUID))
                for r in info.ReferencedSOPSequence
            ]
        except Exception as exc:  # noqa: BLE001 - a malformed request is refused, with the reason logged
            log.warning("storage commitment from %s: unreadable action information: %s", calling, exc)
            return 0x0110, None
        if calling not in self.s.peers:
            log.warning("storage commitment from %s: not in KNOWN_AES, no address to report to", calling)
            return 0x0110, None
        try:
            asyncio.run_coroutine_threadsafe(
                self.worker.record(calling, transaction, refs), self.loop
            ).result(timeout=30)
        except Exception:
            log.exception("storage commitment %s from %s: not recorded, refused", transaction, calling)
            return 0x0110, None
        log.info("storage commitment %s from %s: %d instances", transaction, calling, len(refs))
        return 0x0000, None


class CommitmentWorker:
    """Decides and reports the recorded requests (a serve-side task: the reason for an instance still in
    the spool comes from this process's spool). A request is ``waiting`` while some of its instances are
    not indexed and its ``wait_until`` has not passed; then its result is written (``reporting``) and the
    N-EVENT-REPORT is sent, one association per attempt, until it is ``reported`` or, after
    ``COMMITMENT_REPORT_ATTEMPTS``, ``unreported``. Each step is a row update, so a restart resumes where
    it stopped: the wait goes on until the same deadline, and a decided result is reported as decided
    (at start every open request is due at once: :meth:`resume`). A row is claimed (its
    ``next_attempt_at`` moved ahead, guarded by its being due) before it is worked on, so two serve
    processes never report one request at the same time."""

    LEASE_SECONDS = 60.0

    def __init__(self, rt: Any, settings: Any) -> None:
        self.rt, self.s = rt, settings
        self._wake = asyncio.Event()

    async def record(self, calling: str, transaction: str, refs: list[tuple[str, str]]) -> str:
        now = utcnow()
        row_id = new_id()
        async with self.rt.db.session() as s:
            await s.execute(
                t.storage_commitments.insert().values(
                    id=row_id,
                    transaction_uid=transaction[:64],
                    calling_ae=calling[:16],
                    refs=[list(r) for r in refs],
                    status="waiting",
                    wait_until=now + timedelta(seconds=self.s.commitment_wait_seconds),
                    attempts=0,
                    next_attempt_at=now,
                    received_at=now,
                )
            )
            await s.commit()
        self._wake.set()
        return row_id

    async def resume(self) -> int:
        """At start: every open request is due at once (a wait goes on to its deadline, a report waiting
        for its next attempt or left claimed by a process that stopped is tried now). Returns how many."""
        now = utcnow()
        async with self.rt.db.session() as s:
            res = await s.execute(
                update(t.storage_commitments)
                .where(
                    t.storage_commitments.c.status.in_(("waiting", "reporting")),
                    t.storage_commitments.c.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
            await s.commit()
        if res.rowcount:
            log.info("storage commitment: %d requests resumed after a restart", res.rowcount)
        return res.rowcount

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.resume()
        except Exception:
            log.exception("storage commitment: open requests not resumed at start (the next pass finds them)")
        while not stop.is_set():
            busy = False
            try:
                busy = await self.pass_due()
            except Exception:
                log.exception("storage commitment pass failed")
            self._wake.clear()
            timeout = 0.3 if busy else self.s.commitment_poll_seconds
            try:  # woken by a new request; the stop is seen within a poll interval
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass

    async def pass_due(self) -> bool:
        """Work on every request due; True while some request is still waiting or being reported."""
        now = utcnow()
        async with self.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(t.storage_commitments)
                    .where(
                        t.storage_commitments.c.status.in_(("waiting", "reporting")),
                        t.storage_commitments.c.next_attempt_at <= now,
                    )
                    .order_by(t.storage_commitments.c.next_attempt_at)
                    .limit(50)
                )
            ).all()
            open_left = (
                await s.execute(
                    select(t.storage_commitments.c.id)
                    .where(t.storage_commitments.c.status.in_(("waiting", "reporting")))
                    .limit(1)
                )
            ).first()
        for row in rows:
            if await self._claim(row):
                await self.work(row)
        return open_left is not None

    async def _claim(self, row: Any) -> bool:
        now = utcnow()
        async with self.rt.db.session() as s:
            res = await s.execute(
                update(t.storage_commitments)
                .where(
                    t.storage_commitments.c.id == row.id,
                    t.storage_commitments.c.status == row.status,
                    t.storage_commitments.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + timedelta(seconds=self.LEASE_SECONDS))
            )
            await s.commit()
        return res.rowcount == 1

    async def _set(self, row_id: str, **values: Any) -> None:
        async with self.rt.db.session() as s:
            await s.execute(
                update(t.storage_commitments).where(t.storage_commitments.c.id == row_id).values(**values)
            )
            await s.commit()

    async def work(self, row: Any) -> None:
        refs = [(str(c), str(i)) for c, i in row.refs]
        result = row.result
        if row.status == "waiting":
            committed, failed, missing = await self.check(refs)
            now = utcnow()
            if missing and now < row.wait_until:
                await self._set(row.id, next_attempt_at=now + timedelta(seconds=0.3))
                return
            result = {"committed": [list(c) for c in committed], "failed": [list(f) for f in failed]}
            await self._set(row.id, status="reporting", result=result, next_attempt_at=now)
        committed = [(str(c), str(i)) for c, i in result["committed"]]
        failed = [(str(c), str(i), int(r)) for c, i, r in result["failed"]]
        error = await asyncio.to_thread(self.report, row.calling_ae, row.transaction_uid, committed, failed)
        attempts = row.attempts + 1
        now = utcnow()
        if error is None:
            await self._set(row.id, status="reported", attempts=attempts, reported_at=now, last_error=None)
            log.info(
                "storage commitment %s reported to %s: %d committed, %d failed",
                row.transaction_uid,
                row.calling_ae,
                len(committed),
                len(failed),
            )
        elif attempts >= self.s.commitment_report_attempts:
            await self._set(row.id, status="unreported", attempts=attempts, last_error=error)
            log.warning(
                "storage commitment %s: could not report to %s after %d attempts (%s)",
                row.transaction_uid,
                row.calling_ae,
                attempts,
                error,
            )
        else:
            delay = min(30.0, self.s.commitment_retry_seconds * (2 ** (attempts - 1)))
            await self._set(
                row.id,
                status="reporting",
                attempts=attempts,
                last_error=error,
                next_attempt_at=now + timedelta(seconds=delay),
            )

    async def check(
        self, refs: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]], list[str]]:
        """(committed, failed with reason, not indexed yet) as things stand now."""
        uids = [sop for _, sop in refs]
        stored: dict[str, str] = {}
        async with self.rt.db.session() as s:
            for i in range(0, len(uids), 500):
                rows = (
                    await s.execute(
                        select(t.instances.c.sop_instance_uid, t.instances.c.sop_class_uid).where(
                            t.instances.c.sop_instance_uid.in_(uids[i : i + 500])
                        )
                    )
                ).all()
                stored.update({r.sop_instance_uid: r.sop_class_uid for r in rows})
        missing = [sop for sop in uids if sop not in stored]
        in_spool = self._spooled(missing)
        committed, failed = [], []
        for cls, sop in refs:
            if sop in stored and stored[sop] == cls:
                committed.append((cls, sop))
            elif sop in stored:
                failed.append((cls, sop, CLASS_INSTANCE_CONFLICT))
            else:
                failed.append((cls, sop, PROCESSING_FAILURE if sop in in_spool else NO_SUCH_INSTANCE))
        return committed, failed, missing

    def _spooled(self, uids: list[str]) -> set[str]:
        if not uids:
            return set()
        spool = getattr(getattr(self.rt, "imaging", None), "spool", None)
        spooled = {e.sop_instance_uid for e in spool.pending()} if spool is not None else set()
        return spooled & set(uids)

    def report(
        self,
        calling: str,
        transaction: str,
        committed: list[tuple[str, str]],
        failed: list[tuple[str, str, int]],
    ) -> str | None:
        """One attempt at the N-EVENT-REPORT on a new association; None when the requester took it, else
        why not."""
        if calling not in self.s.peers:
            return f"{calling} is no longer in KNOWN_AES"
        host, port = self.s.peers[calling]
        ds = Dataset()
        ds.TransactionUID = transaction
        ds.RetrieveAETitle = self.s.ae_title
        if committed:
            ds.ReferencedSOPSequence = [_item(c, s) for c, s in committed]
        if failed:
            items = []
            for c, s, reason in failed:
                item = _item(c, s)
                item.FailureReason = reason
                items.append(item)
            ds.FailedSOPSequence = items
        event_type = 2 if failed else 1
        ae = AE(ae_title=self.s.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.add_requested_context(STORAGE_COMMITMENT, TRANSFER_SYNTAXES)
        assoc = ae.associate(
            host, port, ae_title=calling, ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)]
        )
        if not assoc.is_established:
            return "association not established"
        try:
            status, _ = assoc.send_n_event_report(
                ds, event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
            )
        finally:
            assoc.release()
        if status is not None and status.Status == 0x0000:
            return None
        return f"N-EVENT-REPORT status {status.Status if status is not None else 'none'}"


def _item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item
