"""Helpers for the end-to-end tests (module name unique across the workspace's test directories)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
from sqlalchemy import select

from hospital.testing.waits import outbox_drained
from hospital.testing.waits import wait_for as shared_wait_for


def dataset_bytes(path: Path) -> bytes:
    """The bytes after a Part 10 file's meta header, located with pydicom."""
    meta = pydicom.filereader.read_file_meta_info(path)
    start = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
    return path.read_bytes()[start:]


async def run_tool(tool: str, *args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool without blocking the event loop the service runs in."""
    return await asyncio.to_thread(
        subprocess.run, [tool, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    return await shared_wait_for(predicate, timeout, interval)


async def published(svc, subject: str) -> list[Any]:
    """The events ``svc`` published on ``subject`` since it started, read back from JetStream once its
    outbox is drained (every event committed so far is then on the stream), oldest first; each has
    ``.payload``, ``.subject`` and ``.headers``."""
    from nats.js import api as js_api

    await outbox_drained(svc)
    config = js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
        opt_start_time=svc.test_started_at.isoformat().replace("+00:00", "Z"),
        filter_subject=subject,
        ack_policy=js_api.AckPolicy.NONE,
    )
    sub = await svc.rt.js.pull_subscribe(subject, durable=None, stream="IMAGING", config=config)
    found: list[Any] = []
    try:
        remaining = (await sub.consumer_info()).num_pending
        while remaining > 0:
            batch = await sub.fetch(min(remaining, 100), timeout=10)
            found += batch
            remaining -= len(batch)
    finally:
        await sub.unsubscribe()
    return [SimpleNamespace(payload=m.data, subject=m.subject, headers=m.headers or {}) for m in found]


async def indexed(svc, study_uid: str) -> int:
    from hospital.imaging.adapters import tables as t

    async with svc.rt.db.session() as s:
        row = (
            await s.execute(
                select(t.studies.c.instance_count).where(t.studies.c.study_instance_uid == study_uid)
            )
        ).first()
    return row[0] if row else 0
