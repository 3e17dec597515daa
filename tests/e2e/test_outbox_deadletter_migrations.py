"""Every service with an outbox gets the ``outbox_deadletter`` table from its own Alembic revision, also a
database created before that table existed (ADR 0007)."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import inspect

from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade

SERVICES = ["admissions", "emr", "lab", "imaging", "billing", "web"]


@pytest.mark.parametrize("service", SERVICES)
async def test_existing_database_gains_the_outbox_deadletter_table(service: str, database_url: str) -> None:
    definition = importlib.import_module(f"hospital.{service}.service").DEFINITION
    down = _revision_before_deadletter(definition.migrations_dir)
    db = Database(database_url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata, revision=down)
        async with db.engine.begin() as conn:  # the chassis schema of those days had no such table
            await conn.exec_driver_sql("DROP TABLE outbox_deadletter")
        await upgrade(db, definition.migrations_dir, definition.metadata)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("outbox_deadletter")]
            )
        assert "outbox_deadletter" in tables
        assert {"id", "subject", "payload", "headers", "reason", "size", "dead_at"} <= set(columns)
    finally:
        await db.dispose()


def _revision_before_deadletter(migrations_dir) -> str:
    from alembic.script import ScriptDirectory

    from hospital.chassis.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://"))
    (rev,) = [r for r in script.walk_revisions() if "outbox_deadletter" in r.module.__file__]
    return rev.down_revision
