"""The DICOM listener as a chassis Components.listener: C-ECHO, C-STORE (into the spool), C-FIND
(Patient/Study Root and Modality Worklist), C-MOVE, C-GET, MPPS and Storage Commitment on one AE and port."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom.commitment import (
    CommitmentWorker,
    StorageCommitmentHandler,
    add_commitment_contexts,
)
from hospital.imaging.api.dicom.qr import Bridge, QueryRetrieveHandlers, add_qr_contexts
from hospital.imaging.api.dicom.receivers import ReceiverPool, receiver_options
from hospital.imaging.api.dicom.server import DicomServer, build_ae, gateway_handlers, serve

log = logging.getLogger(__name__)


class DicomListener:
    def __init__(self, rt: Any, settings: Any, spool: Spool, on_stored: Any, orders: Any) -> None:
        self.rt, self.s, self.spool, self.on_stored, self.orders = rt, settings, spool, on_stored, orders
        self.server: DicomServer | None = None
        self.started = asyncio.Event()
        self.commitments = CommitmentWorker(rt, settings)  # its run() is a serve-side task (service.py)

    async def run(self, stop: asyncio.Event) -> None:
        config = self.s.dicom_config()
        ae = build_ae(config)
        add_qr_contexts(ae)
        add_commitment_contexts(ae)
        qr = QueryRetrieveHandlers(Bridge(asyncio.get_running_loop()), self.rt, self.s, self.orders)
        commitment = StorageCommitmentHandler(asyncio.get_running_loop(), self.rt, self.s, self.commitments)
        handlers = [
            *gateway_handlers(config, self.spool, self.on_stored),
            *qr.handlers(),
            *commitment.handlers(),
        ]
        receivers = None
        if self.s.dicom_receiver_processes > 0:
            # Storage associations run in receiver processes (receivers.py); the serve process keeps
            # the port, Query/Retrieve, worklist and MPPS. A receiver's "stored" wakes the pipeline.
            receivers = ReceiverPool(
                self.s.dicom_receiver_processes,
                receiver_options(config, self.spool.root, self.s.log_level, self.s.dicom_receiver_engine),
                on_stored=self.on_stored,
            )
            await asyncio.to_thread(receivers.start)
        try:
            self.server = await asyncio.to_thread(serve, ae, config, handlers, receivers)
        except BaseException:
            if receivers is not None:
                await asyncio.to_thread(receivers.stop)
            raise
        self.started.set()
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(self.server.shutdown)
            log.info("DICOM listener stopped")
