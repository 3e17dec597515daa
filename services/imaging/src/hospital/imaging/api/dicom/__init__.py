"""DICOM network interface of the imaging service (PACS gateway)."""

from hospital.imaging.api.dicom.config import DicomConfig
from hospital.imaging.api.dicom.server import (
    CallingAePolicy,
    DicomServer,
    EventHandler,
    build_ae,
    gateway_handlers,
    serve,
    start_dicom_server,
)
from hospital.imaging.api.dicom.store import OnStored, StoredInstance, StoreHandler, StoreStatus

__all__ = [
    "CallingAePolicy",
    "DicomConfig",
    "DicomServer",
    "EventHandler",
    "OnStored",
    "StoreHandler",
    "StoreStatus",
    "StoredInstance",
    "build_ae",
    "gateway_handlers",
    "serve",
    "start_dicom_server",
]
