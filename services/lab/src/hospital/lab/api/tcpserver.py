"""The listener lifecycle the analyzer protocols share: bind (SO_REUSEPORT, so `serve --processes N`
runs N listeners on one port), track each connection, close them on shutdown.

Connections are served by callback-based :class:`SessionProtocol` objects (``asyncio.Protocol``), not by
a task reading a ``StreamReader``: bytes are handled in ``data_received`` as they arrive and replies go
straight to the transport, so a link-level round trip (an ASTM frame and its ACK) costs no task switch,
no future and no timer. Only work that must wait (storing a message, a host query) runs as a task, one
at a time per connection; bytes that arrive meanwhile are queued and handled after it, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Self, cast

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """What one listener allows (lab settings ``listener_*``; docs/lab.md). Each limit that is hit is
    logged at warning level with the peer's address.

    * ``max_connections`` open at once on the listener, ``max_connections_per_host`` from one address:
      a connection beyond either is closed at once;
    * ``idle_timeout``: a connection that sent nothing for this long, with no message under way, is closed
      (analyzers and interface engines connect again when they have something to send);
    * ``message_timeout``: a message (MLLP block, ASTM transfer) begun and not complete after this long
      is dropped and the connection closed: a 1 byte/s sender is not held forever;
    * ``max_message_bytes``: a larger message is refused (MLLP ``AE``, ASTM NAK) and never buffered whole.
    """

    max_connections: int = 64
    max_connections_per_host: int = 16
    idle_timeout: float = 1800.0
    message_timeout: float = 120.0
    max_message_bytes: int = 1 << 20


class SessionProtocol(asyncio.Protocol):
    """One connection. Subclasses implement :meth:`on_data` and may use :meth:`run_async`."""

    name = "TCP"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.busy = False
        self._task: asyncio.Task[None] | None = None
        self.server: TcpServer | None = None  # set by the listener that accepted the connection
        self.host = "unknown"
        self._limits: ListenerLimits | None = None
        self._last_data = 0.0
        self._message_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.host = str((self.transport.get_extra_info("peername") or ("unknown", 0))[0])
        if self.server is not None:
            refusal = self.server.admit(self)
            if refusal:
                log.warning(
                    "%s %s: connection from %s refused: %s", self.name, self.server.name, self.host, refusal
                )
                self.transport.abort()
                return
            self._limits = self.server.limits
            self._last_data = self.loop.time()
            self._arm_watchdog()
        self.on_connected()

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        self.on_data(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            log.warning("%s connection lost: %s", self.name, exc)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        try:
            if self._limits is not None or self.server is None:
                self.on_closed()
        finally:
            if self.server is not None:
                self.server.release(self)
            if not self.closed.done():
                self.closed.set_result(None)

    # --- limits -----------------------------------------------------------------------------------------
    def message_in_progress(self, in_progress: bool) -> None:
        """Subclasses report whether a message has begun and is not complete yet (its clock starts at the
        first report)."""
        if not in_progress:
            self._message_since = None
        elif self._message_since is None:
            self._message_since = self.loop.time()
            limits, watchdog = self._limits, self._watchdog
            # the message's deadline may come before the idle deadline the watchdog waits for
            if (
                limits is not None
                and watchdog is not None
                and watchdog.when() > self._message_since + limits.message_timeout
            ):
                watchdog.cancel()
                self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        limits = self._limits
        if limits is None or self.is_closing:
            return
        deadline = self._last_data + limits.idle_timeout
        if self._message_since is not None:
            deadline = min(deadline, self._message_since + limits.message_timeout)
        self._watchdog = self.loop.call_at(max(deadline, self.loop.time() + 0.05), self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._watchdog = None
        limits = self._limits
        if limits is None or self.is_closing:
            return
        now = self.loop.time()
        server = self.server.name if self.server is not None else ""
        if self._message_since is not None and now - self._message_since >= limits.message_timeout:
            log.warning(
                "%s %s: message from %s incomplete after %.0f s (limit); connection closed",
                self.name,
                server,
                self.host,
                now - self._message_since,
            )
            self.close()
            return
        if not self.busy and self._message_since is None and now - self._last_data >= limits.idle_timeout:
            log.warning(
                "%s %s: connection from %s idle for %.0f s (limit); closed",
                self.name,
                server,
                self.host,
                now - self._last_data,
            )
            self.close()
            return
        if self.busy:  # a store or host query under way is not idleness
            self._last_data = max(self._last_data, now - limits.idle_timeout + 1.0)
        self._arm_watchdog()

    # --- for subclasses ---------------------------------------------------------------------------------
    def on_connected(self) -> None:
        """The transport is set."""

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def on_closed(self) -> None:
        """The connection is gone (an in-flight task, if any, still completes)."""

    def on_async_done(self) -> None:
        """Called after a :meth:`run_async` task finished: continue with what was queued meanwhile."""

    @property
    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def run_async(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as this connection's one task; :meth:`on_async_done` follows. While it runs,
        :attr:`busy` is True and the subclass must queue what arrives."""
        self.busy = True
        self._task = self.loop.create_task(work)
        self._task.add_done_callback(self._async_finished)

    def _async_finished(self, task: asyncio.Task[None]) -> None:
        self.busy = False
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s session failed: %r", self.name, exc, exc_info=exc)
            self.close()
            return
        if not self.is_closing:
            self.on_async_done()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def shutdown(self) -> None:
        """Server close: cancel the in-flight task, close the connection, wait until it is gone."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.transport is not None:
            self.transport.abort()
        await asyncio.wait([self.closed], timeout=5)


class TcpServer:
    """Subclasses implement :meth:`make_session`; ``port`` 0 picks a free port (see :attr:`port`)."""

    protocol = "TCP"

    def __init__(self, host: str, port: int, name: str, limits: ListenerLimits | None = None) -> None:
        self._host, self._port, self._name = host, port, name
        self.limits = limits or ListenerLimits()
        self._server: asyncio.Server | None = None
        self._sessions: set[SessionProtocol] = set()
        self._admitted: set[SessionProtocol] = set()
        self._per_host: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self._name

    def admit(self, session: SessionProtocol) -> str:
        """Count a new connection in, or return why it is refused (the caps of :class:`ListenerLimits`)."""
        if len(self._admitted) >= self.limits.max_connections:
            return f"{len(self._admitted)} connections open, the limit of the listener"
        if self._per_host[session.host] >= self.limits.max_connections_per_host:
            return f"{self._per_host[session.host]} connections open from this address, the limit per address"
        self._admitted.add(session)
        self._per_host[session.host] += 1
        return ""

    def release(self, session: SessionProtocol) -> None:
        if session in self._admitted:
            self._admitted.discard(session)
            self._per_host[session.host] -= 1
            if self._per_host[session.host] <= 0:
                del self._per_host[session.host]

    @property
    def connections(self) -> int:
        return len(self._admitted)

    def open_hosts(self) -> Counter[str]:
        """Connections open now, per peer address."""
        return Counter(self._per_host)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, self._host, self._port, reuse_port=True)
        log.info("%s server %s listening on port %d", self.protocol, self._name, self.port)

    def make_session(self) -> SessionProtocol:
        raise NotImplementedError

    def _new_session(self) -> SessionProtocol:
        session = self.make_session()
        session.server = self
        self._sessions.add(session)
        session.closed.add_done_callback(lambda _: self._sessions.discard(session))
        return session

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(s.shutdown() for s in list(self._sessions)), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
