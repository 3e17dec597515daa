"""The event loop every process of the platform runs on: uvloop (libuv), not the pure-Python default.

uvloop roughly halves the per-call cost of socket I/O for asyncpg, nats-py and uvicorn; services,
workers, receivers, tools and benchmarks all start their loop through :func:`run` so they measure and
behave alike (docs/adr/0006-uvloop-httptools.md).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new uvloop event loop (like :func:`asyncio.run`).

    Everything imported so far (modules, SQLAlchemy's and protobuf's tables) is moved out of the
    garbage collector's sight, and young-generation collections run every 20,000 allocations instead
    of 700: the collector then stops rescanning start-up objects a few hundred times a second under
    load (~25 % of the CPU of a request through SQLAlchemy). Reference counting frees almost
    everything anyway; the collector only finds cycles."""
    tune_gc()
    return uvloop.run(main)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of ``events`` is set or ``timeout`` passes. The waiting tasks are always cancelled and
    awaited, also when the caller is cancelled (a service stopping): none is left pending to be destroyed
    later by the garbage collector ("Task was destroyed but it is pending")."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
