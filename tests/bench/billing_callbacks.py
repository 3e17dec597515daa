"""Billing callback benchmark on PostgreSQL: signed VNPay IPNs per second against the real running
service (``python -m hospital.billing serve`` in its own process, relay and consumers on), sent by 50
concurrent senders with duplicates mixed in (providers retry). Reports callbacks/s and latency
p50/p95/p99, and asserts that no invoice was paid twice.

Invoices are seeded straight into the database (issued, one per transaction); each unique callback pays
one invoice, and ~25% of the requests are re-deliveries of a callback already sent or in flight.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import httpx
from sqlalchemy import func, select

from hospital.billing.adapters.tables import invoices, payments, provider_callbacks, visits
from hospital.billing.service import DEFINITION
from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.testing.servers import NatsServer, PostgresServer, free_port

SECRET = "bench-vnpay-hash-secret-5e1d"
SENDERS = int(os.environ.get("BENCH_SENDERS", "50"))
UNIQUE = int(os.environ.get("BENCH_CALLBACKS", "6000"))
DUPLICATE_SHARE = 0.25
AMOUNT = 86_000


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def signed(number: str, txn: str) -> dict[str, str]:
    params = {"vnp_TmnCode": "BENCH001", "vnp_Amount": str(AMOUNT * 100), "vnp_BankCode": "NCB",
              "vnp_OrderInfo": f"Thanh toan vien phi {number}", "vnp_PayDate": "20240802103000",
              "vnp_ResponseCode": "00", "vnp_TransactionStatus": "00", "vnp_TransactionNo": txn,
              "vnp_TxnRef": number}
    data = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(params.items()))
    params["vnp_SecureHash"] = hmac.new(SECRET.encode(), data.encode(), hashlib.sha512).hexdigest()
    return params


async def seed(db: Database, n: int) -> list[str]:
    now = datetime.now(UTC)
    numbers = [f"HD{i:06d}" for i in range(1, n + 1)]
    vrows, irows = [], []
    for number in numbers:
        vid = str(uuid.uuid4())
        vrows.append(dict(id=vid, visit_code=f"KB{number}", patient_id=vid, patient_code="BN0000001",
                          patient_name="Nguyễn Văn An", sex=1, cccd="", kind="fee_paying", department_code="NTH",
                          inpatient=False, status="open", opened_at=now))
        irows.append(dict(id=str(uuid.uuid4()), number=number, visit_id=vid, patient_id=vid, status="issued",
                          total_amount=AMOUNT, insurance_amount=0, patient_amount=AMOUNT, paid_amount=0,
                          refunded_amount=0, created_at=now, issued_at=now, voided_at=None))
    async with db.session() as s, s.begin():
        await s.execute(visits.insert(), vrows)
        await s.execute(invoices.insert(), irows)
    return numbers


async def main() -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    pg_base = Path(tempfile.mkdtemp(prefix="hospital-pg-"))  # outside base: postgres must reach it
    pg = PostgresServer(pg_base).start()
    nats_srv = NatsServer(base / "nats").start()
    proc = None
    try:
        url = await pg.create_database(f"bench_{uuid.uuid4().hex[:8]}")
        db = Database(url)
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        numbers = await seed(db, UNIQUE)
        port = free_port()
        env = dict(os.environ, HOSPITAL_BILLING_DATABASE_URL=url, HOSPITAL_NATS_URL=nats_srv.url,
                   HOSPITAL_BILLING_HTTP_PORT=str(port), HOSPITAL_BILLING_GRPC_PORT=str(free_port()),
                   HOSPITAL_DATA_DIR=str(base / "var"), HOSPITAL_BILLING_VNPAY_HASH_SECRET=SECRET,
                   HOSPITAL_LOG_LEVEL="WARNING", HOSPITAL_BILLING_DATABASE_POOL_SIZE="25")
        proc = subprocess.Popen([sys.executable, "-m", "hospital.billing", "serve"], env=env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     limits=httpx.Limits(max_connections=SENDERS)) as client:
            for _ in range(300):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("billing did not start")
            unique = [signed(n, f"{14_000_000 + i}") for i, n in enumerate(numbers)]
            rng = random.Random(6)
            requests: list[dict[str, str]] = []
            for i, params in enumerate(unique):  # a duplicate re-sends a recent callback (maybe still in flight)
                requests.append(params)
                if rng.random() < DUPLICATE_SHARE / (1 - DUPLICATE_SHARE):
                    requests.append(unique[max(0, i - rng.randint(0, 40))])
            await client.get("/api/v1/payments/vnpay/ipn", params=unique[0])  # warm-up (its replays count)
            t = time.perf_counter()
            for _ in range(20):
                await client.get("/healthz")
            healthz_ms = (time.perf_counter() - t) / 20 * 1000
            latencies: list[float] = []
            codes: dict[str, int] = {}
            transport_errors: list[int] = []
            queue = list(reversed(requests))

            async def sender() -> None:
                while queue:
                    params = queue.pop()
                    t = time.perf_counter()
                    try:
                        r = await client.get("/api/v1/payments/vnpay/ipn", params=params)
                    except httpx.TransportError:  # a dropped connection: the provider retries
                        transport_errors.append(1)
                        queue.append(params)
                        continue
                    latencies.append(time.perf_counter() - t)
                    code = r.json()["RspCode"]
                    codes[code] = codes.get(code, 0) + 1

            t0 = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(SENDERS)))
            elapsed = time.perf_counter() - t0
        async with db.session() as s:
            n_pay = (await s.execute(select(func.count()).select_from(payments))).scalar_one()
            doubles = (await s.execute(select(func.count()).select_from(
                select(payments.c.invoice_id).group_by(payments.c.invoice_id)
                .having(func.count() > 1).subquery()))).scalar_one()
            overpaid = (await s.execute(select(func.count()).select_from(invoices).where(
                invoices.c.paid_amount > invoices.c.patient_amount))).scalar_one()
            n_cb = (await s.execute(select(func.count()).select_from(provider_callbacks))).scalar_one()
        await db.dispose()
        assert doubles == 0 and overpaid == 0, f"double payments: {doubles}, overpaid invoices: {overpaid}"
        assert n_pay == UNIQUE == n_cb, (n_pay, n_cb, UNIQUE)
        assert codes == {"00": len(requests)}, codes  # retried deliveries answered 00 too
        return {
            "benchmark": "billing_callbacks",
            "description": "signed VNPay IPNs against `python -m hospital.billing serve` on PostgreSQL, "
                           f"{SENDERS} concurrent senders, duplicates mixed in",
            "requests": len(requests), "unique_callbacks": UNIQUE, "duplicates": len(requests) - UNIQUE,
            "seconds": round(elapsed, 2), "callbacks_per_second": round(len(requests) / elapsed, 1),
            "latency_ms": {"p50": round(pct(latencies, 50) * 1000, 2), "p95": round(pct(latencies, 95) * 1000, 2),
                           "p99": round(pct(latencies, 99) * 1000, 2), "max": round(max(latencies) * 1000, 2)},
            "dropped_connections_retried": len(transport_errors), "healthz_ms_sequential": round(healthz_ms, 2), "payments": n_pay, "double_payments": doubles, "goal": {"callbacks_per_second": 1000, "p99_ms": 50},
        }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats_srv.stop()
        pg.stop()


if __name__ == "__main__":
    import json
    print(json.dumps(asyncio.run(main()), indent=2))
