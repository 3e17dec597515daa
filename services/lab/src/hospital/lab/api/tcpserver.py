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
from collections.abc import Coroutine
from typing import Any, Self, cast

log = logging.getLogger(__name__)


class SessionProtocol(asyncio.Protocol):
    """One connection. Subclasses implement :meth:`on_data` and may use :meth:`run_async`."""

    name = "TCP"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.busy = False
        self._task: asyncio.Task[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.on_connected()

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            log.warning("%s connection lost: %s", self.name, exc)
        try:
            self.on_closed()
        finally:
            if not self.closed.done():
                self.closed.set_result(None)

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

    def __init__(self, host: str, port: int, name: str) -> None:
        self._host, self._port, self._name = host, port, name
        self._server: asyncio.Server | None = None
        self._sessions: set[SessionProtocol] = set()

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
