"""ASTM E1381 (CLSI LIS1-A) framing: control characters, checksums, frames and a stream buffer.

A frame on the wire is ``STX FN text (ETB|ETX) C1 C2 CR LF``:

* ``FN`` is the ASCII digit ``0``..``7``; the first frame of a transfer is ``1``, then 2..7, 0, 1, ...
* ``text`` is at most 240 bytes. A record longer than that is split: the middle frames end with
  ``ETB``, the record's last frame ends with ``CR ETX``. Every record starts a new frame.
* ``C1 C2`` is the checksum: the sum of the bytes from ``FN`` through ``ETB``/``ETX`` inclusive,
  modulo 256, as two uppercase hex digits (compared case-insensitively on receipt).

Real devices deviate, and :class:`FrameBuffer` is lenient where it is safe to be: the ``CR LF`` trailer
may be missing or reduced to ``LF``; frames far larger than 240 bytes (middleware-reassembled messages,
26 kB Horiba histogram frames) are accepted up to ``max_frame_bytes``. It is strict about checksums.

The E1394 record layer lives in :mod:`.records` and :mod:`.message`; it is re-exported here so that
``codec`` is the single import for everything between bytes and typed messages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hospital.lab.api.astm.message import (
    AstmMessage,
    AstmParseError,
    Comment,
    Header,
    Order,
    OrderGroup,
    Patient,
    PatientGroup,
    Query,
    Result,
    Terminator,
    TestId,
    parse_message,
)
from hospital.lab.api.astm.records import (
    DEFAULT_DELIMITERS,
    Delimiters,
    Record,
    decode_text,
    escape,
    is_terminator_record,
    parse_records,
    split_records,
    unescape,
)

__all__ = [
    "ACK",
    "CR",
    "DEFAULT_DELIMITERS",
    "ENQ",
    "EOT",
    "ETB",
    "ETX",
    "LF",
    "MAX_TEXT",
    "NAK",
    "STX",
    "AstmMessage",
    "AstmParseError",
    "Comment",
    "Control",
    "Delimiters",
    "Frame",
    "FrameBuffer",
    "Header",
    "LinkEvent",
    "Order",
    "OrderGroup",
    "Patient",
    "PatientGroup",
    "Query",
    "Record",
    "Result",
    "Terminator",
    "TestId",
    "assemble",
    "build_frames",
    "checksum",
    "decode_text",
    "encode_frame",
    "escape",
    "is_terminator_record",
    "parse_message",
    "parse_records",
    "split_records",
    "unescape",
]

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
EOT = 0x04
ENQ = 0x05
ACK = 0x06
LF = 0x0A
CR = 0x0D
NAK = 0x15
ETB = 0x17

MAX_TEXT = 240
"""Maximum text bytes per frame when *sending*. Receiving is lenient (see :class:`FrameBuffer`)."""

_CONTROL_NAMES = {ENQ: "ENQ", EOT: "EOT", ACK: "ACK", NAK: "NAK"}
_SPECIAL_IN_FRAME = re.compile(rb"[\x02\x03\x04\x05\x06\x15\x17]")


def checksum(body: bytes) -> bytes:
    """Checksum of a frame body (``FN`` through ``ETB``/``ETX`` inclusive) as two uppercase hex bytes."""
    return b"%02X" % (sum(body) & 0xFF)


@dataclass(frozen=True, slots=True)
class Control:
    """A single link-control byte received outside a frame: ENQ, EOT, ACK or NAK."""

    byte: int

    @property
    def name(self) -> str:
        return _CONTROL_NAMES[self.byte]


@dataclass(frozen=True, slots=True)
class Frame:
    """A received frame.

    ``fn`` is ``None`` when the byte after STX is not a digit 0..7. ``oversized`` frames exceeded the
    buffer's ``max_frame_bytes``; their text was dropped and ``checksum_ok`` is False, so a receiver NAKs.
    """

    fn: int | None
    text: bytes
    terminator: int
    checksum: bytes
    checksum_ok: bool
    oversized: bool = False

    @property
    def is_last_of_record(self) -> bool:
        """True when the frame ends a record: ``ETX``, or (as Roche c111 does) ``ETB`` after a record's CR."""
        return self.terminator == ETX or self.text.endswith(b"\r")

    @property
    def payload(self) -> bytes:
        """Text to append to the message being reassembled.

        An ``ETX`` frame always ends a record; when a device omits the record's CR we add it, so that
        concatenating payloads always yields CR-separated records.
        """
        if self.terminator == ETX and not self.text.endswith(b"\r"):
            return self.text + b"\r"
        return self.text


LinkEvent = Control | Frame


