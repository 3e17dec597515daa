"""MLLP framing and the asyncio MLLP server for HL7 v2 analyzers and HIS interfaces.

A block on the wire is ``VT (0x0B) message FS (0x1C) CR (0x0D)``. :class:`MllpBuffer` takes arbitrary
TCP chunks and returns complete messages; bytes outside blocks are dropped, a block restarted by a new
VT discards the partial one, and a block larger than ``max_message_bytes`` is dropped as it arrives and
answered ``AE`` with the reason once its end arrives. Connection caps, idle and incomplete-message
timeouts: :class:`~hospital.lab.api.tcpserver.ListenerLimits`.

:class:`MllpServer` handles one message at a time per connection (original acknowledgment mode):

1. parse MSH and the message (``AR`` for unparseable/unsupported messages, ``AE`` for content errors,
   with the reason in MSA-3 and ERR);
2. await ``handler.store(raw, message, peer)`` — the raw bytes are stored *before* any ACK is sent;
   a failing or slow store gets ``AR`` ("resend later") instead of ``AA``;
3. reply: ``ACK`` for ORU^R01/OUL^R22, ``ORL^O22`` for OML^O21, ``RSP^K11`` (after awaiting
   ``handler.host_query``) for QBP^Q11.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hospital.lab.api.astm.hostquery import HostOrder
from hospital.lab.api.astm.server import Peer
from hospital.lab.api.hl7.messages import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    Hl7Error,
    Hl7Message,
    OrderMessage,
    ReplySender,
    SpecimenQuery,
    build_ack,
    build_orl_o22,
    build_rsp_k11,
    content_error,
    decode,
    parse_header,
    parse_hl7,
    reject,
)
from hospital.lab.api.tcpserver import ListenerLimits, SessionProtocol, TcpServer

log = logging.getLogger(__name__)

VT = 0x0B
FS = 0x1C
CR = 0x0D


def frame(message: bytes | str) -> bytes:
    """Wrap one HL7 message in an MLLP block."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return bytes((VT,)) + data + bytes((FS, CR))


@dataclass(frozen=True, slots=True)
class Oversized:
    """A block larger than the buffer's ``max_message_bytes``: its content was dropped as it arrived
    (only ``head``, its first bytes, is kept so the reply can echo the MSH); ``size`` bytes in all."""

    head: bytes
    size: int


class MllpBuffer:
    """Incremental MLLP deframer. Returns complete messages (``bytes``) and, for a block that grew past
    ``max_message_bytes``, one :class:`Oversized` once its end arrives; memory stays bounded by the limit."""

    HEAD_BYTES = 4096

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        self._data = bytearray()
        self._in_block = False
        self._scanned = 0
        self._discarding: Oversized | None = None

    @property
    def in_block(self) -> bool:
        """A block has begun and not yet ended (for the incomplete-message timeout)."""
        return self._in_block

    def feed(self, chunk: bytes) -> list[bytes | Oversized]:
        messages: list[bytes | Oversized] = []
        self._data += chunk
        while True:
            if not self._in_block:
                start = self._data.find(VT)
                if start < 0:
                    self._data.clear()
                    return messages
                del self._data[: start + 1]
                self._in_block, self._scanned = True, 0
            end = self._data.find(FS, self._scanned)
            restart = self._data.find(VT, self._scanned, end if end >= 0 else len(self._data))
            if restart >= 0:
                log.warning("MLLP block restarted by VT; %d bytes dropped", restart)
                del self._data[:restart]
                self._in_block, self._discarding = False, None
                continue
            if self._discarding is not None:
                dropped = self._discarding
                taken = end if end >= 0 else len(self._data)
                self._discarding = Oversized(dropped.head, dropped.size + taken)
                if end < 0:
                    self._data.clear()
                    self._scanned = 0
                    return messages
                messages.append(self._discarding)
                self._discarding = None
                self._end_block(end)
                continue
            if end < 0:
                self._scanned = len(self._data)
                if self._scanned > self.max_message_bytes:
                    log.warning(
                        "MLLP block exceeds %d bytes; dropping it as it arrives", self.max_message_bytes
                    )
                    self._discarding = Oversized(bytes(self._data[: self.HEAD_BYTES]), len(self._data))
                    self._data.clear()
                    self._scanned = 0
                return messages
            messages.append(bytes(self._data[:end]))
            self._end_block(end)

    def _end_block(self, end: int) -> None:
        skip = end + 2 if self._data[end + 1 : end + 2] == bytes((CR,)) else end + 1
        del self._data[:skip]
        self._in_block = False
        self._scanned = 0


class Hl7Handler(Protocol):
    async def store(self, raw: bytes, message: Hl7Message, peer: Peer) -> None:
        """Durably store a received message; raise (or be slow) to have the sender resend it."""

    async def host_query(self, query: SpecimenQuery) -> Sequence[HostOrder]:
        """Pending orders for the queried specimens (QBP^Q11)."""


