"""Wiring: the imaging service (PACS gateway) definition for the chassis runner.

serve: HTTP (DICOMweb + API), gRPC, the DICOM listener (a Components.listener on dicom_port) and the
ingest pipeline (spool -> S3 -> index; in a child process of its own unless PIPELINE_PROCESS=false). The
pipeline reads the spool the receivers and STOW-RS write, so it runs where they run, whatever
RUN_WORKER_IN_SERVE says: always in `serve`, never in `worker` (ADR 0308).
workers (in serve by default, or in `worker`): the study announcer (quiet period -> imaging.study.received),
the router (routing queue -> C-STORE) and the deletion worker (ADR 0312); they use only the database and
object storage.
"""

from __future__ import annotations

from pathlib import Path

from hospital.chassis.app import Components, Runtime, ServiceDefinition
from hospital.chassis.bus import Subscription
from hospital.imaging.adapters.admissions import AdmissionsPatients
from hospital.imaging.adapters.spool import Spool
from hospital.imaging.adapters.tables import metadata
from hospital.imaging.api import grpc as grpc_api
from hospital.imaging.api.dicom.listener import DicomListener
from hospital.imaging.api.http import build_http
from hospital.imaging.app.conflicts import ConflictService
from hospital.imaging.app.deletion import DeletionService
from hospital.imaging.app.ingest import IngestPipeline
from hospital.imaging.app.merges import PatientMerges
from hospital.imaging.app.orders import OrderService
from hospital.imaging.app.pipeline_process import PipelineProcess
from hospital.imaging.app.routing import RoutingService
from hospital.imaging.app.services import Services
from hospital.imaging.app.studies import StudyService
from hospital.imaging.config import ImagingSettings


def build(rt: Runtime[ImagingSettings]) -> Components:
    s = rt.settings
    spool = Spool(s.spool_path)
    # The pipeline runs in a child process of its own by default (app/pipeline_process.py).
    pipeline: IngestPipeline | PipelineProcess = (
        PipelineProcess(s) if s.pipeline_process else IngestPipeline(rt, s, spool)
    )
    orders = OrderService(rt)
    admissions = AdmissionsPatients(s.admissions_grpc, rt.identity, s.admissions_timeout_seconds)
    merges = PatientMerges(rt, admissions)
    services = Services(
        rt=rt,
        settings=s,
        spool=spool,
        pipeline=pipeline,
        orders=orders,
        studies=StudyService(rt, s),
        routing=RoutingService(rt, s),
        dicom=DicomListener(rt, s, spool, pipeline.notify, orders),
        conflicts=ConflictService(rt, s),
        deletions=DeletionService(rt, s),
    )
    rt.imaging = services  # type: ignore[attr-defined]  # for tests and ops tooling
    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
        # a merge of patient records re-points orders and re-evaluates their studies (ADR 0317); from
        # "new": merges made before imaging first subscribed are not replayed
        subscriptions=[
            Subscription(
                stream="ADMISSIONS",
                durable=s.admissions_durable,
                handlers={"admissions.patient.merged": merges.on_patient_merged},
                start="new",
            )
        ],
        # The pipeline is a serve-side task: the spool is this process's disk (ADR 0308).
        listeners=[services.dicom.run, pipeline.run, services.dicom.commitments.run],
        workers=[services.studies.run_announcer, services.routing.run, services.deletions.run],
        on_start=_ensure_bucket,
        on_stop=admissions.close,
    )


async def _ensure_bucket(rt: Runtime[ImagingSettings]) -> None:
    assert rt.store is not None
    await rt.store.ensure_bucket(rt.settings.bucket)


DEFINITION = ServiceDefinition(
    name="imaging",
    settings_cls=ImagingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
    uses_object_storage=True,
    buckets=[ImagingSettings.model_fields["bucket"].default],
)
