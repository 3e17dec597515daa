"""Migrations 0004 (``orders.visit_ref``), 0005 (``mpps.attention``) and 0006 (``mpps.resolved_*``) on a
database an older release made (upgraded to the revision before, with data in it) and on a new one."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select, text

from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.imaging.adapters.tables import mpps, orders
from hospital.imaging.service import DEFINITION


def _head() -> str:
    from alembic.script import ScriptDirectory

    from hospital.chassis.migrations import alembic_config

    return ScriptDirectory.from_config(
        alembic_config(DEFINITION.migrations_dir, "sqlite://")
    ).get_current_head()


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


async def test_0004_adds_visit_ref_to_an_older_database(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0003")
        async with db.engine.connect() as conn:
            assert "visit_ref" not in await conn.run_sync(_columns, "orders")
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
            assert (await s.execute(select(mpps.c.attention).limit(1))).all() == []
            assert (
                await s.execute(
                    select(mpps.c.resolved_by, mpps.c.resolved_at, mpps.c.resolution_note).limit(1)
                )
            ).all() == []
            assert (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar() == _head()
    finally:
        await db.dispose()


async def test_0005_adds_mpps_attention_and_flags_older_unmatched_mpps(database_url) -> None:
    db = Database(database_url)
    now = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0004")
        async with db.engine.begin() as conn:  # two MPPS recorded before 0005 existed
            assert "attention" not in await conn.run_sync(_columns, "mpps")
            for uid, order_id in (("1.2.3.1", None), ("1.2.3.2", "0190a1b2-0000-7000-8000-0000000000aa")):
                await conn.execute(
                    text(
                        "INSERT INTO mpps (mpps_instance_uid, order_id, status, created_at, updated_at) "
                        "VALUES (:uid, :order_id, 'COMPLETED', :now, :now)"
                    ),
                    {"uid": uid, "order_id": order_id, "now": now},
                )
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.session() as s:
            rows = dict((await s.execute(select(mpps.c.mpps_instance_uid, mpps.c.attention))).all())
            assert rows == {"1.2.3.1": "no_order", "1.2.3.2": None}
            assert (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar() == _head()
    finally:
        await db.dispose()


async def test_0006_adds_mpps_resolution_to_an_older_database(database_url) -> None:
    db = Database(database_url)
    now = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0005")
        async with db.engine.begin() as conn:  # an MPPS flagged before 0006 existed
            assert "resolved_by" not in await conn.run_sync(_columns, "mpps")
            await conn.execute(
                text(
                    "INSERT INTO mpps"
                    " (mpps_instance_uid, order_id, status, attention, created_at, updated_at) "
                    "VALUES ('1.2.3.1', NULL, 'COMPLETED', 'no_order', :now, :now)"
                ),
                {"now": now},
            )
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.session() as s:
            rows = (
                await s.execute(
                    select(
                        mpps.c.mpps_instance_uid,
                        mpps.c.attention,
                        mpps.c.resolved_by,
                        mpps.c.resolved_at,
                        mpps.c.resolution_note,
                    )
                )
            ).all()
            assert [tuple(r) for r in rows] == [("1.2.3.1", "no_order", None, None, None)]
            assert (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar() == _head()
    finally:
        await db.dispose()
