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
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import nats
import nats.js.errors
from google.protobuf import symbol_database
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from opentelemetry import metrics, propagate, trace
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.db import (
    Database,
    driver_connection,
    inbox_table,
    outbox_deadletter_table,
    outbox_table,
    utcnow,
)
from hospital.chassis.telemetry import spans_recorded
from hospital.chassis.uow import EVENTS_WRITTEN

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hospital.bus")
meter = metrics.get_meter("hospital.bus")
_published = meter.create_counter("hospital_events_published", description="events published by the relay")
_handled = meter.create_counter("hospital_events_handled", description="events applied by consumers")
_dead = meter.create_counter("hospital_events_dead_lettered", description="events parked as dead letters")
_revived = meter.create_counter(
    "hospital_nats_connections_revived",
    description="NATS connections connected again after the client closed them",
)
_outbox_dead = meter.create_counter(
    "hospital_outbox_dead_lettered", description="outbox rows moved to outbox_deadletter (never publishable)"
)
_live_relays: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()


def _observe_dead_rows(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    # One observation per service: two relays of one service in a process (tests run several instances
    # side by side) would otherwise report the same attributes twice and only one value would be kept.
    per_service: dict[str, int] = {}
    for relay in list(_live_relays):
        per_service[relay.service] = max(per_service.get(relay.service, 0), relay.dead_rows)
    for service, rows in per_service.items():
        yield metrics.Observation(rows, {"service": service})


meter.create_observable_gauge(
    "hospital_outbox_deadletter_rows",
    callbacks=[_observe_dead_rows],
    description="rows waiting in outbox_deadletter for an operator (alert when > 0)",
)
_lag = meter.create_histogram(
    "hospital_event_lag_seconds",
    unit="s",
    description="time from the producer's commit to the consumer's commit "
    "(per applied batch, of its oldest event)",
)

DEADLETTER_STREAM = "DEADLETTER"
DOMAIN_STREAMS: dict[str, list[str]] = {
    "ADMISSIONS": ["admissions.>"],
    "EMR": ["emr.>"],
    "LAB": ["lab.>"],
    "IMAGING": ["imaging.>"],
    "BILLING": ["billing.>"],
    "PLATFORM": ["platform.>"],
}
WAKE_PREFIX = "_HOSPITAL.outbox"  # core NATS (no stream): "rows committed" wake-ups for a service's relays
H_EVENT_ID = "Hospital-Event-Id"
H_TYPE = "Hospital-Event-Type"
H_SOURCE = "Hospital-Event-Source"
H_TIME = "Hospital-Event-Time"
H_DEAD_SUBJECT = "Hospital-Dead-Subject"
H_DEAD_REASON = "Hospital-Dead-Reason"
H_DEAD_CONSUMER = "Hospital-Dead-Consumer"
H_DEAD_DELIVERIES = "Hospital-Dead-Deliveries"


class BusClient(NATS):
    """A NATS client that comes back after any close it did not ask for.

    nats-py reconnects by itself after a lost connection, but a server ``-ERR`` (a payload over the
    server's ``max_payload``, an authorization violation...) closes the client for good: every later
    publish fails, ``/readyz`` says ``nats: disconnected`` until a restart. This client connects itself
    again (same object, so the relay, the consumers and the JetStream context keep working) and counts the
    revival in ``epoch``; whoever holds core subscriptions on it (the relay's PubAck and wake-up inboxes,
    the consumers' pull feeds) subscribes again when ``epoch`` changes, since a close drops them.
    Only :meth:`close` and :meth:`drain` end it for good."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self._options: dict[str, Any] = {}
        self._closing = False
        self._revival: asyncio.Task[None] | None = None

    async def start(self, **options: Any) -> None:
        self._options = {**options, "closed_cb": self._on_closed}
        await self.connect(**self._options)

    async def close(self) -> None:
        self._closing = True
        if self._revival is not None and self._revival is not asyncio.current_task():
            self._revival.cancel()
        await super().close()

    async def drain(self) -> None:
        self._closing = True
        if self._revival is not None:
            self._revival.cancel()
        await super().drain()

    async def _on_closed(self) -> None:
        if self._closing or (self._revival is not None and not self._revival.done()):
            return
        log.error(
            "nats connection closed by %s; connecting again",
            self.last_error or "the client",
            extra={"alert": "nats_connection_closed", "nats_error": str(self.last_error or "")},
        )
        self._revival = asyncio.ensure_future(self._revive())

    async def _revive(self) -> None:
        wait = max(0.1, float(self._options.get("reconnect_time_wait", 0.25)))
        while not self._closing:
            await asyncio.sleep(wait)
            if self._closing:
                return
            try:
                await self.connect(**self._options)
            except Exception as exc:  # noqa: BLE001 - keep trying, like nats-py's own reconnects
                log.warning("nats: connecting again failed: %s", exc)
                wait = min(wait * 2, 5.0)
                continue
            self.epoch += 1
            _revived.add(1)
            log.warning("nats connection re-established after a close (epoch %d)", self.epoch)
            return


def connection_epoch(nc: NATS) -> int:
    """How many times ``nc`` was connected again after a close (0 for a plain nats-py client)."""
    return getattr(nc, "epoch", 0)


async def connect(url: str, name: str, *, attempts: int = 60) -> BusClient:
    """Connect with unlimited reconnects, and connect again after any close (:class:`BusClient`); retry
    the first connection for up to ``attempts`` × 0.5 s."""
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        nc = BusClient()
        try:
            await nc.start(
                servers=[url],
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=2,
                allow_reconnect=True,
                error_cb=_log_error,
                disconnected_cb=_log_disconnect,
                reconnected_cb=_log_reconnect,
            )
            return nc
        except Exception as exc:  # noqa: BLE001 - any connect failure is retried
            last = exc
            nc._closing = True
            await asyncio.sleep(0.5)
    raise ConnectionError(f"cannot reach NATS at {url}: {last}")


async def _log_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _log_disconnect() -> None:
    log.warning("nats disconnected")


async def _log_reconnect() -> None:
    log.info("nats reconnected")


async def ensure_streams(
    js: JetStreamContext, streams: dict[str, list[str]] | None = None, *, replicas: int = 1
) -> None:
    """Create or update the domain streams and the dead-letter stream (file storage, dedup window,
    ``replicas`` copies on a JetStream cluster)."""
    configs = [
        js_api.StreamConfig(
            name=name,
            subjects=subjects,
            storage=js_api.StorageType.FILE,
            duplicate_window=120.0,
            max_age=14 * 86400.0,
            num_replicas=replicas,
        )
        for name, subjects in (streams or DOMAIN_STREAMS).items()
    ]
    configs.append(
        js_api.StreamConfig(
            name=DEADLETTER_STREAM,
            subjects=["deadletter.>"],
            num_replicas=replicas,
            storage=js_api.StorageType.FILE,
            duplicate_window=120.0,
        )
    )
    for cfg in configs:
        try:
            await js.stream_info(cfg.name)
            await js.update_stream(cfg)
        except NotFoundError:
            await js.add_stream(cfg)


def outbox_wake_subject(service: str) -> str:
    """The core-NATS subject on which a service's API processes wake its outbox relays."""
    return f"{WAKE_PREFIX}.{service}"


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
    def from_msg(cls, msg: Msg) -> Event:
        h = dict(msg.headers or {})
        return cls(
            id=h.get(H_EVENT_ID) or h.get("Nats-Msg-Id") or f"seq:{msg.metadata.sequence.stream}",
            type=h.get(H_TYPE, ""),
            subject=msg.subject,
            source=h.get(H_SOURCE, ""),
            time=h.get(H_TIME, ""),
            payload=msg.data,
            headers=h,
        )

    def message(self) -> Message:
        """Decode the protobuf payload by its declared type (the contracts must be imported)."""
        cls = symbol_database.Default().GetSymbol(self.type)
        msg = cls()
        msg.ParseFromString(self.payload)
        return msg


# ------------------------------------------------------------------------------------- batch publish
class BatchPublisher:
    """Publishes many messages to JetStream at once and collects their PubAcks on one wildcard reply
    subscription: one inbox, no per-message request future or timer (``js.publish`` costs ~100 µs of
    Python per message; this costs ~30). Each message keeps its own headers (``Nats-Msg-Id`` for
    JetStream's duplicate window, ``traceparent`` of the request that raised it)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = ""
        self._epoch = 0
        self._batch = 0
        self._pending: dict[str, tuple[list[Any], asyncio.Event, list[int]]] = {}

    async def _ensure_subscription(self) -> None:
        if not self._prefix or self._epoch != connection_epoch(self.nc):  # a close dropped the inbox
            epoch = connection_epoch(self.nc)
            prefix = self.nc.new_inbox()
            await self.nc.subscribe(prefix + ".>", cb=self._on_ack)
            self._prefix, self._epoch = prefix, epoch

    async def _on_ack(self, msg: Msg) -> None:
        batch, _, index = msg.subject[len(self._prefix) + 1 :].rpartition(".")
        entry = self._pending.get(batch)
        if entry is None:
            return  # an answer after the batch timed out: the rows stay unpublished and are sent again
        results, done, left = entry
        i = int(index)
        if results[i] is not None:
            return
        results[i] = _pub_ack(msg)
        left[0] -= 1
        if left[0] == 0:
            done.set()

    async def publish(
        self, messages: list[tuple[str, bytes, dict[str, str]]], *, timeout: float
    ) -> list[js_api.PubAck | bool | BaseException]:
        """Publish ``messages`` (subject, payload, headers); return per message, in order, the PubAck (or
        ``True``: stored, PubAck not decoded) or the exception. Messages not acknowledged within
        ``timeout`` get a ``TimeoutError``."""
        if not messages:
            return []
        await self._ensure_subscription()
        self._batch += 1
        batch = str(self._batch)
        results: list[Any] = [None] * len(messages)
        # A message over the server's max_payload is never sent: the server would answer -ERR and close
        # the connection (and every message behind it would fail with it). It fails here on its own.
        limit = self.nc.max_payload
        for i, (subject, payload, headers) in enumerate(messages):
            size = message_size(payload, headers)
            if size > limit:
                results[i] = MessageTooLarge(size, limit)
            elif not subject or any(c in subject for c in " \t\r\n"):
                results[i] = BadEventSubject(subject)
        left = sum(r is None for r in results)
        done = asyncio.Event()
        if not left:
            return results
        self._pending[batch] = (results, done, [left])
        reply = f"{self._prefix}.{batch}."
        try:
            send = _raw_sender(self.nc)
            if send is None:
                publish = self.nc.publish  # the client's own checks, errors and reconnect buffering
                for i, (subject, payload, headers) in enumerate(messages):
                    if results[i] is None:
                        await publish(subject, payload, reply=reply + str(i), headers=headers)
            else:  # the same HPUB commands, encoded here in one pass, then one flush
                for i, (subject, payload, headers) in enumerate(messages):
                    if results[i] is None:
                        await send(_hpub(subject, reply + str(i), headers, payload))
                await self.nc._flush_pending()
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                pass
        except Exception as exc:  # noqa: BLE001 - connection trouble fails the unanswered messages
            return [r if r is not None else exc for r in results]
        finally:
            del self._pending[batch]
        return [r if r is not None else TimeoutError("no PubAck from JetStream") for r in results]


_NEWLINES = str.maketrans("\r\n", "  ")


class MessageTooLarge(nats.errors.MaxPayloadError):
    """A message (headers and payload) over the connected server's ``max_payload``: it can never be sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__()
        self.size, self.limit = size, limit

    def __str__(self) -> str:
        return f"message of {self.size} bytes exceeds the NATS server's max_payload of {self.limit} bytes"


def message_size(payload: bytes, headers: dict[str, str]) -> int:
    """What the server counts against ``max_payload``: the encoded header block plus the payload."""
    if not headers:
        return len(payload)
    return (
        len(b"NATS/1.0\r\n\r\n")
        + len(payload)
        + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    )


class BadEventSubject(nats.errors.BadSubjectError):
    """An event subject NATS cannot carry (empty, or with white space)."""

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject

    def __str__(self) -> str:
        return f"event subject {self.subject[:200]!r} is not a valid NATS subject"


def permanent_failure(exc: BaseException) -> bool:
    """A publish failure that no retry can cure: the message is too large for the server or the stream,
    or its subject is malformed. Anything else (no PubAck, no stream yet, connection trouble) is retried."""
    if isinstance(exc, (MessageTooLarge, BadEventSubject)):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code == _JS_MESSAGE_TOO_LARGE


_JS_MESSAGE_TOO_LARGE = 10054  # JetStream: "message size exceeds maximum allowed" (a stream's max_msg_size)


def _raw_sender(nc: NATS) -> Callable[[bytes], Awaitable[None]] | None:
    """nats-py's command writer while the connection is up (commands built here, one flush per batch);
    None otherwise, so callers use the client's own publish with its reconnect buffering and errors."""
    send = getattr(nc, "_send_command", None)
    if send is None or not nc.is_connected or nc.is_draining_pubs:
        return None
    return send


def _hpub(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The NATS ``HPUB`` command nats-py's ``publish`` would send (header values kept on one line), built
    without its per-header regular expression and encoding calls. Subjects and header names are the
    chassis's own (event subjects, ``Hospital-*``, ``Nats-Msg-Id``, W3C trace context)."""
    if " " in subject or not subject:
        raise nats.errors.BadSubjectError
    lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):  # a value broke its line
        lines = "".join([f"{k}: {v.translate(_NEWLINES)}\r\n" for k, v in headers.items()])
    hdr = ("NATS/1.0\r\n" + lines + "\r\n").encode()
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(hdr),
        len(hdr) + len(payload),
        hdr,
        payload,
    )


