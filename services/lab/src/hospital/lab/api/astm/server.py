"""asyncio TCP wrappers around the E1381 state machines: the LIS side of an analyzer connection.

``AstmServer`` listens (the analyzer connects to the LIS); ``AstmClient`` connects to an analyzer that
listens, reconnecting when the link drops. Both run the same per-connection session:

* frames are read through :class:`~.codec.FrameBuffer` and fed to a :class:`~.link.Receiver`;
* when a message's L record arrives the session parses it and awaits ``handler.store(raw, message,
  peer)``; only when that returns does the analyzer get its final ACK. An exception, a parse failure
  or ``store_timeout`` elapsing yields a NAK instead, and the analyzer retransmits the frame;
* Q records collected during a transfer are answered after the analyzer's EOT: the session awaits
  ``handler.host_query(query)`` and becomes the sender of an H, P, O..., L message, with the full
  ENQ/ACK/frame/EOT handshake. If the analyzer bids (ENQ) at the same time, it wins: the LIS yields,
  receives, and retries after the analyzer's EOT (or after ``contention_retry_delay``).

All E1381 timers (receive 30 s, reply 15 s, busy retry 10 s) are real ``asyncio`` timeouts. They use
``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` drops a cancellation that
arrives as the read completes, which left a closed ``AstmClient`` reconnecting forever.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

from hospital.lab.api.astm.codec import FrameBuffer, LinkEvent, build_frames
from hospital.lab.api.astm.dialects import Dialect
from hospital.lab.api.astm.hostquery import HostOrder, build_host_query_reply
from hospital.lab.api.astm.link import (
    BUSY_RETRY_DELAY,
    RECEIVE_TIMEOUT,
    REPLY_TIMEOUT,
    Finished,
    MessageDiscarded,
    MessageReceived,
    Receiver,
    ReceiverAction,
    ReceiverState,
    RetryAfter,
    Send,
    Sender,
    SenderAction,
    SenderOutcome,
    TransferEnded,
)
from hospital.lab.api.astm.message import AstmMessage, AstmParseError, Query, parse_message
from hospital.lab.api.tcpserver import TcpServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who a message came from: the configured instrument name and the remote address."""

    instrument: str
    host: str
    port: int


class AstmHandler(Protocol):
    async def store(self, raw: bytes, message: AstmMessage, peer: Peer) -> None:
        """Durably store a received message. Return only once it is safe; raise to have it NAKed."""

    async def host_query(self, query: Query) -> Sequence[HostOrder]:
        """Pending orders for the specimen IDs in an analyzer's Q record (empty: nothing known)."""


@dataclass(frozen=True, slots=True)
class AstmEndpoint:
    """Configuration of one analyzer connection."""

    instrument: str
    host: str
    port: int
    dialect: Dialect | None = None
    """Force a dialect; by default it is detected from each message's H-5 sender field."""
    encoding: str = "utf-8"
    """Text encoding (Latin-1 is tried when the bytes are not valid in this encoding)."""
    lis_name: str = "LIS"
    """H-5 sender name of the LIS in host-query answers."""
    receive_timeout: float = RECEIVE_TIMEOUT
    reply_timeout: float = REPLY_TIMEOUT
    busy_retry_delay: float = BUSY_RETRY_DELAY
    contention_retry_delay: float = 20.0
    """After losing a contention, retry at the latest this long after yielding (sooner on the analyzer's EOT)."""
    store_timeout: float = 10.0
    """A store slower than this is treated as failed (NAK); keep it below the analyzer's 15 s reply timer."""
    max_frame_bytes: int = 1 << 20
    reconnect_delay: float = 5.0
    """``AstmClient`` only: pause between connection attempts."""


