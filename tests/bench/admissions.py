"""Admissions benchmark on PostgreSQL with 1,000,000 generated patients (realistic Vietnamese names with
diacritics, CCCD, BHYT cards): search latency over HTTP by unaccented name prefix, CCCD and BHYT number
(p50/p95/p99; one client, every search audited as in production), then registration throughput with 50
concurrent clients. The service runs as its own process (`python -m hospital.admissions serve`)."""
from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import httpx

from hospital.admissions.domain.names import fold
from hospital.admissions.service import DEFINITION
from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.chassis.security import DevIssuer
from hospital.testing.servers import NatsServer, PostgresServer, free_port

PATIENTS = int(os.environ.get("BENCH_PATIENTS", "1000000"))
SURNAMES = [("Nguyễn", 38), ("Trần", 11), ("Lê", 9), ("Phạm", 7), ("Hoàng", 4), ("Huỳnh", 3), ("Phan", 4),
            ("Vũ", 3), ("Võ", 3), ("Đặng", 2), ("Bùi", 2), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3),
            ("Dương", 1), ("Lý", 0.5), ("Đinh", 0.8), ("Trịnh", 0.6), ("Mai", 0.5), ("Lâm", 0.4), ("Cao", 0.4),
            ("Tạ", 0.3), ("Lò", 0.2), ("H'", 0.1)]
MIDDLE_M = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Xuân", "Ngọc", "Trọng", "Quang", "Anh",
            "Tiến", "Đình", "Mạnh", "Duy"]
MIDDLE_F = ["Thị", "Thu", "Ngọc", "Thanh", "Minh", "Hồng", "Kim", "Bích", "Phương", "Thùy", "Mỹ", "Diệu",
            "Thị Thu", "Thị Ngọc", "Thị Kim"]
GIVEN_M = ["An", "Anh", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hoàng", "Hùng", "Huy", "Khánh",
           "Khoa", "Kiên", "Long", "Lộc", "Minh", "Nam", "Nghĩa", "Phong", "Phúc", "Quân", "Sơn", "Tài",
           "Thắng", "Thành", "Thịnh", "Toàn", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ", "Ân", "Bảo"]
GIVEN_F = ["An", "Anh", "Chi", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng", "Hiền", "Hoa", "Hồng",
           "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhung",
           "Oanh", "Phương", "Quỳnh", "Tâm", "Thảo", "Thủy", "Trang", "Trinh", "Tuyết", "Uyên", "Vân", "Yến"]
GROUPS = [("DN", 4), ("HC", 4), ("HT", 2), ("TE", 1), ("HS", 4), ("GD", 4), ("CN", 1), ("XN", 3), ("HN", 1)]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": round(statistics.median(ms), 2), "p95": round(pct(ms, 95), 2),
            "p99": round(pct(ms, 99), 2), "max": round(max(ms), 2)}


def generate(n: int, rng: random.Random) -> tuple[list[tuple], list[tuple]]:
    surnames, weights = zip(*SURNAMES)
    folded = {w: fold(w) for w in {*surnames, *MIDDLE_M, *MIDDLE_F, *GIVEN_M, *GIVEN_F}}
    now = datetime.now(timezone.utc)
    people, cards = [], []
    for i in range(n):
        male = rng.random() < 0.5
        parts = [rng.choices(surnames, weights)[0], rng.choice(MIDDLE_M if male else MIDDLE_F),
                 rng.choice(GIVEN_M if male else GIVEN_F)]
        year = rng.randint(1930, 2025)
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        prov = rng.randint(1, 96)
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        cccd = f"{prov:03d}{(0 if year < 2000 else 2) + (0 if male else 1)}{year % 100:02d}{i:06d}"[-12:]
        people.append((pid, f"BN{i:09d}", " ".join(parts), " ".join(folded[p] for p in parts), year, month, day,
                       "male" if male else "female", cccd, f"09{rng.randint(0, 99_999_999):08d}", now, now))
        if rng.random() < 0.9:  # ~90% of Vietnamese are insured
            g, lvl = rng.choice(GROUPS)
            cards.append((str(uuid.UUID(int=rng.getrandbits(128), version=4)), pid, f"{g}{lvl}{prov % 100:02d}{i:010d}",
                          lvl, {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}[lvl], f"{prov % 100:02d}", now))
    return people, cards


