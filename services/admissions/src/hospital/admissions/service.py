"""Wiring: the admissions service definition for the chassis runner."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hospital.admissions.adapters.tables import metadata
from hospital.admissions.api import grpc as grpc_api
from hospital.admissions.api.http import build_http
from hospital.admissions.app.inpatient import InpatientService
from hospital.admissions.app.merge import MergeService
from hospital.admissions.app.patients import PatientService
from hospital.admissions.app.reference import ReferenceService
from hospital.admissions.app.visits import VisitService
from hospital.admissions.config import AdmissionsSettings
from hospital.chassis.app import Components, Runtime, ServiceDefinition


@dataclass
class Services:
    patients: PatientService
    visits: VisitService
    inpatient: InpatientService
    reference: ReferenceService
    merge: MergeService


def build(rt: Runtime) -> Components:
    patients = PatientService(rt, rt.settings)
    services = Services(patients=patients, visits=VisitService(rt, patients),
                        inpatient=InpatientService(rt, patients), reference=ReferenceService(rt),
                        merge=MergeService(rt, patients))
    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
    )


DEFINITION = ServiceDefinition(
    name="admissions",
    settings_cls=AdmissionsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
