"""The admissions use cases, built once per process and handed to the HTTP and gRPC APIs."""

from __future__ import annotations

from dataclasses import dataclass

from hospital.admissions.app.display_links import DisplayLinkService
from hospital.admissions.app.inpatient import InpatientService
from hospital.admissions.app.insurance_check import InsuranceCheckService
from hospital.admissions.app.merge import MergeService
from hospital.admissions.app.patients import PatientService
from hospital.admissions.app.queue_display import QueueDisplays
from hospital.admissions.app.reference import ReferenceService
from hospital.admissions.app.visits import VisitService


@dataclass
class Services:
    patients: PatientService
    visits: VisitService
    inpatient: InpatientService
    reference: ReferenceService
    merge: MergeService
    displays: QueueDisplays
    display_links: DisplayLinkService
    insurance: InsuranceCheckService
