"""The service runner every service shares: ``python -m hospital.<svc> serve|worker|migrate|...``.

* ``serve``: HTTP (FastAPI on uvicorn) and gRPC (grpc.aio, health + reflection) in one event loop, plus
  the outbox relay, the event consumers and protocol listeners unless ``RUN_WORKER_IN_SERVE=false``.
* ``worker``: the outbox relay and the consumers only (scale them apart from the API in production).
* ``migrate``: upgrade the database schema; an explicit step, never done at import or start-up.
* ``deadletters list|replay``, ``outbox-deadletters list|replay``, ``audit-verify``: operations commands.

Shutdown on SIGTERM/SIGINT is graceful: stop accepting, finish in-flight requests and batches, flush
the outbox once more, drain NATS, close the database.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy import MetaData

from hospital.chassis import aio, auditrpc, telemetry
from hospital.chassis.audit import (
    check_checkpoints,
    checkpoint_line,
    current_heads,
    keyring_for,
    seal_unkeyed_chains,
    verify_chain,
)
from hospital.chassis.bus import (
    Consumer,
    OutboxRelay,
    Subscription,
    connect,
    ensure_streams,
    list_dead_letters,
    list_outbox_dead_letters,
    outbox_wake_subject,
    replay_dead_letters,
    replay_outbox_dead_letters,
)
from hospital.chassis.db import Database
from hospital.chassis.logging import configure_logging
from hospital.chassis.migrations import upgrade
from hospital.chassis.purpose import PurposeMiddleware
from hospital.chassis.rpc import AuthInterceptor
from hospital.chassis.security import ServiceIdentity, TokenVerifier, verifier_for
from hospital.chassis.settings import ServiceSettings
from hospital.chassis.storage import ObjectStore
from hospital.chassis.uow import UnitOfWork
from hospital.chassis.web import (
    hide_api_docs,
    install_error_handlers,
    install_ops_endpoints,
    install_request_guard,
    trusted_networks,
)

log = logging.getLogger(__name__)
Task = Callable[[asyncio.Event], Awaitable[None]]
S = TypeVar("S", bound=ServiceSettings)


@dataclass
class Runtime(Generic[S]):
    """What a running service holds; handed to the service's wiring code. Generic over the service's
    settings class: ``Runtime[LabSettings]`` gives ``rt.settings.mllp_port`` its type."""

    settings: S
    db: Database
    verifier: TokenVerifier
    identity: ServiceIdentity
    nc: NATS | None = None
    js: JetStreamContext | None = None
    relay: OutboxRelay | None = None
    store: ObjectStore | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # a service's own long-lived objects (for tests)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(
            self.db,
            source=self.settings.service,
            on_commit=self.relay.notify if self.relay is not None else None,
        )


@dataclass
class Components:
    """What a service plugs into the chassis."""

    http: FastAPI | None = None
    grpc_register: Callable[[grpc.aio.Server], None] | None = None
    grpc_service_names: Sequence[str] = ()
    grpc_rules: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subscriptions: Sequence[Subscription] = ()
    listeners: Sequence[Task] = ()  # protocol listeners (MLLP, ASTM, DICOM) and other serve-side tasks
    workers: Sequence[Task] = ()  # background jobs that belong with the consumers
    on_start: Callable[[Runtime[Any]], Awaitable[None]] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None


@dataclass
class ServiceDefinition(Generic[S]):
    name: str
    settings_cls: type[S]
    migrations_dir: Path
    metadata: MetaData
    build: Callable[[Runtime[S]], Components]
    uses_object_storage: bool = False
    buckets: Sequence[str] | Callable[[S], Sequence[str]] = ()  # names, or from settings


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT, so several `serve` processes (--processes N) share the
    port and the kernel spreads connections over them (gRPC sets the same option on Linux by default).

    It is created with proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets' connections,
    and without it every kept-alive response waits ~40 ms (Nagle + the client's delayed ACK)."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.set_inheritable(True)
    return sock


class Service(Generic[S]):
    def __init__(self, definition: ServiceDefinition[S], settings: S | None = None) -> None:
        self.d = definition
        self.settings: S = settings or definition.settings_cls()
        self.stop = asyncio.Event()
        self.rt: Runtime[S] | None = None
        self.http_server: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.started = asyncio.Event()

    async def _runtime(self, with_bus: bool) -> Runtime[S]:
        s = self.settings
        db = Database(s.database_url, pool_size=s.database_pool_size, audit_keyring=keyring_for(s))
        async with db.session() as session:
            await seal_unkeyed_chains(session)
        if (
            s.otel_exporter != "none"
        ):  # a span per SQL statement costs CPU: only when traces leave the process
            telemetry.instrument_engine(db.engine)
        rt = Runtime(settings=s, db=db, verifier=verifier_for(s), identity=ServiceIdentity(s))
        if with_bus:
            rt.nc = await connect(s.nats_url, f"hospital-{s.service}")
            rt.js = rt.nc.jetstream()
            await ensure_streams(rt.js, replicas=s.nats_stream_replicas)
            rt.relay = OutboxRelay(
                db,
                rt.nc,
                batch_size=s.outbox_batch_size,
                poll_seconds=s.outbox_poll_seconds,
                wake_subject=outbox_wake_subject(s.service),
                service=s.service,
            )
        if self.d.uses_object_storage:
            rt.store = ObjectStore.from_settings(s)
            buckets = self.d.buckets(s) if callable(self.d.buckets) else self.d.buckets
            for bucket in buckets:
                await rt.store.ensure_bucket(bucket)
        return rt

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        rt = self.rt
        assert rt is not None
        try:
            await rt.db.ping()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - the reason goes to the log, not to an open endpoint
            log.warning("readiness: database not reachable: %s", exc)
            checks["database"] = "error"
        if rt.nc is not None:
            checks["nats"] = "ok" if rt.nc.is_connected else "disconnected"
        if rt.store is not None:
            try:
                await rt.store.ping()
                checks["object_storage"] = "ok"
            except Exception as exc:  # noqa: BLE001 - the reason goes to the log
                log.warning("readiness: object storage not reachable: %s", exc)
                checks["object_storage"] = "error"
        return checks

    def _background(self, comps: Components) -> tuple[list[Task], list[Consumer]]:
        rt = self.rt
        assert rt is not None and rt.js is not None and rt.relay is not None
        s = self.settings
        tasks: list[Task] = [rt.relay.run]
        consumers = [
            Consumer(
                rt.db,
                rt.js,
                sub,
                service=s.service,
                batch_size=s.consumer_batch_size,
                max_deliver=s.consumer_max_deliver,
                ack_wait=s.consumer_ack_wait_seconds,
                on_events_written=rt.relay.notify,
            )
            for sub in comps.subscriptions
        ]
        tasks += [c.run for c in consumers]
        tasks.extend(comps.workers)
        return tasks, consumers

    async def _ensure_durables(self, consumers: Sequence[Consumer]) -> None:
        """Create (or update) the durable consumers before the service reports started, so an event
        published once it is up is never missed, also by a subscription that starts from "new". If NATS
        does not answer in time the consumers' own loops keep trying (the service still starts)."""
        try:
            await asyncio.wait_for(asyncio.gather(*(c.ensure() for c in consumers)), timeout=10)
        except Exception as exc:  # noqa: BLE001 - the consumer loops retry
            log.warning("durable consumers not created at start-up (%s); the consumers keep trying", exc)

    async def run(self, mode: str) -> None:
        telemetry.setup_telemetry(self.settings.service, self.settings.otel_exporter)
        self.rt = await self._runtime(with_bus=True)
        comps = self.d.build(self.rt)
        if comps.on_start:
            await comps.on_start(self.rt)
        loops: list[asyncio.Task[None]] = []
        try:
            if mode == "serve":
                await self._start_servers(comps)
                loops += await self._start_listeners(comps.listeners)
            else:  # a worker answers /healthz, /readyz and /metrics on its HTTP port for probes
                await self._start_http(FastAPI(title=f"{self.settings.service} worker"))
            if mode == "worker" or self.settings.run_worker_in_serve:
                tasks, consumers = self._background(comps)
                await self._ensure_durables(consumers)
                loops += [asyncio.create_task(t(self.stop)) for t in tasks]
            self.started.set()
            log.info(
                "%s %s started",
                self.settings.service,
                mode,
                extra={
                    "http_port": self.settings.http_port if mode == "serve" else None,
                    "grpc_port": self.settings.grpc_port if mode == "serve" else None,
                },
            )
            await self.stop.wait()
        finally:
            await self._shutdown(loops, comps)

    async def _start_listeners(self, listeners: Sequence[Task]) -> list[asyncio.Task[None]]:
        """Start the protocol listeners. One that takes a ``ready`` event (``async def run(stop, ready)``)
        is waited for until it sets it, so the service reports started only once its ports accept."""
        tasks, waits = [], []
        for listener in listeners:
            if "ready" in inspect.signature(listener).parameters:
                ready = asyncio.Event()
                task = asyncio.create_task(listener(self.stop, ready=ready))  # type: ignore[call-arg]
                waits.append((ready, task))
            else:
                task = asyncio.create_task(listener(self.stop))
            tasks.append(task)
        for ready, task in waits:
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not ready.is_set():
                for other in tasks:
                    other.cancel()
                task.result()  # raises the listener's start-up error
                raise RuntimeError("a protocol listener stopped during start-up")
        return tasks

    async def _start_http(self, app: FastAPI) -> None:
        s, rt = self.settings, self.rt
        assert rt is not None
        app.state.verifier = rt.verifier
        app.state.runtime = rt
        app.state.trusted_proxies = trusted_networks(s.trusted_proxies)
        app.add_middleware(PurposeMiddleware)
        install_error_handlers(app)
        install_request_guard(app, s.http_max_body_bytes)
        install_ops_endpoints(app, self.ready, metrics_access=s.metrics_access)
        if not s.api_docs_served:
            hide_api_docs(app)
        telemetry.instrument_fastapi(app)
        cfg = uvicorn.Config(
            app,
            host=s.http_host,
            port=s.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="httptools",
            proxy_headers=False,  # the client address is the chassis's business (web.client_address)
            timeout_graceful_shutdown=int(s.shutdown_grace_seconds),
        )
        self.http_server = uvicorn.Server(cfg)
        self.http_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        sock = listen_socket(s.http_host, s.http_port)
        self._http_task = asyncio.create_task(self.http_server.serve(sockets=[sock]))
        while not self.http_server.started:
            if self._http_task.done():
                self._http_task.result()  # raises the bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.02)

    async def _start_servers(self, comps: Components) -> None:
        s, rt = self.settings, self.rt
        assert rt is not None
        if comps.http is not None:
            await self._start_http(comps.http)
        server = grpc.aio.server(
            interceptors=[
                *telemetry.grpc_server_interceptors(),
                # every service serves its audit trail to auditors (ADR 0010)
                AuthInterceptor(rt.verifier, {**comps.grpc_rules, **auditrpc.RULES}),
            ]
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if comps.grpc_register:
            comps.grpc_register(server)
        auditrpc.register(server, rt)
        names = [
            *comps.grpc_service_names,
            auditrpc.SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        await server.start()
        for name in ["", *comps.grpc_service_names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.grpc_server = server

    async def _shutdown(self, loops: list[asyncio.Task[None]], comps: Components) -> None:
        grace = self.settings.shutdown_grace_seconds
        self.stop.set()
        if self.http_server is not None:
            self.http_server.should_exit = True
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace)
        if loops:
            _, pending = await asyncio.wait(loops, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:  # let them roll back and return their connections (on SQLite: the write lock)
                await asyncio.wait(pending, timeout=grace)
        if self._http_task is not None:
            try:
                await asyncio.wait_for(self._http_task, timeout=grace)
            except (TimeoutError, SystemExit):
                log.warning("HTTP server did not stop within %ss", grace)
        if comps.on_stop:
            await comps.on_stop()
        rt = self.rt
        if rt is not None:
            if rt.relay is not None and rt.nc is not None and rt.nc.is_connected:
                # Bounded without waiting for a cancellation the database may not honour at once (a
                # SQLite statement waiting for the write lock): unflushed rows stay for the next start.
                flush = asyncio.create_task(rt.relay.publish_batch())
                done, _ = await asyncio.wait({flush}, timeout=grace)
                if not done:
                    flush.cancel()
                    log.warning(
                        "final outbox flush did not finish within %ss; rows stay in the outbox", grace
                    )
                elif flush.exception() is not None:
                    log.warning("final outbox flush failed: %s", flush.exception())
            if rt.nc is not None:
                try:
                    await asyncio.wait_for(rt.nc.drain(), timeout=grace)
                except Exception:  # noqa: BLE001
                    await rt.nc.close()
            await rt.db.dispose()
        log.info("%s stopped", self.settings.service)


def _install_signals(svc: Service[Any]) -> None:
    """SIGTERM/SIGINT stop gracefully; during start-up (e.g. still waiting for NATS) they abort it."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        svc.stop.set()
        if not svc.started.is_set() and main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def _serve(definition: ServiceDefinition[Any], mode: str) -> None:
    svc = Service(definition)
    _install_signals(svc)
    try:
        await svc.run(mode)
    except asyncio.CancelledError:
        log.info("%s start-up aborted by signal", definition.name)


async def _migrate(definition: ServiceDefinition[Any]) -> None:
    s = definition.settings_cls()
    db = Database(s.database_url, audit_keyring=keyring_for(s))
    try:
        await upgrade(db, definition.migrations_dir, definition.metadata)
        async with db.session() as session:
            if await seal_unkeyed_chains(session):
                log.info("%s audit chain heads sealed with the audit key", s.service)
        log.info("%s database migrated", s.service)
    finally:
        await db.dispose()


async def _deadletters(definition: ServiceDefinition[Any], args: argparse.Namespace) -> int:
    s = definition.settings_cls()
    nc = await connect(s.nats_url, f"hospital-{s.service}-cli", attempts=4)
    try:
        js = nc.jetstream()
        letters = await list_dead_letters(js, s.service, args.consumer)
        if args.action == "list":
            for dl in letters:
                print(
                    json.dumps(
                        {
                            "seq": dl.seq,
                            "event_id": dl.event_id,
                            "subject": dl.subject,
                            "consumer": dl.consumer,
                            "deliveries": dl.deliveries,
                            "reason": dl.reason,
                            "parked_at": dl.parked_at.isoformat() if dl.parked_at else None,
                        },
                        ensure_ascii=False,
                    )
                )
            return 0
        chosen = [dl for dl in letters if args.all or dl.seq in set(args.seq or [])]
        if not chosen:
            print("nothing to replay: give --seq N (from `deadletters list`) or --all", file=sys.stderr)
            return 2
        n = await replay_dead_letters(js, chosen)
        print(f"replayed {n} dead letter(s)")
        return 0
    finally:
        await nc.close()


async def _outbox_deadletters(definition: ServiceDefinition[Any], args: argparse.Namespace) -> int:
    """List the outbox rows the relay set aside as never publishable, or move them back to the outbox
    once the cause is fixed (e.g. the NATS server's max_payload raised). Needs the database only."""
    s = definition.settings_cls()
    db = Database(s.database_url)
    try:
        if args.action == "list":
            for dl in await list_outbox_dead_letters(db):
                print(
                    json.dumps(
                        {
                            "id": dl.id,
                            "subject": dl.subject,
                            "type": dl.type,
                            "size": dl.size,
                            "reason": dl.reason,
                            "created_at": dl.created_at.isoformat(),
                            "dead_at": dl.dead_at.isoformat(),
                        },
                        ensure_ascii=False,
                    )
                )
            return 0
        if not args.all and not args.ids:
            print(
                "nothing to replay: give event ids (from `outbox-deadletters list`) or --all", file=sys.stderr
            )
            return 2
        moved = await replay_outbox_dead_letters(db, None if args.all else args.ids)
        missing = sorted(set(args.ids or []) - set(moved))
        print(f"moved {len(moved)} event(s) back to the outbox")
        if missing:
            print(f"not in outbox_deadletter: {', '.join(missing)}", file=sys.stderr)
            return 1
        return 0
    finally:
        await db.dispose()


async def _audit_verify(definition: ServiceDefinition[Any], checkpoints: Path | None = None) -> int:
    """Verify every chain with the audit key(s). With ``checkpoints`` (a file outside the database, e.g.
    on other storage): also check that no chain fell behind or changed at the heads recorded by earlier
    runs, then, when all is well, append this run's heads (a MACed JSON line)."""
    s = definition.settings_cls()
    keyring = keyring_for(s)
    db = Database(s.database_url, audit_keyring=keyring)
    try:
        async with db.session() as session:
            report = await verify_chain(session)
            if report.ok and checkpoints is not None:
                lines = checkpoints.read_text().splitlines() if checkpoints.exists() else []
                report = await check_checkpoints(session, keyring, s.service, lines) or report
                if report.ok:
                    line = checkpoint_line(keyring, s.service, await current_heads(session))
                    checkpoints.parent.mkdir(parents=True, exist_ok=True)
                    with checkpoints.open("a") as fh:
                        fh.write(line + "\n")
                        fh.flush()
                        os.fsync(fh.fileno())
    finally:
        await db.dispose()
    print(json.dumps(report.__dict__))
    return 0 if report.ok else 1


def _supervise(definition: ServiceDefinition[Any], n: int) -> int:
    """Run ``serve`` in n child processes sharing the ports; forward SIGTERM/SIGINT; exit when all exit."""
    children = [
        subprocess.Popen([sys.executable, "-m", f"hospital.{definition.name}", "serve"]) for _ in range(n)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def main(definition: ServiceDefinition[Any], argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m hospital.{definition.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="HTTP + gRPC (+ relay, consumers, listeners)")
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run N processes sharing the ports (use the cores; default 1)",
    )
    sub.add_parser("worker", help="outbox relay and event consumers only")
    sub.add_parser("migrate", help="upgrade the database schema")
    dl = sub.add_parser("deadletters", help="list or replay events parked on the dead-letter stream")
    dl.add_argument("action", choices=["list", "replay"])
    dl.add_argument("--consumer", help="only this durable consumer")
    dl.add_argument("--seq", type=int, action="append", help="dead-letter sequence to replay (repeatable)")
    dl.add_argument("--all", action="store_true", help="replay every listed dead letter")
    odl = sub.add_parser(
        "outbox-deadletters", help="list or replay outbox rows set aside as never publishable (too large...)"
    )
    odl.add_argument("action", choices=["list", "replay"])
    odl.add_argument("ids", nargs="*", help="event ids to move back to the outbox (replay)")
    odl.add_argument("--all", action="store_true", help="replay every row of outbox_deadletter")
    av = sub.add_parser("audit-verify", help="check the audit trail's keyed hash chains")
    av.add_argument(
        "--checkpoints",
        type=Path,
        help="file outside the database: check against the heads "
        "recorded there by earlier runs, then append this run's (docs/adr/0004)",
    )
    args = parser.parse_args(argv)
    s = definition.settings_cls()
    configure_logging(s.service, s.log_level, s.log_format)
    if args.command == "serve" and args.processes > 1:
        return _supervise(definition, args.processes)
    if args.command in ("serve", "worker"):
        aio.run(_serve(definition, args.command))
        return 0
    if args.command == "migrate":
        aio.run(_migrate(definition))
        return 0
    if args.command == "deadletters":
        return aio.run(_deadletters(definition, args))
    if args.command == "outbox-deadletters":
        return aio.run(_outbox_deadletters(definition, args))
    return aio.run(_audit_verify(definition, args.checkpoints))
