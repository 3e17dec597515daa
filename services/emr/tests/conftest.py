"""EMR test fixtures: the real service on both databases and an admissions event publisher on the real
NATS server. Helpers live in emr_testkit.py."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emr_testkit import Admissions

from hospital.chassis.app import Service
from hospital.emr.service import DEFINITION
from hospital.testing.services import running_service


def durables() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "admissions_durable": f"emr-adm-{tag}",
        "lab_durable": f"emr-lab-{tag}",
        "imaging_durable": f"emr-img-{tag}",
    }


@pytest.fixture
async def emr(database_url: str, nats_server, tmp_path) -> AsyncIterator[Service]:
    """The real EMR service (HTTP + gRPC + relay + consumers) on SQLite and PostgreSQL."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        shutdown_grace_seconds=2,
        **durables(),
    ) as svc:
        yield svc


@pytest.fixture
async def emr_sqlite(nats_server, tmp_path) -> AsyncIterator[Service]:
    """The same service on SQLite only, for behaviour that does not depend on the database."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/e.db",
        nats_url=nats_server.url,
        shutdown_grace_seconds=2,
        **durables(),
    ) as svc:
        yield svc


@pytest.fixture
async def admissions(nats_server) -> AsyncIterator[Admissions]:
    nc = await nats.connect(nats_server.url)
    try:
        yield Admissions(nc.jetstream())
    finally:
        await nc.close()
