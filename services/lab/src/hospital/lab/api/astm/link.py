"""Sans-IO state machines for the ASTM E1381 (CLSI LIS1-A) link layer.

Neither class touches a socket or a clock. Feed them events from :class:`~.codec.FrameBuffer` and
carry out the actions they return (:class:`Send` bytes, wait for :class:`RetryAfter`, hand a
:class:`MessageReceived` to storage). Timers belong to the I/O wrapper: while ``Receiver.expects_frame``
is true it must call ``Receiver.on_timeout()`` after :data:`RECEIVE_TIMEOUT` seconds without an event;
while ``Sender.awaiting_reply`` is true it must call ``Sender.on_timeout()`` after :data:`REPLY_TIMEOUT`.

**Final ACK after durable storage.** When the frame that completes an L record arrives, the receiver
emits :class:`MessageReceived` and *no* reply. The caller stores the message and then calls
:meth:`Receiver.stored` (which emits the ACK) or :meth:`Receiver.store_failed` (which emits a NAK and
forgets that frame, so the analyzer's retransmission is processed as new and stored again). An analyzer
only marks a result as sent after that ACK, so nothing acknowledged can be lost; the price is a possible
duplicate when the store succeeded but the ACK did not reach the analyzer, so storage must be idempotent.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hospital.lab.api.astm.codec import ACK, ENQ, EOT, NAK, Control, Frame, LinkEvent
from hospital.lab.api.astm.records import is_terminator_record

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT = 30.0
"""Seconds a receiver waits for the next frame or EOT before abandoning the transfer."""
REPLY_TIMEOUT = 15.0
"""Seconds a sender waits for ACK/NAK before sending EOT."""
BUSY_RETRY_DELAY = 10.0
"""Seconds a sender waits before re-sending ENQ after the receiver answered NAK (busy)."""
CONTENTION_RETRY_DELAY = 1.0
"""Seconds an instrument-side sender waits before re-sending ENQ after a contention."""
MAX_FRAME_ATTEMPTS = 6
"""A frame NAKed this many times aborts the transfer (E1381: the sender then sends EOT)."""

_ACK = bytes((ACK,))
_NAK = bytes((NAK,))
_ENQ = bytes((ENQ,))
_EOT = bytes((EOT,))


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes to the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message (records separated by CR). Store it, then call ``stored()`` or
    ``store_failed()``."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """A partial message was abandoned (EOT or timeout before its L record)."""

    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """The transfer is over (EOT received, or abandoned); the link is neutral again."""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Wait ``delay`` seconds, then call ``Sender.retry()``."""

    delay: float


class SenderOutcome(enum.Enum):
    COMPLETED = "completed"
    ABORTED = "aborted"
    YIELDED = "yielded"


@dataclass(frozen=True, slots=True)
class Finished:
    """The sender is done. ``YIELDED`` means the LIS lost a contention: it must receive first and try later.

    With ``answer_enq`` the ENQ that caused the yield was a fresh bid (not a contention) and must be
    handed to the receiver; in a true contention it goes unanswered and the analyzer re-sends it.
    """

    outcome: SenderOutcome
    reason: str = ""
    answer_enq: bool = False


ReceiverAction = Send | MessageReceived | MessageDiscarded | TransferEnded
SenderAction = Send | RetryAfter | Finished


class ReceiverState(enum.Enum):
    IDLE = "idle"
    RECEIVING = "receiving"
    AWAITING_STORE = "awaiting_store"


