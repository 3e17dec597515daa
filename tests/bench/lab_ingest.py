"""Lab ingestion benchmark on PostgreSQL: analyzer results over ASTM and over HL7/MLLP, several
concurrent connections, from the wire to the durable store + ACK + ``lab.result.received`` on NATS.

The service runs as its own processes (``python -m hospital.lab serve --processes 2``, configured by
environment variables, as in production); the analyzers are simulated by separate load-generator
processes (one for the ASTM connections, one for the MLLP connections), so the load generator does not
share the service's event loop. Each message carries one specimen's CBC (8 results) for its own ordered
barcode, so each is matched, range-flagged, delta-checked and published; the ACK is only sent once the
raw message and its results are committed (the listeners' group commit), and the event goes through the
outbox. Reported: results/s (first byte sent → last ACK), and p50/p99 latency from the last byte of a
message leaving the analyzer to its ``lab.result.received`` event reaching a NATS subscriber (all
processes read the same monotonic clock). CPU time (user + system, from ``/proc/<pid>/stat``) of the
service processes and of the load generators during the measurement is reported per result: the steady
figure on a shared machine.

    python tests/bench/run.py lab_ingest
    HOSPITAL_BENCH_LAB_PROCESSES=1 python tests/bench/run.py lab_ingest      # one service process
    HOSPITAL_BENCH_LAB_PROFILE=/tmp/prof python tests/bench/run.py lab_ingest  # py-spy profiles per process
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import nats

from hospital.chassis import aio
from hospital.chassis.security import DevIssuer
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.api.astm.codec import build_frames
from hospital.lab.api.hl7.mllp import MllpBuffer, frame
from hospital.lab.simulator import generate_specimens, specimen_to_astm, specimen_to_oru
from hospital.testing.servers import NatsServer, PostgresServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also run as a script (--client)
from tests.bench.cpu import children, cpu_seconds, pct

MESSAGES = int(os.environ.get("HOSPITAL_BENCH_LAB_MESSAGES", "4000"))  # specimens (8 results each)
ASTM_CONNECTIONS = int(os.environ.get("HOSPITAL_BENCH_LAB_ASTM_CONNECTIONS", "4"))
MLLP_CONNECTIONS = int(os.environ.get("HOSPITAL_BENCH_LAB_MLLP_CONNECTIONS", "4"))
SERVICE_PROCESSES = int(os.environ.get("HOSPITAL_BENCH_LAB_PROCESSES", "2"))
PROFILE_DIR = os.environ.get("HOSPITAL_BENCH_LAB_PROFILE", "")  # py-spy (on PATH) records each process there
ROOT = Path(__file__).resolve().parents[2]


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds per thread name, summed over processes (which threads burn the CPU)."""
    out: dict[str, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = "main" if task.name == str(pid) else f"thread {(task / 'comm').read_text().strip()}"
                out[name] = out.get(name, 0.0) + cpu_seconds_path(task / "stat")
            except OSError:
                continue
    return out


def cpu_seconds_path(path: Path) -> float:  # of one thread (/proc/<pid>/task/<tid>/stat)
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- load generator (child)
class AstmAnalyzer(asyncio.Protocol):
    """A lean simulated analyzer: the full E1381 handshake (ENQ → ACK, each frame → ACK, EOT), driven
    by the LIS's replies as they arrive (no task switch per frame, so the load generator stays cheap)."""

    def __init__(self, messages: list[tuple[str, str]], sent_at: dict[str, float]) -> None:
        self.todo = [
            (barcode, build_frames(r for r in text.encode().split(b"\r") if r)) for barcode, text in messages
        ]
        self.sent_at = sent_at
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.index = 0  # message
        self.frame = -1  # -1: ENQ sent, awaiting its ACK
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._next_message(b"")

    def _next_message(self, eot: bytes) -> None:
        assert self.transport is not None
        if self.index == len(self.todo):
            self.transport.write(eot)
            self.transport.close()
            return
        self.frame = -1
        self.transport.write(eot + b"\x05")  # EOT ends the transfer, ENQ bids for the next (one write)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for byte in data:
            barcode, frames = self.todo[self.index]
            if byte != 0x06:
                self.done.set_exception(AssertionError(f"{byte:#x} instead of ACK for {barcode}"))
                self.transport.close()
                return
            self.frame += 1
            if self.frame < len(frames):
                self.transport.write(frames[self.frame])
                if self.frame == len(frames) - 1:
                    self.sent_at[barcode] = time.perf_counter()
            else:  # the last frame's ACK: stored; end the transfer
                self.index += 1
                self._next_message(b"\x04")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if self.index < len(self.todo):
                self.done.set_exception(ConnectionError(f"link lost after {self.index} messages: {exc}"))
            else:
                self.done.set_result(None)


class MllpAnalyzer(asyncio.Protocol):
    """A lean simulated HL7 analyzer: one ORU^R01 at a time, the next after its ``MSA|AA``."""

    def __init__(self, messages: list[tuple[str, str]], sent_at: dict[str, float]) -> None:
        self.todo = [(barcode, frame(text)) for barcode, text in messages]
        self.sent_at = sent_at
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = MllpBuffer()
        self.index = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.index == len(self.todo):
            self.transport.close()
            return
        barcode, data = self.todo[self.index]
        self.transport.write(data)
        self.sent_at[barcode] = time.perf_counter()

    def data_received(self, data: bytes) -> None:
        for ack in self.buffer.feed(data):
            if b"MSA|AA" not in ack:
                self.done.set_exception(AssertionError(ack[:200]))
                return
            self.index += 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if self.index < len(self.todo):
                self.done.set_exception(ConnectionError(f"link lost after {self.index} messages: {exc}"))
            else:
                self.done.set_result(None)


async def analyzer_link(
    protocol: str, port: int, messages: list[tuple[str, str]], sent_at: dict[str, float]
) -> None:
    cls = AstmAnalyzer if protocol == "astm" else MllpAnalyzer
    _, link = await asyncio.get_running_loop().create_connection(
        lambda: cls(messages, sent_at), "127.0.0.1", port
    )
    await link.done


async def client_main(spec_path: str) -> None:
    """One load-generator process: its connections, started when the parent writes a line on stdin;
    prints the last-byte times and its finish time (perf_counter, the system's monotonic clock)."""
    spec = json.loads(Path(spec_path).read_text())
    messages = [tuple(m) for m in spec["messages"]]
    n = spec["connections"]
    sent_at: dict[str, float] = {}
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu0 = time.process_time()
    await asyncio.gather(
        *(
            analyzer_link(spec["protocol"], spec["port"], messages[k::n], sent_at)  # type: ignore[arg-type]
            for k in range(n)
        )
    )
    print(
        json.dumps(
            {"finished": time.perf_counter(), "cpu_seconds": time.process_time() - cpu0, "sent_at": sent_at}
        ),
        flush=True,
    )


# ------------------------------------------------------------------------------------------ the bench
async def wait_ready(base_url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as c:
        for _ in range(600):
            assert proc.poll() is None, "lab service exited during start-up"
            try:
                if (await c.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("lab service not ready")


async def run(pg_url: str, nats_url: str, base: Path) -> dict:
    http_port, astm_port, mllp_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        HOSPITAL_DATA_DIR=str(base),
        HOSPITAL_LAB_DATABASE_URL=pg_url,
        HOSPITAL_NATS_URL=nats_url,
        HOSPITAL_LAB_HTTP_PORT=str(http_port),
        HOSPITAL_LAB_GRPC_PORT=str(free_port()),
        HOSPITAL_LAB_ASTM_PORT=str(astm_port),
        HOSPITAL_LAB_MLLP_PORT=str(mllp_port),
        HOSPITAL_LOG_LEVEL="WARNING",
        HOSPITAL_LAB_DATABASE_POOL_SIZE="8",
    )
    issuer = DevIssuer(base / "auth", "https://auth.hospital.local/dev", "hospital")
    token = issuer.mint_for_role("doctor")
    subprocess.run([sys.executable, "-m", "hospital.lab", "migrate"], env=env, cwd=ROOT, check=True)  # noqa: ASYNC221
    service = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [sys.executable, "-m", "hospital.lab", "serve", "--processes", str(SERVICE_PROCESSES)],
        env=env,
        cwd=ROOT,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        base_url = f"http://127.0.0.1:{http_port}"
        await wait_ready(base_url, service)
        barcodes: list[str] = []
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:

            async def order(i: int) -> None:
                r = await c.post(
                    "/api/v1/orders",
                    json={
                        "patient": {
                            "id": f"bench-{i % 300}",
                            "full_name": "Nguyễn Văn Bình",
                            "sex": "male",
                            "birth_date": "1980",
                        },
                        "tests": ["CBC"],
                    },
                )
                assert r.status_code == 201, r.text
                barcodes.append(r.json()["specimens"][0]["barcode"])

            for start in range(0, MESSAGES, 50):
                await asyncio.gather(*(order(i) for i in range(start, min(MESSAGES, start + 50))))
        specimens = generate_specimens(barcodes, MESSAGES, "cbc", seed=7)
        now = datetime.now()
        astm_msgs, mllp_msgs = [], []
        for i, s in enumerate(specimens):
            at = now + timedelta(seconds=i)
            if i % 2 == 0:
                astm_msgs.append((s.barcode, specimen_to_astm(s, at).decode()))
            else:
                mllp_msgs.append((s.barcode, specimen_to_oru(s, at, f"B{i}").decode()))
        results_per_message = len(specimens[0].results)
        for protocol, msgs, port, n in (
            ("astm", astm_msgs, astm_port, ASTM_CONNECTIONS),
            ("mllp", mllp_msgs, mllp_port, MLLP_CONNECTIONS),
        ):
            path = base / f"load-{protocol}.json"
            path.write_text(
                json.dumps({"protocol": protocol, "port": port, "connections": n, "messages": msgs})
            )
            clients.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--client", str(path)],
                    cwd=ROOT,  # noqa: ASYNC220
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for cl in clients:
            assert cl.stdout is not None and cl.stdout.readline().strip() == "ready"

        event_at: dict[str, float] = {}
        done = asyncio.Event()
        nc = await nats.connect(nats_url)

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            ev = events_pb2.ResultReceived.FromString(msg.data)
            event_at.setdefault(ev.specimen_barcode, time.perf_counter())
            if len(event_at) >= MESSAGES:
                done.set()

        sub = await nc.subscribe("lab.result.received", cb=on_event)
        await nc.flush()
        workers = children(service.pid) or [service.pid]  # serve --processes N: the N children
        watched = {"service": workers, "load_generators": [cl.pid for cl in clients]}
        profilers = (
            [
                subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-r",
                        "200",
                        "-p",
                        str(pid),
                        "-f",
                        "raw",
                        "-o",  # noqa: ASYNC220
                        str(Path(PROFILE_DIR) / f"{role}-{pid}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for role, pids in watched.items()
                for pid in pids
            ]
            if PROFILE_DIR
            else []
        )
        if profilers:
            await asyncio.sleep(1.0)
        cpu0 = sum(cpu_seconds(p) for p in workers)
        threads0 = thread_cpu(workers)
        t0 = time.perf_counter()
        for cl in clients:
            assert cl.stdin is not None
            cl.stdin.write("go\n")
            cl.stdin.flush()
        loop = asyncio.get_running_loop()
        outputs = await asyncio.gather(*(loop.run_in_executor(None, cl.communicate) for cl in clients))
        reports = []
        for cl, (out, _) in zip(clients, outputs, strict=True):
            assert cl.returncode == 0, f"load generator failed: {out[-2000:]}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        t_astm, t_mllp = (r["finished"] - t0 for r in reports)
        acked = max(t_astm, t_mllp)
        sent_at = {**reports[0]["sent_at"], **reports[1]["sent_at"]}
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            await sub.unsubscribe()
            await nc.close()
        cpu_service = sum(cpu_seconds(p) for p in workers) - cpu0
        threads = {k: round(v - threads0.get(k, 0.0), 2) for k, v in thread_cpu(workers).items()}
        for prof in profilers:
            prof.send_signal(2)  # SIGINT: py-spy writes its profile
        for prof in profilers:
            prof.wait(30)
    finally:
        for cl in clients:
            if cl.poll() is None:
                cl.kill()
        service.terminate()
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
    latencies = [(event_at[b] - sent_at[b]) * 1000 for b in sent_at if b in event_at]
    astm_lat = [(event_at[b] - sent_at[b]) * 1000 for b, _ in astm_msgs if b in event_at]
    mllp_lat = [(event_at[b] - sent_at[b]) * 1000 for b, _ in mllp_msgs if b in event_at]
    total_results = MESSAGES * results_per_message
    return {
        "messages": MESSAGES,
        "results": total_results,
        "results_per_message": results_per_message,
        "connections": {"astm": ASTM_CONNECTIONS, "mllp": MLLP_CONNECTIONS},
        "service_processes": SERVICE_PROCESSES,
        "load_generator_processes": len(clients),
        "acked_seconds": round(acked, 3),
        "results_per_second_total": round(total_results / acked, 1),
        "results_per_second_astm": round(len(astm_msgs) * results_per_message / t_astm, 1),
        "results_per_second_mllp": round(len(mllp_msgs) * results_per_message / t_mllp, 1),
        "events_received": len(event_at),
        "cpu_seconds_service": round(cpu_service, 2),
        "cpu_us_per_result_service": round(cpu_service / total_results * 1e6, 1),
        "cpu_seconds_service_threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v},
        "cpu_us_per_result_load_generators": {
            "astm": round(reports[0]["cpu_seconds"] / (len(astm_msgs) * results_per_message) * 1e6, 1),
            "mllp": round(reports[1]["cpu_seconds"] / (len(mllp_msgs) * results_per_message) * 1e6, 1),
        },
        "latency_ms_last_byte_to_event": {
            "p50": round(pct(latencies, 50), 1),
            "p99": round(pct(latencies, 99), 1),
            "max": round(max(latencies), 1),
        },
        "latency_ms_astm": {"p50": round(pct(astm_lat, 50), 1), "p99": round(pct(astm_lat, 99), 1)},
        "latency_ms_mllp": {"p50": round(pct(mllp_lat, 50), 1), "p99": round(pct(mllp_lat, 99), 1)},
        "goal": {"results_per_second": 2000, "p99_ms": 250},
    }


async def main() -> dict:
    base = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    pg = PostgresServer(base / "pg").start()
    nats_srv = NatsServer(base / "nats").start()
    try:
        name = f"lab_bench_{uuid.uuid4().hex[:8]}"
        await pg.create_database(name)
        result = await run(pg.socket_url(name), nats_srv.url, base)  # the service runs on the database's host
        result["database"] = "postgresql"
        return result
    finally:
        nats_srv.stop()
        pg.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        aio.run(client_main(sys.argv[2]))
    else:
        print(json.dumps(aio.run(main()), indent=2))
