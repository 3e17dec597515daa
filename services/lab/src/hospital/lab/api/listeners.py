"""The analyzer listeners run by ``serve``: ASTM (E1381/E1394 over TCP) and HL7 v2 over MLLP, plus any
per-analyzer endpoints from ``HOSPITAL_LAB_INSTRUMENTS``. Each calls the ingest service's ``store``
before acknowledging, so an ACK always means "durably stored"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from hospital.chassis.errors import DomainError, NotFound
from hospital.chassis.uow import EventTooLarge
from hospital.lab.api.astm import AstmClient, AstmEndpoint, AstmMessage, AstmServer, HostOrder, Peer, Query
from hospital.lab.api.astm.dialects import KNOWN_DIALECTS
from hospital.lab.api.hl7 import MllpEndpoint, MllpServer, OrderMessage, build_orl_o22, parse_hl7
from hospital.lab.api.hl7.messages import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    RECORD_LOCKED,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_KEY,
    Hl7Error,
    ReplySender,
    content_error,
    reject,
)
from hospital.lab.api.tcpserver import ListenerLimits
from hospital.lab.app.ingest import IngestService, ValueTooLong, oml_orders
from hospital.lab.config import LabSettings

log = logging.getLogger(__name__)


class AstmHandler:
    def __init__(self, ingest: IngestService) -> None:
        self.ingest = ingest

    async def store(self, raw: bytes, message: AstmMessage, peer: Peer) -> None:
        await self.ingest.store_astm(raw, message, peer)

    async def host_query(self, query: Query) -> Sequence[HostOrder]:
        return await self.ingest.host_query(query)


class Hl7Handler:
    def __init__(self, ingest: IngestService) -> None:
        self.ingest = ingest

    async def store(self, raw: bytes, message: Any, peer: Peer) -> None:
        try:
            await self.ingest.store_hl7(raw, message, peer)
        except (ValueTooLong, EventTooLarge) as exc:  # refused as it is: AE with the reason, not AR (resend)
            raise content_error(DATA_TYPE_ERROR, f"{exc.code}: {exc.message}", exc.field or "") from exc

    async def host_query(self, query: Any) -> Sequence[HostOrder]:
        return await self.ingest.host_query(query)


class LabMllpServer(MllpServer):
    """Checks an OML^O21's content (known tests, patient, barcode) before storing it, so a bad order gets
    ``ORL^O22`` with ``AE`` and the reason instead of a retryable ``AR``; a cancellation (ORC-1 ``CA``) of
    an unknown order, or of one that already has results, is refused the same way (``ORC|UC``) and
    nothing of the message is stored."""

    def __init__(self, endpoint: MllpEndpoint, handler: Hl7Handler, ingest: IngestService) -> None:
        super().__init__(endpoint, handler)
        self.ingest = ingest
        self._reply_sender = ReplySender(endpoint.application, endpoint.facility)

    async def respond(self, raw: bytes, peer: Peer) -> str:
        if b"OML" in raw[:300]:
            try:
                message = parse_hl7(raw)
            except Hl7Error:
                return await super().respond(raw, peer)
            if isinstance(message, OrderMessage):
                await self.ingest.ensure_catalogue()
                try:
                    for order in oml_orders(message):
                        self.ingest.orders.validate(order)
                except DomainError as exc:
                    error = content_error(REQUIRED_FIELD_MISSING, f"{exc.code}: {exc.message}", "OBR^1^4")
                    return build_orl_o22(message, "AE", error=error, sender=self._reply_sender)
                return await self._store_orders(raw, message, peer)
        return await super().respond(raw, peer)

    async def _store_orders(self, raw: bytes, message: OrderMessage, peer: Peer) -> str:
        try:
            async with asyncio.timeout(self.endpoint.store_timeout):
                await self.ingest.store_hl7(raw, message, peer)
        except DomainError as exc:  # e.g. cancelling an unknown order, or one with results: rolled back
            n = next((i for i, o in enumerate(message.orders, start=1) if o.is_cancel), 1)
            code = UNKNOWN_KEY if isinstance(exc, NotFound) else RECORD_LOCKED
            where = "PID^1^3" if exc.code == "order.patient_unknown" else f"ORC^{n}^2"
            error = content_error(code, f"{exc.code}: {exc.message}", where)
            return build_orl_o22(message, "AE", error=error, sender=self._reply_sender)
        except Exception:
            log.exception("HL7 OML^O21 %s from %s not stored", message.header.control_id, peer.host)
            error = reject(APPLICATION_INTERNAL_ERROR, "message could not be stored; resend later")
            return build_orl_o22(message, "AR", error=error, sender=self._reply_sender)
        return build_orl_o22(message, "AA", sender=self._reply_sender)


def listener_limits(settings: LabSettings) -> ListenerLimits:
    return ListenerLimits(
        max_connections=settings.listener_max_connections,
        max_connections_per_host=settings.listener_max_connections_per_host,
        idle_timeout=settings.listener_idle_timeout_seconds,
        message_timeout=settings.listener_message_timeout_seconds,
        max_message_bytes=settings.listener_max_message_bytes,
    )


def build_listeners(settings: LabSettings, ingest: IngestService) -> Callable[..., Coroutine[Any, Any, None]]:
    async def run(stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await ingest.ensure_catalogue()
        astm_handler, hl7_handler = AstmHandler(ingest), Hl7Handler(ingest)
        timeout = settings.store_timeout_seconds
        limits = listener_limits(settings)
        astm = {
            "limits": limits,
            "max_frame_bytes": settings.astm_max_frame_bytes,
            "max_frames_per_transfer": settings.astm_max_frames_per_transfer,
        }
        servers: list[Any] = [
            AstmServer(
                AstmEndpoint(
                    instrument="astm",
                    host=settings.protocol_host,
                    port=settings.astm_port,
                    lis_name=settings.lis_name,
                    store_timeout=timeout,
                    **astm,
                ),
                astm_handler,
            ),
            LabMllpServer(
                MllpEndpoint(
                    name="mllp",
                    host=settings.protocol_host,
                    port=settings.mllp_port,
                    application=settings.lis_name,
                    store_timeout=timeout,
                    limits=limits,
                ),
                hl7_handler,
                ingest,
            ),
        ]
        dialects = {d.name: d for d in KNOWN_DIALECTS}
        for inst in settings.instruments:
            endpoint = AstmEndpoint(
                instrument=inst.name,
                host=inst.host,
                port=inst.port,
                dialect=dialects.get(inst.dialect or ""),
                encoding=inst.encoding,
                lis_name=settings.lis_name,
                store_timeout=timeout,
                **astm,
            )
            servers.append(
                AstmServer(endpoint, astm_handler)
                if inst.mode == "server"
                else AstmClient(endpoint, astm_handler)
            )
        started = []
        try:
            for server in servers:
                await server.start()
                started.append(server)
            ingest.listeners[:] = started  # the analyzers' connection state (gRPC ListAnalyzers)
            if ready is not None:
                ready.set()  # the service reports started only now: analyzers are not refused
            await stop.wait()
        finally:
            ingest.listeners.clear()
            for server in reversed(started):
                await server.close()

    return run