async def load(url: str, n: int) -> dict[str, float]:
    rng = random.Random(42)
    t = time.time()
    people, cards = generate(n, rng)
    t_gen = time.time() - t
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        idx = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
                               "('patients','insurance_cards') AND indexname NOT LIKE '%pkey'")
        for r in idx:
            if "UNIQUE" not in r["indexdef"] or r["indexname"].startswith("ix_"):
                await conn.execute(f'DROP INDEX "{r["indexname"]}"')
        t = time.time()
        await conn.copy_records_to_table("patients", records=people, columns=[
            "id", "patient_code", "full_name", "name_folded", "birth_year", "birth_month", "birth_day", "sex",
            "cccd", "phone", "created_at", "updated_at"])
        await conn.copy_records_to_table("insurance_cards", records=cards, columns=[
            "id", "patient_id", "number", "benefit_level", "benefit_rate", "province_code", "created_at"])
        t_copy = time.time() - t
        t = time.time()
        for r in idx:
            if "UNIQUE" not in r["indexdef"] or r["indexname"].startswith("ix_"):
                await conn.execute(r["indexdef"])
        await conn.execute("ANALYZE")
        t_index = time.time() - t
    finally:
        await conn.close()
    return {"generate_s": round(t_gen, 1), "copy_s": round(t_copy, 1), "index_s": round(t_index, 1),
            "patients": len(people), "cards": len(cards)}


async def main() -> dict:
    base = Path(tempfile.mkdtemp(prefix="hospital-bench-adm-"))
    base.chmod(0o755)
    pg = PostgresServer(base / "pg").start()
    nats = NatsServer(base / "nats").start()
    proc = None
    try:
        url = await pg.create_database("admissions")
        db = Database(url)
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        await db.dispose()
        loaded = await load(url, PATIENTS)
        port = free_port()
        env = dict(os.environ, HOSPITAL_DATA_DIR=str(base), HOSPITAL_ADMISSIONS_DATABASE_URL=url,
                   HOSPITAL_NATS_URL=nats.url, HOSPITAL_ADMISSIONS_HTTP_PORT=str(port),
                   HOSPITAL_ADMISSIONS_GRPC_PORT=str(free_port()), HOSPITAL_LOG_LEVEL="WARNING",
                   HOSPITAL_ADMISSIONS_DATABASE_POOL_SIZE="30")
        proc = subprocess.Popen([sys.executable, "-m", "hospital.admissions", "serve", "--processes", "2"], env=env)
        token = DevIssuer(base / "auth", "https://auth.hospital.local/dev", "hospital").mint_for_role("receptionist")
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            for _ in range(200):
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            rng = random.Random(7)
            sample = await _sample(url, rng)
            results: dict[str, dict] = {}
            for kind, queries in sample.items():
                for q in queries[:20]:  # warm-up
                    await c.get("/api/v1/patients", params={"q": q})
                ms, hits = [], 0
                for q in queries:
                    t = time.perf_counter()
                    r = await c.get("/api/v1/patients", params={"q": q})
                    ms.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                    hits += bool(r.json()["items"])
                results[kind] = {**summary(ms), "found": hits}
            registration = await _register(c, rng)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        nats.stop()
        pg.stop()
    return {"benchmark": "admissions", "database": "postgresql", "load": loaded, "search_ms": results,
            "registration": registration,
            "method": "HTTP GET /api/v1/patients?q= from one client, sequential, after 20 warm-up queries; "
                      "every search also appends an audit record (as in production)"}


async def _sample(url: str, rng: random.Random) -> dict[str, list[str]]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch("SELECT p.name_folded, p.cccd, c.number FROM patients p TABLESAMPLE SYSTEM (1) "
                                "LEFT JOIN insurance_cards c ON c.patient_id = p.id LIMIT 3000")
    finally:
        await conn.close()
    rows = list(rows)
    rng.shuffle(rows)
    names = []
    for r in rows[:500]:
        words = r["name_folded"].split()
        cut = rng.choice([len(words) - 1, len(words)])  # "nguyen van h" or "nguyen van hung"
        last = words[cut - 1] if cut == len(words) else words[cut][: rng.randint(1, max(1, len(words[cut]) - 1))]
        names.append(" ".join(words[: cut - 1] + [last]) if cut == len(words) else " ".join(words[:cut] + [last]))
    return {"name_prefix_unaccented": names, "cccd": [r["cccd"] for r in rows[:500]],
            "bhyt": [r["number"] for r in rows[:1000] if r["number"]][:500]}


async def _register(c: httpx.AsyncClient, rng: random.Random, clients: int = 50, seconds: float = 15.0) -> dict:
    ms: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            male = rng.random() < 0.5
            body = {"full_name": f"{rng.choice(['Nguyễn', 'Trần', 'Lê'])} {'Văn' if male else 'Thị'} "
                                 f"{rng.choice(GIVEN_M if male else GIVEN_F)}",
                    "birth_date": f"{rng.randint(1940, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    "sex": "male" if male else "female", "phone": f"08{rng.randint(0, 99_999_999):08d}"}
            t = time.perf_counter()
            r = await c.post("/api/v1/patients", json=body)
            ms.append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 201

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    return {"clients": clients, "seconds": round(elapsed, 1), "registrations": len(ms), "errors": errors,
            "per_second": round(len(ms) / elapsed, 1), "latency_ms": summary(ms)}
