"""Wiring: the lab service definition for the chassis runner."""

from __future__ import annotations

from pathlib import Path

from hospital.chassis.app import Components, Runtime, ServiceDefinition
from hospital.lab.adapters.admissions import AdmissionsPatients
from hospital.lab.adapters.tables import metadata
from hospital.lab.api import grpc as grpc_api
from hospital.lab.api.http import build_http
from hospital.lab.api.listeners import build_listeners
from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.ingest import IngestService
from hospital.lab.app.orders import OrderService
from hospital.lab.app.qc import QcService
from hospital.lab.app.results import ResultService
from hospital.lab.app.services import Services
from hospital.lab.config import LabSettings


def build(rt: Runtime[LabSettings]) -> Components:
    cat = Catalogue()
    s = rt.settings
    admissions = AdmissionsPatients(s.admissions_grpc, rt.identity, s.admissions_timeout_seconds)
    orders = OrderService(rt, cat, admissions)
    qc = QcService(rt, cat)
    ingest = IngestService(rt, cat, orders, qc)
    services = Services(
        catalogue=cat, orders=orders, results=ResultService(rt, cat, orders), qc=qc, ingest=ingest
    )

    async def on_start(_: Runtime[LabSettings]) -> None:
        await ingest.ensure_catalogue()

    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services, s),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
        listeners=[build_listeners(rt.settings, ingest)],
        workers=[orders.recheck_patients],
        on_start=on_start,
        on_stop=admissions.close,
    )


DEFINITION = ServiceDefinition(
    name="lab",
    settings_cls=LabSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
