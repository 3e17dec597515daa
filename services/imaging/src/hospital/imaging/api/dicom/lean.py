"""A lean DICOM upper layer for storage associations (C-ECHO and C-STORE only), used by receiver processes.

pynetdicom runs every association on two polling threads (its DUL reactor and its association reactor
each sleep 1 ms between looks at their queues) and hands every message across them; on a 2-core host
that costs more CPU per image than writing the image. The listener hands a receiver only associations
whose every proposed abstract syntax is a Storage SOP class or Verification (receivers.py), so the
receiver needs only this much of PS3.8: association negotiation, P-DATA reassembly, C-ECHO and C-STORE,
release and abort. It runs each association on one thread with blocking reads, and hands the received
data set bytes to the same :class:`~hospital.imaging.api.dicom.store.StoreHandler` core as the
pynetdicom path (checks, spool, fsync, then success).

Negotiation follows what the pynetdicom path answers: our transfer syntax order decides among the
proposed ones (contexts.py), unsupported abstract syntaxes or transfer syntaxes are rejected per
context, the calling AE policy is the same (strict mode: A-ASSOCIATE-RJ 1/1/3), maximum PDU length 0
(no limit) is offered, SCU/SCP role selection and the asynchronous operations window are answered
with the defaults (SCU only, one operation at a time).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom import AllStoragePresentationContexts

from hospital.imaging.api.dicom.access import AccessPolicy
from hospital.imaging.api.dicom.config import DicomConfig
from hospital.imaging.api.dicom.contexts import STORAGE_TRANSFER_SYNTAXES, VERIFICATION_TRANSFER_SYNTAXES
from hospital.imaging.api.dicom.store import StoreHandler, StoreStatus
from hospital.imaging.domain.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"

#: abstract syntax -> acceptable transfer syntaxes, in our order of preference.
SUPPORTED: dict[str, tuple[str, ...]] = {
    **{str(cx.abstract_syntax): STORAGE_TRANSFER_SYNTAXES for cx in AllStoragePresentationContexts},
    VERIFICATION: VERIFICATION_TRANSFER_SYNTAXES,
}

# PDU types (PS3.8 9.3)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 1, 2, 3, 4, 5, 6, 7
# DIMSE command fields (PS3.7 E.1)
C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
NO_DATASET = 0x0101
# A-ASSOCIATE-RJ (result, source, reason)
REJECT_UNKNOWN_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)
REJECT_NO_REASON = (0x01, 0x01, 0x01)
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)
# A-ABORT (source, reason): service provider, unexpected PDU / unrecognised PDU parameter
ABORT_UNEXPECTED_PDU = (0x02, 0x02)
ABORT_UNRECOGNISED = (0x02, 0x01)
ABORT_USER = (0x00, 0x00)

_PDU_HEADER = struct.Struct(">BBI")
#: Largest PDU accepted from a peer before allocating it (we offer "no limit"; this guards memory).
MAX_PDU = 256 * 1024 * 1024


class ProtocolError(Exception):
    """The peer broke the protocol; the association is aborted."""


class PeerClosed(Exception):
    """The peer closed the connection (or it timed out)."""


@dataclass(slots=True)
class AssociateRequest:
    called_ae: bytes  # 16 bytes, echoed back in the A-ASSOCIATE-AC
    calling_ae: bytes
    contexts: list[tuple[int, str, list[str]]]  # (id, abstract syntax, transfer syntaxes)
    max_length: int
    roles: dict[str, tuple[int, int]]  # SOP class -> (scu, scp) proposed
    async_window: bool

    @property
    def calling_ae_title(self) -> str:
        return self.calling_ae.decode("ascii", "replace").strip(" \0")


def _uid(raw: bytes | memoryview) -> str:
    return bytes(raw).rstrip(b"\0 ").decode("ascii", "replace").strip()


def parse_associate_rq(pdu: bytes) -> AssociateRequest:
    """The A-ASSOCIATE-RQ's variable items (after the 6-byte PDU header); ProtocolError if malformed."""
    if len(pdu) < 68:
        raise ProtocolError("A-ASSOCIATE-RQ too short")
    called, calling = pdu[4:20], pdu[20:36]
    contexts: list[tuple[int, str, list[str]]] = []
    roles: dict[str, tuple[int, int]] = {}
    max_length, async_window = 0, False
    offset, end = 68, len(pdu)
    while offset + 4 <= end:
        item_type, item_length = pdu[offset], struct.unpack_from(">H", pdu, offset + 2)[0]
        body = offset + 4
        item_end = body + item_length
        if item_end > end:
            raise ProtocolError("A-ASSOCIATE-RQ item overruns the PDU")
        if item_type == 0x20:  # presentation context
            context_id = pdu[body]
            abstract, syntaxes = "", []
            sub = body + 4
            while sub + 4 <= item_end:
                sub_type, sub_length = pdu[sub], struct.unpack_from(">H", pdu, sub + 2)[0]
                value = pdu[sub + 4 : sub + 4 + sub_length]
                if sub_type == 0x30:
                    abstract = _uid(value)
                elif sub_type == 0x40:
                    syntaxes.append(_uid(value))
                sub += 4 + sub_length
            contexts.append((context_id, abstract, syntaxes))
        elif item_type == 0x50:  # user information
            sub = body
            while sub + 4 <= item_end:
                sub_type, sub_length = pdu[sub], struct.unpack_from(">H", pdu, sub + 2)[0]
                value = pdu[sub + 4 : sub + 4 + sub_length]
                if sub_type == 0x51 and sub_length == 4:
                    max_length = struct.unpack(">I", value)[0]
                elif sub_type == 0x53:
                    async_window = True
                elif sub_type == 0x54 and sub_length >= 4:
                    uid_length = struct.unpack_from(">H", value, 0)[0]
                    uid = _uid(value[2 : 2 + uid_length])
                    if len(value) >= 2 + uid_length + 2:
                        roles[uid] = (value[2 + uid_length], value[3 + uid_length])
                sub += 4 + sub_length
        offset = item_end
    return AssociateRequest(called, calling, contexts, max_length, roles, async_window)


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pdu_type, 0, len(body)) + body


