"""hospital.chassis.aio.wait_any: the pollers' "until woken, stopped or timed out" leaves no task behind."""

from __future__ import annotations

import asyncio

import pytest

from hospital.chassis.aio import wait_any


async def test_returns_when_one_event_is_set() -> None:
    woken, stop = asyncio.Event(), asyncio.Event()
    before = asyncio.all_tasks()
    waiting = asyncio.create_task(wait_any(woken, stop, timeout=60))
    await asyncio.sleep(0)  # let it start waiting
    woken.set()
    await asyncio.wait_for(waiting, 5)
    assert asyncio.all_tasks() - before == set()


async def test_a_cancelled_caller_leaves_no_pending_task() -> None:
    woken, stop = asyncio.Event(), asyncio.Event()
    before = asyncio.all_tasks()
    waiting = asyncio.create_task(wait_any(woken, stop, timeout=60))
    await asyncio.sleep(0)  # let it start waiting
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert asyncio.all_tasks() - before == set()  # before the fix the two Event.wait() tasks stayed pending


async def test_times_out() -> None:
    await asyncio.wait_for(wait_any(asyncio.Event(), timeout=0.01), 5)
