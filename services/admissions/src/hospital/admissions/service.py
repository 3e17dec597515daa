"""Wiring: the admissions service definition for the chassis runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hospital.admissions.adapters.tables import metadata
from hospital.admissions.api import grpc as grpc_api
from hospital.admissions.api.http import build_http
from hospital.admissions.app.display_links import DisplayLinks, DisplayLinkService
from hospital.admissions.app.inpatient import InpatientService
from hospital.admissions.app.insurance_check import InsuranceCheckService, portal_from
from hospital.admissions.app.merge import MergeService
from hospital.admissions.app.patients import PatientService
from hospital.admissions.app.queue_display import QueueDisplays
from hospital.admissions.app.reference import ReferenceService
from hospital.admissions.app.services import Services
from hospital.admissions.app.visits import VisitService
from hospital.admissions.config import AdmissionsSettings
from hospital.chassis.app import Components, Runtime, ServiceDefinition


def build(rt: Runtime[AdmissionsSettings]) -> Components:
    s = rt.settings
    patients = PatientService(rt)
    visits = VisitService(rt, patients)
    displays = QueueDisplays(
        visits.queue,
        resync_seconds=s.queue_display_resync_seconds,
        keepalive_seconds=s.queue_display_keepalive_seconds,
        max_streams=s.queue_display_max_streams,
        max_per_room=s.queue_display_max_streams_per_room,
    )
    visits.displays = displays
    reference = ReferenceService(rt)
    links = DisplayLinkService(rt, DisplayLinks.from_settings(s, rt.db.audit_keyring), reference)
    services = Services(
        patients=patients,
        visits=visits,
        inpatient=InpatientService(rt, patients),
        reference=reference,
        merge=MergeService(rt, patients),
        displays=displays,
        display_links=links,
        insurance=InsuranceCheckService(rt, patients, portal_from(s)),
    )
    rt.extras["queue_displays"] = displays
    rt.extras["display_links"] = links
    rt.extras["guarded_writer"] = patients.writer

    async def live_queues(stop: asyncio.Event) -> None:
        await displays.run(stop, rt.nc)

    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
        listeners=[live_queues],
    )


DEFINITION = ServiceDefinition(
    name="admissions",
    settings_cls=AdmissionsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