def negotiate(request: AssociateRequest) -> dict[int, tuple[str, str]]:
    """Accepted contexts: id -> (abstract syntax, transfer syntax)."""
    accepted: dict[int, tuple[str, str]] = {}
    for context_id, abstract, proposed in request.contexts:
        ours = SUPPORTED.get(abstract)
        if ours is None:
            continue
        chosen = next((ts for ts in ours if ts in proposed), None)
        if chosen is not None:
            accepted[context_id] = (abstract, chosen)
    return accepted


def associate_ac(
    request: AssociateRequest, accepted: dict[int, tuple[str, str]], refused: frozenset[int] = frozenset()
) -> bytes:
    """`refused`: contexts the calling AE may not use (its permissions): result 1, user rejection."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for context_id, abstract, proposed in request.contexts:
        if context_id in accepted:
            result, syntax = 0, accepted[context_id][1]
        elif context_id in refused:
            result, syntax = 1, (proposed[0] if proposed else IMPLICIT_VR_LE)
        else:
            # 3: abstract syntax not supported; 4: transfer syntaxes not supported
            result, syntax = (
                (3 if abstract not in SUPPORTED else 4),
                (proposed[0] if proposed else IMPLICIT_VR_LE),
            )
        items.append(_item(0x21, bytes((context_id, 0, result, 0)) + _item(0x40, syntax.encode())))
    user = [
        _item(0x51, struct.pack(">I", 0)),  # no limit on the PDUs the peer sends us
        _item(0x52, IMPLEMENTATION_CLASS_UID.encode()),
    ]
    if request.async_window:
        user.append(_item(0x53, struct.pack(">HH", 1, 1)))
    accepted_syntaxes = {abstract for abstract, _ in accepted.values()}
    for uid, (scu, _scp) in request.roles.items():
        if uid in accepted_syntaxes:
            raw = uid.encode()
            user.append(_item(0x54, struct.pack(">H", len(raw)) + raw + bytes((1 if scu else 0, 0))))
    user.append(_item(0x55, IMPLEMENTATION_VERSION_NAME.encode()))
    items.append(_item(0x50, b"".join(user)))
    fixed = struct.pack(">HH", 1, 0) + request.called_ae + request.calling_ae + b"\0" * 32
    return _pdu(ASSOCIATE_AC, fixed + b"".join(items))


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return _pdu(ASSOCIATE_RJ, bytes((0, result, source, reason)))


def abort_pdu(source: int, reason: int) -> bytes:
    return _pdu(ABORT, bytes((0, 0, source, reason)))


# ------------------------------------------------------------------ DIMSE command sets (Implicit VR LE)
def parse_command(data: bytes | bytearray) -> dict[int, bytes]:
    """Group 0000 elements: element number -> raw value."""
    out: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset + 8 <= end:
        group, element, length = struct.unpack_from("<HHI", data, offset)
        start = offset + 8
        if start + length > end:
            raise ProtocolError("truncated DIMSE command set")
        if group == 0x0000:
            out[element] = bytes(data[start : start + length])
        offset = start + length
    return out


def _us(command: dict[int, bytes], element: int) -> int | None:
    raw = command.get(element)
    return struct.unpack("<H", raw[:2])[0] if raw is not None and len(raw) >= 2 else None


def _even(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw


def encode_response(
    command_field: int,
    message_id: int,
    sop_class: str,
    status: int,
    sop_instance: str | None = None,
    error_comment: str | None = None,
) -> bytes:
    elements = [
        (0x0002, _even(sop_class.encode(), b"\0")),
        (0x0100, struct.pack("<H", command_field)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", NO_DATASET)),
        (0x0900, struct.pack("<H", status)),
    ]
    if error_comment:
        elements.append((0x0902, _even(error_comment[:64].encode("ascii", "replace"), b" ")))
    if sop_instance is not None:
        elements.append((0x1000, _even(sop_instance.encode(), b"\0")))
    body = b"".join(struct.pack("<HHI", 0, element, len(value)) + value for element, value in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def p_data(context_id: int, command: bytes) -> bytes:
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command  # command, last fragment
    return _pdu(P_DATA_TF, pdv)


# ------------------------------------------------------------------ the association
class LeanAssociation:
    """One storage association on a handed-over socket; :meth:`run` returns when it is over."""

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple[str, int],
        config: DicomConfig,
        store: StoreHandler,
        admit: Callable[[], bool] = lambda: True,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.sock, self.peer, self.config, self.store = sock, peer, config, store
        self.admit = admit
        self.policy = policy or config.policy()
        self.calling_ae = ""
        self.contexts: dict[int, tuple[str, str]] = {}
        self._header = bytearray(6)

    # -- I/O ----------------------------------------------------------------------------------------
    def _read_exact(self, view: memoryview) -> None:
        got, total = 0, len(view)
        while got < total:
            try:
                n = self.sock.recv_into(view[got:], total - got)
            except TimeoutError:
                raise PeerClosed("network timeout") from None
            except OSError as exc:
                raise PeerClosed(str(exc)) from None
            if n == 0:
                raise PeerClosed("connection closed by peer")
            got += n

    def _read_pdu(self) -> tuple[int, bytearray]:
        self._read_exact(memoryview(self._header))
        pdu_type, _, length = _PDU_HEADER.unpack(self._header)
        if length > MAX_PDU:
            raise ProtocolError(f"PDU of {length} bytes")
        body = bytearray(length)
        if length:
            self._read_exact(memoryview(body))
        return pdu_type, body

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- protocol -----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(self.config.acse_timeout)
            if not self._associate():
                return
            self.sock.settimeout(self.config.network_timeout)
            self._serve()
        except PeerClosed as exc:
            log.debug("association from %s (%s:%s) ended: %s", self.calling_ae, *self.peer[:2], exc)
        except ProtocolError as exc:
            log.warning("association from %s (%s:%s) aborted: %s", self.calling_ae, *self.peer[:2], exc)
            self._try_send(abort_pdu(*ABORT_UNRECOGNISED))
        except OSError as exc:
            log.info("association from %s (%s:%s) lost: %s", self.calling_ae, *self.peer[:2], exc)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def _try_send(self, data: bytes) -> None:
        try:
            self._send(data)
        except OSError:
            pass

    def _associate(self) -> bool:
        pdu_type, body = self._read_pdu()
        if pdu_type != ASSOCIATE_RQ:
            raise ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type {pdu_type}")
        request = parse_associate_rq(bytes(body))
        self.calling_ae = request.calling_ae_title
        peer = f"{self.peer[0]}:{self.peer[1]}"
        if struct.unpack_from(">H", body, 0)[0] & 0x0001 == 0:
            self._send(associate_rj(*REJECT_PROTOCOL_VERSION))
            return False
        policy = self.policy
        refusal = policy.refusal(self.calling_ae, self.peer[0])
        if refusal is not None:
            log.warning("association from %r (%s) rejected: %s", self.calling_ae, peer, refusal)
            self._send(associate_rj(*REJECT_UNKNOWN_CALLING_AE))
            return False
        if self.calling_ae not in policy.peers:
            log.info("association from unlisted AE %r (%s) accepted (strict mode off)", self.calling_ae, peer)
        if not self.admit():
            log.warning("association from %r (%s) rejected: too many associations", self.calling_ae, peer)
            self._send(associate_rj(*REJECT_LOCAL_LIMIT))
            return False
        granted = policy.granted(self.calling_ae)
        self.contexts = {cid: cx for cid, cx in negotiate(request).items() if policy.allows(granted, cx[0])}
        refused = frozenset(
            cid for cid, abstract, _ts in request.contexts if not policy.allows(granted, abstract)
        )
        if refused:
            names = sorted({abstract for cid, abstract, _ts in request.contexts if cid in refused})
            log.warning(
                "association from %s (%s): presentation contexts refused, AE may only %s: %s",
                self.calling_ae,
                peer,
                "+".join(sorted(granted)),
                ", ".join(names[:8]),
            )
        self._send(associate_ac(request, self.contexts, refused))
        return True

    def _serve(self) -> None:
        command = bytearray()
        dataset = bytearray()
        command_done = False
        context_id = 0
        parsed: dict[int, bytes] = {}
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type == RELEASE_RQ:
                self._send(_pdu(RELEASE_RP, b"\0\0\0\0"))
                return
            if pdu_type == ABORT:
                raise PeerClosed("A-ABORT from peer")
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"unexpected PDU type {pdu_type}")
            view = memoryview(body)
            offset, end = 0, len(body)
            while offset + 6 <= end:
                length = struct.unpack_from(">I", body, offset)[0]
                pdv_end = offset + 4 + length
                if length < 2 or pdv_end > end:
                    raise ProtocolError("malformed presentation data value")
                pcid, control = body[offset + 4], body[offset + 5]
                fragment = view[offset + 6 : pdv_end]
                offset = pdv_end
                if pcid not in self.contexts:
                    raise ProtocolError(f"presentation context {pcid} was not accepted")
                if control & 0x01:  # command
                    if command_done:
                        raise ProtocolError("command fragment while a data set was expected")
                    command += fragment
                    if control & 0x02:
                        context_id, command_done = pcid, True
                        parsed = parse_command(command)
                        command.clear()
                        if _us(parsed, 0x0800) == NO_DATASET:
                            self._dispatch(context_id, parsed, None)
                            command_done = False
                else:
                    if not command_done or pcid != context_id:
                        raise ProtocolError("data set fragment without its command")
                    dataset += fragment
                    if control & 0x02:
                        self._dispatch(context_id, parsed, dataset)
                        dataset = bytearray()
                        command_done = False
            view.release()

    def _dispatch(self, context_id: int, command: dict[int, bytes], dataset: bytearray | None) -> None:
        field = _us(command, 0x0100)
        message_id = _us(command, 0x0110) or 0
        abstract, syntax = self.contexts[context_id]
        sop_class = _uid(command.get(0x0002, b"")) or abstract
        if field == C_ECHO_RQ:
            self._send(p_data(context_id, encode_response(C_ECHO_RSP, message_id, sop_class, 0x0000)))
            return
        if field != C_STORE_RQ:
            raise ProtocolError(f"DIMSE command 0x{field or 0:04X} is not served on a storage association")
        sop_instance = _uid(command.get(0x1000, b""))
        if dataset is None:
            status, comment = StoreStatus.CANNOT_UNDERSTAND, "no data set"
        else:
            status, comment = self.store.store(
                calling_ae=self.calling_ae,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax_uid=syntax,
                dataset=dataset,
            )
        self._send(
            p_data(
                context_id,
                encode_response(C_STORE_RSP, message_id, sop_class, int(status), sop_instance, comment),
            )
        )
