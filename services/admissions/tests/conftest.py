from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hospital.admissions.service import DEFINITION
from hospital.chassis.app import Service
from hospital.testing.services import running_service


@pytest.fixture
async def admissions(database_url: str, nats_server, tmp_path) -> AsyncIterator[Service]:
    """The real admissions service (HTTP + gRPC + relay) on SQLite and on PostgreSQL."""
    async with running_service(  # searches unthrottled here: test_search_policy.py tests the limits
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        search_rate_per_minute=0,
    ) as svc:
        yield svc
