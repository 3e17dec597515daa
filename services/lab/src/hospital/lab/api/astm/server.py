"""asyncio TCP wrappers around the E1381 state machines: the LIS side of an analyzer connection.

``AstmServer`` listens (the analyzer connects to the LIS); ``AstmClient`` connects to an analyzer that
listens, reconnecting when the link drops. Both run the same per-connection session:

* the connection is an ``asyncio.Protocol`` (:class:`~hospital.lab.api.tcpserver.SessionProtocol`): bytes
  are fed to :class:`~.codec.FrameBuffer` as they arrive and each frame is answered at once by the
  :class:`~.link.Receiver`, without a task switch per frame;
* when a message's L record arrives the session parses it and awaits ``handler.store(raw, message,
  peer)`` (the connection's one task; later bytes wait); only when that returns does the analyzer get
  its final ACK. An exception, a parse failure
  or ``store_timeout`` elapsing yields a NAK instead, and the analyzer retransmits the frame;
* Q records collected during a transfer are answered after the analyzer's EOT: the session awaits
  ``handler.host_query(query)`` and becomes the sender of an H, P, O..., L message, with the full
  ENQ/ACK/frame/EOT handshake. If the analyzer bids (ENQ) at the same time, it wins: the LIS yields,
  receives, and retries after the analyzer's EOT (or after ``contention_retry_delay``).

All E1381 timers (receive 30 s, reply 15 s, busy retry 10 s) are real loop timers (one ``call_at``
handle per connection for the earliest deadline).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from hospital.lab.api.tcpserver import ListenerLimits, SessionProtocol, TcpServer

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
    """After losing a contention, retry at the latest this long after yielding (sooner on the analyzer's
    EOT)."""
    store_timeout: float = 10.0
    """A store slower than this is treated as failed (NAK); keep it below the analyzer's 15 s reply timer."""
    max_frame_bytes: int = 64 << 10
    """A longer frame is NAKed (E1381 frames carry at most 240 characters; some analyzers send a record per
    frame)."""
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    """Connection caps, idle and transfer timeouts, message size (``AstmServer`` listeners)."""
    max_frames_per_transfer: int = 20_000
    """A transfer (ENQ to EOT) with more frames is refused: its frames are NAKed until the EOT."""
    reconnect_delay: float = 5.0
    """``AstmClient`` only: pause between connection attempts."""


