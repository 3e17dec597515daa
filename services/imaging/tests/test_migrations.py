"""Migration 0004 (``orders.visit_ref``) on a database made before it existed (0001 creates the schema
from the current table definitions, so an older release's database lacks the column: it is dropped here
to make one) and on a new one (where the column exists already and 0004 does nothing)."""
from __future__ import annotations

from sqlalchemy import select, text

from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.imaging.adapters.tables import orders
from hospital.imaging.service import DEFINITION


async def test_0004_adds_visit_ref_to_an_older_database(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0003")
        async with db.engine.begin() as conn:  # as 0001 made it before 0004 existed
            await conn.execute(text("ALTER TABLE orders DROP COLUMN visit_ref"))
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.session() as s:
            assert (await s.execute(select(orders.c.visit_ref).limit(1))).all() == []
    finally:
        await db.dispose()


async def test_0004_on_a_new_database(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.session() as s:
            assert (await s.execute(select(orders.c.visit_ref).limit(1))).all() == []
            assert (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0004"
    finally:
        await db.dispose()
