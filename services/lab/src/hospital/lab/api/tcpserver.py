"""The listener lifecycle the analyzer protocols share: bind (SO_REUSEPORT, so `serve --processes N`
runs N listeners on one port), track each connection's task, cancel them on close."""
from __future__ import annotations

import asyncio
import logging
from typing import Self

log = logging.getLogger(__name__)


class TcpServer:
    """Subclasses implement :meth:`serve_connection`; ``port`` 0 picks a free port (see :attr:`port`)."""

    protocol = "TCP"

    def __init__(self, host: str, port: int, name: str) -> None:
        self._host, self._port, self._name = host, port, name
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self._host, self._port, reuse_port=True)
        log.info("%s server %s listening on port %d", self.protocol, self._name, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self.serve_connection(reader, writer)
        except asyncio.CancelledError:
            log.debug("%s session on %s cancelled by server close", self.protocol, self._name)
        finally:
            self._sessions.discard(task)