def encode_frame(fn: int, text: bytes, terminator: int = ETX) -> bytes:
    """Encode one frame: ``STX FN text terminator C1 C2 CR LF``."""
    if terminator not in (ETB, ETX):
        raise ValueError("terminator must be ETB or ETX")
    body = b"%d" % (fn % 8) + text + bytes((terminator,))
    return bytes((STX,)) + body + checksum(body) + b"\r\n"


def build_frames(records: Iterable[bytes], *, first_fn: int = 1, max_text: int = MAX_TEXT) -> list[bytes]:
    """Turn encoded records (without their trailing CR) into wire frames.

    Each record (plus its CR) starts a new frame; a record longer than ``max_text`` bytes is split into
    ``ETB`` frames followed by one ``ETX`` frame. Frame numbers start at ``first_fn`` and cycle 0..7.
    Splitting is done on bytes, so a multi-byte UTF-8 character may straddle two frames: the receiver
    reassembles bytes before decoding.
    """
    frames: list[bytes] = []
    fn = first_fn
    for record in records:
        data = record + b"\r"
        chunks = [data[i : i + max_text] for i in range(0, len(data), max_text)]
        for index, chunk in enumerate(chunks):
            terminator = ETX if index == len(chunks) - 1 else ETB
            frames.append(encode_frame(fn, chunk, terminator))
            fn = (fn + 1) % 8
    return frames


def assemble(frames: Sequence[Frame]) -> bytes:
    """Concatenate frame payloads into the message text (CR-separated records)."""
    return b"".join(frame.payload for frame in frames)


class FrameBuffer:
    """Incremental parser of an E1381 byte stream.

    Feed it whatever the socket returns (half a frame, three frames, control bytes in between) and it
    returns the complete events in order. Bytes outside frames other than ENQ/EOT/ACK/NAK (the CR LF
    trailer, line noise) are ignored. A frame interrupted by a control byte or a new STX is dropped.
    """

    _OUTSIDE = 0
    _BODY = 1
    _CHECKSUM = 2

    def __init__(self, max_frame_bytes: int = 1 << 20) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._state = self._OUTSIDE
        self._body = bytearray()
        self._checksum = bytearray()
        self._oversized = False

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not yet been completed."""
        return self._state != self._OUTSIDE

    def reset(self) -> None:
        self._state = self._OUTSIDE
        self._body.clear()
        self._checksum.clear()
        self._oversized = False

    def feed(self, data: bytes) -> list[LinkEvent]:
        events: list[LinkEvent] = []
        i, n = 0, len(data)
        while i < n:
            if self._state == self._OUTSIDE:
                byte = data[i]
                i += 1
                if byte == STX:
                    self._start_frame()
                elif byte in _CONTROL_NAMES:
                    events.append(Control(byte))
            elif self._state == self._BODY:
                match = _SPECIAL_IN_FRAME.search(data, i)
                end = match.start() if match else n
                self._append_body(data[i:end])
                i = end
                if match:
                    i += 1
                    self._special_in_body(match.group()[0], events)
            else:
                take = min(2 - len(self._checksum), n - i)
                self._checksum += data[i : i + take]
                i += take
                if len(self._checksum) == 2:
                    events.append(self._finish_frame())
        return events

    def _start_frame(self) -> None:
        self._state = self._BODY
        self._body.clear()
        self._checksum.clear()
        self._oversized = False

    def _append_body(self, chunk: bytes) -> None:
        if self._oversized:
            return
        if len(self._body) + len(chunk) > self.max_frame_bytes:
            log.warning("ASTM frame exceeds %d bytes; it will be rejected", self.max_frame_bytes)
            self._oversized = True
            self._body.clear()
            return
        self._body += chunk

    def _special_in_body(self, byte: int, events: list[LinkEvent]) -> None:
        if byte in (ETB, ETX):
            self._body.append(byte)
            self._state = self._CHECKSUM
        elif byte == STX:
            log.warning("ASTM frame restarted by STX before its end; partial frame dropped")
            self._start_frame()
        else:
            log.warning("ASTM frame interrupted by %s; partial frame dropped", _CONTROL_NAMES[byte])
            self.reset()
            events.append(Control(byte))

    def _finish_frame(self) -> Frame:
        body = bytes(self._body)
        received = bytes(self._checksum)
        oversized = self._oversized
        self.reset()
        terminator = body[-1] if body else ETX
        first = body[:1]
        fn = first[0] - 0x30 if first and b"0" <= first <= b"7" else None
        text = b"" if oversized else body[1:-1]
        ok = not oversized and received.upper() == checksum(body)
        return Frame(
            fn=fn, text=text, terminator=terminator, checksum=received, checksum_ok=ok, oversized=oversized
        )
