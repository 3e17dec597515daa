"""Admissions benchmark on PostgreSQL with 1,000,000 generated patients (realistic Vietnamese names with
diacritics, CCCD, BHYT cards): search latency over HTTP by unaccented name prefix, CCCD and BHYT number
(p50/p95/p99; one client, every search audited as in production), then registration throughput with 50
concurrent clients. The service runs as its own processes (`python -m hospital.admissions serve
--processes 2`, relay on); the load comes from another process (``--loadgen``) speaking HTTP/1.1
keep-alive over raw asyncio streams (an httpx client in the benchmark's process cost more CPU per
request than the service and, on a 2-core machine, starved it).

Reported besides latency: the CPU the service processes spent per search and per registration (from
/proc/<pid>/stat, including the relay publishing each registration's event; steadier than wall-clock
figures on a shared machine), PostgreSQL's CPU and its transactions per request.

    BENCH_PATIENTS=1000000 BENCH_CLIENTS=50 BENCH_SECONDS=15 python tests/bench/run.py admissions
    BENCH_REUSE_DIR=/var/tmp/adm-bench ...   # keep the loaded cluster there and reuse it on the next run
    BENCH_PYSPY=~/.local/bin/py-spy ...      # also record py-spy profiles of the serve processes
                                             # (raw format, into bench-results/ or BENCH_PYSPY_DIR)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from hospital.chassis import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also run as a script (--loadgen)
from tests.bench.cpu import children, cpu_seconds, listeners, pct, tree_cpu

PATIENTS = int(os.environ.get("BENCH_PATIENTS", "1000000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "2"))
SEARCHES = int(os.environ.get("BENCH_SEARCHES", "500"))
RATE = float(os.environ.get("BENCH_RATE", "500"))  # the open-loop registration run offers the goal's rate
SURNAMES = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 4),
    ("Huỳnh", 3),
    ("Phan", 4),
    ("Vũ", 3),
    ("Võ", 3),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 1.4),
    ("Hồ", 1.3),
    ("Ngô", 1.3),
    ("Dương", 1),
    ("Lý", 0.5),
    ("Đinh", 0.8),
    ("Trịnh", 0.6),
    ("Mai", 0.5),
    ("Lâm", 0.4),
    ("Cao", 0.4),
    ("Tạ", 0.3),
    ("Lò", 0.2),
    ("H'", 0.1),
]
MIDDLE_M = [
    "Văn",
    "Hữu",
    "Đức",
    "Minh",
    "Quốc",
    "Thanh",
    "Công",
    "Xuân",
    "Ngọc",
    "Trọng",
    "Quang",
    "Anh",
    "Tiến",
    "Đình",
    "Mạnh",
    "Duy",
]
MIDDLE_F = [
    "Thị",
    "Thu",
    "Ngọc",
    "Thanh",
    "Minh",
    "Hồng",
    "Kim",
    "Bích",
    "Phương",
    "Thùy",
    "Mỹ",
    "Diệu",
    "Thị Thu",
    "Thị Ngọc",
    "Thị Kim",
]
GIVEN_M = [
    "An",
    "Anh",
    "Bình",
    "Cường",
    "Dũng",
    "Đạt",
    "Hải",
    "Hiếu",
    "Hoàng",
    "Hùng",
    "Huy",
    "Khánh",
    "Khoa",
    "Kiên",
    "Long",
    "Lộc",
    "Minh",
    "Nam",
    "Nghĩa",
    "Phong",
    "Phúc",
    "Quân",
    "Sơn",
    "Tài",
    "Thắng",
    "Thành",
    "Thịnh",
    "Toàn",
    "Trung",
    "Tuấn",
    "Tùng",
    "Việt",
    "Vinh",
    "Vũ",
    "Ân",
    "Bảo",
]
GIVEN_F = [
    "An",
    "Anh",
    "Chi",
    "Dung",
    "Duyên",
    "Giang",
    "Hà",
    "Hạnh",
    "Hằng",
    "Hiền",
    "Hoa",
    "Hồng",
    "Hương",
    "Huyền",
    "Lan",
    "Liên",
    "Linh",
    "Loan",
    "Mai",
    "My",
    "Nga",
    "Ngân",
    "Ngọc",
    "Nhung",
    "Oanh",
    "Phương",
    "Quỳnh",
    "Tâm",
    "Thảo",
    "Thủy",
    "Trang",
    "Trinh",
    "Tuyết",
    "Uyên",
    "Vân",
    "Yến",
]
GROUPS = [("DN", 4), ("HC", 4), ("HT", 2), ("TE", 1), ("HS", 4), ("GD", 4), ("CN", 1), ("XN", 3), ("HN", 1)]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 2),
        "p95": round(pct(ms, 95), 2),
        "p99": round(pct(ms, 99), 2),
        "max": round(max(ms), 2),
    }


# ---------------------------------------------------------------------------------------- load generator
class Conn:
    """One HTTP/1.1 keep-alive connection over raw asyncio streams (requests are prebuilt bytes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_get(path: str, token: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n".encode()


def http_post(path: str, token: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def registration_body(rng: random.Random) -> bytes:
    male = rng.random() < 0.5
    body = {
        "full_name": f"{rng.choice(['Nguyễn', 'Trần', 'Lê'])} {'Văn' if male else 'Thị'} "
        f"{rng.choice(GIVEN_M if male else GIVEN_F)}",
        "birth_date": f"{rng.randint(1940, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "sex": "male" if male else "female",
        "phone": f"08{rng.randint(0, 99_999_999):08d}",
    }
    return json.dumps(body, ensure_ascii=False).encode()


async def _search_load(port: int, token: str, queries: dict[str, list[str]]) -> dict:
    conn = Conn(port)
    out: dict = {}
    for kind, qs in queries.items():
        ms, found, bad = [], 0, []
        for q in qs:
            raw = http_get("/api/v1/patients?" + urlencode({"q": q}), token)
            t = time.perf_counter()
            status, body = await conn.request(raw)
            ms.append((time.perf_counter() - t) * 1000)
            if status != 200:
                bad.append(body.decode()[:300])
            else:
                found += not body.startswith(b'{"items":[]')
        out[kind] = {"ms": ms, "found": found, "errors": bad}
    conn.close()
    return out


async def _register_load(
    port: int, token: str, clients: int, seconds: float, seed: int, rate: float = 0.0
) -> dict:
    """Closed loop (``rate`` 0: each client posts again as soon as it is answered) or open loop (``rate``
    registrations/s offered in all; each counts its latency from the moment it was due)."""
    rng = random.Random(seed)
    ms: list[float] = []
    codes: dict[str, int] = {}
    sample_error: list[str] = []
    t0 = time.perf_counter() + 0.05
    deadline = t0 + seconds
    issued = [0]

    async def client() -> None:
        conn = Conn(port)
        while time.perf_counter() < deadline:
            raw = http_post("/api/v1/patients", token, registration_body(rng))
            if rate:
                due = t0 + issued[0] / rate
                issued[0] += 1
                if due >= deadline:
                    break
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                t = due
            else:
                t = time.perf_counter()
            status, body = await conn.request(raw)
            ms.append((time.perf_counter() - t) * 1000)
            codes[str(status)] = codes.get(str(status), 0) + 1
            if status != 201 and not sample_error:
                sample_error.append(body.decode()[:300])
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"ms": ms, "codes": codes, "seconds": time.perf_counter() - started, "sample_error": sample_error}


def _loadgen_main(argv: list[str]) -> None:
    job = json.loads(Path(argv[0]).read_text())
    print("ready", flush=True)
    sys.stdin.readline()  # go
    c0 = os.times()
    if job["kind"] == "search":
        result = aio.run(_search_load(job["port"], job["token"], job["queries"]))
    else:
        result = aio.run(
            _register_load(
                job["port"], job["token"], job["clients"], job["seconds"], job["seed"], job.get("rate", 0.0)
            )
        )
    c1 = os.times()
    result["cpu_seconds"] = (c1.user - c0.user) + (c1.system - c0.system)
    Path(argv[1]).write_text(json.dumps(result))


async def run_loadgen(workdir: Path, job: dict) -> dict:
    infile, outfile = workdir / f"job-{job['kind']}.json", workdir / f"out-{job['kind']}.json"
    infile.write_text(json.dumps(job, ensure_ascii=False))
    gen = subprocess.Popen(
        [sys.executable, __file__, "--loadgen", str(infile), str(outfile)],  # noqa: ASYNC220
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gen.stdout is not None and gen.stdin is not None
        assert gen.stdout.readline().strip() == "ready"
        gen.stdin.write("go\n")
        gen.stdin.flush()
        while gen.poll() is None:
            await asyncio.sleep(0.1)
        assert gen.returncode == 0, "load generator failed"
    finally:
        if gen.poll() is None:
            gen.kill()
    return json.loads(outfile.read_text())


# ---------------------------------------------------------------------------------------- data set
def generate(n: int, rng: random.Random) -> tuple[list[tuple], list[tuple]]:
    from hospital.admissions.domain.names import fold

    surnames, weights = zip(*SURNAMES, strict=True)
    folded = {w: fold(w) for w in {*surnames, *MIDDLE_M, *MIDDLE_F, *GIVEN_M, *GIVEN_F}}
    now = datetime.now(UTC)
    people, cards = [], []
    for i in range(n):
        male = rng.random() < 0.5
        parts = [
            rng.choices(surnames, weights)[0],
            rng.choice(MIDDLE_M if male else MIDDLE_F),
            rng.choice(GIVEN_M if male else GIVEN_F),
        ]
        year = rng.randint(1930, 2025)
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        prov = rng.randint(1, 96)
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        cccd = f"{prov:03d}{(0 if year < 2000 else 2) + (0 if male else 1)}{year % 100:02d}{i:06d}"[-12:]
        people.append(
            (
                pid,
                f"BN{i:09d}",
                " ".join(parts),
                " ".join(folded[p] for p in parts),
                year,
                month,
                day,
                "male" if male else "female",
                cccd,
                f"09{rng.randint(0, 99_999_999):08d}",
                now,
                now,
            )
        )
        if rng.random() < 0.9:  # ~90% of Vietnamese are insured
            g, lvl = rng.choice(GROUPS)
            cards.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    pid,
                    f"{g}{lvl}{prov % 100:02d}{i:010d}",
                    lvl,
                    {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}[lvl],
                    f"{prov % 100:02d}",
                    now,
                )
            )
    return people, cards


async def load(url: str, n: int) -> dict[str, float]:
    import asyncpg

    rng = random.Random(42)
    t = time.time()
    people, cards = generate(n, rng)
    t_gen = time.time() - t
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        idx = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('patients','insurance_cards') AND indexname NOT LIKE '%pkey'"
        )
        rebuilt = [r for r in idx if "UNIQUE" not in r["indexdef"] or r["indexname"].startswith("ix_")]
        for r in rebuilt:
            await conn.execute(f'DROP INDEX "{r["indexname"]}"')
        t = time.time()
        await conn.copy_records_to_table(
            "patients",
            records=people,
            columns=[
                "id",
                "patient_code",
                "full_name",
                "name_folded",
                "birth_year",
                "birth_month",
                "birth_day",
                "sex",
                "cccd",
                "phone",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "insurance_cards",
            records=cards,
            columns=[
                "id",
                "patient_id",
                "number",
                "benefit_level",
                "benefit_rate",
                "province_code",
                "created_at",
            ],
        )
        t_copy = time.time() - t
        t = time.time()
        for r in rebuilt:
            await conn.execute(r["indexdef"])
        await conn.execute("ANALYZE")
        t_index = time.time() - t
    finally:
        await conn.close()
    return {
        "generate_s": round(t_gen, 1),
        "copy_s": round(t_copy, 1),
        "index_s": round(t_index, 1),
        "patients": len(people),
        "cards": len(cards),
    }


async def _sample(url: str, rng: random.Random) -> dict[str, list[str]]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch(
            "SELECT p.name_folded, p.cccd, c.number FROM patients p TABLESAMPLE SYSTEM (1) "
            "LEFT JOIN insurance_cards c ON c.patient_id = p.id "
            "WHERE p.patient_code LIKE 'BN0%' LIMIT 3000"
        )
    finally:
        await conn.close()
    rows = list(rows)
    rng.shuffle(rows)
    names = []
    for r in rows[:SEARCHES]:
        words = r["name_folded"].split()
        cut = rng.choice([len(words) - 1, len(words)])  # "nguyen van h" or "nguyen van hung"
        last = (
            words[cut - 1] if cut == len(words) else words[cut][: rng.randint(1, max(1, len(words[cut]) - 1))]
        )
        names.append(
            " ".join([*words[: cut - 1], last]) if cut == len(words) else " ".join([*words[:cut], last])
        )
    return {
        "name_prefix_unaccented": names,
        "cccd": [r["cccd"] for r in rows[:SEARCHES]],
        "bhyt": [r["number"] for r in rows[: 2 * SEARCHES] if r["number"]][:SEARCHES],
    }


# ---------------------------------------------------------------------------------------- the benchmark
async def main() -> dict:
    import httpx

    from hospital.admissions.service import DEFINITION
    from hospital.chassis.db import Database
    from hospital.chassis.migrations import upgrade
    from hospital.chassis.security import DevIssuer
    from hospital.testing.servers import NatsServer, PostgresServer, free_port

    reuse = os.environ.get("BENCH_REUSE_DIR")
    base = Path(tempfile.mkdtemp(prefix="hospital-bench-adm-"))
    base.chmod(0o755)
    pg_dir = Path(reuse) if reuse else base / "pg"
    pg = PostgresServer(pg_dir).start()
    nats = NatsServer(base / "nats").start()
    proc = None
    profilers: list[subprocess.Popen] = []
    try:
        import asyncpg

        admin = await asyncpg.connect(pg.url().replace("postgresql+asyncpg", "postgresql"))
        exists = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'admissions'")
        await admin.close()
        url = pg.url("admissions") if exists else await pg.create_database("admissions")
        db = Database(url)
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        loaded: dict = {"reused": True}
        if not exists or not reuse:
            loaded = await load(url, PATIENTS)
        else:  # drop what earlier runs registered, so every run starts from the generated set
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            await conn.execute("DELETE FROM patients WHERE patient_code NOT LIKE 'BN0%'")
            await conn.execute("VACUUM ANALYZE patients")
            await conn.close()
        port = free_port()
        env = dict(
            os.environ,
            HOSPITAL_DATA_DIR=str(base),
            HOSPITAL_ADMISSIONS_DATABASE_URL=url,
            HOSPITAL_NATS_URL=nats.url,
            HOSPITAL_ADMISSIONS_HTTP_PORT=str(port),
            HOSPITAL_ADMISSIONS_GRPC_PORT=str(free_port()),
            HOSPITAL_LOG_LEVEL="WARNING",
            HOSPITAL_ADMISSIONS_DATABASE_POOL_SIZE="30",
            # one load client searches as one user: the per-user search limit would measure itself
            HOSPITAL_ADMISSIONS_SEARCH_RATE_PER_MINUTE="0",
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hospital.admissions",
                "serve",
                "--processes",  # noqa: ASYNC220
                str(PROCESSES),
            ],
            env=env,
        )
        token = DevIssuer(base / "auth", "https://auth.hospital.local/dev", "hospital").mint_for_role(
            "receptionist"
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            for _ in range(300):
                try:
                    if listeners(port) >= PROCESSES and (await c.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("admissions did not start")
        service_pids = [proc.pid, *children(proc.pid)]
        pg_pid = int((pg_dir / "pgdata" / "postmaster.pid").read_text().split()[0])

        async def xacts() -> int:
            async with db.session() as s:
                from sqlalchemy import text

                return int(
                    (
                        await s.execute(
                            text(
                                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                "WHERE datname = 'admissions'"
                            )
                        )
                    ).scalar_one()
                )

        async def outbox_drained() -> None:
            from sqlalchemy import func, select

            from hospital.chassis.db import outbox_table

            for _ in range(300):
                async with db.session() as s:
                    left = (
                        await s.execute(
                            select(func.count())
                            .select_from(outbox_table)
                            .where(outbox_table.c.published_at.is_(None))
                        )
                    ).scalar_one()
                if not left:
                    return
                await asyncio.sleep(0.1)

        def profile(name: str, seconds: float) -> None:
            spy = os.environ.get("BENCH_PYSPY")
            if not spy:
                return
            for pid in service_pids[1:]:
                out_dir = Path(
                    os.environ.get("BENCH_PYSPY_DIR") or Path(__file__).resolve().parents[2] / "bench-results"
                )
                out_dir.mkdir(parents=True, exist_ok=True)
                out = out_dir / f"pyspy-admissions-{name}-{pid}.txt"
                profilers.append(
                    subprocess.Popen(
                        [
                            os.path.expanduser(spy),
                            "record",
                            "-p",
                            str(pid),
                            "-d",
                            str(int(seconds)),
                            "-r",
                            "200",
                            "-f",
                            "raw",
                            "-o",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )

        rng = random.Random(7)
        sample = await _sample(url, rng)
        workdir = base / "loadgen"
        workdir.mkdir()
        # warm-up: every serve process (connections spread over them), a few queries of each kind
        await run_loadgen(
            workdir,
            {
                "kind": "search",
                "port": port,
                "token": token,
                "queries": {k: v[:20] for k, v in sample.items()},
            },
        )
        await run_loadgen(
            workdir,
            {"kind": "register", "port": port, "token": token, "clients": CLIENTS, "seconds": 2.0, "seed": 1},
        )
        await outbox_drained()

        # search: one client, sequential
        x0, svc0, pg0 = await xacts(), sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid)
        profile("search", 8)
        out = await run_loadgen(workdir, {"kind": "search", "port": port, "token": token, "queries": sample})
        svc1, pg1, x1 = sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid), await xacts()
        n_search = sum(len(v["ms"]) for k, v in out.items() if isinstance(v, dict))
        search = {
            k: {
                **summary(v["ms"]),
                "found": v["found"],
                "errors": len(v["errors"]),
                "sample_error": v["errors"][:1],
            }
            for k, v in out.items()
            if isinstance(v, dict)
        }
        search_cpu = {
            "service": round((svc1 - svc0) / n_search * 1000, 3),
            "postgres": round((pg1 - pg0) / n_search * 1000, 3),
            "load_generator": round(out["cpu_seconds"] / n_search * 1000, 3),
            "db_transactions_per_search": round((x1 - x0) / n_search, 2),
        }

        # registration: CLIENTS concurrent clients for SECONDS
        x0, svc0, pg0 = await xacts(), sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid)
        profile("register", min(SECONDS, 10))
        reg = await run_loadgen(
            workdir,
            {
                "kind": "register",
                "port": port,
                "token": token,
                "clients": CLIENTS,
                "seconds": SECONDS,
                "seed": 2,
            },
        )
        await outbox_drained()  # the relay's publishing is part of a registration's cost
        svc1, pg1, x1 = sum(cpu_seconds(p) for p in service_pids), tree_cpu(pg_pid), await xacts()
        n_reg = len(reg["ms"])
        registration = {
            "clients": CLIENTS,
            "seconds": round(reg["seconds"], 1),
            "registrations": n_reg,
            "errors": n_reg - reg["codes"].get("201", 0),
            "codes": reg["codes"],
            "sample_error": reg["sample_error"],
            "per_second": round(n_reg / reg["seconds"], 1),
            "latency_ms": summary(reg["ms"]),
            "cpu_ms_per_registration": {
                "service": round((svc1 - svc0) / n_reg * 1000, 3),
                "postgres": round((pg1 - pg0) / n_reg * 1000, 3),
                "load_generator": round(reg["cpu_seconds"] / n_reg * 1000, 3),
            },
            "db_transactions_per_registration": round((x1 - x0) / n_reg, 2),
        }

        # registration at the goal's rate: RATE/s offered by CLIENTS clients (open loop)
        reg = await run_loadgen(
            workdir,
            {
                "kind": "register",
                "port": port,
                "token": token,
                "clients": CLIENTS,
                "seconds": SECONDS,
                "seed": 3,
                "rate": RATE,
            },
        )
        await outbox_drained()
        n_open = len(reg["ms"])
        registration_open = {
            "clients": CLIENTS,
            "offered_per_second": RATE,
            "seconds": round(reg["seconds"], 1),
            "registrations": n_open,
            "errors": n_open - reg["codes"].get("201", 0),
            "per_second": round(n_open / reg["seconds"], 1),
            "latency_ms": summary(reg["ms"]),
        }
        await db.dispose()
    finally:
        for p in profilers:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "benchmark": "admissions",
        "database": "postgresql",
        "serve_processes": PROCESSES,
        "load": loaded,
        "search_ms": search,
        "search_cpu_ms": search_cpu,
        "registration": registration,
        "registration_open_loop": registration_open,
        "load_average": os.getloadavg(),
        "method": "HTTP GET /api/v1/patients?q= from one client (own process, raw HTTP keep-alive), "
        "sequential, after 20 warm-up queries of each kind; every search also appends an audit "
        f"record (as in production); registration: {CLIENTS} clients (own process) for "
        f"{SECONDS:g} s after a 2 s warm-up (closed loop), then {RATE:g}/s offered by them for {SECONDS:g} s "
        "(open loop, latency from each registration's due time)",
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        _loadgen_main(sys.argv[2:])
    else:
        print(json.dumps(aio.run(main()), indent=2, ensure_ascii=False))
