"""Hot paths on PostgreSQL: the driver connection (asyncpg) with statements prepared once per connection,
and a write that lands rows, their outbox events and their audit records in ONE statement, outside an
explicit transaction (docs/adr/0400-admissions-hot-paths.md).

The audit trail is a set of hash chains (:mod:`hospital.chassis.audit`): a new record's hash covers the
previous record's hash, so the chain's head must be known before the record is hashed. The chassis's
unit of work locks the head row (``SELECT … FOR UPDATE``) inside a transaction: BEGIN, the lock, the
inserts, the head update, COMMIT. Here the head is read without a lock and the single statement

    WITH h AS (UPDATE audit_head SET (last_seq, last_hash, head_mac) = <new> if last_seq = <read>,
               else unchanged WHERE id = <chain> RETURNING last_seq, last_hash, head_mac,
               <whether it was ours> AS ok),
         a0 AS (INSERT INTO audit_log (...) SELECT ... FROM h WHERE h.ok),
         o0 AS (INSERT INTO outbox (...) SELECT ... FROM h WHERE h.ok),
         t0 AS (INSERT INTO patients (...) SELECT ... FROM h WHERE h.ok), ...
    SELECT ok, last_seq, last_hash, head_mac FROM h

writes everything only if the head was still the one read: every insert selects FROM the head update,
so it happens after the head row is locked (a concurrent writer of the chain is waited for, and the
update sees its committed head), and not at all when another writer moved the head first; then the
statement returns the current head and is retried after it. A head read from the database (not
written by this process) is checked against its MAC before a record is chained to it
(:func:`hospital.chassis.audit.check_head`). A statement is its own transaction: the
rows, the outbox rows and the audit records commit together or not at all, and the relay is woken
after it, as after a unit of work.

The outbox rows and audit records are built exactly as :class:`hospital.chassis.uow.UnitOfWork` and
:func:`hospital.chassis.audit.append_audit` build them (same columns, same hash), so the relay and
``audit-verify`` cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.util import greenlet_spawn

from hospital.chassis.audit import CHAINS, AuditEntry, AuditKeyring, audit_rows, check_head
from hospital.chassis.db import Database, audit_head_table, audit_log_table, outbox_table
from hospital.chassis.uow import event_row

_OUTBOX_COLS = ("id", "subject", "type", "payload", "headers", "created_at")
_AUDIT_COLS = (
    "chain",
    "seq",
    "id",
    "at",
    "actor",
    "actor_roles",
    "action",
    "patient_id",
    "resource_type",
    "resource_id",
    "source",
    "detail",
    "prev_hash",
    "hash",
    "key_id",
    "purpose",
)
HEAD_SQL = f"SELECT id, last_seq, last_hash, head_mac FROM {audit_head_table.name} WHERE id = $1"


def pg_type(column: Column[Any]) -> str:
    """The PostgreSQL type a parameter for ``column`` is cast to (no length: an over-long value is
    refused by the column rather than cut by the cast)."""
    t = column.type
    if isinstance(t, TypeDecorator):
        t = t.impl_instance if hasattr(t, "impl_instance") else t.impl
    for kind, name in (
        (BigInteger, "int8"),
        (Integer, "int4"),
        (Boolean, "bool"),
        (DateTime, "timestamptz"),
        (Date, "date"),
        (LargeBinary, "bytea"),
        (JSON, "json"),
        (String, "text"),
    ):
        if isinstance(t, kind):
            return name
    raise TypeError(f"no PostgreSQL cast for {column.table.name}.{column.name} ({t!r})")


@asynccontextmanager
async def driver_connection(db: Database) -> AsyncIterator[Any]:
    """An asyncpg connection from the service's pool, used without an explicit transaction (each
    statement commits by itself). A connection that saw an unexpected error (a cancelled request may
    leave a half-read reply behind) is closed instead of going back to the pool."""
    fairy = await db.engine.raw_connection()
    ok = False
    try:
        yield fairy.driver_connection
        ok = True
    except Exception as exc:  # classify, then re-raise
        ok = _is_statement_error(exc)
        raise
    finally:
        if not ok:
            fairy.invalidate()
        await greenlet_spawn(fairy.close)


def _is_statement_error(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError) or not isinstance(exc, (OSError, asyncpg.InterfaceError))


def outbox_row(subject: str, message: Message, source: str) -> dict[str, Any]:
    """The outbox row :meth:`hospital.chassis.uow.UnitOfWork.publish` writes, headers as JSON text."""
    row = event_row(subject, message, source)
    row["headers"] = json.dumps(row["headers"])
    return row


class Head:
    """An audit chain head as read (chain id, last seq, last hash, head MAC)."""

    __slots__ = ("chain", "hash", "mac", "seq")

    def __init__(self, chain: int, seq: int, hash_: str, mac: str | None) -> None:
        self.chain, self.seq, self.hash, self.mac = chain, seq, hash_, mac


def pick_chain() -> int:
    return random.randrange(CHAINS)


async def read_head(conn: Any, chain: int | None = None) -> Head:
    r = await conn.fetchrow(HEAD_SQL, pick_chain() if chain is None else chain)
    return Head(r[0], r[1], r[2], r[3])


class GuardedWriter:
    """Builds (once per shape) and runs the single guarded statement described in the module docstring.

    Within the process, one write at a time per chain (:meth:`chain`: a free chain is taken, in an order
    of preference of this process's own, so that processes mostly keep to different chains), and the
    head it saw last of each chain is remembered (after its own write, or as returned by a guard that
    failed): a write usually needs no read of the head, and a head moved by another process costs one
    retry, after the head the failed statement returned."""

    def __init__(self, source: str, keyring: AuditKeyring) -> None:
        self.source = source
        self.keyring = keyring
        self._sql: dict[tuple[Any, ...], str] = {}
        self._tables: dict[str, Table] = {}
        self._heads: dict[int, Head] = {}
        self._locks = [asyncio.Lock() for _ in range(CHAINS)]
        self._order = random.sample(range(CHAINS), CHAINS)
        self._waiting = [0] * CHAINS  # writes holding or waiting for each chain
        self.writes = self.retries = 0

    @asynccontextmanager
    async def chain(self) -> AsyncIterator[int]:
        """Hold one audit chain for this process's next write: the first free one in this process's
        order of preference, or, when all are busy, the one with the fewest writes waiting for it."""
        chain = min(self._order, key=lambda c: self._waiting[c])
        self._waiting[chain] += 1
        try:
            async with self._locks[chain]:
                yield chain
        finally:
            self._waiting[chain] -= 1

    def _statement(self, shape: tuple[Any, ...]) -> str:
        sql = self._sql.get(shape)
        if sql is not None:
            return sql
        n = 5
        head = audit_head_table.name
        parts = [
            (
                f"h AS (UPDATE {head} "
                "SET last_seq = CASE WHEN last_seq = $4::int8 THEN $1::int8 ELSE last_seq END, "
                "last_hash = CASE WHEN last_seq = $4::int8 THEN $2::text ELSE last_hash END, "
                "head_mac = CASE WHEN last_seq = $4::int8 THEN $5::text ELSE head_mac END "
                "WHERE id = $3::int4 RETURNING last_seq, last_hash, head_mac, "
                "last_seq = $1::int8 AND last_hash = $2::text AS ok)"
            )
        ]

        def insert(alias: str, table: Table, cols: Sequence[str]) -> None:
            nonlocal n
            values = []
            for c in cols:
                n += 1
                values.append(f"${n}::{pg_type(table.c[c])}")
            parts.append(
                f"{alias} AS (INSERT INTO {table.name} ({', '.join(cols)}) "
                f"SELECT {', '.join(values)} FROM h WHERE h.ok)"
            )

        n_audit, n_events, tables = shape
        for i in range(n_audit):
            insert(f"a{i}", audit_log_table, _AUDIT_COLS)
        for i in range(n_events):
            insert(f"o{i}", outbox_table, _OUTBOX_COLS)
        for i, (name, cols) in enumerate(tables):
            insert(f"t{i}", self._tables[name], cols)
        sql = "WITH " + ",\n".join(parts) + "\nSELECT ok, last_seq, last_hash, head_mac FROM h"
        self._sql[shape] = sql
        return sql

    async def write(
        self,
        conn: Any,
        chain: int,
        rows: Sequence[tuple[Table, dict[str, Any]]],
        events: Sequence[tuple[str, Message]],
        audit: Sequence[AuditEntry],
        head: Head | None = None,
    ) -> None:
        """Insert ``rows``, the outbox rows of ``events`` and the ``audit`` records in one statement
        (``audit`` must not be empty: the chain head is the guard), on ``chain`` held with :meth:`chain`.
        ``head``: the chain's head as just read; by default the last one seen (read if none was seen)."""
        assert audit, "a guarded write appends at least one audit record"
        for table, _ in rows:
            self._tables.setdefault(table.name, table)
        shape = (len(audit), len(events), tuple((t.name, tuple(r)) for t, r in rows))
        sql = self._statement(shape)
        outbox = [outbox_row(subject, message, self.source) for subject, message in events]
        tail: list[Any] = []
        for o in outbox:
            tail.extend(o[c] for c in _OUTBOX_COLS)
        for _, r in rows:
            tail.extend(r.values())
        if head is None:
            head = self._heads.get(chain) or await read_head(conn, chain)
        kr = self.keyring
        for _ in range(100):
            if head is not self._heads.get(head.chain):  # read from the database: check it first
                check_head(kr, head.chain, head.seq, head.hash, head.mac)
            records = audit_rows(head.chain, head.seq, head.hash, audit, kr)
            new_seq, new_hash = records[-1]["seq"], records[-1]["hash"]
            args: list[Any] = [
                new_seq,
                new_hash,
                head.chain,
                head.seq,
                kr.head_mac(head.chain, new_seq, new_hash),
            ]
            for rec in records:
                args.extend(rec[c] for c in _AUDIT_COLS)
            ok, seq, hash_, mac = await conn.fetchrow(sql, *args, *tail)
            head = Head(head.chain, seq, hash_, mac)
            if ok:
                self._heads[head.chain] = head  # written by this process: trusted as it is
                self.writes += 1
                return
            self.retries += 1  # another writer moved the head: append after the head the guard returned
        raise RuntimeError("audit chain head kept moving; giving up")
