"""Assembly of the DICOM listener: AE, association policy, event handlers.

Extension point: services are added as pynetdicom event handlers. A later
Query/Retrieve or worklist SCP adds its presentation contexts to the AE from
:func:`build_ae` and its ``(evt.EVT_C_FIND, handler)`` pairs to the list from
:func:`gateway_handlers`, then calls :func:`serve`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

from pynetdicom import AE, evt
from pynetdicom import _handlers as pynetdicom_log_handlers
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom.access import PERMISSIONS, AccessPolicy
from hospital.imaging.api.dicom.config import DicomConfig
from hospital.imaging.api.dicom.contexts import add_storage_contexts, add_verification_contexts
from hospital.imaging.api.dicom.store import OnStored, StoreHandler
from hospital.imaging.domain.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

logger = logging.getLogger(__name__)

EventHandler = tuple[evt.EventType, Callable[..., Any]]

# Linux only; elsewhere quick ACKs are simply not requested.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

# A-ASSOCIATE-RJ: rejected-permanent, by the service user, calling AE title not recognised.
_REJECT_UNKNOWN_CALLING_AE = (0x01, 0x01, 0x03)

# pynetdicom binds these to every association when LOG_HANDLER_LEVEL is
# "standard" (its default). They format a report of each message at INFO/DEBUG,
# and the DIMSE one copies every received data set (BytesIO.getvalue()) just to
# say it is "Present". The gateway does its own, cheaper logging.
_STANDARD_LOG_HANDLERS: tuple[EventHandler, ...] = (
    (evt.EVT_DIMSE_RECV, pynetdicom_log_handlers.standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, pynetdicom_log_handlers.standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, pynetdicom_log_handlers.standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, pynetdicom_log_handlers.standard_pdu_sent_handler),
)


def build_ae(config: DicomConfig) -> AE:
    """An AE offering Verification and every Storage SOP class."""
    ae = AE(ae_title=config.ae_title)
    # 0 = no limit on the PDUs peers may send us: fewer, larger PDUs per image.
    ae.maximum_pdu_size = 0
    ae.maximum_associations = config.max_associations
    ae.network_timeout = config.network_timeout
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    add_verification_contexts(ae)
    add_storage_contexts(ae)
    return ae


class CallingAePolicy:
    """``evt.EVT_REQUESTED`` handler: admission (AE title and, in strict mode, its host) and per-AE
    permissions, which narrow the presentation contexts this association may accept (access.py)."""

    def __init__(self, config: DicomConfig) -> None:
        self._policy = config.policy()

    def __call__(self, event: Event) -> None:
        request = cast(A_ASSOCIATE, event.assoc.requestor.primitive)
        calling_ae = request.calling_ae_title.strip()
        address = str(event.assoc.requestor.address)
        peer = f"{address}:{event.assoc.requestor.port}"
        refusal = self._policy.refusal(calling_ae, address)
        if refusal is not None:
            logger.warning("association from %r (%s) rejected: %s", calling_ae, peer, refusal)
            event.assoc.acse.send_reject(*_REJECT_UNKNOWN_CALLING_AE)
            # As pynetdicom does for its own rejections: kill() returns once the
            # DUL has flushed the A-ASSOCIATE-RJ, before the socket is closed.
            event.assoc.kill()
            return
        if calling_ae in self._policy.peers:
            logger.debug("association from %s (%s): listed AE", calling_ae, peer)
        else:
            logger.info("association from unlisted AE %r (%s) accepted (strict mode off)", calling_ae, peer)
        granted = self._policy.granted(calling_ae)
        if granted == PERMISSIONS:
            return
        proposed = [str(cx.abstract_syntax) for cx in request.presentation_context_definition_list]
        get_proposed = AccessPolicy.proposes_get(proposed)
        roles = {str(uid): item.scp_role for uid, item in event.assoc.requestor.role_selection.items()}
        supported = event.assoc.acceptor.supported_contexts
        allowed = [
            cx
            for cx in supported
            if self._policy.allows(
                granted,
                str(cx.abstract_syntax),
                peer_is_storage_scp=bool(roles.get(str(cx.abstract_syntax))),
                get_proposed=get_proposed,
            )
        ]
        refused = sorted(
            {
                s
                for s in proposed
                if not self._policy.allows(
                    granted, s, peer_is_storage_scp=bool(roles.get(s)), get_proposed=get_proposed
                )
            }
        )
        if refused:
            logger.warning(
                "association from %s (%s): presentation contexts refused, AE may only %s: %s",
                calling_ae,
                peer,
                "+".join(sorted(granted)),
                ", ".join(refused[:8]),
            )
        event.assoc.acceptor.supported_contexts = allowed


class _QuickAckSocket(AssociationSocket):
    """An AssociationSocket that re-arms TCP_QUICKACK before every read.

    Many senders (dcmtk's storescu among them, by default) leave Nagle's
    algorithm on: the short tail of each data set PDU is held back until the
    preceding segment is acknowledged, while Linux, seeing request/response
    traffic, delays that ACK by up to 40 ms. The result is a stall of ~40 ms
    per instance. Linux clears TCP_QUICKACK on its own, hence re-arming it
    before each read; it costs one setsockopt per PDU read.
    Measured with storescu, 64x64 CT over one association: ~20 -> ~200 images/s.
    """

    def recv(self, nr_bytes: int) -> bytearray:
        if self.socket is not None and _TCP_QUICKACK is not None:
            self.socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return super().recv(nr_bytes)


def prepare_connection(event: Event) -> None:
    """``evt.EVT_CONN_OPEN`` handler, run on each accepted connection before its association starts.

    Sets TCP_NODELAY so our small C-STORE responses are not held back, turns on
    quick ACKs for the sender's benefit (Linux), and drops pynetdicom's
    per-message logging handlers.
    """
    assoc_socket = cast(AssociationSocket, event.assoc.dul.socket)
    cast(socket.socket, assoc_socket.socket).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if _TCP_QUICKACK is not None:
        # pynetdicom creates the AssociationSocket itself; specialise that instance.
        assoc_socket.__class__ = _QuickAckSocket
    for bound_event, handler in _STANDARD_LOG_HANDLERS:
        bound_handlers = cast(list[tuple[Callable[..., Any], Any]], event.assoc.get_handlers(bound_event))
        if any(bound is handler for bound, _ in bound_handlers):
            event.assoc.unbind(bound_event, handler)


def gateway_handlers(
    config: DicomConfig, spool: Spool, on_stored: OnStored | None = None
) -> list[EventHandler]:
    """Event handlers of the ingest gateway. C-ECHO uses pynetdicom's default (success)."""
    return [
        (evt.EVT_CONN_OPEN, prepare_connection),
        (evt.EVT_REQUESTED, CallingAePolicy(config)),
        (evt.EVT_C_STORE, StoreHandler(spool, on_stored)),
    ]


class HandOffRequestHandler(RequestHandler):
    """Per accepted connection (on its own thread): storage-only associations go to a receiver process.

    The A-ASSOCIATE-RQ is peeked at, not read, so whichever process runs the association reads it
    from the start. Anything not storage-only, or no receiver available, is run here as before.
    """

    server: HandOffServer

    def handle(self) -> None:
        from hospital.imaging.api.dicom.receivers import is_storage_only, peek_association_request

        pool = self.server.receivers
        if pool is not None:
            request = peek_association_request(self.request, self.server.ae.acse_timeout or 30.0)
            if is_storage_only(request) and pool.hand_off(self.request, self.client_address):
                # Our descriptor only: close(), never shutdown(), which would end the receiver's too.
                self.request.close()
                return
        super().handle()


class HandOffServer(ThreadedAssociationServer):
    receivers: Any = None


class SharedContexts(list):  # type: ignore[type-arg]
    """The server's supported presentation contexts, shared by its associations instead of deep-copied.

    pynetdicom deep-copies the server's context list for every association it accepts; with every Storage
    SOP class offered in 25 transfer syntaxes (twice, with C-GET's roles) that copy cost ~40-80 ms per
    association, i.e. most of a single C-FIND. Negotiation only reads the acceptor's contexts (it builds
    new ones for the result), so a shallow copy is enough.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


class DicomServer:
    """Handle on a running listener."""

    def __init__(self, ae: AE, server: ThreadedAssociationServer, receivers: Any = None) -> None:
        self._ae = ae
        self._server = server
        self.receivers = receivers

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the real port when configured with port 0."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def shutdown(self) -> None:
        """Stop accepting, abort open associations, close the listening socket, stop the receivers."""
        self._ae.shutdown()
        if self.receivers is not None:
            self.receivers.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def serve(
    ae: AE, config: DicomConfig, handlers: Sequence[EventHandler], receivers: Any = None
) -> DicomServer:
    """Start listening on ``config.host:config.port`` in a background thread.

    With `receivers` (a started :class:`~hospital.imaging.api.dicom.receivers.ReceiverPool`),
    storage-only associations are handed to its processes.
    """
    if receivers is None:
        server = cast(
            ThreadedAssociationServer,
            ae.start_server((config.host, config.port), block=False, evt_handlers=list(handlers)),
        )
    else:
        server = ae.make_server(
            (config.host, config.port),
            evt_handlers=list(handlers),
            server_class=HandOffServer,
            request_handler=HandOffRequestHandler,
        )
        server.receivers = receivers
        threading.Thread(target=server.serve_forever, name="DicomAcceptor", daemon=True).start()
        ae._servers.append(server)
    server.contexts = SharedContexts(server.contexts)
    host, port = server.server_address[:2]
    logger.info(
        "DICOM server %s listening on %s:%s (strict AE: %s, receiver processes: %s)",
        config.ae_title,
        host,
        port,
        config.strict_ae,
        receivers.processes if receivers is not None else 0,
    )
    return DicomServer(ae, server, receivers)


def start_dicom_server(config: DicomConfig, spool: Spool, on_stored: OnStored | None = None) -> DicomServer:
    """Start the PACS gateway: C-ECHO and C-STORE into `spool`."""
    return serve(build_ae(config), config, gateway_handlers(config, spool, on_stored))
