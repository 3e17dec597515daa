"""Helpers for the end-to-end tests (module name unique across the workspace's test directories)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
from sqlalchemy import select


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
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def published(svc, subject: str, *, wait: float = 0.5) -> list[Any]:
    """The events ``svc`` published on ``subject`` since it started, read back from JetStream (the relay
    deletes outbox rows once published), oldest first; each has ``.payload``. Waits up to ``wait`` s
    for the relay."""
    from nats.js import api as js_api

    config = js_api.ConsumerConfig(
        deliver_policy=js_api.DeliverPolicy.BY_START_TIME,
        opt_start_time=svc.test_started_at.isoformat().replace("+00:00", "Z"),
        filter_subject=subject,
        ack_policy=js_api.AckPolicy.NONE,
    )
    sub = await svc.rt.js.pull_subscribe(subject, durable=None, stream="IMAGING", config=config)
    found: list[Any] = []
    deadline = asyncio.get_running_loop().time() + wait
    try:
        while True:
            try:
                found += await sub.fetch(100, timeout=0.2)
            except Exception:  # noqa: BLE001 - nats' TimeoutError: nothing more for now
                if found or asyncio.get_running_loop().time() > deadline:
                    break
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
