"""Event pipeline benchmark on PostgreSQL: producer commit → outbox relay → JetStream → consumer
effect committed (a separate process). Reports events/s and commit-to-effect latency p50/p95/p99.

Each run has 8 concurrent producers in one process (a service's API process with requests in flight) and
the consumer in another; the relay runs in the producers' process (``serve`` with its worker, the default)
unless a run says otherwise. Runs: ``throughput`` (as fast as the producers can commit, 10 events per
transaction), ``paced`` (5,000 events/s offered in transactions of 5 events: the latency a clinician's
action sees under that load), ``paced_relay_in_worker`` (the same with the relay in its own process, the
service's ``worker``, woken over core NATS by the producers' commits) and ``paced_2_per_transaction`` /
``paced_10_per_transaction`` (5,000 events/s in smaller and larger transactions). Each run starts on a
fresh database and consumer process and first warms up (0.5 s of its load, not measured) so that its
figures are the steady state's, not the first connections' and prepared statements'.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from hospital.chassis import aio, telemetry
from hospital.chassis.bus import OutboxRelay, connect, ensure_streams
from hospital.chassis.db import Database
from hospital.chassis.migrations import install_chassis_schema
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.platform.v1.platform_pb2 import ProbeSent
from hospital.testing.servers import NatsServer, PostgresServer
from tests.bench.cpu import cpu_seconds, pct, postmaster_pid, tree_cpu

HERE = Path(__file__).parent
effects = Table(
    "effects",
    MetaData(),
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),
    Column("value", Integer, nullable=False),
)


async def one_run(
    pg: PostgresServer,
    nats: NatsServer,
    *,
    total: int,
    per_tx: int,
    rate: float | None,
    producers: int = 8,
    payload_bytes: int = 200,
    relay_in_process: bool = False,
) -> dict:
    # Each run warms up first (0.5 s of the same load, or 2,000 events unpaced, not measured): a fresh
    # database, connection pools that connect, statements prepared, a consumer process just started.
    warmup = (int(rate / 2) if rate else 2_000) // per_tx * per_tx
    expected = total + warmup  # the warm-up's sequence numbers follow the measured ones
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await pg.create_database(name)
    db_url = pg.socket_url(name)  # producer, relay and consumer run on the database's host
    db = Database(db_url, pool_size=producers + 2)
    async with db.engine.begin() as conn:
        await conn.run_sync(install_chassis_schema)
        await conn.run_sync(effects.metadata.create_all)
    subject = f"platform.probe.b{uuid.uuid4().hex[:8]}"
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    consumer = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "pipeline_consumer.py"),
            db_url,
            nats.url,
            subject,
            f"bench-{subject.rsplit('.', 1)[1]}",
            str(expected),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert consumer.stdout is not None and consumer.stdout.readline().strip() == "ready"
    nc = await connect(nats.url, "bench-producer")
    js = nc.jetstream()
    await ensure_streams(js)
    wake_subject = f"_HOSPITAL.outbox.bench{subject.rsplit('.', 1)[1]}"
    # The producing service's API process: its commits wake the relay, which runs here (relay_in_process)
    # or, as in production, in the service's worker process (woken over core NATS).
    relay = OutboxRelay(db, js, batch_size=1000, poll_seconds=0.2, wake_subject=wake_subject)
    stop = asyncio.Event()
    relay_proc = None
    if relay_in_process:
        relay_task = asyncio.create_task(relay.run(stop))
    else:
        relay_proc = subprocess.Popen(
            [sys.executable, str(HERE / "pipeline_relay.py"), db_url, nats.url, wake_subject, str(expected)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert relay_proc.stdout is not None and relay_proc.stdout.readline().strip() == "ready"
    committed_at: dict[int, float] = {}
    padding = b"x" * payload_bytes

    async def produce(first: int, count: int) -> None:
        """``producers`` concurrent writers (a service has many requests in flight) commit events
        ``first .. first+count-1``, ``per_tx`` per transaction, paced to ``rate`` if given."""
        start = time.time()
        queue = deque(range(first, first + count, per_tx))

        async def producer() -> None:
            while queue:
                k = queue.popleft()
                if rate:
                    delay = start + (k - first) / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                async with UnitOfWork(db, source="bench", on_commit=relay.notify) as uow:
                    for i in range(k, min(k + per_tx, first + count)):
                        uow.publish(subject, ProbeSent(probe_id="bench", sequence=i, padding=padding))
                    await uow.commit()
                now = time.time()
                for i in range(k, min(k + per_tx, first + count)):
                    committed_at[i] = now

        await asyncio.gather(*(producer() for _ in range(producers)))

    await produce(total, warmup)
    async with db.engine.connect() as conn:  # the warm-up applied by the consumer
        while (await conn.execute(select(func.count()).select_from(effects))).scalar_one() < warmup:
            await asyncio.sleep(0.02)
    pg_pid, nats_pid = postmaster_pid(pg.data_dir / "pgdata"), nats.proc.pid
    cpu0, ccpu0 = cpu_seconds(os.getpid()), cpu_seconds(consumer.pid)
    pg0, nats0 = tree_cpu(pg_pid), cpu_seconds(nats_pid)
    rcpu0 = cpu_seconds(relay_proc.pid) if relay_proc else 0.0
    t0 = time.time()
    await produce(0, total)
    producer_done = time.time()
    while len(committed_at) < expected or (relay_in_process and relay.published_total < expected):
        await asyncio.sleep(0.01)
    cpu_producer = cpu_seconds(os.getpid()) - cpu0
    ccpu, rcpu = ccpu0, rcpu0
    while consumer.poll() is None or (relay_proc is not None and relay_proc.poll() is None):
        if consumer.poll() is None:
            ccpu = cpu_seconds(consumer.pid)
        if relay_proc is not None and relay_proc.poll() is None:
            rcpu = cpu_seconds(relay_proc.pid)
        await asyncio.sleep(0.05)
    cpu_consumer, cpu_relay = ccpu - ccpu0, rcpu - rcpu0
    cpu_pg, cpu_nats = tree_cpu(pg_pid) - pg0, cpu_seconds(nats_pid) - nats0
    stop.set()
    if relay_in_process:
        await relay_task
    await nc.close()
    await db.dispose()
    done = {int(k): v for k, v in json.loads(out.read_text()).items()}
    out.unlink()
    latencies_ms = [(done[i] - committed_at[i]) * 1000 for i in range(total)]
    elapsed = max(done[i] for i in range(total)) - t0
    return {
        "events": total,
        "warm_up_events": warmup,
        "events_per_transaction": per_tx,
        "offered_rate": rate,
        "producers": producers,
        "payload_bytes": payload_bytes,
        "producer_seconds": round(producer_done - t0, 3),
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(total / elapsed, 1),
        "relay": "in the producers' process" if relay_in_process else "own process (worker)",
        "cpu_us_per_event": {
            "producer" + ("_and_relay" if relay_in_process else ""): round(cpu_producer / total * 1e6, 1),
            **({} if relay_in_process else {"relay": round(cpu_relay / total * 1e6, 1)}),
            "consumer": round(cpu_consumer / total * 1e6, 1),
            "postgresql": round(cpu_pg / total * 1e6, 1),
            "nats_server": round(cpu_nats / total * 1e6, 1),
        },
        "latency_ms": {
            "p50": round(statistics.median(latencies_ms), 2),
            "p95": round(pct(latencies_ms, 95), 2),
            "p99": round(pct(latencies_ms, 99), 2),
            "max": round(max(latencies_ms), 2),
        },
    }


async def main() -> dict:
    telemetry.setup_telemetry("bench", "none")  # metrics on, no span exporter: as a service process
    base = Path(tempfile.mkdtemp(prefix="hospital-bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    pg = PostgresServer(base / "pg").start()
    nats = NatsServer(base / "nats").start()
    try:
        await one_run(pg, nats, total=2_000, per_tx=10, rate=None, relay_in_process=True)  # warm-up
        out = {
            "throughput": await one_run(pg, nats, total=50_000, per_tx=10, rate=None, relay_in_process=True),
            "paced": await one_run(pg, nats, total=30_000, per_tx=5, rate=5_000, relay_in_process=True),
        }
        # the same offered load with the relay in the service's worker process, then other transaction sizes
        out["paced_relay_in_worker"] = await one_run(pg, nats, total=30_000, per_tx=5, rate=5_000)
        for per_tx in (2, 10):
            out[f"paced_{per_tx}_per_transaction"] = await one_run(
                pg, nats, total=30_000, per_tx=per_tx, rate=5_000, relay_in_process=True
            )
    finally:
        nats.stop()
        pg.stop()
    return {"benchmark": "event_pipeline", "database": "postgresql", **out}


if __name__ == "__main__":
    print(json.dumps(aio.run(main()), indent=2))
