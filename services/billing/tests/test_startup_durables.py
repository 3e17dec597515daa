"""Billing reports started only once its durable consumers exist: with ``order_events_start = "new"`` (the
production default) a lab or imaging order published the moment billing is up must still be charged, so the
durables cannot be created after the service says it is started."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from billing_testkit import overrides

from hospital.billing.service import DEFINITION
from hospital.chassis import bus
from hospital.chassis.app import Service
from hospital.testing.services import running_service


@pytest.fixture
def ensure_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """When each durable consumer was created and when the service set ``started`` (monotonic clock)."""
    log: list[tuple[str, float]] = []
    ensure = bus.Consumer.ensure

    async def recorded(self: bus.Consumer) -> None:
        await ensure(self)
        log.append((self.sub.durable, time.monotonic()))

    monkeypatch.setattr(bus.Consumer, "ensure", recorded)
    init = Service.__init__

    def patched_init(self: Service, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        started_set = self.started.set

        def set_started() -> None:
            log.append(("<started>", time.monotonic()))
            started_set()

        self.started.set = set_started  # type: ignore[method-assign]

    monkeypatch.setattr(Service, "__init__", patched_init)
    return log


async def test_durables_exist_before_the_service_reports_started(
    nats_server, tmp_path, facility_credentials, ensure_log
) -> None:
    settings = {**overrides(facility_credentials), "order_events_start": "new"}
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db",
        nats_url=nats_server.url,
        **settings,
    ) as svc:
        js = svc.rt.js
        durables = {
            settings["admissions_durable"],
            settings["lab_durable"],
            settings["imaging_durable"],
            settings["emr_durable"],
        }
        for stream, durable in (
            ("ADMISSIONS", settings["admissions_durable"]),
            ("LAB", settings["lab_durable"]),
            ("IMAGING", settings["imaging_durable"]),
            ("EMR", settings["emr_durable"]),
        ):
            info = await js.consumer_info(stream, durable)
            assert info.config.durable_name == durable
    started_at = next(t for name, t in ensure_log if name == "<started>")
    created: dict[str, float] = {}
    for name, t in ensure_log:  # first creation (each consumer's loop ensures its durable again later)
        if name in durables:
            created.setdefault(name, t)
    assert set(created) == durables, f"durables created: {sorted(created)}"
    late = [name for name, t in created.items() if t > started_at]
    assert not late, f"created after the service reported started: {late}"
