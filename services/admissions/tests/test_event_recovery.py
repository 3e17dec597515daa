"""One oversized value does not stop admissions' events (issue "Hardening", item 1; ADR 0007).

A registration whose address is far larger than the NATS server's max_payload is either refused at the
door or its event is set aside in ``outbox_deadletter``; either way the next registration's event reaches a
consumer, with and without a restart of the service in between, and ``/readyz`` stays ready. The NATS
server here has a small max_payload (1 KiB) so an event outgrows it with values the database takes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import api as js_api

from hospital.admissions.service import DEFINITION
from hospital.chassis.bus import Event, connect, list_outbox_dead_letters
from hospital.chassis.db import Database
from hospital.contracts.admissions.v1 import events_pb2  # noqa: F401 - registers the event types
from hospital.testing.servers import NatsServer
from hospital.testing.services import http_client, running_service


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", max_payload=1024).start()
    yield server
    server.stop()


def fill(text: str, n: int) -> str:
    return (text * (n // len(text) + 1))[:n]


async def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def test_next_registration_reaches_a_consumer_after_an_oversized_one(
    database_url: str, small_nats: NatsServer, tmp_path: Path
) -> None:
    nc = await connect(small_nats.url, "recovery-test")
    seen: list[str] = []

    async def on_event(msg) -> None:
        seen.append(Event.from_msg(msg).message().patient.id)
        await msg.ack()

    async def ready(svc) -> bool:
        async with http_client(svc) as c:
            r = await c.get("/readyz")
        return r.status_code == 200 and r.json().get("checks", r.json()).get("nats") == "ok"

    # every text field as long as the database takes it: an event of ~2 KB, over this server's 1 KiB
    huge = {
        "full_name": fill("Trần Thị Ngọc Diệp ", 200),
        "birth_date": "1970-02-03",
        "sex": "female",
        "address_line": fill("Số 12 đường Lê Lợi, phường Hồng Gai, ", 300),
        "ward": fill("Phường Hồng Hải ", 100),
        "district": fill("Thành phố Hạ Long ", 100),
        "ethnicity": fill("Kinh ", 50),
        "occupation": fill("Giáo viên tiểu học ", 100),
        "guardian_name": fill("Nguyễn Đức Thắng ", 200),
    }
    settings = {"data_dir": tmp_path, "database_url": database_url, "nats_url": small_nats.url}
    try:
        async with running_service(DEFINITION, **settings) as svc:
            sub = await nc.jetstream().subscribe(
                "admissions.patient.registered",
                cb=on_event,
                deliver_policy=js_api.DeliverPolicy.NEW,
                manual_ack=True,
            )
            async with http_client(svc, "receptionist") as c:
                r = await c.post("/api/v1/patients", json=huge)
                assert r.status_code in (201, 413, 422), r.text
                oversized_accepted = r.status_code == 201
                r = await c.post(
                    "/api/v1/patients",
                    json={"full_name": "Nguyễn Văn Sau", "birth_date": "1985", "sex": "male"},
                )
                assert r.status_code == 201, r.text
                after = r.json()["id"]
            await _wait_for(lambda: _true(after in seen), 20, "the next registration's event")
            assert await ready(svc)
            if oversized_accepted:  # set aside with its reason, not re-sent
                db = Database(database_url)
                try:
                    dead = await list_outbox_dead_letters(db)
                finally:
                    await db.dispose()
                assert [d.subject for d in dead] == ["admissions.patient.registered"]
                assert "max_payload" in dead[0].reason
                async with http_client(svc) as c:  # the alert's metrics (the gauge: rows left to handle)
                    metrics = (await c.get("/metrics")).text
                assert re.search(
                    r'hospital_outbox_deadletter_rows\{[^}]*service="admissions"[^}]*\} 1\.0', metrics
                )
                assert re.search(r'hospital_outbox_dead_lettered_total\{[^}]*subject="admissions', metrics)
            # the oversized registration again, then a restart before anything else
            async with http_client(svc, "receptionist") as c:
                r = await c.post(
                    "/api/v1/patients", json={**huge, "full_name": fill("Trần Thị Dài Hai ", 200)}
                )
                assert r.status_code in (201, 413, 422), r.text
        async with running_service(DEFINITION, **settings) as svc:
            async with http_client(svc, "receptionist") as c:
                r = await c.post(
                    "/api/v1/patients",
                    json={"full_name": "Lê Thị Sau Khởi Động", "birth_date": "1990", "sex": "female"},
                )
                assert r.status_code == 201, r.text
                restarted = r.json()["id"]
            await _wait_for(lambda: _true(restarted in seen), 20, "the registration's event after a restart")
            assert await ready(svc)
        await sub.unsubscribe()
    finally:
        await nc.close()


async def _true(value: bool) -> bool:
    return value


async def test_service_connects_again_after_the_server_closes_its_connection(
    database_url: str, small_nats: NatsServer, tmp_path: Path
) -> None:
    """nats-server closes the service's connection with ``-ERR`` (here provoked with a message over its
    max_payload written straight to the socket): ``/readyz`` comes back to ``nats: ok`` by itself and
    the next registration's event reaches a consumer."""
    nc = await connect(small_nats.url, "recovery-test")
    seen: list[str] = []

    async def on_event(msg) -> None:
        seen.append(Event.from_msg(msg).message().patient.id)
        await msg.ack()

    try:
        async with running_service(
            DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=small_nats.url
        ) as svc:
            await nc.jetstream().subscribe(
                "admissions.patient.registered",
                cb=on_event,
                deliver_policy=js_api.DeliverPolicy.NEW,
                manual_ack=True,
            )
            client = svc.rt.nc
            big = b"x" * (client.max_payload + 1)
            await client._send_command(b"PUB _test.oversized %d\r\n%s\r\n" % (len(big), big))
            await client._flush_pending()
            await _wait_for(lambda: _true(client.epoch == 1), 20, "the connection re-established")

            async def nats_ready() -> bool:
                async with http_client(svc) as c:
                    r = await c.get("/readyz")
                return r.status_code == 200 and r.json()["checks"]["nats"] == "ok"

            await _wait_for(nats_ready, 20, "/readyz nats: ok")
            async with http_client(svc, "receptionist") as c:
                r = await c.post(
                    "/api/v1/patients",
                    json={"full_name": "Phan Văn Kết Nối", "birth_date": "1991", "sex": "male"},
                )
            assert r.status_code == 201, r.text
            await _wait_for(lambda: _true(r.json()["id"] in seen), 20, "the event after the close")
    finally:
        await nc.close()