async def ack_all(nc: NATS, msgs: Sequence[Msg]) -> None:
    """Acknowledge JetStream deliveries: the ``PUB <reply> 0`` commands ``Msg.ack`` would send, written
    together and flushed once (``Msg.ack`` itself when the connection is not up, for its buffering)."""
    send = _raw_sender(nc)
    if send is None:
        for m in msgs:
            await m.ack()
        return
    for m in msgs:
        if not m.reply or m._ackd:
            await m.ack()  # raises what Msg.ack raises
        await send(b"PUB %s 0\r\n\r\n" % m.reply.encode())
        m._ackd = True
    await nc._flush_pending()


def _pub_ack(msg: Msg) -> js_api.PubAck | bool | BaseException:
    """A stored message's PubAck (``{"stream":..,"seq":..}``) is only checked, not decoded (``True``)."""
    data = msg.data
    if data[:10] == b'{"stream":' and b'"error"' not in data:
        return True
    if not data:
        status = (msg.headers or {}).get("Status", "")
        if status == "503":
            return nats.js.errors.NoStreamResponseError()
        return nats.js.errors.Error(f"JetStream answered status {status or 'empty'}")
    try:
        resp = json.loads(msg.data)
    except ValueError:
        return nats.js.errors.Error(f"unreadable PubAck: {msg.data[:100]!r}")
    if "error" in resp:
        try:  # nats-py raises the typed error rather than returning it
            nats.js.errors.APIError.from_error(resp["error"])
        except nats.js.errors.Error as exc:
            return exc
        return nats.js.errors.APIError(description=str(resp["error"]))
    return js_api.PubAck.from_response(resp)


