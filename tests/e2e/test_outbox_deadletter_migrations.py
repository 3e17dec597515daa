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
        async with db.engine.connect() as conn:  # the chassis schema of those days had no such table
            assert "outbox_deadletter" not in await conn.run_sync(lambda c: inspect(c).get_table_names())
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


async def test_operator_lists_and_replays_outbox_dead_letters(tmp_path) -> None:
    """``python -m hospital.lab outbox-deadletters list`` shows a set-aside row (id, subject, size, reason);
    ``replay <id>`` moves it back to the outbox; an unknown id is reported with exit code 1."""
    import json
    import os
    import subprocess
    import sys

    from sqlalchemy import insert, select

    from hospital.chassis.db import outbox_deadletter_table, outbox_table, utcnow

    definition = importlib.import_module("hospital.lab.service").DEFINITION
    url = f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}"
    db = Database(url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata)
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(outbox_deadletter_table).values(
                    id="0193a1b2-2222-7000-8000-000000000001",
                    subject="lab.result.received",
                    type="hospital.lab.v1.ResultReceived",
                    payload=b"x" * 2000,
                    headers={"Hospital-Event-Id": "0193a1b2-2222-7000-8000-000000000001"},
                    created_at=utcnow(),
                    dead_at=utcnow(),
                    reason="message of 2300 bytes exceeds the NATS server's max_payload of 1024 bytes",
                    size=2300,
                )
            )
        env = {**os.environ, "HOSPITAL_LAB_DATABASE_URL": url, "HOSPITAL_LAB_DATA_DIR": str(tmp_path)}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "hospital.lab", "outbox-deadletters", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        listed = cli("list")
        assert listed.returncode == 0, listed.stderr
        (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row["id"] == "0193a1b2-2222-7000-8000-000000000001" and row["size"] == 2300
        assert "max_payload" in row["reason"] and row["subject"] == "lab.result.received"
        missing = cli("replay", "no-such-id")
        assert missing.returncode == 1 and "no-such-id" in missing.stderr
        moved = cli("replay", row["id"])
        assert moved.returncode == 0 and "moved 1 event(s)" in moved.stdout, moved.stderr
        async with db.engine.connect() as conn:
            assert (await conn.execute(select(outbox_table.c.id))).scalars().all() == [row["id"]]
            assert (await conn.execute(select(outbox_deadletter_table.c.id))).scalars().all() == []
    finally:
        await db.dispose()
