from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from hospital.chassis.audit import AuditKeyring
from hospital.chassis.db import Database
from hospital.chassis.migrations import install_chassis_schema
from hospital.testing.servers import PostgresServer

effects_metadata = MetaData()
# No unique constraint on purpose: a doubled effect must show up as a second row.
effects = Table(
    "effects",
    effects_metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
    Column("value", Integer, nullable=False),
)


AUDIT_KEY = b"9f1c2e7a4b6d8e0f1a3c5e7b9d1f3a5c"  # the tests' audit key (the attacker never has it)


async def _prepared(url: str) -> Database:
    keyring = AuditKeyring(AUDIT_KEY)
    database = Database(url, audit_keyring=keyring)
    async with database.engine.begin() as conn:
        await conn.run_sync(install_chassis_schema, keyring)
        await conn.run_sync(effects_metadata.create_all)
    return database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """Chassis schema on SQLite and on PostgreSQL (the test runs once per backend)."""
    database = await _prepared(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def pg_db(pg_server: PostgresServer) -> AsyncIterator[Database]:
    """Chassis schema on PostgreSQL only, for PostgreSQL-specific behaviour."""
    database = await _prepared(await pg_server.create_database(f"t_{uuid.uuid4().hex[:16]}"))
    yield database
    await database.dispose()