# ---------------------------------------------------------------------------------------------- relay
class OutboxRelay:
    """Publishes committed outbox rows to JetStream, oldest first. Wake it with :meth:`notify` after a
    commit for low latency; it also polls, so rows written by another process are never stranded."""

    def __init__(
        self,
        db: Database,
        js: JetStreamContext | NATS,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        publish_timeout: float = 5.0,
        coalesce_seconds: float = 0.002,
        wake_subject: str | None = None,
        service: str = "",
    ) -> None:
        self.db = db
        self.nc: NATS = js if isinstance(js, NATS) else js._nc  # the relay publishes on the core connection
        self.publisher = BatchPublisher(self.nc)
        self.coalesce_seconds = coalesce_seconds
        self.batch_size, self.poll_seconds = batch_size, poll_seconds
        self.publish_timeout = publish_timeout
        self.wake_subject = wake_subject
        self._wake = asyncio.Event()
        self._running = False
        self._wake_pending = False
        self._wake_sends: set[asyncio.Future[None]] = set()
        self._busy = False
        self._stuck = False
        self._wake_sub: Any = None
        self._wake_epoch = -1
        self.published_total = 0
        self.dead_lettered_total = 0
        self.dead_rows = 0  # rows in outbox_deadletter, as last counted
        self._dead_counted = 0.0
        self.service = service

    @property
    def running(self) -> bool:
        """The relay loop runs in this process (and listens for wake-ups from others)."""
        return self._running

    def notify(self) -> None:
        """Rows were committed. A relay running in this process is woken directly; otherwise (an API
        process whose relay runs in ``worker``) a wake-up goes to the relays over core NATS on
        ``wake_subject``: one message per event-loop turn however many commits it had. A lost wake-up
        costs latency only: the relays also poll."""
        if self._running:
            self._wake.set()
        elif self.wake_subject is not None and not self._wake_pending and self.nc.is_connected:
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_pending = False
        task = asyncio.ensure_future(self._publish_wake())
        self._wake_sends.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._wake_sends.discard)

    async def _publish_wake(self) -> None:
        try:
            await self.nc.publish(self.wake_subject or "", b"")
        except Exception as exc:  # noqa: BLE001 - the relays' polling covers a lost wake-up
            log.debug("outbox relay wake-up not sent: %s", exc)

    async def _on_wake(self, _msg: Msg) -> None:
        self._wake.set()

    async def _subscribe_wake(self) -> None:
        """(Re)subscribe to the wake-up subject: at start and after the connection was re-established
        following a close (which drops subscriptions)."""
        if self.wake_subject is None or self._wake_epoch == connection_epoch(self.nc):
            return
        if not self.nc.is_connected:
            return
        self._wake_epoch = connection_epoch(self.nc)
        try:
            self._wake_sub = await self.nc.subscribe(self.wake_subject, cb=self._on_wake)
        except Exception as exc:  # noqa: BLE001 - polling still finds the rows
            self._wake_epoch = -1
            log.warning("outbox relay: no wake-up subscription (%s); polling only", exc)

    async def run(self, stop: asyncio.Event) -> None:
        self._wake_epoch = -1
        await self._subscribe_wake()
        self._running = True
        _live_relays.add(self)
        try:
            await self.refresh_dead_count()
        except Exception as exc:  # noqa: BLE001 - the gauge waits for the next refresh
            log.warning("outbox relay: dead letters not counted: %s", exc)
        try:
            await self._run(stop)
        finally:
            self._running = False
            _live_relays.discard(self)
            if self._wake_sub is not None:
                try:
                    await self._wake_sub.unsubscribe()
                except Exception:  # noqa: BLE001 - the connection may be closing
                    pass

    async def refresh_dead_count(self) -> int:
        """Count the rows in ``outbox_deadletter`` (for the ``hospital_outbox_deadletter_rows`` gauge)."""
        async with self.db.engine.connect() as conn:
            self.dead_rows = int((await conn.execute(_COUNT_DEAD)).scalar_one())
        self._dead_counted = time.monotonic()
        return self.dead_rows

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        busy_wait = self.coalesce_seconds or 0.002
        while not stop.is_set():
            if self._wake_epoch != connection_epoch(self.nc):
                await self._subscribe_wake()
            if time.monotonic() - self._dead_counted > 60:
                try:  # an operator's replay empties the table from another process
                    await self.refresh_dead_count()
                except Exception as exc:  # noqa: BLE001
                    log.debug("outbox relay: dead letters not counted: %s", exc)
            try:
                self._wake.clear()  # before reading: a commit notified during the batch runs the next one
                started = time.monotonic()
                n = await self.publish_batch(limit=1 if self._stuck else self.batch_size)
                backoff = 0.1
                if self._stuck:  # the row that failed went through: back to full batches
                    self._stuck = False
                    continue
                if n >= self.batch_size:
                    continue
                if self._busy:  # another process's relay holds the lock: try again soon, then less often
                    await _sleep_or_stop(stop, busy_wait)
                    busy_wait = min(busy_wait * 2, self.poll_seconds)
                    continue
                busy_wait = self.coalesce_seconds or 0.002
            except Exception as exc:  # noqa: BLE001 - keep relaying; the rows stay in the outbox
                # Until the oldest row goes through, only it is retried: the rows behind it (which JetStream
                # may already have stored) are not sent again and again.
                self._stuck = True
                log.warning("outbox relay: publish failed, will retry: %s", exc)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self._wake.is_set():  # commits during that batch have waited for it already: go on, but
                # start batches at most every coalesce_seconds (a relay with nothing else to do would
                # otherwise run a transaction per commit)
                pause = started + self.coalesce_seconds - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            woken = waiter.done()
            waiter.cancel()
            stopper.cancel()
            if woken and self.coalesce_seconds:
                # woken from idle: let concurrent commits land so one relay transaction carries them all
                await asyncio.sleep(self.coalesce_seconds)

    async def publish_batch(self, limit: int | None = None) -> int:
        """Publish the oldest unpublished rows; delete those JetStream acknowledged. Returns how many.

        PostgreSQL: one relay at a time per database (a transaction-level advisory lock): rows are read
        without row locks and leave the table in order, and a relay in another process that finds the lock
        taken comes back a little later. SQLite: the rows are read and deleted in two short transactions,
        so producers never wait for the database while the relay waits for NATS (two relays may then send a
        row twice: JetStream drops the copy by its message id)."""
        n = limit or self.batch_size
        if self.db.is_sqlite:
            async with self.db.engine.begin() as conn:
                rows = (await conn.execute(_SELECT_UNPUBLISHED, {"n": n})).all()
            if not rows:
                return 0
            done, dead, failed = await self._publish_rows(rows)
            if done or dead:
                async with self.db.engine.begin() as conn:
                    if dead:  # a second relay on the same file may have moved the row already
                        await conn.execute(
                            sqlite_insert(outbox_deadletter_table).on_conflict_do_nothing(), _dead_rows(dead)
                        )
                    await conn.execute(_DELETE_ONE, [{"s": seq} for seq in done + [r.seq for r, _ in dead]])
        else:  # on the pool's asyncpg connection: four round trips, no SQLAlchemy result processing
            async with self.db.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                async with driver.transaction():
                    records = await driver.fetch(_PG_LOCK_AND_SELECT_SQL, n)
                    self._busy = not records[0]["locked"]
                    if self._busy or records[0]["seq"] is None:
                        return 0
                    rows = [
                        _OutboxRow(
                            r["seq"],
                            r["id"],
                            r["subject"],
                            r["payload"],
                            json.loads(r["headers"]),
                            r["type"],
                            r["created_at"],
                        )
                        for r in records
                    ]
                    done, dead, failed = await self._publish_rows(rows)
                    if dead:
                        await driver.executemany(
                            _PG_INSERT_DEAD_SQL,
                            [
                                (
                                    d["id"],
                                    d["subject"],
                                    d["type"],
                                    d["payload"],
                                    _dumps(d["headers"]),
                                    d["created_at"],
                                    d["dead_at"],
                                    d["reason"],
                                    d["size"],
                                )
                                for d in _dead_rows(dead)
                            ],
                        )
                    if done or dead:  # one statement, one plan, whatever the batch size
                        await driver.execute(_DELETE_ANY_SQL, done + [r.seq for r, _ in dead])
        _published.add(len(done))
        self.published_total += len(done)
        if dead:
            self._report_dead(dead)
        if failed is not None:
            row, exc = failed
            log.warning(
                "outbox relay: event %s on %s not accepted by JetStream: %s", row.id, row.subject, exc
            )
            raise exc
        return len(done) + len(dead)

    def _report_dead(self, dead: list[tuple[Any, BaseException]]) -> None:
        self.dead_lettered_total += len(dead)
        self.dead_rows += len(dead)
        for row, exc in dead:
            _outbox_dead.add(1, {"service": self.service, "subject": row.subject})
            log.error(
                "outbox relay: event %s on %s can never be published (%s); moved to outbox_deadletter "
                "(see `outbox-deadletters list`)",
                row.id,
                row.subject,
                exc,
                extra={
                    "alert": "outbox_dead_letter",
                    "event_id": row.id,
                    "subject": row.subject,
                    "event_type": row.type,
                    "reason": str(exc),
                    "size": _row_size(row),
                },
            )

    async def _publish_rows(
        self, rows: Sequence[Any]
    ) -> tuple[list[int], list[tuple[Any, BaseException]], tuple[Any, BaseException] | None]:
        """Publish rows; return the seqs JetStream stored, the rows that can never be published (with
        the reason), and the first (row, error) that failed for a reason a retry may cure."""
        messages = [(r.subject, r.payload, {**r.headers, "Nats-Msg-Id": r.id}) for r in rows]
        spans = _producer_spans(messages) if spans_recorded() else []
        try:
            acks = await self.publisher.publish(messages, timeout=self.publish_timeout)
        finally:
            for span in spans:
                span.end()
        # Every row JetStream stored leaves the outbox, also those behind one it refused (they are on the
        # stream already; sending them again would store copies once the duplicate window passed). A row
        # that can never be published moves to the dead-letter table instead of stopping the rows behind it.
        done = [row.seq for row, ack in zip(rows, acks, strict=True) if not isinstance(ack, BaseException)]
        dead = [
            (r, a)
            for r, a in zip(rows, acks, strict=True)
            if isinstance(a, BaseException) and permanent_failure(a)
        ]
        failed = next(
            (
                (r, a)
                for r, a in zip(rows, acks, strict=True)
                if isinstance(a, BaseException) and not permanent_failure(a)
            ),
            None,
        )
        return done, dead, failed


