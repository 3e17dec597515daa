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
from hospital.testing.waits import wait_for

PROMPT = 1.0  # seconds: the former polling display needed up to a second, and never showed a recall


class Display:
    """One waiting-room display: an SSE client that records every state it is sent."""

    def __init__(self, client: httpx.AsyncClient, room: str, link: str) -> None:
        self.client, self.room, self.link = client, room, link
        self.states: list[dict[str, Any]] = []
        self.keepalives = 0  # keep-alive comments received: the server's stream idled that long
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self.client.stream("GET", self.link) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    self.states.append(json.loads(line[6:]))
                    self.arrived.set()
                elif line.startswith(":"):
                    self.keepalives += 1

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
async def displays(client: httpx.AsyncClient, room: str, n: int, link: str) -> AsyncIterator[list[Display]]:
    """``n`` screens of ``room``, each opening the room's signed display link (no login)."""
    ds = [Display(client, room, link).start() for _ in range(n)]
    try:
        for d in ds:
            await d.wait_for(lambda s: True, timeout=30)  # the current state, on connecting
        yield ds
    finally:
        await asyncio.gather(*(d.close() for d in ds))


async def display_link(svc: Any, room: str) -> str:
    async with http_client(svc, "receptionist") as c:
        r = await c.post(f"/api/v1/queues/{room}/display-link", json={"valid_days": 30})
    assert r.status_code == 200, r.text
    return r.json()["stream_path"]


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
        displays(viewer, room, 4, await display_link(admissions, room)) as ds,
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
        queue_display_keepalive_seconds=0.5,
        queue_display_max_streams_per_room=250,
    ) as svc:
        room, (t1, _) = await _queue_of(svc, 2)
        link = await display_link(svc, room)
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
            displays(viewer, room, 200, link) as ds,
        ):
            assert svc.rt.extras["queue_displays"].watched() == {room: 200}
            assert len(queue_reads) <= 2, len(queue_reads)  # one read for the room, not one per display
            before = len(queue_reads)
            # idle: every display's stream has sent two keep-alives (a second of idling) without a query;
            # the former displays polled once a second each (200+ queries)
            seen = [d.keepalives for d in ds]
            await wait_for(
                lambda: all(d.keepalives >= k + 2 for d, k in zip(ds, seen, strict=True)),
                10,
                what="two keep-alives on every display",
            )
            assert len(queue_reads) == before
            assert all(len(d.states) == 1 for d in ds)  # the state on connecting, once
            async with http_client(svc, "doctor") as doctor:
                assert (await doctor.post(f"/api/v1/queues/{room}/next")).status_code == 200
            await asyncio.gather(*(d.wait_for(lambda s: s["now_serving"] == t1, timeout=10) for d in ds))
            assert all(len(d.states) == 2 for d in ds)
            # the call's own statements plus one re-read of the room for all 200 displays
            reads_for_change = [s for s in queue_reads[before:] if "queue_status IN" in s]
            assert len(reads_for_change) == 1, reads_for_change
        # disconnected displays are forgotten
        await wait_for(lambda: svc.rt.extras["queue_displays"].watched() == {}, 10, what="displays forgotten")
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
            displays(viewer, room, 3, await display_link(a, room)) as ds,
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


async def test_display_streams_need_a_link_for_a_known_room(database_url, nats_server, tmp_path) -> None:
    """No stream without a signed link for that room (or a staff token); invented rooms are refused
    without creating any state or reading the database per name; links expire; issuing one is audited."""
    from sqlalchemy import select

    from hospital.chassis.db import audit_log_table

    async with running_service(
        DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url
    ) as svc:
        rooms = [r["code"] for r in (await _rooms(svc))]
        room, other = rooms[0], rooms[1]
        link = await display_link(svc, room)
        displays_ = svc.rt.extras["queue_displays"]
        reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "clinic_rooms" in statement or "visits" in statement:  # (the outbox relay polls meanwhile)
                reads.append(statement)

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{svc.settings.http_port}", timeout=30
        ) as anon:
            missing = await anon.get(f"/api/v1/queues/{room}/stream")
            assert missing.status_code == 401 and missing.json()["code"] == "display_link.missing"
            assert (await anon.get(f"/api/v1/queues/{room}")).status_code == 401
            query = link.split("?", 1)[1]
            wrong_room = await anon.get(f"/api/v1/queues/{other}/stream?{query}")
            assert wrong_room.status_code == 401 and wrong_room.json()["code"] == "display_link.invalid"
            forged = await anon.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
            assert forged.status_code == 401 and forged.json()["code"] == "display_link.invalid"
            expired = svc.rt.extras["display_links"].links.issue(room, -60)
            old = await anon.get(f"/api/v1/queues/{room}?{expired.query}")
            assert old.status_code == 401 and old.json()["code"] == "display_link.expired"
            assert (await anon.get(link.replace("/stream", ""))).json()[
                "room"
            ] == room  # the state, with the link
            event.listen(svc.rt.db.engine.sync_engine, "before_cursor_execute", count)
            try:
                async with http_client(svc, "nurse") as staff:
                    answers = [await staff.get(f"/api/v1/queues/PHONG-BIA-{i}/stream") for i in range(50)]
            finally:
                event.remove(svc.rt.db.engine.sync_engine, "before_cursor_execute", count)
            assert {r.status_code for r in answers} == {404}
            assert answers[0].json()["code"] == "queue.room_unknown"
            assert displays_.watched() == {} and displays_.streams() == 0
            assert len(reads) <= 1, reads  # the room codes, read once (cached for a minute), not per name
        async with http_client(svc, "cashier") as cashier:
            assert (await cashier.post(f"/api/v1/queues/{room}/display-link")).status_code == 403
        async with http_client(svc, "receptionist") as c:
            assert (await c.post("/api/v1/queues/PHONG-BIA/display-link")).status_code == 404
            too_long = await c.post(f"/api/v1/queues/{room}/display-link", json={"valid_days": 400})
            assert too_long.status_code == 422
        async with svc.rt.db.session() as s:
            issued = (
                await s.execute(
                    select(audit_log_table.c.actor, audit_log_table.c.resource_id).where(
                        audit_log_table.c.action == "queue.display_link.issue"
                    )
                )
            ).all()
        assert [tuple(r) for r in issued] == [("user:letan.lan", room)]


async def test_display_streams_are_capped_per_room_and_in_all(database_url, nats_server, tmp_path) -> None:
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        queue_display_max_streams=5,
        queue_display_max_streams_per_room=3,
    ) as svc:
        room, other = [r["code"] for r in (await _rooms(svc))][:2]
        link, other_link = await display_link(svc, room), await display_link(svc, other)
        displays_ = svc.rt.extras["queue_displays"]
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.settings.http_port}", timeout=30) as viewer,
            displays(viewer, room, 3, link) as first,
        ):
            full = await viewer.get(link)
            assert full.status_code == 503 and full.json()["code"] == "queue.displays_full"
            async with displays(viewer, other, 2, other_link):
                assert displays_.streams() == 5
                assert (await viewer.get(other_link)).status_code == 503  # the process's cap
            await first[0].close()
            await _until(lambda: displays_.streams() == 2)
            async with displays(viewer, room, 1, link):  # a slot freed by a display that left
                assert displays_.watched() == {room: 3}
        await _until(lambda: displays_.streams() == 0 and displays_.watched() == {})


async def _rooms(svc: Any) -> list[dict[str, Any]]:
    async with http_client(svc, "receptionist") as c:
        return (await c.get("/api/v1/rooms")).json()["items"]


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