class Receiver:
    """Receiving side of E1381: answers ENQ and frames, reassembles messages, withholds the final ACK."""

    def __init__(self, *, max_message_bytes: int = 1 << 20, max_frames_per_transfer: int = 20_000) -> None:
        self.busy = False
        """While True an ENQ is answered with NAK (the sender retries after ~10 s)."""
        self.state = ReceiverState.IDLE
        self.max_message_bytes = max_message_bytes
        self.max_frames_per_transfer = max_frames_per_transfer
        self.refused: str | None = None
        """Why the current transfer is refused (a limit): its frames are NAKed until the sender's EOT."""
        self._expected_fn = 1
        self._accepted_in_transfer = 0
        self._buffer = bytearray()
        self._eot_while_storing = False

    @property
    def expects_frame(self) -> bool:
        """True while the receive timer must run."""
        return self.state is ReceiverState.RECEIVING

    def handle(self, event: LinkEvent) -> list[ReceiverAction]:
        if self.state is ReceiverState.IDLE:
            return self._idle(event)
        if self.state is ReceiverState.RECEIVING:
            return self._receiving(event)
        return self._awaiting_store(event)

    def stored(self) -> list[ReceiverAction]:
        """The delivered message is durably stored: acknowledge its final frame."""
        self._require_awaiting_store()
        self._buffer.clear()
        self._advance_fn()
        if self._eot_while_storing:
            return self._end_transfer()
        self.state = ReceiverState.RECEIVING
        return [Send(_ACK)]

    def store_failed(self) -> list[ReceiverAction]:
        """Storing failed: NAK the final frame so the analyzer retransmits it (and we store again)."""
        self._require_awaiting_store()
        if self._eot_while_storing:
            return self._discard("storage failed after the sender gave up") + self._end_transfer()
        self.state = ReceiverState.RECEIVING
        return [Send(_NAK)]

    def on_timeout(self) -> list[ReceiverAction]:
        """The receive timer expired: abandon the transfer and return to neutral."""
        if self.state is not ReceiverState.RECEIVING:
            return []
        log.warning("ASTM receive timeout; abandoning transfer")
        return self._discard("receive timeout") + self._end_transfer()

    def _idle(self, event: LinkEvent) -> list[ReceiverAction]:
        if isinstance(event, Control) and event.byte == ENQ:
            if self.busy:
                return [Send(_NAK)]
            self._begin_transfer()
            return [Send(_ACK)]
        if isinstance(event, Frame):
            log.debug("ASTM frame outside a transfer ignored")
        return []

    def _receiving(self, event: LinkEvent) -> list[ReceiverAction]:
        if isinstance(event, Frame):
            return self._frame(event)
        if event.byte == EOT:
            return self._discard("EOT before the L record") + self._end_transfer()
        if event.byte == ENQ:
            log.warning("ASTM ENQ during a transfer: sender restarted")
            actions = self._discard("sender restarted the transfer")
            self._begin_transfer()
            return [*actions, Send(_ACK)]
        return []

    def _awaiting_store(self, event: LinkEvent) -> list[ReceiverAction]:
        if isinstance(event, Control) and event.byte == EOT:
            log.warning("ASTM sender sent EOT while its last frame awaited storage")
            self._eot_while_storing = True
        elif isinstance(event, Control) and event.byte == ENQ:
            return [Send(_NAK)]
        return []

    def _frame(self, frame: Frame) -> list[ReceiverAction]:
        if self.refused is not None:
            return [Send(_NAK)]  # the sender gives up after six NAKs of a frame and sends EOT
        if not frame.checksum_ok:
            log.warning("ASTM frame %s rejected: bad checksum %r", frame.fn, frame.checksum)
            return [Send(_NAK)]
        if frame.fn == self._expected_fn:
            payload = frame.payload
            reason = None
            if len(self._buffer) + len(payload) > self.max_message_bytes:
                reason = f"message exceeds the limit of {self.max_message_bytes} bytes"
            elif self._accepted_in_transfer >= self.max_frames_per_transfer:
                reason = f"transfer exceeds the limit of {self.max_frames_per_transfer} frames"
            if reason is not None:
                log.warning("ASTM transfer refused (NAK until EOT): %s", reason)
                self.refused = reason
                return [*self._discard(reason), Send(_NAK)]
            if frame.is_last_of_record and self._completes_message(payload):
                # The final frame stays out of the buffer until stored(): after store_failed() its
                # retransmission is processed as new.
                self.state = ReceiverState.AWAITING_STORE
                return [MessageReceived(bytes(self._buffer) + payload)]
            self._buffer += payload
            self._advance_fn()
            return [Send(_ACK)]
        if self._accepted_in_transfer and frame.fn == (self._expected_fn - 1) % 8:
            log.info("ASTM frame %s retransmitted; acknowledged again", frame.fn)
            return [Send(_ACK)]
        log.warning("ASTM frame rejected: number %s, expected %s", frame.fn, self._expected_fn)
        return [Send(_NAK)]

    def _completes_message(self, payload: bytes) -> bool:
        """Whether ``payload`` ends an L record (which may have begun in an earlier frame)."""
        record_start = self._buffer.rfind(b"\r") + 1
        return is_terminator_record(bytes(self._buffer[record_start:]) + payload)

    def _begin_transfer(self) -> None:
        self.state = ReceiverState.RECEIVING
        self.refused = None
        self._expected_fn = 1
        self._accepted_in_transfer = 0
        self._buffer.clear()
        self._eot_while_storing = False

    def _advance_fn(self) -> None:
        self._expected_fn = (self._expected_fn + 1) % 8
        self._accepted_in_transfer += 1

    def _discard(self, reason: str) -> list[ReceiverAction]:
        if not self._buffer:
            return []
        raw = bytes(self._buffer)
        self._buffer.clear()
        log.warning("ASTM partial message discarded (%s), %d bytes", reason, len(raw))
        return [MessageDiscarded(raw, reason)]

    def _end_transfer(self) -> list[ReceiverAction]:
        self.state = ReceiverState.IDLE
        self.refused = None
        self._eot_while_storing = False
        return [TransferEnded()]

    def _require_awaiting_store(self) -> None:
        if self.state is not ReceiverState.AWAITING_STORE:
            raise RuntimeError("no message is awaiting storage")


class SenderState(enum.Enum):
    IDLE = "idle"
    AWAITING_ENQ_REPLY = "awaiting_enq_reply"
    BACKING_OFF = "backing_off"
    AWAITING_FRAME_REPLY = "awaiting_frame_reply"
    DONE = "done"


