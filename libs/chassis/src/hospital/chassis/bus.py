"""Event bus on NATS JetStream: streams, the event envelope, the outbox relay and idempotent consumers.

Guarantees (see docs/adr/0003-events-outbox-inbox.md):
* an event is in the outbox iff its state change committed (same transaction);
* the relay publishes outbox rows in order with ``Nats-Msg-Id`` = event id (JetStream drops duplicates
  inside the duplicate window) and marks them published only after JetStream acknowledged them;
* a consumer applies an event's effect and records the event id in ``inbox`` in one transaction and acks
  only after that commit; a redelivered event whose id is in the inbox is acked without effect;
* an event that fails ``max_deliver`` times is parked on the ``DEADLETTER`` stream and can be replayed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import nats
from google.protobuf import symbol_database
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from opentelemetry import metrics, propagate, trace
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.db import Database, inbox_table, outbox_table, utcnow

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hospital.bus")
meter = metrics.get_meter("hospital.bus")
_published = meter.create_counter("hospital_events_published", description="events published by the relay")
_handled = meter.create_counter("hospital_events_handled", description="events applied by consumers")
_dead = meter.create_counter("hospital_events_dead_lettered", description="events parked as dead letters")
_lag = meter.create_histogram("hospital_event_lag_seconds", unit="s",
                              description="time from the producer's commit to the consumer's commit")

DEADLETTER_STREAM = "DEADLETTER"
DOMAIN_STREAMS: dict[str, list[str]] = {
    "ADMISSIONS": ["admissions.>"],
    "EMR": ["emr.>"],
    "LAB": ["lab.>"],
    "IMAGING": ["imaging.>"],
    "BILLING": ["billing.>"],
    "PLATFORM": ["platform.>"],
}
H_EVENT_ID = "Hospital-Event-Id"
H_TYPE = "Hospital-Event-Type"
H_SOURCE = "Hospital-Event-Source"
H_TIME = "Hospital-Event-Time"
H_DEAD_SUBJECT = "Hospital-Dead-Subject"
H_DEAD_REASON = "Hospital-Dead-Reason"
H_DEAD_CONSUMER = "Hospital-Dead-Consumer"
H_DEAD_DELIVERIES = "Hospital-Dead-Deliveries"


async def connect(url: str, name: str, *, attempts: int = 60) -> NATS:
    """Connect with unlimited reconnects; retry the first connection for up to ``attempts`` × 0.5 s."""
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        try:
            return await nats.connect(
                servers=[url], name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                connect_timeout=2, allow_reconnect=True,
                error_cb=_log_error, disconnected_cb=_log_disconnect, reconnected_cb=_log_reconnect,
            )
        except Exception as exc:  # noqa: BLE001 - any connect failure is retried
            last = exc
            await asyncio.sleep(0.5)
    raise ConnectionError(f"cannot reach NATS at {url}: {last}")


async def _log_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _log_disconnect() -> None:
    log.warning("nats disconnected")


async def _log_reconnect() -> None:
    log.info("nats reconnected")


async def ensure_streams(js: JetStreamContext, streams: dict[str, list[str]] | None = None, *,
                         replicas: int = 1) -> None:
    """Create or update the domain streams and the dead-letter stream (file storage, dedup window,
    ``replicas`` copies on a JetStream cluster)."""
    configs = [
        js_api.StreamConfig(name=name, subjects=subjects, storage=js_api.StorageType.FILE,
                            duplicate_window=120.0, max_age=14 * 86400.0, num_replicas=replicas)
        for name, subjects in (streams or DOMAIN_STREAMS).items()
    ]
    configs.append(js_api.StreamConfig(name=DEADLETTER_STREAM, subjects=["deadletter.>"], num_replicas=replicas,
                                       storage=js_api.StorageType.FILE, duplicate_window=120.0))
    for cfg in configs:
        try:
            await js.stream_info(cfg.name)
            await js.update_stream(cfg)
        except NotFoundError:
            await js.add_stream(cfg)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    source: str
    time: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_msg(cls, msg: Msg) -> "Event":
        h = dict(msg.headers or {})
        return cls(id=h.get(H_EVENT_ID) or h.get("Nats-Msg-Id") or f"seq:{msg.metadata.sequence.stream}",
                   type=h.get(H_TYPE, ""), subject=msg.subject,
                   source=h.get(H_SOURCE, ""), time=h.get(H_TIME, ""), payload=msg.data, headers=h)

    def message(self) -> Message:
        """Decode the protobuf payload by its declared type (the contracts must be imported)."""
        cls = symbol_database.Default().GetSymbol(self.type)
        msg = cls()
        msg.ParseFromString(self.payload)
        return msg


# ---------------------------------------------------------------------------------------------- relay
class OutboxRelay:
    """Publishes committed outbox rows to JetStream, oldest first. Wake it with :meth:`notify` after a
    commit for low latency; it also polls, so rows written by another process are never stranded."""

    def __init__(self, db: Database, js: JetStreamContext, *, batch_size: int = 500, poll_seconds: float = 0.5,
                 retention_hours: int = 72, publish_timeout: float = 5.0, coalesce_seconds: float = 0.002) -> None:
        self.db, self.js = db, js
        self.coalesce_seconds = coalesce_seconds
        self.batch_size, self.poll_seconds = batch_size, poll_seconds
        self.retention = timedelta(hours=retention_hours)
        self.publish_timeout = publish_timeout
        self._wake = asyncio.Event()
        self._last_purge = 0.0
        self.published_total = 0

    def notify(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                n = await self.publish_batch()
                backoff = 0.1
                if n >= self.batch_size:
                    continue
                await self._maybe_purge()
            except Exception as exc:  # noqa: BLE001 - keep relaying; the rows stay in the outbox
                log.warning("outbox relay: publish failed, will retry: %s", exc)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            woken = waiter.done()
            waiter.cancel()
            stopper.cancel()
            if woken and self.coalesce_seconds:
                # let concurrent commits land so one relay transaction carries them all
                await asyncio.sleep(self.coalesce_seconds)

    async def publish_batch(self) -> int:
        async with self.db.session() as session, session.begin():
            rows = (await session.execute(
                select(outbox_table.c.seq, outbox_table.c.id, outbox_table.c.subject,
                       outbox_table.c.payload, outbox_table.c.headers)
                .where(outbox_table.c.published_at.is_(None))
                .order_by(outbox_table.c.seq).limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0
            acks = await asyncio.gather(*(self._publish(r) for r in rows), return_exceptions=True)
            done = []
            for row, ack in zip(rows, acks):
                if isinstance(ack, BaseException):
                    break  # keep order: later rows wait for this one
                done.append(row.seq)
            if done:
                now = utcnow()
                await session.execute(  # executemany: one cached statement, whatever the batch size
                    update(outbox_table).where(outbox_table.c.seq == bindparam("s")).values(published_at=now),
                    [{"s": seq} for seq in done])
            _published.add(len(done))
            self.published_total += len(done)
            failed = next((a for a in acks if isinstance(a, BaseException)), None)
        if failed is not None:
            raise failed
        return len(done)

    async def _publish(self, row: Any) -> js_api.PubAck:
        headers = dict(row.headers)
        headers["Nats-Msg-Id"] = row.id
        ctx = propagate.extract(headers)
        with tracer.start_as_current_span(f"publish {row.subject}", context=ctx, kind=trace.SpanKind.PRODUCER,
                                          attributes={"messaging.system": "nats",
                                                      "messaging.destination.name": row.subject,
                                                      "messaging.message.id": row.id}):
            propagate.inject(headers)
            return await self.js.publish(row.subject, row.payload, headers=headers, timeout=self.publish_timeout)

    async def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < 300:
            return
        self._last_purge = time.monotonic()
        async with self.db.session() as session, session.begin():
            await session.execute(delete(outbox_table).where(outbox_table.c.published_at < utcnow() - self.retention))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


# ------------------------------------------------------------------------------------------- consumer
Handler = Callable[[AsyncSession, Event], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[Event]], Awaitable[None]]


def batch_handler(fn: BatchHandler) -> BatchHandler:
    """Mark a handler that applies a whole fetched batch at once (e.g. one multi-row INSERT)."""
    fn.handles_batches = True  # type: ignore[attr-defined]
    return fn


@dataclass
class Subscription:
    """A durable pull consumer on one stream; ``handlers`` maps subjects (exact, or with ``*``/``>``
    wildcards) to the function applying the event's effect inside the consumer's transaction: a
    :data:`Handler` per event, or a :data:`BatchHandler` marked with :func:`batch_handler`."""

    stream: str
    durable: str
    handlers: dict[str, Handler | BatchHandler]
    start: str = "all"  # a new durable starts from the stream's first event ("all") or from now ("new")

    def handler_for(self, subject: str) -> Handler | BatchHandler | None:
        for pattern, handler in self.handlers.items():
            if subject_matches(pattern, subject):
                return handler
        return None


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


class Consumer:
    """Runs one :class:`Subscription`: fetch a batch, apply it in one transaction with the inbox rows,
    commit, then ack. A failing batch is retried one event per transaction so a poison event only
    affects itself; after ``max_deliver`` failed deliveries it is parked on the dead-letter stream."""

    def __init__(self, db: Database, js: JetStreamContext, sub: Subscription, *, service: str,
                 batch_size: int = 256, max_deliver: int = 5, ack_wait: float = 30.0,
                 on_committed: Callable[[list[Event]], None] | None = None) -> None:
        self.db, self.js, self.sub, self.service = db, js, sub, service
        self.batch_size, self.max_deliver, self.ack_wait = batch_size, max_deliver, ack_wait
        self.on_committed = on_committed
        self.handled_total = 0

    def _committed(self, events: list[Event]) -> None:
        if not events:
            return
        self.handled_total += len(events)
        _handled.add(len(events), {"consumer": self.sub.durable})
        now = time.time()
        for ev in events:
            try:
                _lag.record(now - datetime.fromisoformat(ev.time).timestamp(), {"consumer": self.sub.durable})
            except ValueError:
                pass
        if self.on_committed is not None:
            self.on_committed(events)

    async def ensure(self) -> None:
        cfg = js_api.ConsumerConfig(
            durable_name=self.sub.durable, ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.NEW if self.sub.start == "new" else js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait, max_deliver=-1,
            filter_subjects=list(self.sub.handlers), max_ack_pending=max(1000, self.batch_size * 4),
        )
        await self.js.add_consumer(self.sub.stream, config=cfg)

    async def run(self, stop: asyncio.Event) -> None:
        psub = None
        while not stop.is_set():
            try:
                if psub is None:
                    await self.ensure()
                    psub = await self.js.pull_subscribe_bind(durable=self.sub.durable, stream=self.sub.stream)
                try:
                    msgs = await psub.fetch(self.batch_size, timeout=1.0)
                except TimeoutError:  # nats' own and asyncio's: nothing to fetch
                    continue
                await self.process(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS down or DB down: unacked messages come back
                log.warning("consumer %s: %s; retrying", self.sub.durable, exc)
                await _sleep_or_stop(stop, 0.5)
                if isinstance(exc, (NotFoundError, nats.errors.ConnectionClosedError)):
                    psub = None
        if psub is not None:  # before the connection drains, or the drain waits for this subscription
            try:
                await psub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass

    async def process(self, msgs: list[Msg]) -> None:
        events = [(m, Event.from_msg(m)) for m in msgs]
        try:
            async with self.db.session() as session, session.begin():
                fresh = await self._claim(session, events)
                await self._apply(session, [ev for _, ev in fresh])
            self._committed([ev for _, ev in fresh])
            await asyncio.gather(*(m.ack() for m, _ in events))
        except Exception:  # noqa: BLE001 - retry one by one to isolate the failing event
            for msg, ev in events:
                await self._process_one(msg, ev)

    async def _process_one(self, msg: Msg, ev: Event) -> None:
        try:
            async with self.db.session() as session, session.begin():
                fresh = await self._claim(session, [(msg, ev)])
                await self._apply(session, [e for _, e in fresh])
            self._committed([ev for _, ev in fresh])
            await msg.ack()
        except Exception as exc:  # noqa: BLE001
            delivered = msg.metadata.num_delivered or 1
            if delivered >= self.max_deliver:
                await self._dead_letter(msg, ev, exc, delivered)
            else:
                log.warning("consumer %s: event %s (%s) failed on delivery %d: %s",
                            self.sub.durable, ev.id, ev.subject, delivered, exc)
                await msg.nak(delay=min(0.2 * 2 ** delivered, 10.0))

    async def _claim(self, session: AsyncSession, events: list[tuple[Msg, Event]]) -> list[tuple[Msg, Event]]:
        """Record the events in the inbox; returns those not handled before (the effect's licence).

        One ``INSERT .. ON CONFLICT DO NOTHING RETURNING``: ids already present come back missing, and
        a concurrent consumer holding the same id makes this one wait for its outcome, never double."""
        rows, first = [], {}
        now = utcnow()
        for msg, ev in events:
            if ev.id not in first:
                first[ev.id] = (msg, ev)
                rows.append({"consumer": self.sub.durable, "event_id": ev.id, "subject": ev.subject,
                             "handled_at": now})
        if not rows:
            return []
        if session.bind.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        stmt = upsert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.event_id)
        claimed = set((await session.execute(stmt, rows)).scalars())  # executemany: compiled once, cached
        return [first[eid] for eid in first if eid in claimed]

    async def _apply(self, session: AsyncSession, events: list[Event]) -> None:
        """Apply events in order; consecutive events of one batch handler go to it together. Each
        event gets a CONSUMER span in the trace of the request that produced it."""
        groups: list[tuple[Any, list[Event]]] = []
        for ev in events:
            handler = self.sub.handler_for(ev.subject)
            if handler is None:
                continue
            if groups and groups[-1][0] is handler and getattr(handler, "handles_batches", False):
                groups[-1][1].append(ev)
            else:
                groups.append((handler, [ev]))
        for handler, group in groups:
            spans = [tracer.start_span(f"consume {ev.subject}", context=propagate.extract(ev.headers),
                                       kind=trace.SpanKind.CONSUMER,
                                       attributes={"messaging.system": "nats",
                                                   "messaging.consumer.group.name": self.sub.durable,
                                                   "messaging.message.id": ev.id}) for ev in group]
            try:
                if getattr(handler, "handles_batches", False):
                    with trace.use_span(spans[0], end_on_exit=False):
                        await handler(session, group)
                else:
                    for ev, span in zip(group, spans):
                        with trace.use_span(span, end_on_exit=False):
                            await handler(session, ev)
            finally:
                for span in spans:
                    span.end()

    async def _dead_letter(self, msg: Msg, ev: Event, exc: Exception, delivered: int) -> None:
        headers = dict(ev.headers)
        headers.update({
            "Nats-Msg-Id": f"dead:{self.sub.durable}:{ev.id}", H_EVENT_ID: ev.id,
            H_DEAD_SUBJECT: ev.subject, H_DEAD_CONSUMER: self.sub.durable,
            H_DEAD_REASON: f"{type(exc).__name__}: {exc}"[:500], H_DEAD_DELIVERIES: str(delivered),
        })
        await self.js.publish(f"deadletter.{self.service}.{self.sub.durable}", ev.payload, headers=headers)
        await msg.term()
        _dead.add(1, {"consumer": self.sub.durable})
        log.error("consumer %s: event %s (%s) parked as dead letter after %d deliveries: %s",
                  self.sub.durable, ev.id, ev.subject, delivered, exc)


# ------------------------------------------------------------------------------------------ dead letters
@dataclass
class DeadLetter:
    seq: int
    event_id: str
    subject: str
    consumer: str
    reason: str
    deliveries: int
    parked_at: datetime | None
    payload: bytes
    headers: dict[str, str]


async def list_dead_letters(js: JetStreamContext, service: str, consumer: str | None = None) -> list[DeadLetter]:
    filt = f"deadletter.{service}.{consumer}" if consumer else f"deadletter.{service}.>"
    out: list[DeadLetter] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(DEADLETTER_STREAM, seq=seq, subject=filt, next=True)
        except NotFoundError:
            break
        h = dict(raw.headers or {})
        out.append(DeadLetter(seq=raw.seq, event_id=h.get(H_EVENT_ID, ""), subject=h.get(H_DEAD_SUBJECT, ""),
                              consumer=h.get(H_DEAD_CONSUMER, ""), reason=h.get(H_DEAD_REASON, ""),
                              deliveries=int(h.get(H_DEAD_DELIVERIES, "0")),
                              parked_at=raw.time if isinstance(raw.time, datetime) else None,
                              payload=raw.data or b"", headers=h))
        seq = raw.seq + 1
    return out


async def replay_dead_letters(js: JetStreamContext, letters: Iterable[DeadLetter]) -> int:
    """Publish each dead letter again on its original subject (same event id, so consumers that had
    handled it skip it), then remove it from the dead-letter stream."""
    n = 0
    for letter in letters:
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("Hospital-Dead-")}
        headers["Nats-Msg-Id"] = f"{letter.event_id}:replay:{letter.seq}"
        await js.publish(letter.subject, letter.payload, headers=headers)
        await js.delete_msg(DEADLETTER_STREAM, letter.seq)
        n += 1
    return n

