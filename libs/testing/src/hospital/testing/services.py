"""Run a real service in the test's event loop: migrated database, HTTP and gRPC on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

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
    db = Database(settings.database_url)
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata)
    finally:
        await db.dispose()
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