def _row_size(row: Any) -> int:
    return message_size(row.payload, {**row.headers, "Nats-Msg-Id": row.id})


def _dead_rows(dead: list[tuple[Any, BaseException]]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "id": r.id,
            "subject": r.subject,
            "type": r.type,
            "payload": r.payload,
            "headers": r.headers,
            "created_at": r.created_at,
            "dead_at": now,
            "reason": str(exc)[:2000],
            "size": _row_size(r),
        }
        for r, exc in dead
    ]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _producer_spans(messages: list[tuple[str, bytes, dict[str, str]]]) -> list[trace.Span]:
    """One PRODUCER span per request (trace context) in the batch, child of the request that raised the
    events; its context replaces the ``traceparent`` so consumers' spans hang below it."""
    spans: dict[str, tuple[trace.Span, dict[str, str]]] = {}
    for subject, _, headers in messages:
        parent = headers.get("traceparent", "")
        if parent not in spans:
            span = tracer.start_span(
                f"publish {subject}",
                context=propagate.extract(headers),
                kind=trace.SpanKind.PRODUCER,
                attributes={"messaging.system": "nats", "messaging.destination.name": subject},
            )
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            spans[parent] = (span, carrier)
        headers.update(spans[parent][1])
    return [span for span, _ in spans.values()]


