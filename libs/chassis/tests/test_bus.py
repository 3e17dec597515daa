"""Outbox → JetStream → idempotent consumer, on SQLite and PostgreSQL, against a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.bus import (
    Consumer,
    Event,
    OutboxRelay,
    Subscription,
    connect,
    ensure_streams,
    list_dead_letters,
    replay_dead_letters,
)
from hospital.chassis.db import Database, inbox_table, outbox_table
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.platform.v1.platform_pb2 import ProbeSent
from hospital.testing.waits import consumer_settled, wait_for
from hospital.testing.waits import equals as _eq

from .conftest import effects


@pytest.fixture
async def js(nats_server):
    nc = await connect(nats_server.url, "test")
    js = nc.jetstream()
    await ensure_streams(js)
    yield js
    await nc.close()


async def count(db: Database, table=effects) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(table))).scalar_one()


async def record_effect(session: AsyncSession, ev: Event) -> None:
    msg = ev.message()
    await session.execute(insert(effects).values(event_id=ev.id, value=msg.sequence))


@pytest.fixture
def subject() -> str:
    return f"platform.probe.t{uuid.uuid4().hex[:10]}"


async def run_tasks(*tasks) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    running = [asyncio.create_task(t(stop)) for t in tasks]
    yield stop
    stop.set()
    await asyncio.wait_for(asyncio.gather(*running), 10)


async def test_every_event_applied_exactly_once(db: Database, js, subject: str) -> None:
    relay = OutboxRelay(db, js, batch_size=50, poll_seconds=0.05)
    for batch in range(10):
        async with UnitOfWork(db, source="test", on_commit=relay.notify) as uow:
            for i in range(20):
                uow.publish(subject, ProbeSent(probe_id="x", sequence=batch * 20 + i))
            await uow.commit()
    sub = Subscription("PLATFORM", f"d-{subject.rsplit('.', 1)[1]}", {subject: record_effect})
    consumer = Consumer(db, js, sub, service="test", batch_size=64)
    gen = run_tasks(relay.run, consumer.run)
    await gen.__anext__()
    await wait_for(lambda: _eq(count(db), 200))
    # the relay deletes what JetStream stored, possibly a moment after the consumer applied it
    await wait_for(lambda: _eq(count(db, outbox_table), 0))
    async with db.session() as s:
        values = sorted((await s.execute(select(effects.c.value))).scalars())
    assert values == list(range(200))

    # The same events delivered again (a replay outside the dedup window): no second effect.
    reader = await js.pull_subscribe(subject, durable=None, stream="PLATFORM")
    again = await reader.fetch(30, timeout=5)
    await reader.unsubscribe()
    assert len(again) == 30
    for m in again:
        await js.publish(
            subject, m.data, headers={**(m.headers or {}), "Nats-Msg-Id": m.headers["Nats-Msg-Id"] + ":again"}
        )
    stream_info = await js.stream_info("PLATFORM")
    assert stream_info.state.messages >= 230
    await consumer_settled(js, "PLATFORM", sub.durable)  # every copy delivered and acknowledged
    assert await count(db, inbox_table) == 200
    assert await count(db) == 200
    await _close(gen)


async def test_rolled_back_transaction_publishes_nothing(db: Database, js, subject: str) -> None:
    with pytest.raises(RuntimeError):
        async with UnitOfWork(db, source="test") as uow:
            uow.publish(subject, ProbeSent(probe_id="lost", sequence=1))
            await uow.flush_pending()
            raise RuntimeError("the state change failed")
    assert await count(db, outbox_table) == 0


async def test_poison_event_is_dead_lettered_then_replayed(db: Database, js, subject: str) -> None:
    fixed = False

    async def fragile(session: AsyncSession, ev: Event) -> None:
        if ev.message().sequence == 3 and not fixed:
            raise ValueError("cannot apply sequence 3")
        await record_effect(session, ev)

    relay = OutboxRelay(db, js, poll_seconds=0.05)
    async with UnitOfWork(db, source="test", on_commit=relay.notify) as uow:
        ids = [uow.publish(subject, ProbeSent(probe_id="p", sequence=i)) for i in range(6)]
        await uow.commit()
    durable = f"d-{subject.rsplit('.', 1)[1]}"
    consumer = Consumer(
        db, js, Subscription("PLATFORM", durable, {subject: fragile}), service="test", max_deliver=3
    )
    gen = run_tasks(relay.run, consumer.run)
    await gen.__anext__()

    async def parked() -> bool:
        return len(await list_dead_letters(js, "test", durable)) == 1

    await wait_for(parked)
    letters = await list_dead_letters(js, "test", durable)
    assert letters[0].event_id == ids[3] and letters[0].deliveries == 3
    assert "cannot apply sequence 3" in letters[0].reason and letters[0].subject == subject
    await wait_for(lambda: _eq(count(db), 5))  # the others were not held up

    fixed = True
    assert await replay_dead_letters(js, letters) == 1
    await wait_for(lambda: _eq(count(db), 6))
    assert await list_dead_letters(js, "test", durable) == []
    async with db.session() as s:
        assert 3 in set((await s.execute(select(effects.c.value))).scalars())
    await _close(gen)


async def _close(gen) -> None:
    try:
        await gen.__anext__()
    except StopAsyncIteration:
        pass


async def test_handler_publishes_in_the_consumers_transaction(db: Database, js, subject: str) -> None:
    """UnitOfWork.joining: a handler's events commit (or roll back) with the consumer's transaction, and
    the consumer wakes the relay after its commit."""
    follow_up = subject + "f"
    attempts: dict[int, int] = {}

    async def forward(session: AsyncSession, ev: Event) -> None:
        seq = ev.message().sequence
        uow = UnitOfWork.joining(session, source="test")
        uow.publish(follow_up, ProbeSent(probe_id="follow-up", sequence=seq))
        await uow.flush_pending()
        attempts[seq] = attempts.get(seq, 0) + 1
        if seq == 1 and attempts[seq] == 1:
            raise RuntimeError("first attempt fails after publishing: its event must not survive")

    relay = OutboxRelay(db, js, poll_seconds=30)  # no polling: only the consumer's wake-up moves events
    async with UnitOfWork(db, source="test", on_commit=relay.notify) as uow:
        for i in range(3):
            uow.publish(subject, ProbeSent(probe_id="p", sequence=i))
        await uow.commit()
    relay.notify()
    tag = subject.rsplit(".", 1)[1]
    first = Consumer(
        db,
        js,
        Subscription("PLATFORM", f"a-{tag}", {subject: forward}),
        service="test",
        on_events_written=relay.notify,
    )
    second = Consumer(
        db, js, Subscription("PLATFORM", f"b-{tag}", {follow_up: record_effect}), service="test"
    )
    gen = run_tasks(relay.run, first.run, second.run)
    await gen.__anext__()
    await wait_for(lambda: _eq(count(db), 3), timeout=10)
    async with db.session() as s:
        assert sorted((await s.execute(select(effects.c.value))).scalars()) == [0, 1, 2]
    assert attempts[1] == 2
    await _close(gen)
