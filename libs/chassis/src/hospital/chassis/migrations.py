"""Alembic migrations per service, run programmatically (``python -m hospital.<svc> migrate``).

Each service keeps an Alembic ``migrations/`` folder in its package. Revisions are frozen history: each
states in explicit DDL what it changes (``op.create_table``, ``op.add_column``...) and imports no live
table definition, so an empty database upgraded to head has exactly the schema of the models, and
:func:`schema_differences` finds any drift between the two. A service's first revision calls
:func:`create_chassis_tables` so every service database has the outbox, inbox, counters and audit tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, MetaData

from hospital.chassis.audit import CHAINS, GENESIS, AuditKeyring
from hospital.chassis.db import Database, audit_head_table, chassis_metadata, sequence_name

# A BIGINT that is SQLite's rowid alias when it is the primary key (same as hospital.chassis.db.BigId).
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_UTC = sa.DateTime(timezone=True)


def create_chassis_tables(op: Operations) -> None:
    """The chassis schema as every service's first revision creates it. Frozen: a later change to the
    chassis tables is a new function here, called by a new revision of every service.

    Outbox, inbox, counters and audit tables, the 16 audit chains' head rows, and on PostgreSQL a
    trigger that refuses UPDATE and DELETE on the audit log."""
    op.create_table(
        "outbox",
        sa.Column("seq", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("published_at", _UTC, nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("handled_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "counters",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("value", _BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "audit_log",
        sa.Column("chain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", _BIG_ID, autoincrement=False, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("at", _UTC, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_roles", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("resource_type", sa.String(length=100), nullable=False),
        sa.Column("resource_id", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_audit_log_patient_id", "audit_log", ["patient_id"], unique=False)
    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", _BIG_ID, nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(audit_head, [{"id": c, "last_seq": 0, "last_hash": "0" * 64} for c in range(16)])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql;
        """)
        op.execute("""
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        """)


def drop_chassis_tables(op: Operations) -> None:
    """Undo :func:`create_chassis_tables` (a service's downgrade to base)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("audit_head", "audit_log", "counters", "inbox", "outbox"):
        op.drop_table(table)


def create_outbox_deadletter(op: Operations) -> None:
    """The ``outbox_deadletter`` table (ADR 0007): every service's revision that adds it. Frozen, like
    :func:`create_chassis_tables`."""
    op.create_table(
        "outbox_deadletter",
        sa.Column("seq", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("dead_at", _UTC, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )


def add_audit_keying(op: Operations) -> None:
    """The keyed audit trail's columns (``audit_log.key_id`` and ``purpose``, ``audit_head.head_mac``):
    every service's revision that adds them. Frozen, like :func:`create_chassis_tables`. Existing records
    stay scheme 1; the service's next start seals the chain heads
    (hospital.chassis.audit.seal_unkeyed_chains)."""
    op.add_column("audit_log", sa.Column("key_id", sa.String(length=16), nullable=True))
    op.add_column("audit_log", sa.Column("purpose", sa.String(length=20), nullable=True))
    op.add_column("audit_head", sa.Column("head_mac", sa.String(length=100), nullable=True))


def install_chassis_schema(bind: Connection, keyring: AuditKeyring | None = None) -> None:
    """The chassis tables on a bare connection, without a service's migrations (chassis tests, benches):
    the frozen revisions' DDL in order, then the audit chains' head rows sealed with ``keyring`` when
    given (else at the service's first start)."""
    op = Operations(MigrationContext.configure(bind))
    create_chassis_tables(op)
    create_outbox_deadletter(op)
    add_audit_keying(op)
    if keyring is not None:
        for chain in range(CHAINS):
            bind.execute(
                audit_head_table.update()
                .where(audit_head_table.c.id == chain)
                .values(head_mac=keyring.head_mac(chain, 0, GENESIS))
            )


def create_sequence(op: Operations, name: str) -> None:
    """The PostgreSQL sequence behind :func:`hospital.chassis.db.sequence_next` (nothing elsewhere)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE IF NOT EXISTS {sequence_name(name)}")


def drop_sequence(op: Operations, name: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE IF EXISTS {sequence_name(name)}")


def alembic_config(migrations_dir: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(
    db: Database, migrations_dir: Path, target_metadata: MetaData | None = None, revision: str = "head"
) -> None:
    """Upgrade the database to ``revision`` using the service's migration scripts."""
    if db.is_sqlite:
        path = db.url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(migrations_dir, db.url)

    def _run(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        cfg.attributes["target_metadata"] = target_metadata
        command.upgrade(cfg, revision)

    async with db.engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()


async def downgrade(db: Database, migrations_dir: Path, revision: str = "base") -> None:
    """Downgrade the database to ``revision`` (``base``: nothing of the service left)."""
    cfg = alembic_config(migrations_dir, db.url)

    def _run(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with db.engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()


async def schema_differences(
    db: Database, target_metadata: MetaData, ignore_indexes: Sequence[str] = ()
) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``target_metadata`` and the
    chassis tables (columns, types, nullability, tables, indexes, unique constraints, foreign keys):
    empty when the migrations and the models agree. ``ignore_indexes`` names indexes the migrations
    create that the models do not describe (PostgreSQL operator-class indexes)."""
    ignored = set(ignore_indexes)

    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        return not (kind == "index" and reflected and compare_to is None and name in ignored)

    def _compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
        return list(compare_metadata(context, [target_metadata, chassis_metadata]))

    async with db.engine.connect() as conn:
        return await conn.run_sync(_compare)


def run_env(context: Any) -> None:
    """Body of every service's ``migrations/env.py``."""
    conn = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=context.config.attributes.get("target_metadata"),
        render_as_batch=conn.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