class _OutboxRow(NamedTuple):
    seq: int
    id: str
    subject: str
    payload: bytes
    headers: dict[str, str]
    type: str
    created_at: datetime


# One round trip: the relays' advisory lock (any constant shared by all of them), an asynchronous commit
# for this transaction (losing a deletion in a crash only re-publishes rows JetStream then drops as
# duplicates), and the oldest rows; a single row with locked = false when another relay is at work.
_PG_LOCK_AND_SELECT_SQL = """
    SELECT l.locked, o.seq, o.id, o.subject, o.payload, o.headers::text AS headers, o.type, o.created_at
    FROM (SELECT pg_try_advisory_xact_lock(7262010) AS locked,
                 set_config('synchronous_commit', 'off', true) AS sync) AS l
    LEFT JOIN LATERAL (SELECT seq, id, subject, payload, headers, type, created_at FROM outbox
                       WHERE l.locked AND published_at IS NULL ORDER BY seq LIMIT $1) AS o ON true
    ORDER BY o.seq"""
_DELETE_ANY_SQL = "DELETE FROM outbox WHERE seq = ANY($1::bigint[])"
_PG_INSERT_DEAD_SQL = (
    "INSERT INTO outbox_deadletter (id, subject, type, payload, headers, created_at, dead_at, reason, size) "
    "VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING"
)
_COUNT_DEAD = select(func.count()).select_from(outbox_deadletter_table)
_CLAIM_UNNEST_SQL = (
    "INSERT INTO inbox (consumer, event_id, subject, handled_at) "
    "SELECT $1::varchar, e.id, e.subject, $4::timestamptz FROM unnest($2::text[], $3::text[]) "
    "AS e(id, subject) ON CONFLICT DO NOTHING RETURNING event_id"
)
_SELECT_UNPUBLISHED = (
    select(
        outbox_table.c.seq,
        outbox_table.c.id,
        outbox_table.c.subject,
        outbox_table.c.payload,
        outbox_table.c.headers,
        outbox_table.c.type,
        outbox_table.c.created_at,
    )
    .where(outbox_table.c.published_at.is_(None))
    .order_by(outbox_table.c.seq)
    .limit(bindparam("n"))
)
_DELETE_ONE = delete(outbox_table).where(outbox_table.c.seq == bindparam("s"))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
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