class _Session:
    """One TCP connection to one analyzer; runs until the peer closes or the task is cancelled."""

    def __init__(self, endpoint: AstmEndpoint, handler: AstmHandler, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self._endpoint = endpoint
        self._handler = handler
        self._reader = reader
        self._writer = writer
        host, port = (writer.get_extra_info("peername") or ("unknown", 0))[:2]
        self._peer = Peer(endpoint.instrument, host, port)
        self._loop = asyncio.get_running_loop()
        self._buffer = FrameBuffer(endpoint.max_frame_bytes)
        self._receiver = Receiver()
        self._sender: Sender | None = None
        self._outbox: deque[list[bytes]] = deque()
        self._queries: list[tuple[Query, AstmMessage]] = []
        self._receive_deadline: float | None = None
        self._reply_deadline: float | None = None
        self._retry_at: float | None = None

    async def run(self) -> None:
        log.info("ASTM link up: %s %s:%s", self._peer.instrument, self._peer.host, self._peer.port)
        try:
            while True:
                await self._start_sending_if_due()
                try:
                    async with asyncio.timeout(self._seconds_to_deadline()):
                        data = await self._reader.read(65536)
                except TimeoutError:
                    await self._fire_timers()
                    continue
                if not data:
                    break
                for event in self._buffer.feed(data):
                    await self._dispatch(event)
        except ConnectionError as exc:
            log.warning("ASTM link to %s lost: %s", self._peer.instrument, exc)
        finally:
            self._writer.close()
            if self._outbox:
                log.warning("ASTM link to %s down with %d host-query answers unsent",
                            self._peer.instrument, len(self._outbox))
            log.info("ASTM link down: %s", self._peer.instrument)

    def _deadlines(self) -> list[float]:
        return [d for d in (self._receive_deadline, self._reply_deadline, self._retry_at) if d is not None]

    def _seconds_to_deadline(self) -> float | None:
        deadlines = self._deadlines()
        return max(0.0, min(deadlines) - self._loop.time()) if deadlines else None

    async def _fire_timers(self) -> None:
        now = self._loop.time()
        if self._receive_deadline is not None and now >= self._receive_deadline:
            self._receive_deadline = None
            await self._receiver_actions(self._receiver.on_timeout())
        if self._reply_deadline is not None and now >= self._reply_deadline and self._sender is not None:
            self._reply_deadline = None
            await self._sender_actions(self._sender.on_timeout(), None)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            if self._sender is not None:
                await self._sender_actions(self._sender.retry(), None)

    async def _start_sending_if_due(self) -> None:
        if self._sender is not None or not self._outbox or self._receiver.state is not ReceiverState.IDLE:
            return
        if self._retry_at is not None:
            return
        e = self._endpoint
        self._sender = Sender(self._outbox[0], yields_on_contention=True, busy_retry_delay=e.busy_retry_delay)
        await self._sender_actions(self._sender.start(), None)

    async def _dispatch(self, event: LinkEvent) -> None:
        if self._sender is not None:
            await self._sender_actions(self._sender.handle(event), event)
        else:
            await self._to_receiver(event)

    async def _to_receiver(self, event: LinkEvent) -> None:
        await self._receiver_actions(self._receiver.handle(event))
        self._receive_deadline = (
            self._loop.time() + self._endpoint.receive_timeout if self._receiver.expects_frame else None
        )

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def _sender_actions(self, actions: list[SenderAction], event: LinkEvent | None) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self._write(action.data)
            elif isinstance(action, RetryAfter):
                self._retry_at = self._loop.time() + action.delay
            elif isinstance(action, Finished):
                await self._sender_finished(action, event)
        sender = self._sender
        self._reply_deadline = (
            self._loop.time() + self._endpoint.reply_timeout if sender is not None and sender.awaiting_reply else None
        )

    async def _sender_finished(self, finished: Finished, event: LinkEvent | None) -> None:
        self._sender = None
        if finished.outcome is SenderOutcome.YIELDED:
            log.info("ASTM contention with %s: receiving first", self._peer.instrument)
            self._retry_at = self._loop.time() + self._endpoint.contention_retry_delay
            if finished.answer_enq and event is not None:
                await self._to_receiver(event)
            return
        self._outbox.popleft()
        if finished.outcome is SenderOutcome.ABORTED:
            log.error("ASTM host-query answer to %s dropped: %s", self._peer.instrument, finished.reason)

    async def _receiver_actions(self, actions: list[ReceiverAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self._write(action.data)
            elif isinstance(action, MessageReceived):
                await self._receiver_actions(await self._deliver(action.raw))
            elif isinstance(action, MessageDiscarded):
                log.warning("ASTM partial message from %s discarded: %s", self._peer.instrument, action.reason)
            elif isinstance(action, TransferEnded):
                if self._sender is None:
                    self._retry_at = None  # a yielded answer may go right after the analyzer's EOT
                await self._answer_queries()

    async def _deliver(self, raw: bytes) -> list[ReceiverAction]:
        """Parse and store a complete message; the receiver's ACK/NAK for its last frame depends on it."""
        e = self._endpoint
        try:
            message = parse_message(raw, dialect=e.dialect, encoding=e.encoding)
        except AstmParseError:
            log.exception("ASTM message from %s unparseable: %r", e.instrument, raw[:200])
            return self._receiver.store_failed()
        try:
            async with asyncio.timeout(e.store_timeout):
                await self._handler.store(raw, message, self._peer)
        except Exception:
            log.exception("ASTM message from %s not stored; NAK", e.instrument)
            return self._receiver.store_failed()
        self._queries.extend((query, message) for query in message.queries)
        return self._receiver.stored()

    async def _answer_queries(self) -> None:
        queries, self._queries = self._queries, []
        for query, message in queries:
            failed = False
            orders: Sequence[HostOrder] = ()
            try:
                orders = await self._handler.host_query(query)
            except Exception:
                log.exception("host query %s from %s failed", query.specimen_ids, self._peer.instrument)
                failed = True
            records = build_host_query_reply(
                orders, now=datetime.now(), delimiters=message.header.delimiters, dialect=message.dialect,
                sender=self._endpoint.lis_name, receiver=message.header.sender_name, failed=failed,
            )
            self._outbox.append(build_frames(r.encode(self._endpoint.encoding) for r in records))


class AstmServer(TcpServer):
    """The LIS listens on ``endpoint.port`` (0 picks a free port, see :attr:`port`) for one analyzer."""

    protocol = "ASTM"

    def __init__(self, endpoint: AstmEndpoint, handler: AstmHandler) -> None:
        super().__init__(endpoint.host, endpoint.port, endpoint.instrument)
        self.endpoint = endpoint
        self._handler = handler

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(self.endpoint, self._handler, reader, writer).run()


class AstmClient:
    """The LIS connects to an analyzer listening on ``endpoint.host:endpoint.port`` and stays connected."""

    def __init__(self, endpoint: AstmEndpoint, handler: AstmHandler) -> None:
        self.endpoint = endpoint
        self._handler = handler
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"astm-client-{self.endpoint.instrument}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        e = self.endpoint
        while True:
            try:
                reader, writer = await asyncio.open_connection(e.host, e.port)
            except OSError as exc:
                log.warning("ASTM connect to %s at %s:%s failed: %s", e.instrument, e.host, e.port, exc)
            else:
                await _Session(e, self._handler, reader, writer).run()
            await asyncio.sleep(e.reconnect_delay)
