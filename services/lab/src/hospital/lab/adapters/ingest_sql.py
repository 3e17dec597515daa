"""The ingest path's SQL: the statements of the group-commit transaction (ADR 0101), built once.

A statement object built per call costs SQLAlchemy a cache-key traversal on every execution, and an
``IN (...)`` over a Python list renders one placeholder per value, so each batch size is a new SQL text
that asyncpg prepares again (a round trip and a plan per batch). Here each statement is built once and
reused (its cache key is memoised), and on PostgreSQL list parameters are single arrays
(``col = ANY(:values)``): one SQL text per statement, prepared once per connection. SQLite keeps
``IN`` with an expanding parameter.

On PostgreSQL, :class:`PgIngestDb` runs the statements directly on the asyncpg connection under the
unit of work's session — the same connection and the same transaction, so atomicity and the commit
before the ACK are unchanged — which skips SQLAlchemy's per-statement and per-row work (execution
context, parameter processing, result rows). The first statement of a transaction (the duplicate
lookup) still goes through SQLAlchemy, which opens the transaction; the direct path is only used once
the driver connection reports it is inside one, else the SQLAlchemy statements are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, literal, select, union_all, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnClause

from hospital.chassis.db import driver_connection
from hospital.lab.adapters.tables import (
    lab_settings,
    order_items,
    orders,
    qc_status,
    raw_messages,
    results,
    specimens,
)


class IngestSql:
    def __init__(self, dialect: Dialect) -> None:
        self.postgres = dialect.name == "postgresql"
        self.chunk = 100_000 if self.postgres else 500  # SQLite: bound variables per statement
        among = self._among
        self.stored_stmt = union_all(
            select(raw_messages.c.content_hash.label("k"), literal(0).label("raw")).where(
                among(raw_messages.c.content_hash, "digests")
            ),
            select(results.c.dedupe_key.label("k"), literal(1).label("raw")).where(
                among(results.c.dedupe_key, "keys")
            ),
        )
        self.insert_raw_stmt = raw_messages.insert()
        self.count_duplicate_stmt = (
            update(raw_messages)
            .where(raw_messages.c.content_hash == bindparam("digest"))
            .values(duplicates=raw_messages.c.duplicates + bindparam("n"))
        )
        autoverify = select(lab_settings.c.value).where(lab_settings.c.key == "autoverify").scalar_subquery()
        self.specimens_stmt = (
            select(
                specimens.c.id,
                specimens.c.barcode,
                specimens.c.order_id,
                specimens.c.status,
                orders.c.patient_id,
                orders.c.patient_sex,
                orders.c.birth_date,
                orders.c.patient_name,
                orders.c.ordering_doctor,
                orders.c.visit_id,
                orders.c.status.label("order_status"),
                order_items.c.id.label("item_id"),
                order_items.c.test_code.label("item_test"),
                autoverify.label("autoverify"),
            )
            .join(orders, orders.c.id == specimens.c.order_id)
            .outerjoin(order_items, order_items.c.specimen_id == specimens.c.id)
            .where(among(specimens.c.barcode, "barcodes"))
        )
        self.items_stmt = select(order_items.c.id, order_items.c.test_code, order_items.c.specimen_id).where(
            among(order_items.c.specimen_id, "specimen_ids")
        )
        self.previous_stmt = (
            select(
                results.c.id,
                results.c.test_code,
                results.c.value_num,
                results.c.received_at,
                results.c.observed_at,
                results.c.specimen_id,
                results.c.status,
                results.c.patient_id,
            )
            .where(
                among(results.c.patient_id, "patients"),
                among(results.c.test_code, "codes"),
                results.c.status.in_(("preliminary", "verified")),
                results.c.received_at >= bindparam("since"),
            )
            .order_by(results.c.received_at.desc())
        )
        self.qc_stmt = select(qc_status).where(
            among(qc_status.c.instrument_id, "instruments"), among(qc_status.c.test_code, "codes")
        )
        self.supersede_stmt = update(results).where(among(results.c.id, "ids")).values(status="superseded")
        self.insert_results_stmt = results.insert()
        self.item_status_stmt = (
            update(order_items).where(among(order_items.c.id, "ids")).values(status=bindparam("status"))
        )

    def _among(self, column: ColumnClause[Any], name: str) -> ColumnElement[bool]:
        if self.postgres:
            return column == any_(bindparam(name, type_=ARRAY(String())))
        return column.in_(bindparam(name, expanding=True))

    def chunks(self, values: list[str]) -> list[list[str]]:
        return [values[i : i + self.chunk] for i in range(0, len(values), self.chunk)] or [[]]

    # --- the operations (SQLAlchemy Core; SQLite, and PostgreSQL when the direct path is unavailable) ---
    async def stored(
        self, s: AsyncConnection, digests: list[str], keys: list[str]
    ) -> tuple[set[str], set[str]]:
        """Which raw-message hashes and which result keys are already stored: one round trip (UNION ALL)."""
        known: set[str] = set()
        claimed: set[str] = set()
        d_chunks, k_chunks = self.chunks(digests), self.chunks(keys)
        for i in range(max(len(d_chunks), len(k_chunks))):
            d = d_chunks[i] if i < len(d_chunks) else []
            k = k_chunks[i] if i < len(k_chunks) else []
            for key, is_result in (await s.execute(self.stored_stmt, {"digests": d, "keys": k})).all():
                (claimed if is_result else known).add(key)
        return known, claimed

    async def insert_raw(self, s: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await s.execute(self.insert_raw_stmt, rows)

    async def count_duplicates(self, s: AsyncConnection, counts: dict[str, int]) -> None:
        await s.execute(self.count_duplicate_stmt, [{"digest": d, "n": n} for d, n in counts.items()])

    async def specimens(self, s: AsyncConnection, barcodes: list[str]) -> list[Mapping[str, Any]]:
        """Specimens with their orders and order items, and the auto-verification switch (one round trip)."""
        out: list[Mapping[str, Any]] = []
        for chunk in self.chunks(barcodes):
            out += (await s.execute(self.specimens_stmt, {"barcodes": chunk})).mappings().all()
        return out

    async def items(self, s: AsyncConnection, specimen_ids: list[str]) -> list[tuple[str, str, str]]:
        """(id, test code, specimen id) of the specimens' order items."""
        out: list[tuple[str, str, str]] = []
        for chunk in self.chunks(specimen_ids):
            out += [(r[0], r[1], r[2]) for r in await s.execute(self.items_stmt, {"specimen_ids": chunk})]
        return out

    async def previous(
        self, s: AsyncConnection, patients: list[str], codes: list[str], since: datetime
    ) -> list[Mapping[str, Any]]:
        """The patients' preliminary and verified results of these tests since ``since``, newest first."""
        out: list[Mapping[str, Any]] = []
        for chunk in self.chunks(patients):
            out += (
                (await s.execute(self.previous_stmt, {"patients": chunk, "codes": codes, "since": since}))
                .mappings()
                .all()
            )
        out.sort(key=lambda p: p["received_at"], reverse=True)
        return out

    async def qc(
        self, s: AsyncConnection, instruments: list[str], codes: list[str]
    ) -> list[Mapping[str, Any]]:
        return list(
            (await s.execute(self.qc_stmt, {"instruments": instruments, "codes": codes})).mappings().all()
        )

    async def supersede(self, s: AsyncConnection, ids: list[str]) -> None:
        for chunk in self.chunks(ids):
            await s.execute(self.supersede_stmt, {"ids": chunk})

    async def insert_results(self, s: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await s.execute(self.insert_results_stmt, rows)

    async def item_status(self, s: AsyncConnection, ids: list[str], status: str) -> None:
        for chunk in self.chunks(ids):
            await s.execute(self.item_status_stmt, {"ids": chunk, "status": status})


RAW_COLUMNS = [c.name for c in raw_messages.columns]
RESULT_COLUMNS = [c.name for c in results.columns]


def _insert_sql(table: str, columns: list[str]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
    )


class PgIngestDb:
    """The same operations on the asyncpg connection of the unit of work (PostgreSQL)."""

    STORED = (
        "SELECT content_hash, 0 FROM lab_raw_messages WHERE content_hash = ANY($1::text[]) "
        "UNION ALL SELECT dedupe_key, 1 FROM lab_results WHERE dedupe_key = ANY($2::text[])"
    )
    INSERT_RAW = _insert_sql("lab_raw_messages", RAW_COLUMNS)
    COUNT_DUPLICATE = "UPDATE lab_raw_messages SET duplicates = duplicates + $2 WHERE content_hash = $1"
    SPECIMENS = (
        "SELECT s.id, s.barcode, s.order_id, s.status, o.patient_id, o.patient_sex, o.birth_date, "
        "o.patient_name, o.ordering_doctor, o.visit_id, o.status AS order_status, i.id AS item_id, "
        "i.test_code AS item_test, "
        "(SELECT value FROM lab_settings WHERE key = 'autoverify') AS autoverify "
        "FROM lab_specimens s JOIN lab_orders o ON o.id = s.order_id "
        "LEFT OUTER JOIN lab_order_items i ON i.specimen_id = s.id WHERE s.barcode = ANY($1::text[])"
    )
    ITEMS = "SELECT id, test_code, specimen_id FROM lab_order_items WHERE specimen_id = ANY($1::text[])"
    PREVIOUS = (
        "SELECT id, test_code, value_num, received_at, observed_at, specimen_id, status, patient_id "
        "FROM lab_results WHERE patient_id = ANY($1::text[]) AND test_code = ANY($2::text[]) "
        "AND status IN ('preliminary', 'verified') AND received_at >= $3 ORDER BY received_at DESC"
    )
    QC = (
        "SELECT instrument_id, test_code, accepted, last_run_at, lot_id, violations FROM lab_qc_status "
        "WHERE instrument_id = ANY($1::text[]) AND test_code = ANY($2::text[])"
    )
    SUPERSEDE = "UPDATE lab_results SET status = 'superseded' WHERE id = ANY($1::text[])"
    INSERT_RESULTS = _insert_sql("lab_results", RESULT_COLUMNS)
    ITEM_STATUS = "UPDATE lab_order_items SET status = $2 WHERE id = ANY($1::text[])"

    def __init__(self, sql: IngestSql) -> None:
        self.core = sql

    async def stored(
        self, s: AsyncConnection, digests: list[str], keys: list[str]
    ) -> tuple[set[str], set[str]]:
        return await self.core.stored(s, digests, keys)  # through SQLAlchemy: it opens the transaction

    async def insert_raw(self, s: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await (await driver_connection(s)).executemany(
            self.INSERT_RAW, [tuple(r[c] for c in RAW_COLUMNS) for r in rows]
        )

    async def count_duplicates(self, s: AsyncConnection, counts: dict[str, int]) -> None:
        await (await driver_connection(s)).executemany(self.COUNT_DUPLICATE, list(counts.items()))

    async def specimens(self, s: AsyncConnection, barcodes: list[str]) -> list[Mapping[str, Any]]:
        return list(await (await driver_connection(s)).fetch(self.SPECIMENS, barcodes))

    async def items(self, s: AsyncConnection, specimen_ids: list[str]) -> list[tuple[str, str, str]]:
        return [
            (r[0], r[1], r[2]) for r in await (await driver_connection(s)).fetch(self.ITEMS, specimen_ids)
        ]

    async def previous(
        self, s: AsyncConnection, patients: list[str], codes: list[str], since: datetime
    ) -> list[Mapping[str, Any]]:
        return list(await (await driver_connection(s)).fetch(self.PREVIOUS, patients, codes, since))

    async def qc(
        self, s: AsyncConnection, instruments: list[str], codes: list[str]
    ) -> list[Mapping[str, Any]]:
        return list(await (await driver_connection(s)).fetch(self.QC, instruments, codes))

    async def supersede(self, s: AsyncConnection, ids: list[str]) -> None:
        await (await driver_connection(s)).execute(self.SUPERSEDE, ids)

    async def insert_results(self, s: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await (await driver_connection(s)).executemany(
            self.INSERT_RESULTS, [tuple(r[c] for c in RESULT_COLUMNS) for r in rows]
        )

    async def item_status(self, s: AsyncConnection, ids: list[str], status: str) -> None:
        await (await driver_connection(s)).execute(self.ITEM_STATUS, ids, status)


IngestDb = IngestSql | PgIngestDb
_BY_DIALECT: dict[str, IngestSql] = {}


def ingest_db(s: AsyncConnection) -> IngestDb:
    """The ingest statements for this connection's transaction (a new object per transaction)."""
    sql = _BY_DIALECT.get(s.dialect.name)
    if sql is None:
        sql = _BY_DIALECT[s.dialect.name] = IngestSql(s.dialect)
    return PgIngestDb(sql) if sql.postgres and s.dialect.driver == "asyncpg" else sql