class PullFeed:
    """A continuous pull on a durable JetStream consumer (the pattern of nats.go's ``Consume``).

    Pull requests, each on its own reply subject under one inbox, keep up to two batches of messages on
    their way; deliveries land in a buffer that :meth:`next_batch` hands out as soon as there is
    anything. Compared with ``PullSubscription.fetch`` there is no task, timer and UUID per message,
    and a lone event is handed over at once instead of after the fetch's timeout."""

    def __init__(
        self, js: JetStreamContext, stream: str, durable: str, *, batch: int, expires: float = 5.0
    ) -> None:
        self.nc: NATS = js._nc
        self.api = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.durable = durable
        self.batch, self.expires = batch, expires
        self.buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._requests: dict[str, list[float]] = {}  # reply token -> [messages still due, expiry time]
        self._sub: Any = None
        self._inbox = ""
        self._next = 0
        self._reconnects = 0
        self._epoch = 0
        self._error: Exception | None = None

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox + ".*", cb=self._on_msg)
        self._reconnects = self.nc.stats["reconnects"]
        self._epoch = connection_epoch(self.nc)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may be gone already
                log.debug("pull feed %s: unsubscribe failed: %s", self.durable, exc)
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers and not msg.data else None
        if status is None:
            # a delivery carries the event's own subject, not the request's: count it against the oldest
            # open request (the server serves pull requests in order)
            self.buffer.append(msg)
            self._arrived.set()
            for token, request in self._requests.items():
                request[0] -= 1
                if request[0] <= 0:
                    del self._requests[token]
                break
            return
        if status == "100":
            return  # heartbeat or flow control
        self._requests.pop(msg.subject[len(self._inbox) + 1 :], None)  # 404/408/409/503: that request is over
        description = (msg.headers or {}).get("Description", "")
        if (status == "409" and "Consumer Deleted" in description) or status == "503":
            # the durable is gone (503: no consumer answers the pull): the Consumer re-creates it
            self._error = NotFoundError(description=description or "no responders: consumer missing")
        self._arrived.set()  # wake next_batch: it renews requests (or raises the error)

    async def _refill(self) -> None:
        if connection_epoch(self.nc) != self._epoch:  # the connection was closed and re-established:
            # this feed's inbox subscription is gone; the Consumer starts a new feed
            raise nats.errors.ConnectionClosedError
        now = time.monotonic()
        if self.nc.stats["reconnects"] != self._reconnects:  # requests may not have survived
            self._reconnects = self.nc.stats["reconnects"]
            self._requests.clear()
        for token in [t for t, (_, expiry) in self._requests.items() if expiry < now]:
            del self._requests[token]  # its end-of-request status never came
        outstanding = sum(due for due, _ in self._requests.values()) + len(self.buffer)
        if outstanding > self.batch:
            return
        want = 2 * self.batch - int(outstanding)
        self._next += 1
        token = str(self._next)
        self._requests[token] = [want, now + self.expires + 1.0]
        await self.nc.publish(
            self.api,
            b'{"batch":%d,"expires":%d}' % (want, int(self.expires * 1e9)),
            reply=f"{self._inbox}.{token}",
        )

    async def next_batch(self, timeout: float) -> list[Msg]:
        """Up to ``batch`` delivered messages; waits up to ``timeout`` for the first one, keeping a pull
        request open all the while (one that expires is renewed at once)."""
        deadline = time.monotonic() + timeout
        while True:
            await self._refill()
            if self.buffer or self._error is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return []
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        n = min(len(self.buffer), self.batch)
        return [self.buffer.popleft() for _ in range(n)]


