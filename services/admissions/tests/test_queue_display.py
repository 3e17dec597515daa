"""Waiting-room displays (SSE) are pushed, not polled: every display of a room receives each ticket
change promptly (next, recall, skip, a new ticket), from the process that made it or from another one
through the ticket events on NATS, and idle displays cost the database nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import event

from hospital.admissions.service import DEFINITION
from hospital.testing.services import http_client, running_service

PROMPT = 1.0  # seconds: the former polling display needed up to a second, and never showed a recall


class Display:
    """One waiting-room display: an SSE client that records every state it is sent."""

    def __init__(self, client: httpx.AsyncClient, room: str) -> None:
        self.client, self.room = client, room
        self.states: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self.client.stream("GET", f"/api/v1/queues/{self.room}/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    self.states.append(json.loads(line[6:]))
                    self.arrived.set()

    def start(self) -> Display:
        self.task = asyncio.create_task(self._run())
        return self

    async def wait_for(self, check: Any, timeout: float = PROMPT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for state in reversed(self.states):
                if check(state):
                    return state
            left = deadline - time.monotonic()
            assert left > 0, f"display did not receive the change within {timeout}s: {self.states[-3:]}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self.task


@asynccontextmanager
async def displays(client: httpx.AsyncClient, room: str, n: int) -> AsyncIterator[list[Display]]:
    ds = [Display(client, room).start() for _ in range(n)]
    try:
        for d in ds:
            await d.wait_for(lambda s: True, timeout=30)  # the current state, on connecting
        yield ds
    finally:
        await asyncio.gather(*(d.close() for d in ds))


async def _queue_of(svc: Any, n: int, room_index: int = 0) -> tuple[str, list[int]]:
    async with http_client(svc, "receptionist") as c:
        room = (await c.get("/api/v1/rooms")).json()["items"][room_index]["code"]
        tickets = []
        for i in range(n):
            p = (
                await c.post(
                    "/api/v1/patients",
                    json={"full_name": f"Hoàng Thị Yến {i}", "birth_date": "1990", "sex": "female"},
                )
            ).json()
            tickets.append(
                (await c.post("/api/v1/visits", json={"patient_id": p["id"], "room": room})).json()[
                    "ticket_number"
                ]
            )
    return room, tickets


async def test_every_display_receives_next_recall_skip_promptly(admissions) -> None:
    room, (t1, t2, t3) = await _queue_of(admissions, 3)
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{admissions.settings.http_port}", timeout=30) as viewer,
        http_client(admissions, "doctor") as doctor,
        displays(viewer, room, 4) as ds,
    ):
        assert all(d.states[0]["waiting"] == [t1, t2, t3] and d.states[0]["now_serving"] is None for d in ds)

        async def act(body: dict[str, Any], check: Any) -> None:
            r = await doctor.post(f"/api/v1/queues/{room}/next", json=body)
            assert r.status_code == 200, r.text
            await asyncio.gather(*(d.wait_for(check) for d in ds))

        await act(
            {"action": "next"},
            lambda s: (
                s["now_serving"] == t1
                and s["waiting"] == [t2, t3]
                and s.get("last_call") == {"ticket_number": t1, "action": "next"}
            ),
        )
        await act(
            {"action": "recall"},
            lambda s: (
                s["now_serving"] == t1 and s.get("last_call") == {"ticket_number": t1, "action": "recall"}
            ),
        )
        await act(
            {"action": "skip"},
            lambda s: (
                s["now_serving"] is None
                and s["called"] == []
                and s.get("last_call") == {"ticket_number": t1, "action": "skip"}
            ),
        )
        await act({"action": "next"}, lambda s: s["now_serving"] == t2 and s["waiting"] == [t3])
        # a new ticket issued at reception shows up too
        _, (t4,) = await _queue_of(admissions, 1)
        await asyncio.gather(*(d.wait_for(lambda s: s["waiting"] == [t3, t4]) for d in ds))


async def test_idle_displays_cost_no_queries(database_url, nats_server, tmp_path) -> None:
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        queue_display_resync_seconds=3600,
    ) as svc:
        room, (t1, _) = await _queue_of(svc, 2)
        queue_reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "FROM visits" in statement:
                queue_reads.append(statement)

        event.listen(svc.rt.db.engine.sync_engine, "before_cursor_execute", count)
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{svc.settings.http_port}", timeout=60, limits=limits
            ) as viewer,
            displays(viewer, room, 200) as ds,
        ):
            assert svc.rt.extras["queue_displays"].watched() == {room: 200}
            assert len(queue_reads) <= 2, len(queue_reads)  # one read for the room, not one per display
            before = len(queue_reads)
            await asyncio.sleep(2.5)  # idle: the former displays polled once a second each (500 queries)
            assert len(queue_reads) == before
            assert all(len(d.states) == 1 for d in ds)  # the state on connecting, once
            async with http_client(svc, "doctor") as doctor:
                assert (await doctor.post(f"/api/v1/queues/{room}/next")).status_code == 200
            await asyncio.gather(*(d.wait_for(lambda s: s["now_serving"] == t1, timeout=10) for d in ds))
            assert all(len(d.states) == 2 for d in ds)
            # the call's own statements plus one re-read of the room for all 200 displays
            reads_for_change = [s for s in queue_reads[before:] if "queue_status IN" in s]
            assert len(reads_for_change) == 1, reads_for_change
        await asyncio.sleep(0.2)
        assert svc.rt.extras["queue_displays"].watched() == {}  # disconnected displays are forgotten
        event.remove(svc.rt.db.engine.sync_engine, "before_cursor_execute", count)


async def test_displays_follow_changes_made_by_another_process(database_url, nats_server, tmp_path) -> None:
    """Two service instances on one database (as `serve --processes 2`): a display connected to one sees
    the calls made through the other, carried by the ticket events on NATS."""
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=database_url,
            nats_url=nats_server.url,
            queue_display_resync_seconds=3600,
        ) as a,
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=database_url,
            nats_url=nats_server.url,
            queue_display_resync_seconds=3600,
        ) as b,
    ):
        room, (t1, t2) = await _queue_of(a, 2, room_index=1)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.settings.http_port}", timeout=30) as viewer,
            http_client(a, "doctor") as doctor,
            displays(viewer, room, 3) as ds,
        ):
            assert (await doctor.post(f"/api/v1/queues/{room}/next")).status_code == 200
            await asyncio.gather(*(d.wait_for(lambda s: s["now_serving"] == t1, timeout=5) for d in ds))
            assert (
                await doctor.post(f"/api/v1/queues/{room}/next", json={"action": "recall"})
            ).status_code == 200
            await asyncio.gather(
                *(
                    d.wait_for(lambda s: s.get("last_call", {}).get("action") == "recall", timeout=5)
                    for d in ds
                )
            )
            _, (t3,) = await _queue_of(a, 1, room_index=1)
            await asyncio.gather(*(d.wait_for(lambda s: s["waiting"] == [t2, t3], timeout=5) for d in ds))
