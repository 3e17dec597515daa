"""Billing test fixtures: the real service on both databases, a facility certificate and an admissions
event publisher on the real NATS server. Helpers live in billing_testkit.py."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from billing_testkit import Admissions, make_facility_credentials, overrides

from hospital.billing.service import DEFINITION
from hospital.chassis.app import Service
from hospital.testing.services import running_service


@pytest.fixture(scope="session")
def facility_credentials(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_facility_credentials(tmp_path_factory.mktemp("facility"))


@pytest.fixture
async def billing(database_url: str, nats_server, tmp_path, facility_credentials) -> AsyncIterator[Service]:
    """The real billing service (HTTP + gRPC + relay + ADMISSIONS consumer) on SQLite and PostgreSQL."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        **overrides(facility_credentials),
    ) as svc:
        yield svc


@pytest.fixture
async def billing_sqlite(nats_server, tmp_path, facility_credentials) -> AsyncIterator[Service]:
    """The same service on SQLite only, for behaviour that does not depend on the database."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db",
        nats_url=nats_server.url,
        **overrides(facility_credentials),
    ) as svc:
        yield svc


@pytest.fixture
async def admissions(nats_server) -> AsyncIterator[Admissions]:
    nc = await nats.connect(nats_server.url)
    try:
        yield Admissions(nc.jetstream())
    finally:
        await nc.close()
