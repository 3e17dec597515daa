"""What the chassis relies on inside nats-py and SQLAlchemy beyond their public API, checked against the
installed versions so that an upgrade that changes it fails here, by name, rather than as lost events or
a statement outside its transaction somewhere else.

- nats-py (pinned exactly in libs/chassis/pyproject.toml): the relay and ``ack_all`` write protocol
  commands with ``Client._send_command`` and flush once with ``Client._flush_pending``; ``ack_all`` marks
  deliveries acknowledged through ``Msg._ackd``; the pull feed and relay take the core connection and the
  API prefix from ``JetStreamContext._nc`` / ``._prefix``; ``BusClient`` adds attributes of its own that
  must not collide with the client's.
- SQLAlchemy (pinned exactly): ``db.driver_connection`` begins the session's transaction on the asyncpg
  connection through the adapter's ``_start_transaction`` and ``_started``.

Upgrading either: bump the pin, run this file; when it fails, adapt bus.py / db.py first."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
import uuid
from importlib.metadata import version
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from hospital.chassis.bus import BusClient, _hpub, _raw_sender, ack_all
from hospital.chassis.db import Database, driver_connection

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _pins() -> dict[str, str]:
    """The exact pins of the chassis (``name==version``, extras allowed)."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    matches = (re.fullmatch(r"([\w-]+)(?:\[[\w,]+\])?==([\w.]+)", d.strip()) for d in deps)
    return {m[1]: m[2] for m in matches if m}


def test_the_installed_versions_are_the_pinned_ones() -> None:
    pins = _pins()
    assert {"nats-py", "sqlalchemy"} <= set(pins), pins
    for name in ("nats-py", "sqlalchemy"):
        assert version(name) == pins[name], (
            f"{name} {version(name)} installed, {pins[name]} pinned: run make setup"
        )


def test_nats_client_has_the_command_writer_and_flush_the_bus_uses() -> None:
    assert inspect.iscoroutinefunction(Client._send_command)
    assert list(inspect.signature(Client._send_command).parameters)[:2] == ["self", "cmd"]
    assert inspect.iscoroutinefunction(Client._flush_pending)
    for public in ("is_connected", "is_draining_pubs", "max_payload"):
        assert isinstance(inspect.getattr_static(Client, public), property), public


def test_bus_client_attributes_do_not_collide_with_the_clients_own() -> None:
    own = {"_options", "_closing", "_revival", "start", "_on_closed", "_revive"}
    client_attributes = set(vars(Client())) | set(dir(Client))
    assert own & client_attributes == set()
    assert {"_options", "_closing", "_revival"} <= set(vars(BusClient()))


async def test_raw_hpub_is_delivered_like_the_clients_publish(nats_server) -> None:
    """A command written with ``_send_command`` and flushed with ``_flush_pending`` arrives with its
    subject, reply, headers and payload intact, as ``Client.publish`` would deliver them."""
    nc = await nats.connect(nats_server.url)
    subject = f"internals.{uuid.uuid4().hex[:8]}"
    received: asyncio.Queue[Msg] = asyncio.Queue()
    try:
        await nc.subscribe(subject, cb=received.put)
        await nc.flush()
        send = _raw_sender(nc)
        assert send is not None
        headers = {"Hospital-Event-Type": "platform.v1.ProbeSent", "Nats-Msg-Id": "0190-abc"}
        await send(_hpub(subject, "the.reply", headers, "Nguyễn Thị Ánh".encode()))
        await nc._flush_pending()
        msg = await asyncio.wait_for(received.get(), 5)
        assert (msg.subject, msg.reply, msg.data) == (subject, "the.reply", "Nguyễn Thị Ánh".encode())
        assert msg.headers == headers
    finally:
        await nc.close()
    assert _raw_sender(nc) is None  # a closed client: callers fall back to Client.publish


async def test_ack_all_acknowledges_through_the_raw_writer(nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    stream, subject = f"INTERNALS{uuid.uuid4().hex[:6].upper()}", f"internals.ack.{uuid.uuid4().hex[:8]}"
    try:
        js = nc.jetstream()
        assert isinstance(js, JetStreamContext)
        assert js._nc is nc and js._prefix == "$JS.API"  # what the relay and the pull feed build on
        await js.add_stream(name=stream, subjects=[subject])
        for n in range(3):
            await js.publish(subject, f"{n}".encode())
        sub = await js.pull_subscribe(subject, durable="internals", stream=stream)
        msgs = await sub.fetch(3, timeout=5)
        assert [m._ackd for m in msgs] == [False, False, False]
        await ack_all(nc, msgs)
        assert [m._ackd for m in msgs] == [True, True, True]
        info = await js.consumer_info(stream, "internals")
        for _ in range(100):  # the acks are on their way: the server counts them
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
            info = await js.consumer_info(stream, "internals")
        assert (info.num_ack_pending, info.ack_floor.stream_seq) == (0, 3)
    finally:
        await nc.close()


def test_asyncpg_adapter_has_the_lazy_begin_driver_connection_uses() -> None:
    assert inspect.iscoroutinefunction(AsyncAdapt_asyncpg_connection._start_transaction)
    assert "_started" in AsyncAdapt_asyncpg_connection.__slots__


async def test_driver_connection_joins_the_sessions_transaction(pg_server) -> None:
    """Statements sent straight to asyncpg after ``driver_connection`` commit and roll back with the
    session, and the session's own statements run in that same transaction."""
    db = Database(await pg_server.create_database(f"t_{uuid.uuid4().hex[:16]}"))
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)"))
        async with db.session() as session:
            driver = await driver_connection(session)
            adapted = (await (await session.connection()).get_raw_connection()).dbapi_connection
            assert adapted._started is True  # begun by driver_connection itself, not by a SELECT 1
            assert driver.is_in_transaction()
            await driver.execute("INSERT INTO notes VALUES (1, 'Trần Văn Bình')")
            await session.execute(text("INSERT INTO notes VALUES (2, 'Lê Thị Hoa')"))
            await session.rollback()
        async with db.session() as session:
            assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 0
            driver = await driver_connection(session)
            await driver.execute("INSERT INTO notes VALUES (3, 'Phạm Minh Đức')")
            await session.commit()
        async with db.session() as session:
            rows = (await session.execute(text("SELECT id FROM notes"))).scalars().all()
        assert rows == [3]
    finally:
        await db.dispose()
