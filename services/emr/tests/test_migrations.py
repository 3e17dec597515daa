"""The EMR's schema history is explicit DDL: upgrading an empty database (SQLite and PostgreSQL) to head
gives exactly the tables of adapters/tables.py (Alembic's autogenerate comparison finds nothing), and
downgrading to base removes them again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from hospital.chassis.db import Database, chassis_metadata
from hospital.chassis.migrations import alembic_config, upgrade
from hospital.emr.service import DEFINITION


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out the chassis's own tables (outbox, inbox, audit...) and their indexes."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name not in chassis_metadata.tables


def _diff(conn) -> list:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _ours})
    return compare_metadata(ctx, DEFINITION.metadata)


async def test_upgrade_matches_the_models_and_downgrades(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert diff == []
        assert set(DEFINITION.metadata.tables) <= tables

        cfg = alembic_config(DEFINITION.migrations_dir, db.url)

        def _down(c) -> None:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "base")

        async with db.engine.connect() as conn:
            await conn.run_sync(_down)
            await conn.commit()
            left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert not (left & set(DEFINITION.metadata.tables))
    finally:
        await db.dispose()
