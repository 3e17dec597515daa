"""hospital.chassis.aio.wait_any: the pollers' "until woken, stopped or timed out" leaves no task behind."""

from __future__ import annotations

import asyncio

import pytest

from hospital.chassis.aio import wait_any


def waiting_on(*events: asyncio.Event) -> list[asyncio.Task]:
    """Tasks still waiting on one of ``events`` (other fixtures' tasks in the loop are not counted)."""
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and any(frame.f_locals.get("self") is e for e in events):
            found.append(task)
    return found


async def test_returns_when_one_event_is_set() -> None:
    woken, stop = asyncio.Event(), asyncio.Event()
    waiting = asyncio.create_task(wait_any(woken, stop, timeout=60))
    await asyncio.sleep(0)  # let it start waiting
    await asyncio.sleep(0)
    assert len(waiting_on(woken, stop)) == 2
    woken.set()
    await asyncio.wait_for(waiting, 5)
    assert waiting_on(woken, stop) == []


async def test_a_cancelled_caller_leaves_no_pending_task() -> None:
    woken, stop = asyncio.Event(), asyncio.Event()
    waiting = asyncio.create_task(wait_any(woken, stop, timeout=60))
    await asyncio.sleep(0)  # let it start waiting
    await asyncio.sleep(0)
    assert len(waiting_on(woken, stop)) == 2
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting_on(woken, stop) == []  # before the fix the two Event.wait() tasks stayed pending


async def test_times_out() -> None:
    await asyncio.wait_for(wait_any(asyncio.Event(), timeout=0.01), 5)
