"""Shared pieces of the benchmarks that drive whole services: each service in its own process (this file
run as ``python tests/bench/stack.py serve <module> <settings.json>``: migrate, ``serve``, print the ports,
stop when the parent closes stdin), tokens, a closed-loop timing record, and the references measured in
the same run (a bare PostgreSQL insert loop, a bare HTTP responder) that every figure is divided by,
because machines differ."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.bench.cpu import cpu_seconds, pct  # noqa: E402

ISSUER = "https://auth.hospital.local/dev"
AUDIENCE = "hospital"


# ------------------------------------------------------------------------------------ service processes
@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()  # the child stops its service and exits
                self.proc.wait(40)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait(10)


def start_service(name: str, module: str, settings: dict[str, Any], after: str = "") -> ServiceProcess:
    """``module`` holds ``DEFINITION`` (e.g. ``hospital.emr.service``); ``settings`` the service's
    settings (data_dir, database_url, nats_url and overrides); ``after`` an optional start-up step
    (``web-demo-users:<password>``)."""
    spec = Path(settings["data_dir"]) / f"{name}-settings.json"
    spec.write_text(json.dumps({"module": module, "settings": settings, "after": after}, default=str))
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", str(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{name} did not start (exit code {proc.wait()})")
    ports = json.loads(line)
    return ServiceProcess(name, proc, ports["http_port"], ports["grpc_port"])


async def _serve(spec_path: str) -> None:
    from hospital.testing.services import running_service

    spec = json.loads(Path(spec_path).read_text())
    definition = importlib.import_module(spec["module"]).DEFINITION
    settings = dict(spec["settings"])
    settings["data_dir"] = Path(settings["data_dir"])
    async with running_service(definition, **settings) as svc:
        if spec["after"].startswith("web-demo-users:"):
            await svc.rt.extras["web"].accounts.ensure_demo_users(spec["after"].split(":", 1)[1])
        print(
            json.dumps({"http_port": svc.settings.http_port, "grpc_port": svc.settings.grpc_port}), flush=True
        )
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it


def issuer(data_dir: Path):  # type: ignore[no-untyped-def]
    from hospital.chassis.security import DevIssuer

    return DevIssuer(Path(data_dir) / "auth", ISSUER, AUDIENCE)


# --------------------------------------------------------------------------------------------- timings
@dataclass
class Timings:
    """Latencies (ms) of one kind of operation and the failures met (status → count, first body)."""

    ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)

    def error(self, key: str, detail: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        self.first_error.setdefault(key, detail[:600])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": len(self.ms)}
        if self.ms:
            out.update(
                p50=round(pct(self.ms, 50), 1),
                p95=round(pct(self.ms, 95), 1),
                p99=round(pct(self.ms, 99), 1),
                max=round(max(self.ms), 1),
            )
        if self.errors:
            out["errors"] = self.errors
            out["first_error"] = self.first_error
        return out


# ------------------------------------------------------------------------------------------ references
async def pg_insert_reference(dsn: str, concurrency: int, inserts: int) -> dict[str, Any]:
    """A bare PostgreSQL insert loop: ``concurrency`` connections, each inserting single rows (uuid,
    jsonb) in their own transaction (autocommit), ``inserts`` in all. ``dsn`` is a libpq URL."""
    import asyncpg

    table = f"bench_ref_{uuid.uuid4().hex[:8]}"
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    try:
        await conns[0].execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, body jsonb NOT NULL)")
        ms: list[float] = []
        left = [inserts]

        async def worker(conn: Any) -> None:
            while left[0] > 0:
                left[0] -= 1
                t = time.perf_counter()
                await conn.execute(
                    f"INSERT INTO {table} VALUES ($1, $2)", uuid.uuid4(), '{"reference": "insert"}'
                )
                ms.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - t0
        await conns[0].execute(f"DROP TABLE {table}")
    finally:
        for c in conns:
            await c.close()
    return {
        "what": f"single-row INSERT + commit, {concurrency} connections",
        "inserts": inserts,
        "per_second": round(inserts / elapsed, 1),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
    }


ECHO_SERVER = r"""
import asyncio, sys
BODY = b"<!doctype html><title>ok</title><p>" + b"x" * 2048
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def http_echo_reference(users: int, seconds: float, think: float = 0.0) -> dict[str, Any]:
    """A bare HTTP/1.1 responder (asyncio, one process, a fixed 2 KiB page) driven by the same httpx
    client at the same concurrency and think time: what the load driver and the loopback cost by
    themselves."""
    import random

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        t = Timings()
        cpu0 = cpu_seconds(proc.pid)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=users), timeout=30
        ) as c:
            deadline = time.perf_counter() + seconds

            async def user() -> None:
                while time.perf_counter() < deadline:
                    s = time.perf_counter()
                    r = await c.get("/")
                    if r.status_code == 200:
                        t.ms.append((time.perf_counter() - s) * 1000)
                    if think:
                        await asyncio.sleep(think * random.uniform(0.5, 1.5))

            await asyncio.gather(*(user() for _ in range(users)))
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    s = t.summary()
    return {
        "what": f"bare HTTP/1.1 responder, {users} concurrent users, closed loop, think time {think} s",
        "requests": s["count"],
        "per_second": round(s["count"] / seconds, 1),
        "p50_ms": s.get("p50"),
        "p95_ms": s.get("p95"),
        "cpu_us_per_request": round(cpu / max(1, s["count"]) * 1e6, 1),
    }


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        from hospital.chassis import aio

        aio.run(_serve(sys.argv[2]))
