"""No loss, no double effect: 10,000 events through outbox → JetStream → consumer while nats-server is
killed (SIGKILL) and restarted twice and the consumer process is killed and restarted once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from hospital.chassis.bus import OutboxRelay, connect, ensure_streams
from hospital.chassis.db import Database, outbox_table
from hospital.chassis.migrations import install_chassis_schema
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.platform.v1.platform_pb2 import ProbeSent
from hospital.testing.servers import NatsServer
from hospital.testing.waits import consumer_settled

TOTAL = 10_000
effects = Table(
    "effects",
    MetaData(),
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
    Column("value", Integer, nullable=False),
)


async def effect_count(db: Database) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(effects))).scalar_one()


async def wait_until(db: Database, n: int, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await effect_count(db) < n:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {await effect_count(db)} effects after {timeout}s (wanted ≥ {n})")
        await asyncio.sleep(0.1)


def start_consumer(db_url: str, nats_url: str, subject: str, durable: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("consumer_process.py")),
            db_url,
            nats_url,
            subject,
            durable,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.slow
async def test_no_loss_no_double_effect_under_crashes(pg_server, tmp_path) -> None:
    db_url = await pg_server.create_database(f"chaos_{uuid.uuid4().hex[:8]}")
    db = Database(db_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(install_chassis_schema)
        await conn.run_sync(effects.metadata.create_all)
    nats = NatsServer(tmp_path / "nats").start()
    subject, durable = "platform.probe.chaos", "chaos"
    nc = await connect(nats.url, "chaos-producer")
    js = nc.jetstream()
    await ensure_streams(js)
    relay = OutboxRelay(db, js, batch_size=500, poll_seconds=0.05, publish_timeout=2.0)
    stop = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop))
    consumer = start_consumer(db_url, nats.url, subject, durable)

    async def produce() -> None:
        for start in range(0, TOTAL, 100):
            async with UnitOfWork(db, source="chaos", on_commit=relay.notify) as uow:
                for i in range(start, start + 100):
                    uow.publish(subject, ProbeSent(probe_id="chaos", sequence=i))
                await uow.commit()
            await asyncio.sleep(0.01)

    producer = asyncio.create_task(produce())
    try:
        await wait_until(db, 1_500, 60)
        nats.kill()  # crash 1
        await asyncio.sleep(1.0)
        nats.start()
        await wait_until(db, 4_000, 90)
        consumer.kill()  # the consumer process dies mid-batch
        consumer.wait()
        await asyncio.sleep(0.5)
        consumer = start_consumer(db_url, nats.url, subject, durable)
        await wait_until(db, 6_500, 90)
        nats.kill()  # crash 2
        await asyncio.sleep(1.0)
        nats.start()
        await producer
        await wait_until(db, TOTAL, 120)
        # every delivery acknowledged: no redelivery can add an effect after this
        await consumer_settled(js, "PLATFORM", durable, timeout=60)
        async with db.session() as s:
            rows = (
                await s.execute(
                    select(
                        func.count(),
                        func.count(effects.c.event_id.distinct()),
                        func.count(effects.c.value.distinct()),
                    )
                )
            ).one()
            unpublished = (
                await s.execute(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar_one()
        assert tuple(rows) == (TOTAL, TOTAL, TOTAL)
        assert unpublished == 0
    finally:
        stop.set()
        await asyncio.wait_for(relay_task, 10)
        consumer.terminate()
        consumer.wait(10)
        await nc.close()
        nats.stop()
        await db.dispose()
