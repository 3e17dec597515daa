"""A consumer in its own OS process, so a test can kill it with SIGKILL mid-batch.

    python consumer_process.py DB_URL NATS_URL SUBJECT DURABLE
Each ProbeSent event inserts one row into ``effects`` (no unique key: a double effect shows).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from hospital.chassis import aio
from hospital.chassis.bus import Consumer, Subscription, connect, ensure_streams

effects = Table(
    "effects",
    MetaData(),
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
    Column("value", Integer, nullable=False),
)


async def apply(session, ev) -> None:
    await session.execute(insert(effects).values(event_id=ev.id, value=ev.message().sequence))


async def main(db_url: str, nats_url: str, subject: str, durable: str) -> None:
    from hospital.chassis.db import Database
    from hospital.contracts.platform.v1 import platform_pb2  # noqa: F401 - registers the event type

    db = Database(db_url)
    nc = await connect(nats_url, "chaos-consumer")
    js = nc.jetstream()
    await ensure_streams(js)
    consumer = Consumer(
        db,
        js,
        Subscription("PLATFORM", durable, {subject: apply}),
        service="chaos",
        batch_size=200,
        ack_wait=3.0,
        max_deliver=1000,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await consumer.run(stop)


if __name__ == "__main__":
    aio.run(main(*sys.argv[1:5]))