@dataclass(frozen=True, slots=True)
class MllpEndpoint:
    name: str
    host: str
    port: int
    application: str = "HOSPITAL-LIS"
    facility: str = ""
    store_timeout: float = 10.0
    limits: ListenerLimits = field(default_factory=ListenerLimits)


class MllpServer(TcpServer):
    """asyncio MLLP listener; ``port`` 0 picks a free port (see :attr:`port`)."""

    protocol = "MLLP"

    def __init__(self, endpoint: MllpEndpoint, handler: Hl7Handler) -> None:
        super().__init__(endpoint.host, endpoint.port, endpoint.name, endpoint.limits)
        self.endpoint = endpoint
        self._handler = handler
        self._sender = ReplySender(endpoint.application, endpoint.facility)

    async def respond(self, raw: bytes, peer: Peer) -> str:
        """Process one received message and return the reply to send (never raises on bad input)."""
        try:
            message = parse_hl7(raw)
        except Hl7Error as error:
            log.warning("HL7 message from %s refused (%s): %s", peer.host, error.ack_code, error.reason)
            return build_ack(error.header, error.ack_code, error=error, sender=self._sender)
        header = message.header
        try:
            async with asyncio.timeout(self.endpoint.store_timeout):
                await self._handler.store(raw, message, peer)
        except Hl7Error as error:  # the content cannot be accepted as it is (e.g. a value over its limit)
            log.warning(
                "HL7 %s %s from %s refused (%s): %s",
                header.message_type,
                header.control_id,
                peer.host,
                error.ack_code,
                error.reason,
            )
            return self._reply(message, error)
        except Exception:
            log.exception("HL7 %s %s from %s not stored", header.message_type, header.control_id, peer.host)
            return self._reply(
                message, reject(APPLICATION_INTERNAL_ERROR, "message could not be stored; resend later")
            )
        if isinstance(message, SpecimenQuery):
            try:
                orders = await self._handler.host_query(message)
            except Exception:
                log.exception("HL7 query %s from %s failed", message.specimen_ids, peer.host)
                return self._reply(
                    message, Hl7Error("AE", APPLICATION_INTERNAL_ERROR, "worklist lookup failed")
                )
            return build_rsp_k11(message, bool(orders), sender=self._sender)
        return self._reply(message)

    def refuse_oversized(self, block: Oversized, peer: Peer) -> str:
        """The reply to a block over the size limit: ``AE`` with the reason, echoing its MSH if readable."""
        limit = self.endpoint.limits.max_message_bytes
        reason = f"message of {block.size} bytes exceeds the limit of {limit} bytes; nothing was stored"
        log.warning("HL7 message from %s refused: %s", peer.host, reason)
        header = None
        try:
            _, header = parse_header(decode(block.head.split(b"\r", 1)[0]))
        except Hl7Error:
            pass
        return build_ack(
            header, "AE", error=content_error(DATA_TYPE_ERROR, reason, "MSH"), sender=self._sender
        )

    def _reply(self, message: Hl7Message, error: Hl7Error | None = None) -> str:
        """The reply type the message calls for, ``AA`` or carrying ``error``."""
        code = error.ack_code if error else "AA"
        if isinstance(message, OrderMessage):
            return build_orl_o22(message, code, error=error, sender=self._sender)
        if isinstance(message, SpecimenQuery):
            return build_rsp_k11(message, False, error=error, sender=self._sender)
        return build_ack(message.header, code, error=error, sender=self._sender)

    def make_session(self) -> SessionProtocol:
        return _MllpSession(self)


class _MllpSession(SessionProtocol):
    """One MLLP connection: messages are answered one at a time, in order (original acknowledgment
    mode); blocks that arrive while one is being stored wait in ``_pending``."""

    name = "MLLP"

    def __init__(self, server: MllpServer) -> None:
        super().__init__()
        self._server = server
        self._buffer = MllpBuffer(server.endpoint.limits.max_message_bytes)
        self._pending: deque[bytes | Oversized] = deque()
        self._peer = Peer(server.endpoint.name, "unknown", 0)

    def on_connected(self) -> None:
        assert self.transport is not None
        host, port = (self.transport.get_extra_info("peername") or ("unknown", 0))[:2]
        self._peer = Peer(self._server.endpoint.name, host, port)

    def on_data(self, data: bytes) -> None:
        self._pending.extend(self._buffer.feed(data))
        self.message_in_progress(self._buffer.in_block)
        if not self.busy:
            self.on_async_done()

    def on_async_done(self) -> None:
        if self._pending:
            item = self._pending.popleft()
            if isinstance(item, Oversized):
                self.write(frame(self._server.refuse_oversized(item, self._peer)))
                self.on_async_done()
            else:
                self.run_async(self._answer(item))

    async def _answer(self, raw: bytes) -> None:
        self.write(frame(await self._server.respond(raw, self._peer)))
