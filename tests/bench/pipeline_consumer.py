"""Benchmark consumer process: applies ProbeSent events (one effect row each) and records, after each
commit, the wall-clock time per event sequence; writes them as JSON once ``expected`` were seen.

    python pipeline_consumer.py DB_URL NATS_URL SUBJECT DURABLE EXPECTED OUT_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from hospital.chassis import aio, telemetry
from hospital.chassis.bus import Consumer, Subscription, batch_handler, connect, ensure_streams
from hospital.chassis.db import Database
from hospital.contracts.platform.v1.platform_pb2 import ProbeSent

effects = Table(
    "effects",
    MetaData(),
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
    Column("value", Integer, nullable=False),
)


async def main(db_url: str, nats_url: str, subject: str, durable: str, expected: str, out: str) -> None:
    telemetry.setup_telemetry("bench", "none")  # metrics on, no span exporter: as a service process
    db = Database(db_url, pool_size=4)
    nc = await connect(nats_url, "bench-consumer")
    js = nc.jetstream()
    await ensure_streams(js)
    done_at: dict[int, float] = {}
    finished = asyncio.Event()

    @batch_handler
    async def apply(session, events) -> None:
        await session.execute(
            insert(effects),
            [{"event_id": ev.id, "value": ProbeSent.FromString(ev.payload).sequence} for ev in events],
        )

    def committed(events) -> None:
        now = time.time()
        for ev in events:
            done_at[ProbeSent.FromString(ev.payload).sequence] = now
        if len(done_at) >= int(expected):
            finished.set()

    consumer = Consumer(
        db,
        js,
        Subscription("PLATFORM", durable, {subject: apply}),
        service="bench",
        batch_size=500,
        on_committed=committed,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    print("ready", flush=True)
    await finished.wait()
    stop.set()
    await task
    with open(out, "w") as fh:
        json.dump(done_at, fh)
    await nc.close()
    await db.dispose()


if __name__ == "__main__":
    aio.run(main(*sys.argv[1:7]))
