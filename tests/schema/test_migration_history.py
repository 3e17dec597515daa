"""Every service's migrations are real history: an empty database upgraded to head on SQLite and on
PostgreSQL has exactly the schema of the service's table definitions (Alembic's autogenerate comparison
finds nothing to change), every revision downgrades back to an empty database, and no revision reads
the live table definitions or the domain (so each keeps meaning what it meant when it was released)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Connection, inspect

from hospital.chassis.db import Database
from hospital.chassis.migrations import downgrade, schema_differences, upgrade

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parents[1].name for p in ROOT.glob("services/*/src/hospital/*/migrations/versions"))
# What a revision may import of the project: the chassis's frozen migration helpers, and names and column
# types of hospital.chassis.db; never a service's tables or domain (they change; a released revision must
# not). Libraries outside the project are free.
ALLOWED_IMPORTS = {
    "hospital.chassis.migrations": None,
    "hospital.chassis.db": {"sequence_name", "UtcDateTime", "BigId"},
}

# Calls that build the schema from table definitions or look at the database before changing it.
SCHEMA_READERS = {"create_all", "reflect", "inspect", "has_table"}


def _definition(service: str) -> ModuleType:
    return importlib.import_module(f"hospital.{service}.service").DEFINITION


def _database_only_indexes(service: str) -> tuple[str, ...]:
    return getattr(importlib.import_module(f"hospital.{service}.migrations"), "DATABASE_ONLY_INDEXES", ())


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def test_every_service_is_checked() -> None:
    assert {"admissions", "billing", "imaging", "lab"} <= set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
async def test_empty_database_upgraded_to_head_matches_the_models(service: str, database_url: str) -> None:
    definition = _definition(service)
    db = Database(database_url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata)
        diff = await schema_differences(db, definition.metadata, _database_only_indexes(service))
        assert diff == [], f"{service}: migrations and table definitions differ: {diff}"

        await downgrade(db, definition.migrations_dir, "base")
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await upgrade(db, definition.migrations_dir, definition.metadata)  # and the history replays
        assert await schema_differences(db, definition.metadata, _database_only_indexes(service)) == []
    finally:
        await db.dispose()


async def test_a_drifted_model_is_reported(database_url: str) -> None:
    """The comparison is not vacuous: a column the migrations never added is found."""
    from sqlalchemy import Column, MetaData, String, Table

    definition = _definition("imaging")
    db = Database(database_url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata, revision="0005")
        diff = await schema_differences(db, definition.metadata, _database_only_indexes("imaging"))
        added = {(d[2], d[3].name) for d in diff if d[0] == "add_column" and d[2] == "mpps"}
        assert added == {("mpps", "resolved_by"), ("mpps", "resolved_at"), ("mpps", "resolution_note")}, diff
        extra = MetaData()
        Table("only_in_the_models", extra, Column("id", String(36), primary_key=True))
        diff = await schema_differences(db, extra)
        assert ("add_table", "only_in_the_models") in {(d[0], d[1].name) for d in diff if d[0] == "add_table"}
    finally:
        await db.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_revisions_import_no_live_definitions(service: str) -> None:
    versions = ROOT / "services" / service / "src" / "hospital" / service / "migrations" / "versions"
    for path in sorted(versions.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [(node.module or "", {alias.name for alias in node.names})]
            else:
                if isinstance(node, ast.Attribute) and node.attr in SCHEMA_READERS:
                    pytest.fail(
                        f"{path.name}: reads or builds the schema instead of stating it ({node.attr})"
                    )
                continue
            for module, names in modules:
                if module.split(".")[0] != "hospital":
                    continue
                top = next((m for m in ALLOWED_IMPORTS if module == m or module.startswith(m + ".")), None)
                assert top is not None, f"{path.name} imports {module}: a revision must be self-contained"
                allowed = ALLOWED_IMPORTS[top]
                assert allowed is None or (names or set()) <= allowed, (
                    f"{path.name} imports {names} of {module}"
                )
