"""Benchmark relay process: the producing service's ``worker`` (outbox relay only), woken over core NATS
by the producers' commits; exits once ``expected`` events were published.

    python pipeline_relay.py DB_URL NATS_URL WAKE_SUBJECT EXPECTED
"""

from __future__ import annotations

import asyncio
import sys

from hospital.chassis import aio, telemetry
from hospital.chassis.bus import OutboxRelay, connect
from hospital.chassis.db import Database


async def main(db_url: str, nats_url: str, wake_subject: str, expected: str) -> None:
    telemetry.setup_telemetry("bench", "none")  # metrics on, no span exporter: as a service process
    db = Database(db_url, pool_size=2)
    nc = await connect(nats_url, "bench-relay")
    relay = OutboxRelay(db, nc, batch_size=1000, poll_seconds=0.2, wake_subject=wake_subject)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    while not relay.running:  # subscribed to its wake-ups before the producers start
        await asyncio.sleep(0.01)
    await nc.flush()
    print("ready", flush=True)
    while relay.published_total < int(expected):
        await asyncio.sleep(0.02)
    stop.set()
    await task
    await nc.close()
    await db.dispose()


if __name__ == "__main__":
    aio.run(main(*sys.argv[1:5]))