class _Link(SessionProtocol):
    """One TCP connection to one analyzer, driven by the bytes as they arrive (``asyncio.Protocol``).

    Frames are answered synchronously in ``data_received`` (no task switch per frame); storing a message
    and answering host queries are the only awaited steps and run as one task at a time, while later
    events wait in ``_pending`` — exactly as if the connection were read one event at a time. The E1381
    timers share one loop timer, re-armed only when the earliest deadline moves earlier.
    """

    name = "ASTM"

    def __init__(self, endpoint: AstmEndpoint, handler: AstmHandler) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._handler = handler
        self._peer = Peer(endpoint.instrument, "unknown", 0)
        self._buffer = FrameBuffer(endpoint.max_frame_bytes)
        self._receiver = Receiver(
            max_message_bytes=endpoint.limits.max_message_bytes,
            max_frames_per_transfer=endpoint.max_frames_per_transfer,
        )
        self._sender: Sender | None = None
        self._outbox: deque[list[bytes]] = deque()
        self._queries: list[tuple[Query, AstmMessage]] = []
        self._pending: deque[LinkEvent] = deque()
        self._receive_deadline: float | None = None
        self._reply_deadline: float | None = None
        self._retry_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- connection ---------------------------------------------------------------------------------------
    def on_connected(self) -> None:
        assert self.transport is not None
        host, port = (self.transport.get_extra_info("peername") or ("unknown", 0))[:2]
        self._peer = Peer(self._endpoint.instrument, host, port)
        log.info("ASTM link up: %s %s:%s", self._peer.instrument, self._peer.host, self._peer.port)
        self._pump()

    def on_data(self, data: bytes) -> None:
        self._pending.extend(self._buffer.feed(data))
        if not self.busy:
            self._pump()

    def on_async_done(self) -> None:
        self._pump()

    def on_closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._outbox:
            log.warning(
                "ASTM link to %s down with %d host-query answers unsent",
                self._peer.instrument,
                len(self._outbox),
            )
        log.info("ASTM link down: %s", self._peer.instrument)

    def _pump(self) -> None:
        """Handle queued events in order until one needs to wait (a store, a host query)."""
        while not self.busy and not self.is_closing:
            if not self._pending:
                self._start_sending_if_due()
                break
            self._dispatch(self._pending.popleft())
        self._arm_timer()
        # a transfer under way (ENQ to EOT) or a frame begun counts against the message timeout
        self.message_in_progress(self._receiver.state is not ReceiverState.IDLE or self._buffer.in_frame)

    # --- timers -------------------------------------------------------------------------------------------
    def _deadlines(self) -> list[float]:
        return [d for d in (self._receive_deadline, self._reply_deadline, self._retry_at) if d is not None]

    def _arm_timer(self) -> None:
        deadlines = self._deadlines()
        if not deadlines or self.is_closing:
            return
        when = min(deadlines)
        if self._timer is not None:
            if self._timer.when() <= when:
                return  # fires first; it re-arms for the later deadline
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.busy or self.is_closing:
            return  # the running step re-arms when it is done
        if any(d <= self.loop.time() for d in self._deadlines()):
            self._fire_timers()
        if not self.busy:
            self._pump()

    def _fire_timers(self) -> None:
        now = self.loop.time()
        if self._receive_deadline is not None and now >= self._receive_deadline:
            self._receive_deadline = None
            self._receiver_actions(self._receiver.on_timeout())
            if self.busy:
                return
        if self._reply_deadline is not None and now >= self._reply_deadline and self._sender is not None:
            self._reply_deadline = None
            self._sender_actions(self._sender.on_timeout(), None)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            if self._sender is not None:
                self._sender_actions(self._sender.retry(), None)

    # --- the link -----------------------------------------------------------------------------------------
    def _start_sending_if_due(self) -> None:
        if self._sender is not None or not self._outbox or self._receiver.state is not ReceiverState.IDLE:
            return
        if self._retry_at is not None:
            return
        e = self._endpoint
        self._sender = Sender(self._outbox[0], yields_on_contention=True, busy_retry_delay=e.busy_retry_delay)
        self._sender_actions(self._sender.start(), None)

    def _dispatch(self, event: LinkEvent) -> None:
        if self._sender is not None:
            self._sender_actions(self._sender.handle(event), event)
        else:
            self._to_receiver(event)

    def _to_receiver(self, event: LinkEvent) -> None:
        self._receiver_actions(self._receiver.handle(event))
        if not self.busy:
            self._update_receive_deadline()

    def _update_receive_deadline(self) -> None:
        self._receive_deadline = (
            self.loop.time() + self._endpoint.receive_timeout if self._receiver.expects_frame else None
        )

    def _sender_actions(self, actions: list[SenderAction], event: LinkEvent | None) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.write(action.data)
            elif isinstance(action, RetryAfter):
                self._retry_at = self.loop.time() + action.delay
            elif isinstance(action, Finished):
                self._sender_finished(action, event)
        sender = self._sender
        self._reply_deadline = (
            self.loop.time() + self._endpoint.reply_timeout
            if sender is not None and sender.awaiting_reply
            else None
        )

    def _sender_finished(self, finished: Finished, event: LinkEvent | None) -> None:
        self._sender = None
        if finished.outcome is SenderOutcome.YIELDED:
            log.info("ASTM contention with %s: receiving first", self._peer.instrument)
            self._retry_at = self.loop.time() + self._endpoint.contention_retry_delay
            if finished.answer_enq and event is not None:
                self._to_receiver(event)
            return
        self._outbox.popleft()
        if finished.outcome is SenderOutcome.ABORTED:
            log.error("ASTM host-query answer to %s dropped: %s", self._peer.instrument, finished.reason)

    def _receiver_actions(self, actions: list[ReceiverAction]) -> None:
        for i, action in enumerate(actions):
            if isinstance(action, Send):
                self.write(action.data)
            elif isinstance(action, MessageReceived) or (isinstance(action, TransferEnded) and self._queries):
                self.run_async(self._receiver_actions_async(actions[i:]))  # store / host query: wait
                return
            elif isinstance(action, MessageDiscarded):
                log.warning(
                    "ASTM partial message from %s discarded: %s", self._peer.instrument, action.reason
                )
            elif isinstance(action, TransferEnded) and self._sender is None:
                self._retry_at = None  # a yielded answer may go right after the analyzer's EOT

    async def _receiver_actions_async(self, actions: list[ReceiverAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.write(action.data)
            elif isinstance(action, MessageReceived):
                await self._receiver_actions_async(await self._deliver(action.raw))
            elif isinstance(action, MessageDiscarded):
                log.warning(
                    "ASTM partial message from %s discarded: %s", self._peer.instrument, action.reason
                )
            elif isinstance(action, TransferEnded):
                if self._sender is None:
                    self._retry_at = None
                await self._answer_queries()
        self._update_receive_deadline()

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
        except ValueError as exc:  # the content cannot be accepted as it is (e.g. a value over its limit)
            log.warning("ASTM message from %s refused; NAK: %s", e.instrument, exc)
            return self._receiver.store_failed()
        except Exception:
            log.exception("ASTM message from %s not stored; NAK", e.instrument)
            return self._receiver.store_failed()
        self._queries.extend((query, message) for query in message.queries)
        self.message_in_progress(False)  # the next message of the transfer gets its own time
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
                orders,
                now=datetime.now(),
                delimiters=message.header.delimiters,
                dialect=message.dialect,
                sender=self._endpoint.lis_name,
                receiver=message.header.sender_name,
                failed=failed,
            )
            self._outbox.append(build_frames(r.encode(self._endpoint.encoding) for r in records))


class AstmServer(TcpServer):
    """The LIS listens on ``endpoint.port`` (0 picks a free port, see :attr:`port`) for one analyzer."""

    protocol = "ASTM"

    def __init__(self, endpoint: AstmEndpoint, handler: AstmHandler) -> None:
        super().__init__(endpoint.host, endpoint.port, endpoint.instrument, endpoint.limits)
        self.endpoint = endpoint
        self._handler = handler

    def make_session(self) -> SessionProtocol:
        return _Link(self.endpoint, self._handler)


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
        loop = asyncio.get_running_loop()
        while True:
            try:
                _, link = await loop.create_connection(lambda: _Link(e, self._handler), e.host, e.port)
            except OSError as exc:
                log.warning("ASTM connect to %s at %s:%s failed: %s", e.instrument, e.host, e.port, exc)
            else:
                try:
                    await asyncio.shield(link.closed)
                except asyncio.CancelledError:
                    await link.shutdown()
                    raise
            await asyncio.sleep(e.reconnect_delay)
