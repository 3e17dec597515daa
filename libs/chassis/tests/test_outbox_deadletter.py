"""An event that can never be published does not stop a service's events (ADR 0007), against real
nats-server, SQLite and PostgreSQL: a row over the server's ``max_payload`` or refused for good by its stream
moves to ``outbox_deadletter`` and the rows behind it flow; an operator's replay publishes it once the cause
is fixed; a connection the server closes (``-ERR``) comes back and events flow again."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hospital.chassis.bus import (
    Consumer,
    OutboxRelay,
    Subscription,
    connect,
    ensure_streams,
    list_outbox_dead_letters,
    replay_outbox_dead_letters,
)
from hospital.chassis.db import Database, outbox_deadletter_table, outbox_table
from hospital.testing.servers import NatsServer
from hospital.testing.waits import equals as _eq

from .test_bus_edges import (
    commit_events,
    count,
    effect_ids,
    eventually,
    record_effect,
    running,
    stream_events,
)

STREAMS = {"PLATFORM": ["platform.>"]}


async def commit_big(db: Database, subject: str, size: int, notify=None) -> str:
    """One event whose payload is ``size`` bytes (a ProbeSent with a huge probe id)."""
    from hospital.chassis.uow import UnitOfWork
    from hospital.contracts.platform.v1.platform_pb2 import ProbeSent

    async with UnitOfWork(db, source="edges", on_commit=notify) as uow:
        eid = uow.publish(subject, ProbeSent(probe_id="Đ" * (size // 2), sequence=999))
        await uow.commit()
    return eid


@pytest.fixture
def subject() -> str:
    return f"platform.deadletter.t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "own-nats").start()
    yield server
    server.stop()


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A nats-server of this test's own whose max_payload is 64 KiB."""
    server = NatsServer(tmp_path / "nats", max_payload=64 * 1024).start()
    yield server
    server.stop()


