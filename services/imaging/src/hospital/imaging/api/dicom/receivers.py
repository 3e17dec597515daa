"""C-STORE receiving in worker processes: the listener accepts, a receiver process spools.

One Python process cannot receive faster than its GIL allows, and several processes sharing the port
with SO_REUSEPORT split associations unevenly. So the serve process keeps the only listening socket
and, for each accepted connection, peeks (``MSG_PEEK``, nothing consumed) at the A-ASSOCIATE-RQ:

* every proposed abstract syntax is a Storage SOP class or Verification → the socket is handed
  (``socket.send_fds`` over a ``SOCK_SEQPACKET`` pair) to the least busy of N receiver processes,
  which run the association with the same :class:`StoreHandler` (spool, fsync, then success);
* anything else (C-FIND, C-MOVE, C-GET, worklist, MPPS, or a PDU we cannot parse) → handled in the
  serve process as before, where the database is.

A receiver only spools; it tells the parent "stored" (to wake the pipeline) and "association over"
(for load balancing) over the same socket pair. A receiver that dies takes its open associations with
it (the peers see the connection drop, and nothing that was not durable was acknowledged); the parent
starts a new one. The receiver exits when the parent's end of the pair closes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom import AllStoragePresentationContexts, VerificationPresentationContexts

log = logging.getLogger(__name__)

# A-ASSOCIATE-RQ PDU type, and the item types inside it (PS3.8 9.3.2).
_ASSOCIATE_RQ = 0x01
_PRESENTATION_CONTEXT_RQ = 0x20
_ABSTRACT_SYNTAX = 0x30
_FIXED_FIELDS = 68  # protocol version, reserved, called AE, calling AE, reserved
#: A request larger than this is not peeked at: the serve process handles it.
MAX_PEEK = 256 * 1024

#: Messages from a receiver to the parent (one per SEQPACKET datagram).
MSG_READY, MSG_STORED, MSG_DONE = b"R", b"S", b"D"
#: The parent's message carrying one accepted socket.
MSG_SOCKET = b"A"

STORAGE_ABSTRACT_SYNTAXES: frozenset[str] = frozenset(
    str(cx.abstract_syntax) for cx in (*AllStoragePresentationContexts, *VerificationPresentationContexts)
)


def proposed_abstract_syntaxes(pdu: bytes) -> list[str] | None:
    """Abstract syntaxes proposed by an A-ASSOCIATE-RQ PDU; None if `pdu` is not a complete one."""
    if len(pdu) < 6 or pdu[0] != _ASSOCIATE_RQ:
        return None
    length = struct.unpack_from(">I", pdu, 2)[0]
    end = 6 + length
    if len(pdu) < end or length < _FIXED_FIELDS:
        return None
    found: list[str] = []
    offset = 6 + _FIXED_FIELDS
    while offset + 4 <= end:
        item_type, item_length = pdu[offset], struct.unpack_from(">H", pdu, offset + 2)[0]
        item_end = offset + 4 + item_length
        if item_end > end:
            return None
        if item_type == _PRESENTATION_CONTEXT_RQ:
            sub = offset + 8  # context id, 3 reserved bytes
            while sub + 4 <= item_end:
                sub_type, sub_length = pdu[sub], struct.unpack_from(">H", pdu, sub + 2)[0]
                if sub + 4 + sub_length > item_end:
                    return None
                if sub_type == _ABSTRACT_SYNTAX:
                    found.append(
                        pdu[sub + 4 : sub + 4 + sub_length].rstrip(b"\0 ").decode("ascii", "replace")
                    )
                sub += 4 + sub_length
        offset = item_end
    return found


def is_storage_only(pdu: bytes) -> bool:
    """True if the association only proposes Storage SOP classes (and Verification)."""
    syntaxes = proposed_abstract_syntaxes(pdu)
    return bool(syntaxes) and all(s in STORAGE_ABSTRACT_SYNTAXES for s in syntaxes)  # type: ignore[union-attr]


def peek_association_request(sock: socket.socket, timeout: float) -> bytes:
    """The A-ASSOCIATE-RQ at the head of `sock`, left unread; b"" if it does not arrive in time.

    Leaves the socket in blocking mode (the flag is shared with any process the socket is handed to).
    """
    deadline = time.monotonic() + timeout
    want = 6
    data = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            sock.settimeout(remaining)
            data = sock.recv(want, socket.MSG_PEEK)
            if not data:
                return b""
            if len(data) >= 6:
                total = 6 + struct.unpack_from(">I", data, 2)[0]
                if data[0] != _ASSOCIATE_RQ or total > MAX_PEEK:
                    return data
                if len(data) >= total:
                    return data
                want = total
            if len(data) < want:
                time.sleep(0.001)  # the rest is in flight; MSG_PEEK returns what is there
    except (TimeoutError, OSError):
        return data
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass


class _Receiver:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self.active = 0
        self.ready = threading.Event()
        self.reader: threading.Thread | None = None


class ReceiverPool:
    """N receiver processes fed with accepted sockets; restarts a receiver that dies."""

    def __init__(
        self,
        processes: int,
        options: dict[str, Any],
        on_stored: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.processes = processes
        self.options = options
        self.on_stored = on_stored
        self.env = env
        self._receivers = [_Receiver(i) for i in range(processes)]
        self._lock = threading.Lock()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for receiver in self._receivers:
            self._spawn(receiver)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.ready.wait(max(0.0, deadline - time.monotonic())) for r in self._receivers)

    def _spawn(self, receiver: _Receiver) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            receiver.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hospital.imaging.api.dicom.receiver",
                    str(child_end.fileno()),
                    json.dumps(self.options),
                ],
                pass_fds=[child_end.fileno()],
                env=self.env,
            )
        finally:
            child_end.close()
        receiver.channel, receiver.active = parent_end, 0
        receiver.ready.clear()
        receiver.reader = threading.Thread(
            target=self._read,
            args=(receiver, parent_end, receiver.proc),
            name=f"dicom-receiver-{receiver.index}",
            daemon=True,
        )
        receiver.reader.start()
        log.info("DICOM receiver %d started (pid %d)", receiver.index, receiver.proc.pid)

    def _read(self, receiver: _Receiver, channel: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                message = channel.recv(64)
            except OSError:
                message = b""
            if not message:
                break
            if message == MSG_STORED:
                if self.on_stored is not None:
                    try:
                        self.on_stored()
                    except Exception:
                        log.exception("on_stored callback failed")
            elif message == MSG_DONE:
                with self._lock:
                    receiver.active = max(0, receiver.active - 1)
            elif message == MSG_READY:
                receiver.ready.set()
        # The receiver exited (or we are stopping).
        channel.close()
        code = proc.wait()
        with self._lock:
            if self._stopping or receiver.channel is not channel:
                return
            receiver.channel = None
        log.error(
            "DICOM receiver %d (pid %d) exited with %s; its open associations were dropped; restarting",
            receiver.index,
            proc.pid,
            code,
        )
        time.sleep(0.2)
        with self._lock:
            if self._stopping:
                return
        self._spawn(receiver)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            receivers = list(self._receivers)
        for receiver in receivers:
            if receiver.channel is not None:
                try:
                    receiver.channel.shutdown(socket.SHUT_WR)  # EOF: finish open associations and exit
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for receiver in receivers:
            if receiver.proc is None:
                continue
            try:
                receiver.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                receiver.proc.kill()
                receiver.proc.wait()
        for receiver in receivers:
            if receiver.reader is not None:
                receiver.reader.join(2)

    # -- hand-off ----------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        return [r.proc.pid for r in self._receivers if r.proc is not None and r.proc.poll() is None]

    def hand_off(self, sock: socket.socket, address: tuple[str, int]) -> bool:
        """Pass `sock` to the least busy receiver; False if none could take it."""
        message = MSG_SOCKET + json.dumps(list(address[:2])).encode()
        with self._lock:
            candidates = sorted(
                (r for r in self._receivers if r.channel is not None), key=lambda r: (r.active, r.index)
            )
        for receiver in candidates:
            channel = receiver.channel
            if channel is None:
                continue
            with self._lock:
                receiver.active += 1
            try:
                socket.send_fds(channel, [message], [sock.fileno()])
            except OSError as exc:
                with self._lock:
                    receiver.active = max(0, receiver.active - 1)
                log.warning("could not hand a connection to DICOM receiver %d: %s", receiver.index, exc)
                continue
            return True
        return False


def receiver_options(
    config: Any, spool_root: os.PathLike[str] | str, log_level: str, engine: str = "lean"
) -> dict[str, Any]:
    """What a receiver process needs, as JSON-able options (`engine`: "lean" or "pynetdicom")."""
    return {
        "ae_title": config.ae_title,
        "strict_ae": config.strict_ae,
        "allowed_aes": {k: list(v) for k, v in config.allowed_aes.items()},
        "permissions": {k: sorted(v) for k, v in config.permissions.items()},
        "max_associations": config.max_associations,
        "network_timeout": config.network_timeout,
        "acse_timeout": config.acse_timeout,
        "dimse_timeout": config.dimse_timeout,
        "spool": str(spool_root),
        "log_level": log_level,
        "engine": engine,
    }
