"""Storage Commitment Push Model SCP (PS3.4 annex J, SOP Class 1.2.840.10008.1.20.1). ADR 0315.

A modality asks (N-ACTION, action type 1) whether the archive has really kept a list of instances before it
deletes its own copies. The N-ACTION is answered Success at once (the request is accepted); the result
follows as an N-EVENT-REPORT on a new association to the requester's AE (its address from ``KNOWN_AES``;
the archive proposes Storage Commitment in the SCP role). An instance is committed only when it is in the
index, which the pipeline writes after the object is in object storage: instances still in the spool are
waited for up to ``COMMITMENT_WAIT_SECONDS``, then reported failed (reason 0x0110, processing failure);
unknown instances fail with 0x0112 (no such object instance), a SOP class differing from the stored one
with 0x0119 (class / instance conflict). Event type 1 when all are committed, 2 when any failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.events import Event
from sqlalchemy import select

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
    def __init__(self, loop: asyncio.AbstractEventLoop, rt: Any, settings: Any) -> None:
        self.loop, self.rt, self.s = loop, rt, settings

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
        log.info("storage commitment %s from %s: %d instances", transaction, calling, len(refs))
        asyncio.run_coroutine_threadsafe(self.commit(calling, transaction, refs), self.loop)
        return 0x0000, None

    async def commit(self, calling: str, transaction: str, refs: list[tuple[str, str]]) -> None:
        try:
            committed, failed = await self.check(refs)
            await asyncio.to_thread(self.report, calling, transaction, committed, failed)
        except Exception:
            log.exception("storage commitment %s for %s failed", transaction, calling)

    async def check(
        self, refs: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
        """(committed, failed with reason): waits for instances not yet indexed, up to the timeout."""
        deadline = time.monotonic() + self.s.commitment_wait_seconds
        while True:
            uids = [sop for _, sop in refs]
            async with self.rt.db.session() as s:
                rows = (
                    await s.execute(
                        select(t.instances.c.sop_instance_uid, t.instances.c.sop_class_uid).where(
                            t.instances.c.sop_instance_uid.in_(uids)
                        )
                    )
                ).all()
            stored = {r.sop_instance_uid: r.sop_class_uid for r in rows}
            missing = [sop for sop in uids if sop not in stored]
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        in_spool = self._spooled(missing)
        committed, failed = [], []
        for cls, sop in refs:
            if sop in stored and stored[sop] == cls:
                committed.append((cls, sop))
            elif sop in stored:
                failed.append((cls, sop, CLASS_INSTANCE_CONFLICT))
            else:
                failed.append((cls, sop, PROCESSING_FAILURE if sop in in_spool else NO_SUCH_INSTANCE))
        return committed, failed

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
    ) -> None:
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
        last = "no attempt"
        for attempt in range(self.s.commitment_report_attempts):
            assoc = ae.associate(
                host, port, ae_title=calling, ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)]
            )
            if assoc.is_established:
                try:
                    status, _ = assoc.send_n_event_report(
                        ds, event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
                    )
                finally:
                    assoc.release()
                if status is not None and status.Status == 0x0000:
                    log.info(
                        "storage commitment %s reported to %s: %d committed, %d failed",
                        transaction,
                        calling,
                        len(committed),
                        len(failed),
                    )
                    return
                last = f"N-EVENT-REPORT status {status.Status if status is not None else 'none'}"
            else:
                last = "association not established"
            time.sleep(min(30.0, self.s.commitment_retry_seconds * (2**attempt)))
        log.warning("storage commitment %s: could not report to %s (%s)", transaction, calling, last)


def _item(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item
