"""Wiring: the EMR service definition for the chassis runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hospital.chassis.app import Components, Runtime, ServiceDefinition
from hospital.chassis.bus import Subscription
from hospital.contracts.admissions.v1 import events_pb2 as _adm_events  # noqa: F401 - registers the types
from hospital.contracts.imaging.v1 import events_pb2 as _img_events  # noqa: F401
from hospital.contracts.lab.v1 import events_pb2 as _lab_events  # noqa: F401
from hospital.emr.adapters.downstream import Downstream
from hospital.emr.adapters.tables import metadata
from hospital.emr.api import grpc as grpc_api
from hospital.emr.api.http import build_http
from hospital.emr.api.http.deps import Services
from hospital.emr.app.charts import ChartService
from hospital.emr.app.common import Context
from hospital.emr.app.documents import DocumentService
from hospital.emr.app.encounters import EncounterService
from hospital.emr.app.eprescription import EPrescriptionSender, EPrescriptionService
from hospital.emr.app.fhir import FhirService
from hospital.emr.app.notifications import Hub
from hospital.emr.app.nursing import NursingService
from hospital.emr.app.orders import Dispatcher, OrderService
from hospital.emr.app.papers import PaperService
from hospital.emr.app.prescriptions import PrescriptionService
from hospital.emr.app.reports import ReportService
from hospital.emr.app.results import ChartExtras, ResultService
from hospital.emr.app.saves import ConsultationSaves
from hospital.emr.config import EmrSettings
from hospital.emr.domain.signing import LocalKeyProvider


def build(rt: Runtime[EmrSettings]) -> Components:
    ctx = Context(rt)
    settings = ctx.settings
    encounters = EncounterService(ctx)
    wake = asyncio.Event()
    downstream = Downstream(
        rt.identity,
        settings.lab_grpc_target,
        settings.imaging_grpc_target,
        settings.order_send_timeout_seconds,
    )
    dispatcher = Dispatcher(ctx, downstream, wake)
    results = ResultService(ctx)
    hub = Hub(ctx, settings.notification_poll_seconds)
    rx_wake = asyncio.Event()
    rx_sender = EPrescriptionSender(ctx, rx_wake)
    charts, orders = ChartService(ctx), OrderService(ctx, wake)
    prescriptions = PrescriptionService(ctx)
    documents = DocumentService(ctx, LocalKeyProvider(settings.key_dir()))
    services = Services(
        ctx=ctx,
        encounters=encounters,
        charts=charts,
        orders=orders,
        prescriptions=prescriptions,
        results=results,
        hub=hub,
        documents=documents,
        saves=ConsultationSaves(ctx, charts, orders, prescriptions, documents),
        papers=PaperService(ctx),
        nursing=NursingService(ctx),
        eprescriptions=EPrescriptionService(ctx, rx_wake),
        fhir=FhirService(ctx),
        reports=ReportService(ctx),
        chart_extras=ChartExtras(results).fill,
    )
    rt.extras["services"] = services
    rt.extras["dispatcher"] = dispatcher
    rt.extras["eprescription_sender"] = rx_sender
    admissions = Subscription(
        stream="ADMISSIONS",
        durable=settings.admissions_durable,
        handlers={
            "admissions.patient.registered": encounters.on_patient_changed,
            "admissions.patient.updated": encounters.on_patient_changed,
            "admissions.patient.merged": encounters.on_patient_merged,
            "admissions.visit.opened": encounters.on_visit_opened,
            "admissions.visit.closed": encounters.on_visit_closed,
            "admissions.inpatient.admitted": encounters.on_admitted,
            "admissions.inpatient.transferred": encounters.on_transferred,
            "admissions.inpatient.discharged": encounters.on_discharged,
        },
    )
    lab = Subscription(
        stream="LAB",
        durable=settings.lab_durable,
        start=settings.results_events_start,
        handlers={
            "lab.result.verified": results.on_result_verified,
            "lab.result.amended": results.on_result_amended,
            "lab.result.critical": results.on_result_critical,
        },
    )
    imaging = Subscription(
        stream="IMAGING",
        durable=settings.imaging_durable,
        start=settings.results_events_start,
        handlers={
            "imaging.study.received": results.on_study_received,
            "imaging.procedure.completed": results.on_procedure_completed,
        },
    )
    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
        subscriptions=[admissions, lab, imaging],
        listeners=[hub.run],
        workers=[dispatcher.run, results.run_escalation, rx_sender.run],
        on_stop=downstream.close,
    )


DEFINITION = ServiceDefinition(
    name="emr",
    settings_cls=EmrSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
