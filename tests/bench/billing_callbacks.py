"""Billing callback benchmark on PostgreSQL: signed VNPay IPNs per second against the real running
service (``python -m hospital.billing serve --processes N`` in its own processes, relay and consumers
on), sent by 50 concurrent senders with duplicates mixed in (providers retry), twice: closed loop (each
sender sends again as soon as it is answered: the most the service takes) and open loop (1,000
callbacks/s offered, the goal's rate: the latency a bank sees at that load). Reports callbacks/s,
latency p50/p95/p99, the CPU spent per callback by the service, PostgreSQL and the load generator
(from /proc/<pid>/stat: robust to other jobs on the machine), database transactions per callback, and
asserts that no invoice was paid twice.

Invoices are seeded straight into the database (issued, one per transaction); each unique callback pays
one invoice, and ~25% of the requests are re-deliveries of a callback already sent or in flight.

The load generator runs in its own process (``--loadgen``) and speaks HTTP/1.1 keep-alive over raw
asyncio streams, one connection per sender: an httpx client costs more CPU per request than the
service's own callback path and, on a small machine, would starve the service it measures.

    BENCH_CALLBACKS=24000 BENCH_SENDERS=50 BENCH_PROCESSES=2 python tests/bench/run.py billing_callbacks
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus, urlencode

from hospital.chassis import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also run as a script (--loadgen)
from tests.bench.cpu import children, cpu_seconds, listeners, pct, tree_cpu

SECRET = "bench-vnpay-hash-secret-5e1d"
SENDERS = int(os.environ.get("BENCH_SENDERS", "50"))
UNIQUE = int(os.environ.get("BENCH_CALLBACKS", "24000"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "2"))
DUPLICATE_SHARE = 0.25
RATE = int(os.environ.get("BENCH_RATE", "1000"))  # the open-loop run offers the goal's rate
AMOUNT = 86_000


def signed(number: str, txn: str) -> dict[str, str]:
    params = {
        "vnp_TmnCode": "BENCH001",
        "vnp_Amount": str(AMOUNT * 100),
        "vnp_BankCode": "NCB",
        "vnp_OrderInfo": f"Thanh toan vien phi {number}",
        "vnp_PayDate": "20240802103000",
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TransactionNo": txn,
        "vnp_TxnRef": number,
    }
    data = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(params.items()))
    params["vnp_SecureHash"] = hmac.new(SECRET.encode(), data.encode(), hashlib.sha512).hexdigest()
    return params


# ---------------------------------------------------------------------------------------- load generator
async def _sender(
    host: str, port: int, queue: list[tuple[int, str]], out: dict, t0: float, rate: float
) -> None:
    reader = writer = None
    while queue:
        index, target = queue.pop()
        req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode()
        if (
            rate
        ):  # open loop: request i is due at t0 + i/rate; latency counts from then (a late sender's wait too)
            due = t0 + index / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            t = due
        else:
            t = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            out["dropped"] += 1  # a dropped connection: the provider retries
            queue.append((index, target))
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        out["latencies"].append(time.perf_counter() - t)
        status = int(head.split(b" ", 2)[1])
        code = json.loads(body)["RspCode"] if status == 200 else f"http {status}"
        out["codes"][code] = out["codes"].get(code, 0) + 1
    if writer is not None:
        writer.close()


async def loadgen(host: str, port: int, targets: list[str], senders: int, rate: float = 0.0) -> dict:
    """Closed loop (``rate`` 0: each sender sends its next callback as soon as it has an answer) or open
    loop (``rate`` callbacks/s offered in all, spread over the senders, as banks deliver them)."""
    queue = list(reversed(list(enumerate(targets))))
    out: dict = {"latencies": [], "codes": {}, "dropped": 0}
    c0 = os.times()
    t0 = time.perf_counter() + 0.05
    await asyncio.gather(*(_sender(host, port, queue, out, t0, rate) for _ in range(senders)))
    out["seconds"] = time.perf_counter() - t0
    c1 = os.times()
    out["cpu_seconds"] = (c1.user - c0.user) + (c1.system - c0.system)
    return out


def _loadgen_main(argv: list[str]) -> None:
    port, senders, infile, outfile, rate = int(argv[0]), int(argv[1]), argv[2], argv[3], float(argv[4])
    targets = json.loads(Path(infile).read_text())
    print("ready", flush=True)
    sys.stdin.readline()  # go
    result = aio.run(loadgen("127.0.0.1", port, targets, senders, rate))
    Path(outfile).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------- the benchmark
async def seed(db, n: int) -> list[str]:
    from hospital.billing.adapters.tables import invoices, visits

    now = datetime.now(UTC)
    numbers = [f"HD{i:06d}" for i in range(1, n + 1)]
    vrows, irows = [], []
    for number in numbers:
        vid = str(uuid.uuid4())
        vrows.append(
            dict(
                id=vid,
                visit_code=f"KB{number}",
                patient_id=vid,
                patient_code="BN0000001",
                patient_name="Nguyễn Văn An",
                sex=1,
                cccd="",
                kind="fee_paying",
                department_code="NTH",
                inpatient=False,
                status="open",
                opened_at=now,
            )
        )
        irows.append(
            dict(
                id=str(uuid.uuid4()),
                number=number,
                visit_id=vid,
                patient_id=vid,
                status="issued",
                total_amount=AMOUNT,
                insurance_amount=0,
                patient_amount=AMOUNT,
                paid_amount=0,
                refunded_amount=0,
                created_at=now,
                issued_at=now,
                voided_at=None,
            )
        )
    async with db.session() as s, s.begin():
        await s.execute(visits.insert(), vrows)
        await s.execute(invoices.insert(), irows)
    return numbers


async def main() -> dict:
    import httpx
    from sqlalchemy import func, select, text

    from hospital.billing.adapters.tables import invoices, payments, provider_callbacks
    from hospital.billing.service import DEFINITION
    from hospital.chassis.db import Database, outbox_table
    from hospital.chassis.migrations import upgrade
    from hospital.testing.servers import NatsServer, PostgresServer, free_port

    base = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    pg_base = Path(tempfile.mkdtemp(prefix="hospital-pg-"))  # outside base: postgres must reach it
    pg = PostgresServer(pg_base).start()
    nats_srv = NatsServer(base / "nats").start()
    proc = gen = None
    try:
        dbname = f"bench_{uuid.uuid4().hex[:8]}"
        await pg.create_database(dbname)
        url = pg.socket_url(dbname)  # the service runs on the database's host
        db = Database(url)
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        numbers = await seed(db, 2 * UNIQUE)  # one half per run: closed loop, then open loop at the goal rate
        port = free_port()
        env = dict(
            os.environ,
            HOSPITAL_BILLING_DATABASE_URL=url,
            HOSPITAL_NATS_URL=nats_srv.url,
            HOSPITAL_BILLING_HTTP_PORT=str(port),
            HOSPITAL_BILLING_GRPC_PORT=str(free_port()),
            HOSPITAL_DATA_DIR=str(base / "var"),
            HOSPITAL_BILLING_VNPAY_HASH_SECRET=SECRET,
            HOSPITAL_LOG_LEVEL="WARNING",
            HOSPITAL_BILLING_DATABASE_POOL_SIZE="25",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "hospital.billing", "serve", "--processes", str(PROCESSES)], env=env
        )
        path = "/api/v1/payments/vnpay/ipn"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(300):
                try:
                    if listeners(port) >= PROCESSES and (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("billing did not start")
            rng = random.Random(6)

            def plan(part: list[str], offset: int) -> list[dict[str, str]]:
                unique = [signed(n, f"{14_000_000 + offset + i}") for i, n in enumerate(part)]
                requests: list[dict[str, str]] = []
                for i, params in enumerate(
                    unique
                ):  # a duplicate re-sends a recent callback (maybe in flight)
                    requests.append(params)
                    if rng.random() < DUPLICATE_SHARE / (1 - DUPLICATE_SHARE):
                        requests.append(unique[max(0, i - rng.randint(0, 40))])
                return requests

            plans = {
                "closed_loop": (plan(numbers[:UNIQUE], 0), 0.0),
                "open_loop": (plan(numbers[UNIQUE:], UNIQUE), float(RATE)),
            }
            await client.get(path, params=plans["closed_loop"][0][0])  # warm-up (its replays count)
            t = time.perf_counter()
            for _ in range(20):
                await client.get("/healthz")
            healthz_ms = (time.perf_counter() - t) / 20 * 1000
            for _ in range(4 * PROCESSES):  # warm every serve process (new connections spread over them)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                    await c.get("/healthz")

        pg_pid = int((pg_base / "pgdata" / "postmaster.pid").read_text().split()[0])
        service_pids = [proc.pid, *children(proc.pid)]

        async def xacts() -> int:
            async with db.session() as s:
                return int(
                    (
                        await s.execute(
                            text(
                                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"
                            ),
                            {"d": dbname},
                        )
                    ).scalar_one()
                )

        async def run(name: str, requests: list[dict[str, str]], rate: float) -> dict:
            nonlocal gen
            targets = [f"{path}?{urlencode(p)}" for p in requests]
            infile, outfile = base / f"{name}.json", base / f"{name}-out.json"
            infile.write_text(json.dumps(targets))
            gen = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--loadgen",
                    str(port),
                    str(SENDERS),
                    str(infile),
                    str(outfile),
                    str(rate),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert gen.stdout is not None and gen.stdin is not None
            assert gen.stdout.readline().strip() == "ready"
            x0 = await xacts()
            svc0, pg0 = sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid)
            gen.stdin.write("go\n")
            gen.stdin.flush()
            while gen.poll() is None:
                await asyncio.sleep(0.2)
            assert gen.returncode == 0, "load generator failed"
            for _ in range(300):  # the relay's work is part of a callback's cost: wait until it has published
                async with db.session() as s:
                    left = (
                        await s.execute(
                            select(func.count())
                            .select_from(outbox_table)
                            .where(outbox_table.c.published_at.is_(None))
                        )
                    ).scalar_one()
                if not left:
                    break
                await asyncio.sleep(0.1)
            svc1, pg1 = sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid)
            x1 = await xacts()
            out = json.loads(outfile.read_text())
            latencies, codes, elapsed = out["latencies"], out["codes"], out["seconds"]
            assert codes == {"00": len(requests)}, codes  # retried deliveries answered 00 too
            n = len(requests)
            return {
                "senders": SENDERS,
                "offered_per_second": rate or "as fast as answered",
                "requests": n,
                "duplicates": n - len({r["vnp_TxnRef"] for r in requests}),
                "seconds": round(elapsed, 2),
                "callbacks_per_second": round(n / elapsed, 1),
                "latency_ms": {
                    "p50": round(pct(latencies, 50) * 1000, 2),
                    "p95": round(pct(latencies, 95) * 1000, 2),
                    "p99": round(pct(latencies, 99) * 1000, 2),
                    "max": round(max(latencies) * 1000, 2),
                },
                "cpu_ms_per_callback": {
                    "service": round((svc1 - svc0) / n * 1000, 3),
                    "postgres": round((pg1 - pg0) / n * 1000, 3),
                    "load_generator": round(out["cpu_seconds"] / n * 1000, 3),
                },
                "db_transactions_per_callback": round((x1 - x0) / n, 2),
                "dropped_connections_retried": out["dropped"],
            }

        results = {name: await run(name, reqs, rate) for name, (reqs, rate) in plans.items()}
        async with db.session() as s:
            n_pay = (await s.execute(select(func.count()).select_from(payments))).scalar_one()
            doubles = (
                await s.execute(
                    select(func.count()).select_from(
                        select(payments.c.invoice_id)
                        .group_by(payments.c.invoice_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
            ).scalar_one()
            overpaid = (
                await s.execute(
                    select(func.count())
                    .select_from(invoices)
                    .where(invoices.c.paid_amount > invoices.c.patient_amount)
                )
            ).scalar_one()
            n_cb = (await s.execute(select(func.count()).select_from(provider_callbacks))).scalar_one()
        await db.dispose()
        assert doubles == 0 and overpaid == 0, f"double payments: {doubles}, overpaid invoices: {overpaid}"
        assert n_pay == 2 * UNIQUE == n_cb, (n_pay, n_cb, UNIQUE)
        return {
            "benchmark": "billing_callbacks",
            "description": "signed VNPay IPNs against `python -m hospital.billing serve --processes "
            f"{PROCESSES}` on PostgreSQL, {SENDERS} concurrent senders (own process), "
            "duplicates mixed in; closed loop (as fast as answered) and open loop (the goal's "
            f"{RATE}/s offered, latency counted from each callback's due time)",
            "serve_processes": PROCESSES,
            **results,
            "healthz_ms_sequential": round(healthz_ms, 2),
            "payments": n_pay,
            "double_payments": doubles,
            "goal": {"callbacks_per_second": 1000, "p99_ms": 50},
        }
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats_srv.stop()
        pg.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        _loadgen_main(sys.argv[2:])
    else:
        print(json.dumps(aio.run(main()), indent=2))
