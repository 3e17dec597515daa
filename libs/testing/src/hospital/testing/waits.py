"""Waiting in tests on a condition or an observable end state, never for a fixed time.

``wait_for`` polls a condition until it holds. ``consumer_settled`` waits until a durable JetStream
consumer has taken and acknowledged every message of its stream it will ever see so far: the way to
check that "nothing else happened" after a duplicate or an ignored event (the consumer acknowledges
only once the effect is committed, so what the database holds then is final)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js import api as js_api

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Awaitable[T] | T],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``condition`` (plain or async) until it returns a truthy value, and return that value.
    Raises AssertionError naming ``what`` and the last value after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


async def consumer_settled(js: Any, stream: str, durable: str, timeout: float = 20.0) -> js_api.ConsumerInfo:
    """Wait until the durable consumer ``durable`` on ``stream`` has nothing left to deliver and nothing
    delivered but unacknowledged; return its info."""

    async def settled() -> js_api.ConsumerInfo | None:
        info = await js.consumer_info(stream, durable)
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

    return await wait_for(settled, timeout, what=f"consumer {durable} on {stream} settled")


async def outbox_drained(svc: Any, timeout: float = 20.0) -> None:
    """Wait until the running service ``svc`` has no event left in its outbox: every event committed so
    far is on its stream (the relay deletes a row once JetStream stored it), so reading the stream now
    shows all of them, and an event that is not there was never written."""
    from sqlalchemy import func, select

    from hospital.chassis.db import outbox_table

    async def empty() -> bool:
        async with svc.rt.db.session() as s:
            return (await s.execute(select(func.count()).select_from(outbox_table))).scalar_one() == 0

    await wait_for(empty, timeout, what=f"{svc.settings.service} outbox drained")


async def equals(awaitable: Awaitable[Any], expected: Any) -> bool:
    """``await awaitable == expected``: the condition of ``wait_for(lambda: equals(count(...), 3))``."""
    return (await awaitable) == expected