class Sender:
    """Sending side of E1381 for one transfer (ENQ, frames, EOT).

    ``yields_on_contention`` is True for the LIS: when its ENQ crosses the analyzer's ENQ the analyzer
    wins, the LIS returns ``Finished(YIELDED)``, receives first and retries afterwards. An analyzer-side
    sender (the simulator) instead waits :data:`CONTENTION_RETRY_DELAY` and re-sends ENQ.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        yields_on_contention: bool,
        max_frame_attempts: int = MAX_FRAME_ATTEMPTS,
        max_enq_attempts: int = 6,
        busy_retry_delay: float = BUSY_RETRY_DELAY,
        contention_retry_delay: float = CONTENTION_RETRY_DELAY,
    ) -> None:
        if not frames:
            raise ValueError("nothing to send")
        self.frames = list(frames)
        self.yields_on_contention = yields_on_contention
        self.max_frame_attempts = max_frame_attempts
        self.max_enq_attempts = max_enq_attempts
        self.busy_retry_delay = busy_retry_delay
        self.contention_retry_delay = contention_retry_delay
        self.state = SenderState.IDLE
        self.outcome: SenderOutcome | None = None
        self.enq_sent = 0
        self.acks_received = 0
        self.frames_sent = 0
        self.frames_acked = 0
        self.naks = 0
        self._index = 0
        self._failures = 0

    @property
    def awaiting_reply(self) -> bool:
        """True while the reply timer must run."""
        return self.state in (SenderState.AWAITING_ENQ_REPLY, SenderState.AWAITING_FRAME_REPLY)

    def start(self) -> list[SenderAction]:
        if self.state is not SenderState.IDLE:
            raise RuntimeError("sender already started")
        return self._enq()

    def retry(self) -> list[SenderAction]:
        """Re-send ENQ after a :class:`RetryAfter` delay."""
        if self.state is not SenderState.BACKING_OFF:
            return []
        return self._enq()

    def on_timeout(self) -> list[SenderAction]:
        """No reply within the reply timeout: give up with EOT."""
        if not self.awaiting_reply:
            return []
        return self._abort("no reply within the reply timeout")

    def handle(self, event: LinkEvent) -> list[SenderAction]:
        if not isinstance(event, Control):
            return []
        if self.state is SenderState.AWAITING_ENQ_REPLY:
            return self._enq_reply(event.byte)
        if self.state is SenderState.AWAITING_FRAME_REPLY:
            return self._frame_reply(event.byte)
        if self.state is SenderState.BACKING_OFF and event.byte == ENQ and self.yields_on_contention:
            return self._finish(SenderOutcome.YIELDED, "peer started a transfer", answer_enq=True)
        return []

    def _enq(self) -> list[SenderAction]:
        self.state = SenderState.AWAITING_ENQ_REPLY
        self.enq_sent += 1
        return [Send(_ENQ)]

    def _enq_reply(self, byte: int) -> list[SenderAction]:
        if byte == ACK:
            self.acks_received += 1
            self.state = SenderState.AWAITING_FRAME_REPLY
            return self._send_frame()
        if byte == NAK:
            if self.enq_sent >= self.max_enq_attempts:
                return self._finish(SenderOutcome.ABORTED, "receiver busy")
            self.state = SenderState.BACKING_OFF
            return [RetryAfter(self.busy_retry_delay)]
        if byte == ENQ:
            if self.yields_on_contention:
                return self._finish(SenderOutcome.YIELDED, "contention: the analyzer sends first")
            self.state = SenderState.BACKING_OFF
            return [RetryAfter(self.contention_retry_delay)]
        return []

    def _frame_reply(self, byte: int) -> list[SenderAction]:
        # EOT in reply to a frame is a receiver interrupt request; E1381 lets the sender treat it as ACK.
        if byte in (ACK, EOT):
            if byte == ACK:
                self.acks_received += 1
            self.frames_acked += 1
            self._index += 1
            self._failures = 0
            if self._index == len(self.frames):
                return [Send(_EOT), *self._finish(SenderOutcome.COMPLETED)]
            return self._send_frame()
        if byte == NAK:
            self.naks += 1
            self._failures += 1
            if self._failures >= self.max_frame_attempts:
                return self._abort(f"frame rejected {self._failures} times")
            return self._send_frame()
        return []

    def _send_frame(self) -> list[SenderAction]:
        self.frames_sent += 1
        return [Send(self.frames[self._index])]

    def _abort(self, reason: str) -> list[SenderAction]:
        log.warning("ASTM transfer aborted: %s", reason)
        return [Send(_EOT), *self._finish(SenderOutcome.ABORTED, reason)]

    def _finish(
        self, outcome: SenderOutcome, reason: str = "", *, answer_enq: bool = False
    ) -> list[SenderAction]:
        self.state = SenderState.DONE
        self.outcome = outcome
        return [Finished(outcome, reason, answer_enq)]
