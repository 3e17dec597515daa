"""Dependencies shared by the routers: the caller, the services, the break-the-glass reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Header, Query, Request

from hospital.chassis.caller import Caller
from hospital.chassis.fields import clean_text
from hospital.chassis.web import caller_for
from hospital.emr.app import schemas as sc
from hospital.emr.app.charts import ChartService
from hospital.emr.app.common import Context
from hospital.emr.app.documents import DocumentService
from hospital.emr.app.encounters import EncounterService
from hospital.emr.app.eprescription import EPrescriptionService
from hospital.emr.app.fhir import FhirService
from hospital.emr.app.notifications import Hub
from hospital.emr.app.nursing import NursingService
from hospital.emr.app.orders import OrderService
from hospital.emr.app.papers import PaperService
from hospital.emr.app.prescriptions import PrescriptionService
from hospital.emr.app.reports import ReportService
from hospital.emr.app.results import ResultService
from hospital.emr.app.saves import ConsultationSaves

READERS = ("doctor", "nurse", "radiologist")


@dataclass
class Services:
    ctx: Context
    encounters: EncounterService
    charts: ChartService
    orders: OrderService
    prescriptions: PrescriptionService
    results: ResultService
    hub: Hub
    documents: DocumentService
    saves: ConsultationSaves
    papers: PaperService
    nursing: NursingService
    eprescriptions: EPrescriptionService
    fhir: FhirService
    reports: ReportService
    # fills a chart's results, orders and prescriptions (app.results.ChartExtras.fill)
    chart_extras: Callable[[Any, sc.Chart, str, dict[str, Any] | None], Awaitable[None]] | None = None


def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]
Reader = Annotated[Caller, caller_for(*READERS)]
Doctor = Annotated[Caller, caller_for("doctor")]
Ward = Annotated[Caller, caller_for("nurse", "doctor")]


def break_glass_reason(
    header: Annotated[
        str | None,
        Header(
            alias="X-Break-Glass-Reason",
            description="reason for reading a chart outside the caller's departments, percent-encoded UTF-8",
        ),
    ] = None,
    query: Annotated[
        str | None,
        Query(alias="break_glass_reason", max_length=500, description="the same reason as a query parameter"),
    ] = None,
) -> str | None:
    """The break-the-glass reason (recorded and reported), from the query or the header: one line of at
    most 500 characters without control characters (a percent-encoded header could carry %00)."""
    return clean_reason(query or (unquote(header) if header else None))


def clean_reason(value: str | None) -> str | None:
    """A break-the-glass reason from HTTP or gRPC, bounded and clean (422 / INVALID_ARGUMENT otherwise)."""
    if not value:
        return None
    return (
        clean_text(value, field="break_glass_reason", max_length=500, error_code="break_glass.invalid")
        or None
    )


BreakGlass = Annotated[str | None, Depends(break_glass_reason)]
