"""Unit of work: one database transaction that commits a state change together with the events it
raised (outbox rows) and its audit records, then wakes the outbox relay."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.audit import AuditEntry, append_audit
from hospital.chassis.db import Database, driver_connection, outbox_table, utcnow
from hospital.chassis.errors import DomainError
from hospital.chassis.ids import new_id

EVENTS_WRITTEN = "hospital.events_written"  # session.info flag: outbox rows were written in this transaction
# Events stay small by design (ADR 0007): they carry identifiers, codes and short values, and large content
# (reports, images, documents) by reference. An event payload above this is refused at the source, so the
# request that raised it fails with 413 and nothing is written; NATS's own limit is 1 MiB per message.
MAX_EVENT_BYTES = 256 * 1024


class EventTooLarge(DomainError):
    """An event above :data:`MAX_EVENT_BYTES`: the change that raised it is refused."""

    status = 413

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(
            "event_too_large",
            f"the change would raise an event of {size} bytes on {subject}, above the limit of "
            f"{limit} bytes: shorten the longest values",
        )
        self.size, self.limit = size, limit


class Publisher(Protocol):
    """What a step inside someone else's transaction needs to raise events and audit records: a
    :class:`UnitOfWork` (its own or :meth:`UnitOfWork.joining` a consumer's session) satisfies it."""

    def publish(self, subject: str, message: Message) -> str: ...

    def audit(self, entry: AuditEntry) -> None: ...


class UnitOfWork:
    """Use ``async with UnitOfWork(db, source=...) as uow`` for a transaction of one's own, or
    :meth:`joining` inside an event handler to publish and audit in the consumer's transaction."""

    def __init__(
        self, db: Database | None, *, source: str, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.source = source
        self._on_commit = on_commit
        self._events: list[dict[str, Any]] = []
        self._audit: list[AuditEntry] = []
        self._trace_headers: dict[str, str] | None = None
        self.session: AsyncSession

    @classmethod
    def joining(cls, session: AsyncSession, *, source: str) -> UnitOfWork:
        """A unit of work inside a transaction someone else opened and will commit (an event handler's
        session): ``publish`` and ``audit`` as usual, then ``await uow.flush_pending()``. The consumer
        wakes the outbox relay after its commit."""
        uow = cls(None, source=source)
        uow.session = session
        return uow

    async def __aenter__(self) -> UnitOfWork:
        assert self.db is not None, "a joined unit of work is not entered: its session is already open"
        self.session = self.db.session()  # begins at its first statement (an explicit begin() costs ~40 µs)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    def publish(self, subject: str, message: Message, *, event_id: str | None = None) -> str:
        """Record an event to be published after commit. Returns the event id."""
        if self._trace_headers is None:  # traceparent of the request that caused the events
            self._trace_headers = {}
            propagate.inject(self._trace_headers)
        row = event_row(subject, message, self.source, trace_headers=self._trace_headers, event_id=event_id)
        self._events.append(row)
        return row["id"]

    def audit(self, entry: AuditEntry) -> None:
        """Record an audit entry, appended to the hash chain inside this transaction."""
        self._audit.append(entry)

    async def flush_pending(self) -> None:
        if self._events:
            if self.session.bind.dialect.name == "sqlite":
                await self.session.execute(insert(outbox_table), self._events)
            else:  # one statement for all the events (arrays), straight to the driver in this transaction
                driver = await driver_connection(self.session)
                await insert_outbox_rows(driver, self._events)
            self._events = []
            self.session.info[EVENTS_WRITTEN] = True
        if self._audit:
            await append_audit(self.session, self._audit)
            self._audit = []

    async def commit(self) -> None:
        had_events = bool(self._events)
        await self.flush_pending()
        await self.session.commit()
        if had_events and self._on_commit is not None:
            self._on_commit()


_OUTBOX_UNNEST = (
    "INSERT INTO outbox (id, subject, type, payload, headers, created_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::json[], $6::timestamptz[])"
)
_VALUES_MAX = 16  # up to this many rows: a VALUES list (one statement text per count), else arrays


def _outbox_values(n: int) -> str:
    return "INSERT INTO outbox (id, subject, type, payload, headers, created_at) VALUES " + ",".join(
        f"(${i * 6 + 1}::varchar,${i * 6 + 2}::varchar,${i * 6 + 3}::varchar,${i * 6 + 4}::bytea,"
        f"${i * 6 + 5}::json,${i * 6 + 6}::timestamptz)"
        for i in range(n)
    )


_OUTBOX_VALUES = [""] + [_outbox_values(n) for n in range(1, _VALUES_MAX + 1)]


async def insert_outbox_rows(driver: Any, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows (from :func:`event_row`) on an asyncpg connection, inside the caller's
    transaction, in one statement: a VALUES list for a few rows (cheaper to bind than arrays: ~90 vs
    ~120 µs of client CPU for five), ``unnest`` of arrays beyond."""
    if len(rows) <= _VALUES_MAX:
        args: list[Any] = []
        for e in rows:
            args += (e["id"], e["subject"], e["type"], e["payload"], dumps(e["headers"]), e["created_at"])
        await driver.execute(_OUTBOX_VALUES[len(rows)], *args)
    else:
        await driver.execute(
            _OUTBOX_UNNEST,
            [e["id"] for e in rows],
            [e["subject"] for e in rows],
            [e["type"] for e in rows],
            [e["payload"] for e in rows],
            [dumps(e["headers"]) for e in rows],
            [e["created_at"] for e in rows],
        )


def event_row(
    subject: str,
    message: Message,
    source: str,
    *,
    trace_headers: dict[str, str] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The outbox row of one event (headers as a dict: ``dumps`` them for a driver-level insert). For
    writers that insert outbox rows with their own statements; :meth:`UnitOfWork.publish` uses it.
    ``trace_headers`` defaults to the current trace context. Raises :class:`EventTooLarge` for a payload
    above :data:`MAX_EVENT_BYTES`."""
    if trace_headers is None:
        trace_headers = {}
        propagate.inject(trace_headers)
    payload = message.SerializeToString()
    if len(payload) > MAX_EVENT_BYTES:
        raise EventTooLarge(subject, len(payload), MAX_EVENT_BYTES)
    eid = event_id or new_id()
    now = utcnow()
    full_name = message.DESCRIPTOR.full_name
    return {
        "id": eid,
        "subject": subject,
        "type": full_name,
        "payload": payload,
        "headers": {
            **trace_headers,
            "Hospital-Event-Id": eid,
            "Hospital-Event-Type": full_name,
            "Hospital-Event-Source": source,
            "Hospital-Event-Time": now.isoformat(),
        },
        "created_at": now,
    }


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