class Consumer:
    """Runs one :class:`Subscription`: fetch a batch, apply it in one transaction with the inbox rows,
    commit, then ack. A failing batch is retried one event per transaction so a poison event only
    affects itself; after ``max_deliver`` failed deliveries it is parked on the dead-letter stream."""

    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        sub: Subscription,
        *,
        service: str,
        batch_size: int = 256,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        on_committed: Callable[[list[Event]], None] | None = None,
        on_events_written: Callable[[], None] | None = None,
    ) -> None:
        self.db, self.js, self.sub, self.service = db, js, sub, service
        self.batch_size, self.max_deliver, self.ack_wait = batch_size, max_deliver, ack_wait
        self.on_committed = on_committed
        self.on_events_written = on_events_written  # e.g. the outbox relay's notify
        self.handled_total = 0
        self._ensured = False  # the durable was just created/updated (start-up): the loop need not again

    def _after_commit(self, session: AsyncSession) -> None:
        if session.info.pop(EVENTS_WRITTEN, False) and self.on_events_written is not None:
            self.on_events_written()  # handlers published (UnitOfWork.joining): wake the relay now

    def _committed(self, events: list[Event]) -> None:
        if not events:
            return
        self.handled_total += len(events)
        _handled.add(len(events), {"consumer": self.sub.durable})
        try:  # once per batch, for its oldest event (a histogram record costs ~8 µs: not per event)
            oldest = min(datetime.fromisoformat(ev.time).timestamp() for ev in events)
            _lag.record(time.time() - oldest, {"consumer": self.sub.durable})
        except ValueError:
            pass
        if self.on_committed is not None:
            self.on_committed(events)

    async def ensure(self) -> None:
        cfg = js_api.ConsumerConfig(
            durable_name=self.sub.durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.NEW if self.sub.start == "new" else js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            filter_subjects=list(self.sub.handlers),
            max_ack_pending=max(1000, self.batch_size * 4),
        )
        await self.js.add_consumer(self.sub.stream, config=cfg)
        self._ensured = True

    async def run(self, stop: asyncio.Event) -> None:
        feed: PullFeed | None = None
        while not stop.is_set():
            try:
                if feed is None:
                    if not self._ensured:  # after a failure the durable may be gone: ensure it again
                        await self.ensure()
                    self._ensured = False
                    feed = PullFeed(self.js, self.sub.stream, self.sub.durable, batch=self.batch_size)
                    await feed.start()
                msgs = await feed.next_batch(timeout=1.0)
                if msgs:
                    await self.process(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS down or DB down: unacked messages come back
                log.warning("consumer %s: %s; retrying", self.sub.durable, exc)
                await _sleep_or_stop(stop, 0.5)
                if isinstance(exc, (NotFoundError, nats.errors.ConnectionClosedError)) and feed is not None:
                    await feed.close()
                    feed = None
        if feed is not None:  # before the connection drains, or the drain waits for this subscription
            await feed.close()

    async def process(self, msgs: list[Msg]) -> None:
        events = [(m, Event.from_msg(m)) for m in msgs]
        try:
            async with self.db.session() as session, session.begin():
                fresh = await self._claim(session, events)
                await self._apply(session, [ev for _, ev in fresh])
            self._after_commit(session)
            self._committed([ev for _, ev in fresh])
            await ack_all(self.js._nc, msgs)
        except Exception:  # noqa: BLE001 - retry one by one to isolate the failing event
            for msg, ev in events:
                await self._process_one(msg, ev)

    async def _process_one(self, msg: Msg, ev: Event) -> None:
        try:
            async with self.db.session() as session, session.begin():
                fresh = await self._claim(session, [(msg, ev)])
                await self._apply(session, [e for _, e in fresh])
            self._after_commit(session)
            self._committed([ev for _, ev in fresh])
            await msg.ack()
        except Exception as exc:  # noqa: BLE001
            delivered = msg.metadata.num_delivered or 1
            if delivered >= self.max_deliver:
                await self._dead_letter(msg, ev, exc, delivered)
            else:
                log.warning(
                    "consumer %s: event %s (%s) failed on delivery %d: %s",
                    self.sub.durable,
                    ev.id,
                    ev.subject,
                    delivered,
                    exc,
                )
                await msg.nak(delay=min(0.2 * 2**delivered, 10.0))

    async def _claim(self, session: AsyncSession, events: list[tuple[Msg, Event]]) -> list[tuple[Msg, Event]]:
        """Record the events in the inbox; returns those not handled before (the effect's licence).

        One ``INSERT .. ON CONFLICT DO NOTHING RETURNING``: ids already present come back missing, and
        a concurrent consumer holding the same id makes this one wait for its outcome, never double."""
        rows, first = [], {}
        now = utcnow()
        for msg, ev in events:
            if ev.id not in first:
                first[ev.id] = (msg, ev)
                rows.append(
                    {
                        "consumer": self.sub.durable,
                        "event_id": ev.id,
                        "subject": ev.subject,
                        "handled_at": now,
                    }
                )
        if not rows:
            return []
        if self.db.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as upsert

            stmt = upsert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.event_id)
            claimed = set((await session.execute(stmt, rows)).scalars())  # executemany: compiled once, cached
        else:  # one statement whatever the batch size: the ids as an array, on the transaction's connection
            driver = await driver_connection(session)
            claimed = {
                r[0]
                for r in await driver.fetch(
                    _CLAIM_UNNEST_SQL,
                    self.sub.durable,
                    [r["event_id"] for r in rows],
                    [r["subject"] for r in rows],
                    now,
                )
            }
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
        recorded = spans_recorded()
        for handler, group in groups:
            if recorded:
                spans = [
                    tracer.start_span(
                        f"consume {ev.subject}",
                        context=propagate.extract(ev.headers),
                        kind=trace.SpanKind.CONSUMER,
                        attributes={
                            "messaging.system": "nats",
                            "messaging.consumer.group.name": self.sub.durable,
                            "messaging.message.id": ev.id,
                        },
                    )
                    for ev in group
                ]
            else:  # nothing records spans: carry the producer's trace id for the logs, at no cost
                spans = [trace.NonRecordingSpan(_remote_context(ev.headers)) for ev in group]
            try:
                if getattr(handler, "handles_batches", False):
                    with trace.use_span(spans[0], end_on_exit=False):
                        await handler(session, group)
                else:
                    for ev, span in zip(group, spans, strict=True):
                        with trace.use_span(span, end_on_exit=False):
                            await handler(session, ev)
            finally:
                if recorded:
                    for span in spans:
                        span.end()

    async def _dead_letter(self, msg: Msg, ev: Event, exc: Exception, delivered: int) -> None:
        headers = dict(ev.headers)
        headers.update(
            {
                "Nats-Msg-Id": f"dead:{self.sub.durable}:{ev.id}",
                H_EVENT_ID: ev.id,
                H_DEAD_SUBJECT: ev.subject,
                H_DEAD_CONSUMER: self.sub.durable,
                H_DEAD_REASON: f"{type(exc).__name__}: {exc}"[:500],
                H_DEAD_DELIVERIES: str(delivered),
            }
        )
        await self.js.publish(f"deadletter.{self.service}.{self.sub.durable}", ev.payload, headers=headers)
        await msg.term()
        _dead.add(1, {"consumer": self.sub.durable})
        log.error(
            "consumer %s: event %s (%s) parked as dead letter after %d deliveries: %s",
            self.sub.durable,
            ev.id,
            ev.subject,
            delivered,
            exc,
        )