async def test_row_over_max_payload_moves_aside_and_the_rows_behind_it_flow(
    db: Database, small_nats: NatsServer, subject: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three events committed in order, the middle one larger than the server's max_payload: the first and
    the third reach the stream, the large one waits in ``outbox_deadletter`` with its reason (logged as an
    error with an alert tag and counted), the connection stays up, and a relay started afterwards (a
    restart) publishes the next event at once instead of re-sending the large row."""
    nc = await connect(small_nats.url, "deadletter")
    js = nc.jetstream()
    await ensure_streams(js, STREAMS)
    relay = OutboxRelay(db, nc, poll_seconds=0.05, service="edges")
    try:
        first = await commit_events(db, subject, [1])
        big = await commit_big(db, subject, 100_000)
        third = await commit_events(db, subject, [3])
        with caplog.at_level(logging.ERROR, logger="hospital.chassis.bus"):
            async with running(relay.run):
                await eventually(lambda: _eq(count(db, outbox_table), 0), 20, "empty outbox")
        assert [eid for eid, _, _ in await stream_events(js, subject)] == first + third
        dead = await list_outbox_dead_letters(db)
        assert [d.id for d in dead] == [big]
        assert "max_payload of 65536" in dead[0].reason and dead[0].size > 100_000
        assert relay.dead_lettered_total == 1 and relay.dead_rows == 1
        alerts = [r for r in caplog.records if getattr(r, "alert", None) == "outbox_dead_letter"]
        assert alerts and alerts[0].event_id == big
        assert nc.is_connected and nc.epoch == 0, "the large row was never sent, so the server closed nothing"

        restarted = OutboxRelay(db, nc, poll_seconds=0.05, service="edges")
        fourth = await commit_events(db, subject, [4])
        async with running(restarted.run):
            await eventually(lambda: _eq(count(db, outbox_table), 0), 20, "empty outbox after restart")
        assert [eid for eid, _, _ in await stream_events(js, subject)] == first + third + fourth
        assert restarted.dead_rows == 1 and restarted.dead_lettered_total == 0
    finally:
        await nc.close()


async def test_replay_publishes_the_row_once_the_server_takes_it(
    db: Database, tmp_path: Path, subject: str
) -> None:
    """The operator raises the server's max_payload and replays: the row goes back to the outbox with its
    event id and reaches the stream; replaying an unknown id moves nothing."""
    server = NatsServer(tmp_path / "nats", max_payload=64 * 1024).start()
    nc = await connect(server.url, "replay")
    try:
        await ensure_streams(nc.jetstream(), STREAMS)
        relay = OutboxRelay(db, nc, poll_seconds=0.05)
        big = await commit_big(db, subject, 100_000)
        async with running(relay.run):
            await eventually(lambda: _eq(count(db, outbox_deadletter_table), 1), 20, "row set aside")
        await nc.close()
        server.stop()
        server.max_payload = None  # the cause fixed: the default 1 MiB
        server.start()
        nc = await connect(server.url, "replay")
        relay = OutboxRelay(db, nc, poll_seconds=0.05)
        assert await replay_outbox_dead_letters(db, ["no-such-id"]) == []
        assert await replay_outbox_dead_letters(db, [big]) == [big]
        assert await count(db, outbox_deadletter_table) == 0
        async with running(relay.run):
            await eventually(lambda: _eq(count(db, outbox_table), 0), 20, "replayed row published")
        stored = await stream_events(nc.jetstream(), subject)
        assert [(eid, seq) for eid, _, seq in stored] == [(big, 999)]
        assert await list_outbox_dead_letters(db) == []
    finally:
        await nc.close()
        server.stop()


async def test_row_the_stream_refuses_for_good_moves_aside(
    db: Database, own_nats: NatsServer, subject: str
) -> None:
    """A stream whose max_msg_size is below the event's size answers with an error for that event only: it
    is set aside and the small events around it are stored."""
    nc = await connect(own_nats.url, "refused")
    js = nc.jetstream()
    try:
        await ensure_streams(js, STREAMS)
        info = await js.stream_info("PLATFORM")
        await js.update_stream(dataclasses.replace(info.config, max_msg_size=4096))
        relay = OutboxRelay(db, nc, poll_seconds=0.05)
        first = await commit_events(db, subject, [1])
        big = await commit_big(db, subject, 20_000)
        third = await commit_events(db, subject, [3])
        async with running(relay.run):
            await eventually(lambda: _eq(count(db, outbox_table), 0), 20, "empty outbox")
        assert [eid for eid, _, _ in await stream_events(js, subject)] == first + third
        dead = await list_outbox_dead_letters(db)
        assert [d.id for d in dead] == [big] and "maximum" in dead[0].reason.lower()
    finally:
        await nc.close()


async def test_connection_the_server_closes_comes_back_and_events_flow(
    db: Database, own_nats: NatsServer, subject: str
) -> None:
    """The server closes the client's connection with ``-ERR`` (here: a message over max_payload written
    straight to the socket, as the relay's raw path once did). nats-py gives up on such a connection; the
    chassis's client connects again, the relay and a consumer resubscribe, and a new event is applied."""
    nc = await connect(own_nats.url, "revive")
    js = nc.jetstream()
    await ensure_streams(js, STREAMS)
    relay = OutboxRelay(db, nc, poll_seconds=0.05, wake_subject=f"_HOSPITAL.outbox.{subject}")
    consumer = Consumer(
        db,
        js,
        Subscription("PLATFORM", f"d_{subject.rsplit('.', 1)[-1]}", {subject: record_effect}),
        service="edges",
    )
    try:
        async with running(relay.run, consumer.run):
            before = await commit_events(db, subject, [1], notify=relay.notify)
            await eventually(lambda: _eq(effect_ids(db), before), 20, "first event applied")
            big = b"x" * (nc.max_payload + 1)
            await nc._send_command(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(big), big))
            await nc._flush_pending()
            await eventually(
                lambda: _true(nc.epoch == 1 and nc.is_connected), 20, "connection re-established"
            )
            after = await commit_events(db, subject, [2], notify=relay.notify)
            await eventually(lambda: _eq(effect_ids(db), before + after), 20, "event after the close applied")
    finally:
        await nc.close()
    assert nc.is_closed and nc._revival is not None and nc._revival.done(), "an intended close is final"


async def _true(value: bool) -> bool:
    return value


async def test_event_over_the_size_limit_is_refused_at_the_source(db: Database, subject: str) -> None:
    """An event payload over MAX_EVENT_BYTES is refused when it is raised (413 event_too_large): the unit
    of work's transaction writes nothing, neither the event nor the state change beside it."""
    from hospital.chassis.uow import MAX_EVENT_BYTES, EventTooLarge, UnitOfWork
    from hospital.contracts.platform.v1.platform_pb2 import ProbeSent

    with pytest.raises(EventTooLarge) as refused:
        async with UnitOfWork(db, source="edges") as uow:
            uow.publish(subject, ProbeSent(probe_id="ok", sequence=1))
            uow.publish(subject, ProbeSent(probe_id="x" * MAX_EVENT_BYTES, sequence=2))
            await uow.commit()
    assert refused.value.status == 413 and refused.value.code == "event_too_large"
    assert str(MAX_EVENT_BYTES) in refused.value.message and subject in refused.value.message
    assert await count(db, outbox_table) == 0
