"""Run a real service in the test's event loop: migrated database, HTTP and gRPC on free ports."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.engine import make_url

from hospital.chassis.app import Service, ServiceDefinition
from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.chassis.security import DevIssuer
from hospital.chassis.settings import ServiceSettings
from hospital.testing.servers import free_port

S = TypeVar("S", bound=ServiceSettings)


@asynccontextmanager
async def running_service(
    definition: ServiceDefinition[S], *, data_dir: Path, database_url: str, nats_url: str, **overrides: Any
) -> AsyncIterator[Service[S]]:
    """Migrate, start ``serve`` (HTTP, gRPC, relay, consumers), yield the running service, stop it."""
    ports = {"http_port": free_port(), "grpc_port": free_port()}  # overrides may fix either
    settings = definition.settings_cls(
        data_dir=data_dir,
        database_url=database_url,
        nats_url=nats_url,
        environment="test",
        **{**ports, **overrides},
    )
    await migrated(definition, settings.database_url)
    svc = Service(definition, settings)
    task = asyncio.create_task(svc.run("serve"))
    started = asyncio.create_task(svc.started.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise the start-up error
    try:
        yield svc
    finally:
        svc.stop.set()
        await asyncio.wait_for(task, timeout=30)


def issuer_for(svc: Service[Any]) -> DevIssuer:
    s = svc.settings
    return DevIssuer(Path(s.data_dir) / "auth", s.auth_issuer, s.auth_audience)


def http_client(svc: Service[Any], role: str | None = None, token: str | None = None) -> httpx.AsyncClient:
    headers = {}
    if role:
        token = issuer_for(svc).mint_for_role(role)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{svc.settings.http_port}", headers=headers, timeout=30
    )


# ------------------------------------------------------------------------------------ migrated databases
# One SQLite database per service migrated to head in this process; a fresh SQLite database for a test is
# a copy of it: what the migrations make of an empty database is the same every time, and the copy costs
# ~0.03 s where the migrations cost 0.2-0.5 s (tests/schema and the services' test_migrations.py run
# them). PostgreSQL databases are migrated: a copy (DROP, CREATE DATABASE ... TEMPLATE) costs as much.
_templates: dict[str, Path] = {}


async def _upgrade(definition: ServiceDefinition, url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata)
    finally:
        await db.dispose()


async def migrated(definition: ServiceDefinition, database_url: str) -> None:
    """Bring the service's database to head: a fresh SQLite database (no file yet) as a copy of one this
    process migrated before, any other by running the migrations."""
    url = make_url(database_url)
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:" or Path(name).exists():
        return await _upgrade(definition, database_url)
    key = str(definition.migrations_dir)
    if key not in _templates:  # (two services starting at once may both make one: either will do)
        folder = Path(tempfile.mkdtemp(prefix="hospital-migrated-"))
        atexit.register(shutil.rmtree, folder, True)
        await _upgrade(definition, f"sqlite+aiosqlite:///{folder / 'head.db'}")
        _templates.setdefault(key, folder / "head.db")
    target = Path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(_templates[key])) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
