"""Analyzer ingestion: the handler behind the ASTM and MLLP listeners.

``store`` runs before the analyzer gets its final ACK (ASTM) or ``MSA|AA`` (HL7) and does everything in
one transaction: the raw bytes (``lab_raw_messages``, unique on their SHA-256, so an identical
retransmission is recognised and acknowledged without a second effect), the parsed results (unique on a
per-result key, so a retransmission with a new header timestamp is recognised too), the checks, and the
outbox events. If anything fails the transaction rolls back and the analyzer is NAKed and resends.

Results are matched to a specimen by barcode only — never by name. An unknown barcode keeps its results
in the ``unmatched`` queue until a technician assigns them to a specimen.

Group commit (ADR 0101): the listeners' ``store`` calls go through one :class:`GroupCommit` per process.
Messages that arrive from any connection while a commit is in flight are applied together in the next
transaction (set-based statements: one lookup and one multi-row insert per table for the whole batch),
and every waiting connection is released only once that transaction has committed. If the batch fails,
each of its messages is retried alone, so one bad message is NAKed/``AR``'d without taking the others
with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Invalid
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.adapters.ingest_sql import IngestDb, ingest_db
from hospital.lab.adapters.tables import (
    lab_settings,
    order_items,
    orders,
    raw_messages,
    results,
    specimens,
)
from hospital.lab.api.astm import AstmMessage, HostOrder, Peer, Query
from hospital.lab.api.hl7 import OrderMessage, ResultMessage, SpecimenQuery
from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.common import SYSTEM, row_proto, ts
from hospital.lab.app.evaluate import Context, evaluate
from hospital.lab.app.orders import NewOrder, OrderService
from hospital.lab.app.qc import QcService
from hospital.lab.config import LabSettings

log = logging.getLogger(__name__)
CORRECTION_HOLD = "analyzer correction of a verified result: verify to amend"
REPEAT_HOLD = "repeat after a verified result: verify to amend"


def is_correction(analyzer_status: str | None) -> bool:
    """ASTM R-9 / HL7 OBX-11 ``C``: the analyzer corrects a result it sent before."""
    return (analyzer_status or "").strip().upper() == "C"


LOINC_RE = re.compile(r"^\d{1,7}-\d$")
SHARED_ENDPOINTS = ("astm", "mllp")


@dataclass
class InResult:
    index: int
    keys: list[str]
    loincs: list[str]
    analyzer_code: str
    value: str
    units: str
    ref: str
    flags: tuple[str, ...]
    status: str
    observed_at: datetime | None
    note: str


@dataclass
class InGroup:
    barcode: str
    results: list[InResult]


BARCODE_MAX_CHARS = 60  # lab_results.barcode_received


class ValueTooLong(Invalid, ValueError):
    """A received value longer than the lab stores: the whole message is refused, nothing is stored
    (MLLP ``AE`` with the reason and location, ASTM NAK)."""


def check_lengths(groups: list[InGroup], protocol: str, max_value_chars: int) -> None:
    """Refuse a message whose result values or specimen IDs exceed the limits (results stay small by
    design: a value is a number, a short text or a coded answer; reports travel as documents)."""
    hl7 = protocol == "hl7"
    for g in groups:
        if len(g.barcode) > BARCODE_MAX_CHARS:
            where = "SPM-2/OBR-3" if hl7 else "O-3"
            raise ValueTooLong(
                "specimen_id_too_long",
                f"specimen ID ({where}) of {len(g.barcode)} characters exceeds the limit of "
                f"{BARCODE_MAX_CHARS}",
                field="OBR^1^3" if hl7 else "O-3",
            )
        for r in g.results:
            if len(r.value) > max_value_chars:
                where = f"OBX {r.index} value (OBX-5)" if hl7 else f"result {r.index} value (R-4)"
                raise ValueTooLong(
                    "value_too_long",
                    f"{where} of {len(r.value)} characters exceeds the limit of {max_value_chars}; "
                    "nothing of the message was stored",
                    field=f"OBX^{r.index}^5" if hl7 else "R-4",
                )


def astm_groups(message: AstmMessage, tz: ZoneInfo) -> list[InGroup]:
    groups: list[InGroup] = []
    index = 0
    for patient in message.patients:
        for og in patient.orders:
            barcode = og.order.specimen_id if og.order else ""
            items = []
            for r in og.results:
                index += 1
                comps = [c.strip() for c in r.test.components]
                when = r.completed_at or r.started_at
                items.append(
                    InResult(
                        index=index,
                        keys=[r.test.key, r.test.code],
                        loincs=[c for c in comps if LOINC_RE.match(c)],
                        analyzer_code=r.test.key or r.test.code,
                        value=r.value,
                        units=r.units,
                        ref=r.reference_range,
                        flags=r.abnormal_flags,
                        status=r.status,
                        observed_at=when.replace(tzinfo=tz) if when else None,
                        note="; ".join(c.text.replace("^", " ").strip() for c in r.comments)[:500],
                    )
                )
            groups.append(InGroup(barcode, items))
    return groups


def hl7_groups(message: ResultMessage, tz: ZoneInfo) -> list[InGroup]:
    groups: list[InGroup] = []
    index = 0
    for req in message.requests:
        items = []
        for o in req.observations:
            index += 1
            when = o.observed_at or req.observed_at
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=tz)
            loinc = (
                [o.code.identifier]
                if o.code.coding_system in ("LN", "") and LOINC_RE.match(o.code.identifier)
                else []
            )
            items.append(
                InResult(
                    index=index,
                    keys=[o.code.identifier, o.code.text],
                    loincs=loinc,
                    analyzer_code=o.code.identifier,
                    value=o.value,
                    units=o.units,
                    ref=o.reference_range,
                    flags=o.abnormal_flags,
                    status=o.status,
                    observed_at=when,
                    note="; ".join(o.notes)[:500],
                )
            )
        groups.append(InGroup(req.specimen_id, items))
    return groups


def dedupe_key(instrument: str, barcode: str, r: InResult) -> str:
    text = "|".join(
        [
            instrument,
            barcode,
            r.analyzer_code,
            r.value,
            r.units,
            r.status,
            r.observed_at.isoformat() if r.observed_at else "",
            str(r.index),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Group commit: callers ``submit`` items from many connections; one drainer applies whatever is
    queued in ONE call of ``apply`` (one transaction), then releases every caller of that batch. Items
    queued while a batch is being applied form the next batch, so a busy service commits in bigger
    batches and an idle one commits at once. With ``window`` (seconds) a batch waits at most that long for
    as many items as the previous batch had (the callers it released come back with their next message).
    If applying a batch raises, its items are applied one at a time: only the items that fail on their
    own get the exception."""

    def __init__(
        self, apply: Callable[[list[T]], Awaitable[None]], *, max_batch: int = 100, window: float = 0.0
    ) -> None:
        self._apply = apply
        self.max_batch = max(1, max_batch)
        self.window = window
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._target = 1  # size of the last batch
        self.batches = 0  # transactions committed
        self.items = 0  # items committed
        self.largest = 0  # largest batch committed
        self.fallbacks = 0  # batches that failed and were retried one by one

    async def submit(self, item: T) -> None:
        """Return once ``item`` is committed; raise what applying it raised."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._arrived.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="lab-ingest-group-commit")
        await fut  # a cancelled caller (store timeout) cancels its future; a queued item is then skipped

    async def _drain(self) -> None:
        while self._queue:
            if self.window and len(self._queue) < self._target:
                await self._wait_for(self._target)
            taken, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            batch = [(item, fut) for item, fut in taken if not fut.done()]
            if not batch:
                continue
            # the callers released by this batch usually come straight back with their next message:
            # the next batch waits (at most ``window``) until as many items are queued
            self._target = len(batch)
            try:
                await self._run(batch)
            except BaseException:  # cancelled (shutdown): release the waiters, nothing was acknowledged
                for _, fut in batch + self._queue:
                    if not fut.done():
                        fut.cancel()
                self._queue = []
                raise

    async def _wait_for(self, target: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while len(self._queue) < target:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout(left):
                    await self._arrived.wait()
            except TimeoutError:
                return

    async def _run(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._apply([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - isolate the failing item(s) below
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            self.fallbacks += 1
            log.warning("group commit of %d messages failed (%s); applying them one by one", len(batch), exc)
            for item, fut in batch:
                if fut.done():
                    continue  # its caller gave up; it will retransmit
                try:
                    await self._apply([item])
                except Exception as one:  # noqa: BLE001
                    _settle(fut, one)
                else:
                    self._count(1)
                    _settle(fut, None)
            return
        self._count(len(batch))
        for _, fut in batch:
            _settle(fut, None)

    def _count(self, n: int) -> None:
        self.batches += 1
        self.items += n
        self.largest = max(self.largest, n)


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


@dataclass
class Incoming:
    """One complete analyzer message waiting for the group commit."""

    raw: bytes
    protocol: str
    peer: Peer
    sender: str
    instrument: str
    control_id: str | None
    kind: str
    groups: list[InGroup]
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(self.raw).hexdigest()

    @property
    def count(self) -> int:
        return sum(len(g.results) for g in self.groups)


@dataclass
class Job:
    """Analyzer rows to attach to one matched specimen."""

    spec: dict[str, Any]
    rows: list[dict[str, Any]]
    allow_autoverify: bool = True
    hold: str | None = None
    items: dict[str, str] | None = None  # the specimen's order items (test code → id), when already read


class IngestService:
    def __init__(
        self, rt: Runtime[LabSettings], catalogue: Catalogue, orders_svc: OrderService, qc: QcService
    ) -> None:
        self.rt = rt
        self.cat = catalogue
        self.orders = orders_svc
        self.qc = qc
        self.tz = ZoneInfo(rt.settings.instrument_timezone)
        self.listeners: list[Any] = []  # the analyzer listeners running now (their open connections)
        self.received_total = 0
        self.writer: GroupCommit[Incoming] = GroupCommit(
            self._store_batch,
            max_batch=rt.settings.ingest_batch_max,
            window=rt.settings.ingest_batch_window_ms / 1000,
        )

    async def ensure_catalogue(self) -> None:
        if not self.cat.loaded:
            async with self.rt.db.session() as s:
                await self.cat.load(s)

    # --- the protocol handlers' entry points --------------------------------------------------------------
    async def store_astm(self, raw: bytes, message: AstmMessage, peer: Peer) -> None:
        await self.ensure_catalogue()
        sender = message.header.record.raw_field(5)
        instrument = self._instrument(peer, sender, message.header.sender_name)
        kind = (
            "results" if any(True for _ in message.results()) else ("query" if message.queries else "other")
        )
        groups = astm_groups(message, self.tz)
        check_lengths(groups, "astm", self.rt.settings.result_value_max_chars)
        await self.writer.submit(
            Incoming(
                raw,
                "astm",
                peer,
                sender,
                instrument,
                message.header.message_id or None,
                kind,
                groups,
            )
        )

    async def store_hl7(self, raw: bytes, message: Any, peer: Peer) -> None:
        await self.ensure_catalogue()
        h = message.header
        sender = "^".join(x for x in (h.sending_application, h.sending_facility) if x)
        instrument = self._instrument(peer, sender, h.sending_application)
        if isinstance(message, ResultMessage):
            groups = hl7_groups(message, self.tz)
            check_lengths(groups, "hl7", self.rt.settings.result_value_max_chars)
            await self.writer.submit(
                Incoming(
                    raw,
                    "hl7",
                    peer,
                    sender,
                    instrument,
                    h.control_id,
                    "results",
                    groups,
                )
            )
        elif isinstance(message, OrderMessage):
            await self._ingest_orders(raw, peer, sender, message)
        else:
            await self.writer.submit(
                Incoming(raw, "hl7", peer, sender, instrument, h.control_id, "query", [])
            )

    def _instrument(self, peer: Peer, sender: str, sender_name: str) -> str:
        if peer.instrument not in SHARED_ENDPOINTS:
            return peer.instrument  # a dedicated listener names its analyzer
        return self.cat.instrument_for(sender, sender_name)

    async def _claim_raw(
        self,
        s: AsyncSession,
        raw: bytes,
        protocol: str,
        peer: Peer,
        sender: str,
        control_id: str | None,
        kind: str,
        count: int,
        now: datetime,
    ) -> str | None:
        """Insert the raw message; None when the same bytes were stored before (a retransmission)."""
        digest = hashlib.sha256(raw).hexdigest()
        dup = await s.execute(
            update(raw_messages)
            .where(raw_messages.c.content_hash == digest)
            .values(duplicates=raw_messages.c.duplicates + 1)
        )
        if dup.rowcount:
            log.info("%s message from %s already stored (retransmission)", protocol, sender)
            return None
        raw_id = new_id()
        await s.execute(
            raw_messages.insert().values(
                _raw_row(raw_id, digest, raw, protocol, peer, sender, control_id, kind, count, now)
            )
        )
        return raw_id

    async def _store_batch(self, items: list[Incoming]) -> None:
        """Store a batch of messages in one transaction: raw bytes, results, checks, outbox events."""
        now = utcnow()
        async with self.rt.uow() as uow:
            s = await uow.session.connection()  # Core statements on the unit of work's transaction
            db = ingest_db(s)
            digests = sorted({it.digest for it in items})
            keys = {
                id(r): dedupe_key(it.instrument, g.barcode.strip(), r)
                for it in items
                for g in it.groups
                for r in g.results
            }
            known, claimed = await db.stored(s, digests, sorted(set(keys.values())))
            duplicates: Counter[str] = Counter()
            fresh: list[tuple[Incoming, str]] = []
            raw_rows = []
            for it in items:
                if it.digest in known:
                    log.info("%s message from %s already stored (retransmission)", it.protocol, it.sender)
                    duplicates[it.digest] += 1
                    continue
                known.add(it.digest)
                raw_id = new_id()
                raw_rows.append(
                    _raw_row(
                        raw_id,
                        it.digest,
                        it.raw,
                        it.protocol,
                        it.peer,
                        it.sender,
                        it.control_id,
                        it.kind,
                        it.count,
                        now,
                    )
                )
                fresh.append((it, raw_id))
            if raw_rows:
                await db.insert_raw(s, raw_rows)
            if duplicates:
                await db.count_duplicates(s, dict(duplicates))
            await self._store_results(uow, db, fresh, keys, claimed, now)
            await uow.commit()
        self.received_total += sum(it.count for it, _ in fresh)

    async def _store_results(
        self,
        uow: UnitOfWork,
        db: IngestDb,
        fresh: list[tuple[Incoming, str]],
        keys: dict[int, str],
        claimed: set[str],
        now: datetime,
    ) -> None:
        s = await uow.session.connection()
        entries = [
            (raw_id, it.instrument, g.barcode.strip(), g)
            for it, raw_id in fresh
            for g in it.groups
            if g.results
        ]
        if not entries:
            return
        kept = []
        for raw_id, instrument, barcode, group in entries:
            if barcode and barcode in self.cat.qc_samples:
                left = await self.qc.ingest(uow, instrument, barcode, group, raw_id, now)
                if not left:
                    continue
                group = InGroup(group.barcode, left)
            kept.append((raw_id, instrument, barcode, [(r, keys[id(r)]) for r in group.results]))
        todo = []
        for raw_id, instrument, barcode, rs in kept:
            new = []
            for r, key in rs:
                if key not in claimed:  # stored before, or earlier in this batch
                    claimed.add(key)
                    new.append((r, key))
            if new:
                todo.append((raw_id, instrument, barcode, new))
        barcodes = sorted({barcode for _, _, barcode, _ in todo if barcode})
        specs: dict[str, dict[str, Any]] = {}
        items: dict[str, dict[str, str]] = {}
        av_on = self.rt.settings.autoverify_default
        for row in await db.specimens(s, barcodes) if barcodes else []:
            if row["autoverify"] is not None:
                av_on = row["autoverify"] == "on"
            if row["status"] == "cancelled":
                continue
            specs[row["barcode"]] = {
                k: v for k, v in row.items() if k not in ("barcode", "item_id", "item_test", "autoverify")
            }
            spec_items = items.setdefault(row["id"], {})
            if row["item_id"] is not None:
                spec_items[row["item_test"]] = row["item_id"]
        unmatched: list[dict[str, Any]] = []
        jobs: list[Job] = []
        for raw_id, instrument, barcode, new in todo:
            rows = [self._row(raw_id, instrument, barcode, r, key, now) for r, key in new]
            spec = specs.get(barcode) if barcode else None
            if spec is None:
                unmatched += rows
            else:
                jobs.append(Job(dict(spec), rows, items=items.get(spec["id"], {})))
        if unmatched:
            await db.insert_results(s, [_columns(x) for x in unmatched])
        # jobs for the same patient go in successive waves: each sees the results the previous one stored
        while jobs:
            wave, later, patients = [], [], set()
            for job in jobs:
                who = job.spec["patient_id"] or job.spec["id"]
                (later if who in patients else wave).append(job)
                patients.add(who)
            await attach_many(uow, self.cat, self.rt.settings, wave, now, av_on, insert=True, db=db)
            jobs = later

    def _row(
        self, raw_id: str, instrument: str, barcode: str, r: InResult, key: str, now: datetime
    ) -> dict[str, Any]:
        code, unit = self.cat.map_test(instrument, r.keys, r.loincs)
        return {
            "id": new_id(),
            "dedupe_key": key,
            "raw_message_id": raw_id,
            "instrument": instrument,
            "barcode_received": barcode,
            "specimen_id": None,
            "order_id": None,
            "order_item_id": None,
            "patient_id": None,
            "test_code": code,
            "mapped_unit": unit,
            "analyzer_code": r.analyzer_code[:200],
            "analyzer_value": r.value,
            "analyzer_unit": r.units[:40],
            "analyzer_flags": ",".join(r.flags)[:40],
            "analyzer_status": r.status[:4],
            "analyzer_range": r.ref[:100],
            "value": r.value,
            "value_num": None,
            "unit": r.units[:40],
            "reference_range": "",
            "flag": "",
            "critical": False,
            "delta_failed": False,
            "delta_previous": None,
            "status": "unmatched",
            "revision": 1,
            "note": r.note or None,
            "observed_at": r.observed_at,
            "received_at": now,
            "verified_at": None,
            "verified_by": None,
            "autoverify_rule": None,
            "hold_reason": "barcode not found" if barcode else "no barcode in the message",
        }

    async def _ingest_orders(self, raw: bytes, peer: Peer, sender: str, message: OrderMessage) -> None:
        now = utcnow()
        new_orders = oml_orders(message)
        for o in new_orders:  # admissions is asked before the transaction (an unknown patient: AE)
            await self.orders.check_patient(o)
        async with self.rt.uow() as uow:
            raw_id = await self._claim_raw(
                uow.session, raw, "hl7", peer, sender, message.header.control_id, "order", 0, now
            )
            if raw_id is None:
                await uow.commit()
                return
            for o in new_orders:
                tests, birth, birth_text = self.orders.validate(o)
                if await self.orders._existing(uow.session, o) is None:
                    await self.orders.create(uow, o, tests, birth, birth_text, SYSTEM, "hl7")
            for (
                item
            ) in message.orders:  # ORC-1 CA: cancel the order and its specimens (raises → AE, rolled back)
                if item.is_cancel:
                    order_id = await self.orders.find_for_cancel(
                        uow.session, item.placer_order_number, item.filler_order_number
                    )
                    reason = (
                        item.reason
                        or "; ".join(item.notes)
                        or f"cancelled by {sender or 'the HIS'} (OML^O21)"
                    )
                    await self.orders.cancel_in(uow, order_id, reason, SYSTEM)
            await uow.commit()

    # --- host queries -----------------------------------------------------------------------------------
    async def host_query(self, query: Query | SpecimenQuery) -> Sequence[HostOrder]:
        await self.ensure_catalogue()
        ids = [i.strip() for i in query.specimen_ids if i.strip()]
        if not ids:
            return []
        instrument = self.cat.instrument_for(getattr(query, "instrument", ""), "")
        async with self.rt.db.session() as s:
            rows = (
                (
                    await s.execute(
                        select(
                            specimens.c.barcode,
                            order_items.c.test_code,
                            orders.c.patient_code,
                            orders.c.patient_id,
                            orders.c.patient_name,
                            orders.c.birth_date,
                            orders.c.patient_sex,
                            orders.c.priority,
                        )
                        .join(order_items, order_items.c.specimen_id == specimens.c.id)
                        .join(orders, orders.c.id == specimens.c.order_id)
                        .where(
                            specimens.c.barcode.in_(ids),
                            specimens.c.status != "cancelled",
                            order_items.c.status == "ordered",
                        )
                        .order_by(specimens.c.barcode, order_items.c.test_code)
                    )
                )
                .mappings()
                .all()
            )
        out: dict[str, HostOrder] = {}
        for r in rows:
            code = self.cat.analyzer_code(instrument, r["test_code"])
            prev = out.get(r["barcode"])
            if prev is None:
                family, _, given = r["patient_name"].partition(" ")
                out[r["barcode"]] = HostOrder(
                    specimen_id=r["barcode"],
                    tests=(code,),
                    patient_id=r["patient_code"] or r["patient_id"],
                    family_name=family,
                    given_name=given,
                    birth_date=r["birth_date"],
                    sex={"male": "M", "female": "F"}.get(r["patient_sex"], "U"),
                    priority="S" if r["priority"] == "stat" else "R",
                )
            else:
                out[r["barcode"]] = _with_test(prev, code)
        return [out[i] for i in ids if i in out]


def _with_test(order: HostOrder, code: str) -> HostOrder:
    from dataclasses import replace

    return replace(order, tests=(*order.tests, code))


def oml_orders(message: OrderMessage) -> list[NewOrder]:
    """The new orders of an OML^O21 (ORC-1 other than ``CA``)."""
    p = message.patient
    assert p is not None
    pid = p.identifiers[0] if p.identifiers else ""
    name = " ".join(x for x in (p.family_name, p.given_name) if x)
    sex = {"M": "male", "F": "female"}.get(p.sex.upper(), "unknown")
    out = []
    for item in message.orders:
        if item.is_cancel:
            continue  # see IngestService._ingest_orders
        out.append(
            NewOrder(
                patient_id=pid,
                patient_code=pid,
                patient_name=name,
                patient_sex=sex,
                birth_date=p.birth_date.isoformat() if p.birth_date else None,
                tests=[t.identifier for t in item.tests],
                priority="stat" if item.priority.upper() == "S" else "routine",
                placer_order_number=item.placer_order_number or None,
                barcode=item.specimen_id or None,
                one_specimen=bool(item.specimen_id),
                clinical_note="; ".join(item.notes) or None,
            )
        )
    return out


async def autoverify_enabled(s: AsyncSession, default: bool) -> bool:
    v = (await s.execute(select(lab_settings.c.value).where(lab_settings.c.key == "autoverify"))).scalar()
    return default if v is None else v == "on"


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "mapped_unit"}


def _raw_row(
    raw_id: str,
    digest: str,
    raw: bytes,
    protocol: str,
    peer: Peer,
    sender: str,
    control_id: str | None,
    kind: str,
    count: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": raw_id,
        "content_hash": digest,
        "protocol": protocol,
        "kind": kind,
        "endpoint": peer.instrument,
        "sender": sender[:200],
        "peer": f"{peer.host}:{peer.port}"[:100],
        "control_id": (control_id or "")[:100] or None,
        "body": raw,
        "received_at": now,
        "result_count": count,
        "duplicates": 0,
    }


async def attach(
    uow: UnitOfWork,
    cat: Catalogue,
    settings: LabSettings,
    spec: dict[str, Any],
    rows: list[dict[str, Any]],
    now: datetime,
    av_on: bool,
    *,
    insert: bool,
    allow_autoverify: bool = True,
    hold: str | None = None,
) -> list[dict[str, Any]]:
    """Attach analyzer rows to a specimen (see :func:`attach_many`)."""
    return (
        await attach_many(
            uow, cat, settings, [Job(spec, rows, allow_autoverify, hold)], now, av_on, insert=insert
        )
    )[0]


async def attach_many(
    uow: UnitOfWork,
    cat: Catalogue,
    settings: LabSettings,
    jobs: list[Job],
    now: datetime,
    av_on: bool,
    *,
    insert: bool,
    db: IngestDb | None = None,
) -> list[list[dict[str, Any]]]:
    """Attach analyzer rows to specimens: check them, insert (or update) them, mark order items,
    supersede unverified earlier results of the same tests, and publish the events. Set-based: one
    statement per table for all the jobs, which must concern different patients (and specimens)."""
    s = await uow.session.connection()  # Core: less per-statement overhead than the ORM session
    db = db or ingest_db(s)
    spec_ids = [j.spec["id"] for j in jobs]
    patients = sorted({j.spec["patient_id"] for j in jobs if j.spec["patient_id"] is not None})
    instruments = sorted({j.rows[0]["instrument"] for j in jobs if j.rows})
    codes = sorted({r["test_code"] for j in jobs for r in j.rows if r["test_code"]})
    items: dict[str, dict[str, str]] = {j.spec["id"]: j.items for j in jobs if j.items is not None}
    unread = [sid for sid in spec_ids if sid not in items]
    for item_id, test_code, specimen_id in await db.items(s, unread) if unread else []:
        items.setdefault(specimen_id, {})[test_code] = item_id
    previous: dict[str, dict[str, tuple[float, datetime]]] = {}
    same_specimen: dict[str, dict[str, list[tuple[str, str]]]] = {}
    qc_rows: dict[tuple[str, str], bool] = {}
    if codes:
        window = now - timedelta(days=30)
        spec_of = {j.spec["patient_id"]: j.spec["id"] for j in jobs}
        if patients:
            for p in await db.previous(s, patients, codes, window):
                if p["specimen_id"] == spec_of.get(p["patient_id"]):
                    same_specimen.setdefault(p["specimen_id"], {}).setdefault(p["test_code"], []).append(
                        (p["id"], p["status"])
                    )
                else:
                    prev = previous.setdefault(p["patient_id"], {})
                    if p["test_code"] not in prev and p["value_num"] is not None:
                        prev[p["test_code"]] = (p["value_num"], p["observed_at"] or p["received_at"])
        valid_after = now - timedelta(hours=settings.qc_validity_hours)
        for q in await db.qc(s, instruments, codes):
            qc_rows[(q["instrument_id"], q["test_code"])] = (
                bool(q["accepted"]) and q["last_run_at"] >= valid_after
            )
    superseded: list[str] = []
    outs: list[list[dict[str, Any]]] = []
    for job in jobs:
        spec, rows = job.spec, job.rows
        job_codes = {r["test_code"] for r in rows if r["test_code"]}
        instrument = rows[0]["instrument"] if rows else ""
        qc_ok = {c: qc_rows[(instrument, c)] for c in job_codes if (instrument, c) in qc_rows}
        if not settings.autoverify_requires_qc:
            qc_ok = {c: qc_ok.get(c, True) for c in job_codes}
        ctx = Context(
            sex=spec["patient_sex"],
            birth=spec["birth_date"],
            autoverify_on=av_on,
            qc_ok=qc_ok,
            previous=previous.get(spec["patient_id"], {}) if spec["patient_id"] is not None else {},
            allow_autoverify=job.allow_autoverify,
            hold=job.hold,
        )
        spec_items = items.get(spec["id"], {})
        spec_same = same_specimen.get(spec["id"], {})
        out = []
        for row in rows:
            row.update(
                specimen_id=spec["id"],
                order_id=spec["order_id"],
                patient_id=spec["patient_id"],
                order_item_id=spec_items.get(row["test_code"]),
            )
            test = cat.tests.get(row["test_code"]) if row["test_code"] else None
            if test is None:
                row.update(status="info", hold_reason="analyzer code not mapped to the catalogue")
                out.append(row)
                continue
            at = row["observed_at"] or now
            earlier = spec_same.get(test.code, [])
            c = Context(**ctx.__dict__)
            if any(st == "verified" for _, st in earlier):
                # held for review whatever the rules say; verifying it amends the verified result
                c.allow_autoverify, c.hold = (
                    False,
                    (CORRECTION_HOLD if is_correction(row["analyzer_status"]) else REPEAT_HOLD),
                )
            row.update(evaluate(test, row, c, at))
            superseded += [rid for rid, st in earlier if st == "preliminary"]
            if row["autoverify_rule"]:
                row.update(status="verified", verified_at=now, verified_by="autoverify")
            else:
                row["status"] = "preliminary"
            if row["order_item_id"] is None:
                row["note"] = "; ".join(x for x in (row["note"], "test not ordered on this specimen") if x)
            out.append(row)
        outs.append(out)
    everything = [x for out in outs for x in out]
    if superseded:
        await db.supersede(s, sorted(set(superseded)))
    if insert:
        if everything:
            await db.insert_results(s, [_columns(x) for x in everything])
    else:
        for x in everything:
            await s.execute(
                update(results)
                .where(results.c.id == x["id"])
                .values(
                    **{
                        k: v
                        for k, v in _columns(x).items()
                        if k not in ("id", "dedupe_key", "raw_message_id")
                    }
                )
            )
    for status in ("resulted", "verified"):
        ids = sorted(
            {
                x["order_item_id"]
                for x in everything
                if x["order_item_id"]
                and (x["status"] == "verified") == (status == "verified")
                and x["status"] != "info"
            }
        )
        if ids:
            await db.item_status(s, ids, status)
    for job, out in zip(jobs, outs, strict=True):
        _publish(uow, cat, job.spec, job.rows, out, now)
    return outs


def _publish(
    uow: UnitOfWork,
    cat: Catalogue,
    spec: dict[str, Any],
    rows: list[dict[str, Any]],
    out: list[dict[str, Any]],
    now: datetime,
) -> None:
    reportable = [x for x in out if x["status"] != "info"]
    protos = {x["id"]: row_proto(x, *_names(cat, x["test_code"])) for x in reportable}
    if reportable:
        uow.publish(
            "lab.result.received",
            events_pb2.ResultReceived(
                specimen_barcode=rows[0]["barcode_received"],
                order_id=spec["order_id"],
                patient_id=spec["patient_id"],
                instrument=rows[0]["instrument"],
                results=list(protos.values()),
                raw_message_id=rows[0]["raw_message_id"],
                received_at=ts(now),
            ),
        )
    for x in reportable:
        if x["critical"]:
            uow.publish(
                "lab.result.critical",
                events_pb2.ResultCritical(
                    result=protos[x["id"]],
                    ordering_doctor=spec.get("ordering_doctor") or "",
                    patient_name=spec.get("patient_name") or "",
                    visit_id=spec.get("visit_id") or "",
                ),
            )
        if x["status"] == "verified":
            uow.publish(
                "lab.result.verified", events_pb2.ResultVerified(result=protos[x["id"]], by=SYSTEM.actor())
            )


def _names(cat: Catalogue, code: str | None) -> tuple[str, str]:
    t = cat.tests.get(code) if code else None
    return (t.name_vi, t.loinc or "") if t else ("", "")


async def count_results(s: AsyncSession) -> int:
    return int((await s.execute(select(func.count()).select_from(results))).scalar_one())
