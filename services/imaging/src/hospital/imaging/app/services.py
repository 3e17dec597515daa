"""The imaging use cases, built once per process and handed to the HTTP, DICOMweb and gRPC APIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hospital.chassis.app import Runtime
from hospital.imaging.adapters.spool import Spool
from hospital.imaging.app.conflicts import ConflictService
from hospital.imaging.app.deletion import DeletionService
from hospital.imaging.app.ingest import IngestPipeline
from hospital.imaging.app.orders import OrderService
from hospital.imaging.app.pipeline_process import PipelineProcess
from hospital.imaging.app.routing import RoutingService
from hospital.imaging.app.studies import StudyService

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.api.dicom.listener import DicomListener
    from hospital.imaging.config import ImagingSettings


@dataclass
class Services:
    rt: Runtime[ImagingSettings]
    settings: ImagingSettings
    spool: Spool
    pipeline: IngestPipeline | PipelineProcess
    orders: OrderService
    studies: StudyService
    routing: RoutingService
    dicom: DicomListener
    conflicts: ConflictService
    deletions: DeletionService