def _remote_context(headers: dict[str, str]) -> trace.SpanContext:
    """The span context in a W3C ``traceparent`` header (invalid when absent or malformed)."""
    parts = headers.get("traceparent", "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        try:
            return trace.SpanContext(
                int(parts[1], 16),
                int(parts[2], 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(parts[3][:2], 16)),
            )
        except ValueError:
            pass
    return trace.INVALID_SPAN_CONTEXT


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


async def list_dead_letters(
    js: JetStreamContext, service: str, consumer: str | None = None
) -> list[DeadLetter]:
    filt = f"deadletter.{service}.{consumer}" if consumer else f"deadletter.{service}.>"
    out: list[DeadLetter] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(DEADLETTER_STREAM, seq=seq, subject=filt, next=True)
        except NotFoundError:
            break
        h = dict(raw.headers or {})
        out.append(
            DeadLetter(
                seq=raw.seq,
                event_id=h.get(H_EVENT_ID, ""),
                subject=h.get(H_DEAD_SUBJECT, ""),
                consumer=h.get(H_DEAD_CONSUMER, ""),
                reason=h.get(H_DEAD_REASON, ""),
                deliveries=int(h.get(H_DEAD_DELIVERIES, "0")),
                parked_at=raw.time if isinstance(raw.time, datetime) else None,
                payload=raw.data or b"",
                headers=h,
            )
        )
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


# ----------------------------------------------------------------------------------- outbox dead letters
@dataclass
class OutboxDeadLetter:
    """An outbox row the relay could never publish (``outbox_deadletter``)."""

    id: str
    subject: str
    type: str
    size: int
    reason: str
    created_at: datetime
    dead_at: datetime


async def list_outbox_dead_letters(db: Database) -> list[OutboxDeadLetter]:
    """The rows in ``outbox_deadletter``, oldest first (payloads not loaded)."""
    t = outbox_deadletter_table
    async with db.session() as session:
        rows = (
            await session.execute(
                select(
                    t.c.id, t.c.subject, t.c.type, t.c.size, t.c.reason, t.c.created_at, t.c.dead_at
                ).order_by(t.c.seq)
            )
        ).all()
    return [OutboxDeadLetter(*row) for row in rows]


async def replay_outbox_dead_letters(db: Database, event_ids: Iterable[str] | None = None) -> list[str]:
    """Move dead-lettered rows (``event_ids``, or all when None) back to the end of the outbox, in one
    transaction, with their event id, payload and headers unchanged; the relay publishes them at its next
    poll (consumers that somehow saw one skip it by its event id). Returns the ids moved; unknown ids are
    not an error (see :func:`list_outbox_dead_letters`). A row whose cause is not fixed comes back."""
    t = outbox_deadletter_table
    cols = [t.c.id, t.c.subject, t.c.type, t.c.payload, t.c.headers, t.c.created_at]
    async with db.session() as session, session.begin():
        query = select(*cols).order_by(t.c.seq)
        if event_ids is not None:
            query = query.where(t.c.id.in_(list(event_ids)))
        rows = (await session.execute(query)).mappings().all()
        if rows:
            await session.execute(insert(outbox_table), [dict(r) for r in rows])
            await session.execute(delete(t).where(t.c.id.in_([r["id"] for r in rows])))
    return [r["id"] for r in rows]
