"""Alembic migrations per service, run programmatically (``python -m hospital.<svc> migrate``).

Each service keeps an Alembic ``migrations/`` folder in its package; its first revision calls
:func:`create_chassis_tables` so every service database has the outbox, inbox and audit tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from sqlalchemy import Column, Connection, MetaData, String, inspect

from hospital.chassis.audit import CHAINS, GENESIS, AuditKeyring
from hospital.chassis.db import (
    Database,
    audit_head_table,
    chassis_metadata,
    outbox_deadletter_table,
    sequence_name,
)


def create_chassis_tables(op: Operations) -> None:
    install_chassis_schema(op.get_bind())


def install_chassis_schema(bind: Connection, keyring: AuditKeyring | None = None) -> None:
    """Outbox, inbox, counters and audit tables, the audit chains' head rows (sealed with ``keyring``
    when given, else at the service's first start), and on PostgreSQL a trigger that refuses UPDATE and
    DELETE on the audit log."""
    chassis_metadata.create_all(bind)
    bind.execute(
        audit_head_table.insert(),
        [
            {
                "id": c,
                "last_seq": 0,
                "last_hash": GENESIS,
                "head_mac": keyring.head_mac(c, 0, GENESIS) if keyring is not None else None,
            }
            for c in range(CHAINS)
        ],
    )
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("""
            CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql;
        """)
        bind.exec_driver_sql("""
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        """)


def create_outbox_deadletter(op: Operations) -> None:
    """The ``outbox_deadletter`` table (ADR 0007), for the revision that adds it to an existing service
    database. A database created since then has it from :func:`create_chassis_tables` already."""
    outbox_deadletter_table.create(op.get_bind(), checkfirst=True)


def add_audit_keying(op: Operations) -> None:
    """The keyed audit trail's columns (``audit_log.key_id`` and ``purpose``, ``audit_head.head_mac``) on
    a database created before them (a newer one got them from :func:`create_chassis_tables`). Existing
    records stay scheme 1; the service's next start seals the chain heads
    (hospital.chassis.audit.seal_unkeyed_chains)."""
    columns = inspect(op.get_bind())
    log_columns = {c["name"] for c in columns.get_columns("audit_log")}
    if "key_id" not in log_columns:
        op.add_column("audit_log", Column("key_id", String(16), nullable=True))
    if "purpose" not in log_columns:
        op.add_column("audit_log", Column("purpose", String(20), nullable=True))
    if "head_mac" not in {c["name"] for c in columns.get_columns("audit_head")}:
        op.add_column("audit_head", Column("head_mac", String(100), nullable=True))


def create_sequence(op: Operations, name: str) -> None:
    """The PostgreSQL sequence behind :func:`hospital.chassis.db.sequence_next` (nothing elsewhere)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE IF NOT EXISTS {sequence_name(name)}")


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
