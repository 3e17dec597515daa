"""The persistent ingest pipeline: spool -> object storage -> index -> spool.done.

Every instance acknowledged to a sender is already durable in the spool (fsync'd before the
C-STORE response). This worker moves it on, in batches:

1. read the index attributes and the data set digest of each pending spool file;
2. decide, against the index: new instance, identical duplicate (nothing to do) or conflict
   (same SOP Instance UID, other content: kept under ``conflicts/`` and flagged, never overwriting);
3. upload each new file byte for byte to ``studies/<study>/series/<series>/instances/<sop>.dcm``;
4. index the whole batch in one transaction (patient, study, series, instance rows and routing jobs);
5. only then remove the spool files.

A crash or an unreachable object store at any step leaves the files in the spool: the next pass
redoes the step (uploads are idempotent: same key, same bytes). Nothing is dropped.

Each file is hashed once: its digest is the SHA-256 of the Part 10 file as stored (so the digest of an
indexed instance is the hash of the object under its key), and the same hash signs the upload's payload
(:mod:`~hospital.imaging.adapters.s3put`). Two copies of an instance whose files differ only in the meta
header (another Source AE, an older gateway version, or rows indexed when the digest covered the data set
alone) have different digests: before such a copy is called a conflict, its transfer syntax and data set
bytes are compared with the stored object's, and identical ones are duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from hospital.chassis.db import utcnow
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.imaging.adapters import tables as t
from hospital.imaging.adapters.s3put import SignedPut
from hospital.imaging.adapters.spool import Spool, SpoolEntry
from hospital.imaging.app.access_audit import MAX_LISTED, dicom_entry
from hospital.imaging.app.stow import SOURCE as STOW_SOURCE
from hospital.imaging.domain.header import HeaderError, InstanceIndex, read_index_attributes
from hospital.imaging.domain.instance_checks import bounded_index
from hospital.imaging.domain.matching import fold
from hospital.imaging.domain.part10 import Part10Error, read_meta, same_dataset_bytes

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

log = logging.getLogger(__name__)


def instance_key(study: str, series: str, sop: str) -> str:
    return f"studies/{study}/series/{series}/instances/{sop}.dcm"


def conflict_key(sop: str, digest: str) -> str:
    return f"conflicts/{sop}/{digest[:16]}.dcm"


@dataclass
class Prepared:
    entry: SpoolEntry
    index: InstanceIndex
    digest: str
    source_ae: str | None
    kind: str = "new"  # new, duplicate, conflict
    key: str = ""


def _modalities(values: set[str]) -> str:
    """ModalitiesInStudy as stored (backslash-separated, at most the column's 100 characters)."""
    kept: list[str] = []
    for value in sorted(values):
        if len("\\".join([*kept, value])) > 100:
            break
        kept.append(value)
    return "\\".join(kept)


# Attributes a routing rule may test, by DICOM keyword.
RULE_ATTRIBUTES = {
    "PatientID": "patient_id",
    "AccessionNumber": "accession_number",
    "StudyDescription": "study_description",
    "SeriesDescription": "series_description",
    "BodyPartExamined": "body_part_examined",
    "Modality": "modality",
    "ReferringPhysicianName": "referring_physician_name",
    "SOPClassUID": "sop_class_uid",
}


def rule_matches(rule: dict[str, Any], ix: InstanceIndex, source_ae: str | None) -> bool:
    if rule["modality"] and (ix.modality or "").upper() != rule["modality"].upper():
        return False
    if rule["source_ae"] and (source_ae or "") != rule["source_ae"]:
        return False
    for keyword, expected in (rule["attributes"] or {}).items():
        field_name = RULE_ATTRIBUTES.get(keyword)
        if field_name is None or str(getattr(ix, field_name) or "") != str(expected):
            return False
    return True


def digest_and_source_ae(data: bytes) -> tuple[str, str | None]:
    """SHA-256 (hex) of a Part 10 file's bytes, and its Source AE Title (0002,0016)."""
    _, _, meta = read_meta(data)
    value = meta.get((0x0002, 0x0016))
    source_ae = value.rstrip(b"\x00 ").decode("ascii", "replace").strip() if value else None
    return hashlib.sha256(data).hexdigest(), source_ae or None


class IngestPipeline:
    """Components.worker: drains the spool. `notify` may be called from any thread."""

    def __init__(self, rt: Any, settings: ImagingSettings, spool: Spool) -> None:
        self.rt, self.s, self.spool = rt, settings, spool
        self.bucket = settings.bucket
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.indexed = 0
        self.last_error: str | None = None
        #: Called (on the event loop) after each index transaction commits: STOW-RS waits on it.
        self.on_indexed: list[Callable[[], None]] = []
        self._index_task: asyncio.Task[int] | None = None
        self._indexing: frozenset[str] = frozenset()
        self._put: SignedPut | None = None
        if not settings.pipeline_sdk_upload:
            self._put = SignedPut(
                settings.s3_endpoint,
                settings.s3_access_key,
                settings.s3_secret_key,
                secure=settings.s3_secure,
                region=settings.s3_region,
            )

    def notify(self, _stored: Any = None) -> None:
        """on_stored callback (association thread): only wake the worker."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.s.pipeline_poll_seconds
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    done = await self.process_once()
                    self.last_error = None
                    delay = self.s.pipeline_poll_seconds
                except Exception as exc:  # noqa: BLE001 - retried; the files stay in the spool
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("ingest pass failed, retrying in %.1fs: %s", delay, self.last_error)
                    done = 0
                    await _wait_any(stop, None, delay)
                    delay = min(delay * 2, 30.0) if delay else self.s.upload_retry_seconds
                    continue
                if done == 0:
                    await _wait_any(stop, self._wake, self.s.pipeline_poll_seconds)
                elif done < self.s.index_batch_size and self.s.pipeline_gather_seconds > 0:
                    await _wait_any(stop, None, self.s.pipeline_gather_seconds)  # let a bigger batch gather
        finally:
            try:
                await self._finish_index()
            except Exception as exc:  # noqa: BLE001 - the files stay in the spool for the next start
                log.warning("last index batch failed at shutdown: %s", exc)

    async def _finish_index(self) -> int:
        """Wait for the batch being indexed (raising its error); how many spool entries it finished."""
        task, self._index_task = self._index_task, None
        if task is None:
            return 0
        return await task

    async def _index_and_done(self, batch: list[Prepared]) -> int:
        try:
            await self._index(batch)
            await asyncio.to_thread(self._done, batch)
            return len(batch)
        finally:
            self._indexing = frozenset()

    async def process_once(self) -> int:
        """One batch; returns how many spool entries were handled (0: nothing to do).

        Upload of batch N+1 overlaps the index transaction of batch N. Batches are disjoint by SOP
        Instance UID (entries whose UID is being indexed wait for the next pass), so classifying N+1
        before N commits cannot mistake a conflicting copy for a new instance. Index transactions
        run one at a time, in order.
        """
        busy = self._indexing
        entries = [e for e in await asyncio.to_thread(self.spool.pending) if e.sop_instance_uid not in busy][
            : self.s.index_batch_size
        ]
        if not entries:
            return await self._finish_index()
        sem = asyncio.Semaphore(max(1, self.s.upload_concurrency))

        async def prep(entry: SpoolEntry) -> Prepared | None:
            async with sem:
                return await asyncio.to_thread(self._prepare, entry)

        prepared = [p for p in await asyncio.gather(*(prep(e) for e in entries)) if p is not None]
        await self._classify(prepared)
        results = await asyncio.gather(
            *(self._upload(p, sem) for p in prepared if p.kind != "duplicate"), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        uploaded = [p for p in prepared if p.kind == "duplicate" or getattr(p, "_uploaded", False)]
        finished = await self._finish_index()  # the previous batch; raises its error
        if uploaded:
            self._indexing = frozenset(
                {p.entry.sop_instance_uid for p in uploaded}
                | {str(p.index.sop_instance_uid) for p in uploaded}
            )
            self._index_task = asyncio.create_task(self._index_and_done(uploaded))
        if failures:
            raise failures[0] if isinstance(failures[0], Exception) else RuntimeError(str(failures[0]))
        return finished + len(uploaded) + (len(entries) - len(prepared))

    def _prepare(self, entry: SpoolEntry) -> Prepared | None:
        # One read of the file: digest, Source AE and index attributes all come from these bytes.
        try:
            data = entry.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            index = read_index_attributes(data)
            digest, source_ae = digest_and_source_ae(data)
        except (HeaderError, Part10Error) as exc:
            # Cannot happen for files the gateway wrote (checked before acknowledging); keep it aside.
            target = self.spool.root / "unreadable"
            target.mkdir(exist_ok=True)
            shutil.move(str(entry.path), target / entry.path.name)
            log.error("spool file %s unreadable (%s): moved to %s", entry.path.name, exc, target)
            return None
        # Held to the index's widths: a long value can neither fail the index transaction nor swell an event.
        return Prepared(entry, bounded_index(index), digest, source_ae)

    async def _classify(self, batch: list[Prepared]) -> None:
        uids = list({p.index.sop_instance_uid for p in batch})
        async with self.rt.db.session() as session:
            known = {
                r[0]: (r[1], r[2])
                for r in (
                    await session.execute(
                        select(
                            t.instances.c.sop_instance_uid, t.instances.c.digest, t.instances.c.object_key
                        ).where(t.instances.c.sop_instance_uid.in_(uids))
                    )
                ).all()
            }
            conflicts: dict[str, dict[str, str]] = {}
            for sop, digest, key in (
                await session.execute(
                    select(
                        t.instance_conflicts.c.sop_instance_uid,
                        t.instance_conflicts.c.digest,
                        t.instance_conflicts.c.object_key,
                    ).where(t.instance_conflicts.c.sop_instance_uid.in_(uids))
                )
            ).all():
                conflicts.setdefault(sop, {})[digest] = key
        in_batch: dict[str, dict[str, Prepared]] = {}  # copies met earlier in this batch, not uploaded yet
        for p in batch:
            ix = p.index
            sop = str(ix.sop_instance_uid)
            existing = known.get(sop)
            if existing is None:
                p.kind, p.key = (
                    "new",
                    instance_key(str(ix.study_instance_uid), str(ix.series_instance_uid), sop),
                )
                known[sop] = (p.digest, p.key)
                in_batch.setdefault(sop, {})[p.key] = p
                continue
            stored = {
                existing[1]: existing[0],
                **{key: digest for digest, key in conflicts.get(sop, {}).items()},
            }
            if p.digest in stored.values():
                p.kind = "duplicate"
                continue
            # Different file bytes: the same data set under another meta header is still a duplicate.
            if await asyncio.to_thread(self._same_as_any, p, list(stored), in_batch.get(sop, {})):
                p.kind = "duplicate"
                continue
            p.kind, p.key = "conflict", conflict_key(sop, p.digest)
            conflicts.setdefault(sop, {})[p.digest] = p.key
            in_batch.setdefault(sop, {})[p.key] = p

    def _same_as_any(self, p: Prepared, keys: list[str], pending: dict[str, Prepared]) -> bool:
        """Does `p` hold the same transfer syntax and data set as any of these stored objects?"""
        try:
            data = p.entry.path.read_bytes()
        except FileNotFoundError:
            return False
        for key in keys:
            other = pending.get(key)
            if other is not None:
                try:
                    blob = other.entry.path.read_bytes()
                except FileNotFoundError:
                    continue
            else:
                resp = self.rt.store.client.get_object(self.bucket, key)
                try:
                    blob = resp.read()
                finally:
                    resp.close()
                    resp.release_conn()
            if same_dataset_bytes(data, blob):
                return True
        return False

    async def _upload(self, p: Prepared, sem: asyncio.Semaphore) -> None:
        async with sem:
            await asyncio.to_thread(self._put_file, p)
        p._uploaded = True  # type: ignore[attr-defined]

    def _put_file(self, p: Prepared) -> None:
        if self._put is None:  # HOSPITAL_IMAGING_PIPELINE_SDK_UPLOAD=true: the SDK hashes the file again
            self.rt.store.client.fput_object(
                self.bucket, p.key, str(p.entry.path), content_type="application/dicom"
            )
            return
        # Spool files never change once linked: these are the bytes `p.digest` was computed from.
        self._put.put(
            self.bucket, p.key, p.entry.path.read_bytes(), p.digest, content_type="application/dicom"
        )

    async def _index(self, batch: list[Prepared]) -> None:
        now = utcnow()
        new = [p for p in batch if p.kind == "new"]
        async with self.rt.uow() as uow:
            s = uow.session
            rules = [
                dict(r._mapping)
                for r in (
                    await s.execute(select(t.routing_rules).where(t.routing_rules.c.enabled.is_(True)))
                ).all()
            ]
            for p in [p for p in batch if p.kind == "conflict"]:
                await s.execute(
                    t.instance_conflicts.insert().values(
                        id=new_id(),
                        sop_instance_uid=p.index.sop_instance_uid,
                        digest=p.digest,
                        object_key=p.key,
                        source_ae=p.source_ae,
                        received_at=now,
                        status="open",
                    )
                )
                log.warning(
                    "instance %s received again with other content: kept as %s (flagged)",
                    p.index.sop_instance_uid,
                    p.key,
                )
            self._audit_stored(uow, [p for p in batch if p.kind != "duplicate"])
            await self._upsert_patients(s, new, now)
            await self._upsert_studies_and_series(s, new, now)
            if new:
                await s.execute(
                    t.instances.insert(),
                    [
                        {
                            "sop_instance_uid": p.index.sop_instance_uid,
                            "series_instance_uid": p.index.series_instance_uid,
                            "study_instance_uid": p.index.study_instance_uid,
                            "sop_class_uid": p.index.sop_class_uid,
                            "instance_number": p.index.instance_number,
                            "transfer_syntax_uid": p.index.transfer_syntax_uid,
                            "rows": p.index.rows,
                            "columns": p.index.columns,
                            "frames": p.index.number_of_frames,
                            "size": p.index.size,
                            "digest": p.digest,
                            "object_key": p.key,
                            "source_ae": p.source_ae,
                            "received_at": now,
                        }
                        for p in new
                    ],
                )
                jobs = [
                    {
                        "rule_id": r["id"],
                        "destination_ae": r["destination_ae"],
                        "study_instance_uid": p.index.study_instance_uid,
                        "sop_instance_uid": p.index.sop_instance_uid,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for p in new
                    for r in rules
                    if rule_matches(r, p.index, p.source_ae)
                ]
                if jobs:
                    await s.execute(t.routing_queue.insert(), jobs)
            await uow.commit()
        self.indexed += len(new)
        for callback in list(self.on_indexed):
            callback()

    @staticmethod
    def _audit_stored(uow: UnitOfWork, stored: list[Prepared]) -> None:
        """``imaging_instance.store``: one record per study and sending AE of this batch (C-STORE; STOW-RS
        is recorded with its user by the HTTP API). app/access_audit.py."""
        groups: dict[tuple[str, str], list[Prepared]] = {}
        for p in stored:
            if p.source_ae == STOW_SOURCE:
                continue
            groups.setdefault((str(p.index.study_instance_uid), p.source_ae or ""), []).append(p)
        for (study, source_ae), items in groups.items():
            rows = [{"PatientID": p.index.patient_id, "StudyInstanceUID": study} for p in items]
            uow.audit(
                dicom_entry(
                    source_ae,
                    "",
                    "imaging_instance.store",
                    study,
                    rows,
                    instances=sorted(str(p.index.sop_instance_uid) for p in items)[:MAX_LISTED],
                    conflicts=sum(1 for p in items if p.kind == "conflict"),
                )
            )

    async def _upsert_patients(self, s: Any, new: list[Prepared], now: Any) -> None:
        latest: dict[str, InstanceIndex] = {}
        for p in new:
            latest[p.index.patient_id or ""] = p.index
        if not latest:
            return
        have = set(
            (
                await s.execute(
                    select(t.patients.c.patient_id).where(t.patients.c.patient_id.in_(list(latest)))
                )
            ).scalars()
        )
        for pid, ix in latest.items():
            values = {
                "patient_name": ix.patient_name,
                "name_folded": (fold(ix.patient_name) or "")[:200] or None,
                "birth_date": ix.patient_birth_date,
                "sex": ix.patient_sex,
                "updated_at": now,
            }
            if pid in have:
                await s.execute(update(t.patients).where(t.patients.c.patient_id == pid).values(**values))
            else:
                await s.execute(t.patients.insert().values(patient_id=pid, **values))

    async def _upsert_studies_and_series(self, s: Any, new: list[Prepared], now: Any) -> None:
        by_study: dict[str, list[Prepared]] = {}
        for p in new:
            by_study.setdefault(str(p.index.study_instance_uid), []).append(p)
        for study_uid, items in by_study.items():
            ix = items[-1].index
            row = (
                await s.execute(select(t.studies).where(t.studies.c.study_instance_uid == study_uid))
            ).first()
            by_series: dict[str, list[Prepared]] = {}
            for p in items:
                by_series.setdefault(str(p.index.series_instance_uid), []).append(p)
            new_series = 0
            for series_uid, group in by_series.items():
                sx = group[-1].index
                srow = (
                    await s.execute(
                        select(t.series.c.series_instance_uid).where(
                            t.series.c.series_instance_uid == series_uid
                        )
                    )
                ).first()
                if srow is None:
                    new_series += 1
                    await s.execute(
                        t.series.insert().values(
                            series_instance_uid=series_uid,
                            study_instance_uid=study_uid,
                            modality=sx.modality,
                            series_number=sx.series_number,
                            series_description=sx.series_description,
                            body_part=sx.body_part_examined,
                            instance_count=len(group),
                            source_ae=group[-1].source_ae,
                            received_at=now,
                        )
                    )
                else:
                    await s.execute(
                        update(t.series)
                        .where(t.series.c.series_instance_uid == series_uid)
                        .values(instance_count=t.series.c.instance_count + len(group))
                    )
            modalities = {p.index.modality for p in items if p.index.modality}
            size = sum(p.index.size for p in items)
            if row is None:
                await s.execute(
                    t.studies.insert().values(
                        study_instance_uid=study_uid,
                        patient_id=ix.patient_id or "",
                        patient_name=ix.patient_name,
                        name_folded=(fold(ix.patient_name) or "")[:200] or None,
                        patient_birth_date=ix.patient_birth_date,
                        patient_sex=ix.patient_sex,
                        study_date=ix.study_date,
                        study_time=ix.study_time,
                        accession_number=ix.accession_number,
                        study_description=ix.study_description,
                        referring_physician=ix.referring_physician_name,
                        modalities=_modalities(modalities),
                        series_count=new_series,
                        instance_count=len(items),
                        size_bytes=size,
                        source_ae=items[-1].source_ae,
                        reconciliation="new",
                        first_received_at=now,
                        last_received_at=now,
                    )
                )
            else:
                merged = set(filter(None, row.modalities.split("\\"))) | modalities
                await s.execute(
                    update(t.studies)
                    .where(t.studies.c.study_instance_uid == study_uid)
                    .values(
                        series_count=t.studies.c.series_count + new_series,
                        instance_count=t.studies.c.instance_count + len(items),
                        size_bytes=t.studies.c.size_bytes + size,
                        modalities=_modalities(merged),
                        last_received_at=now,
                    )
                )

    def _done(self, batch: list[Prepared]) -> None:
        self.spool.done_many([p.entry for p in batch])


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def quiet_cutoff(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)
