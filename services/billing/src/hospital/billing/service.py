"""Wiring: the billing service definition for the chassis runner."""

from __future__ import annotations

from pathlib import Path

from hospital.billing.adapters.tables import metadata
from hospital.billing.api import grpc as grpc_api
from hospital.billing.api.http import build_http
from hospital.billing.app.cashoffice import CashOfficeService
from hospital.billing.app.charges import ChargeService
from hospital.billing.app.claims import ClaimService
from hospital.billing.app.clinical import ClinicalRecords
from hospital.billing.app.invoices import InvoiceService
from hospital.billing.app.orders import OrderCharges
from hospital.billing.app.payments import PaymentService
from hospital.billing.app.prices import PriceListService
from hospital.billing.app.services import Services
from hospital.billing.config import BillingSettings
from hospital.chassis.app import Components, Runtime, ServiceDefinition
from hospital.chassis.bus import Subscription


def build(rt: Runtime[BillingSettings]) -> Components:
    charges = ChargeService(rt)
    orders = OrderCharges(rt)
    payments = PaymentService(rt)
    claims = ClaimService(rt)
    clinical = ClinicalRecords()
    services = Services(
        rt=rt,
        settings=rt.settings,
        charges=charges,
        orders=orders,
        invoices=InvoiceService(rt),
        payments=payments,
        office=CashOfficeService(rt),
        claims=claims,
        price_list=PriceListService(rt),
    )
    rt.extras["payments"] = payments
    admissions = Subscription(
        stream="ADMISSIONS",
        durable=rt.settings.admissions_durable,
        handlers={
            "admissions.visit.opened": charges.on_visit_opened,
            "admissions.visit.closed": charges.on_visit_closed,
            "admissions.inpatient.admitted": charges.on_admitted,
            "admissions.inpatient.transferred": charges.on_transferred,
            "admissions.inpatient.discharged": charges.on_discharged,
            "admissions.patient.merged": charges.on_patient_merged,
        },
    )
    start = rt.settings.order_events_start
    lab = Subscription(
        stream="LAB",
        durable=rt.settings.lab_durable,
        handlers={
            "lab.order.received": orders.on_lab_order_received,
            "lab.order.cancelled": orders.on_lab_order_cancelled,
            "lab.result.verified": clinical.on_lab_result,
            "lab.result.amended": clinical.on_lab_result,
        },
        start=start,
    )
    imaging = Subscription(
        stream="IMAGING",
        durable=rt.settings.imaging_durable,
        handlers={
            "imaging.order.scheduled": orders.on_imaging_order_scheduled,
            "imaging.order.cancelled": orders.on_imaging_order_cancelled,
            "imaging.procedure.completed": orders.on_imaging_procedure_completed,
        },
        start=start,
    )
    # the doctor's diagnoses for the claim (MA_BENH_CHINH, MA_BENH_KT); from the start of the stream:
    # replaying them is harmless (the latest recorded diagnosis of a visit wins)
    emr = Subscription(
        stream="EMR",
        durable=rt.settings.emr_durable,
        handlers={
            "emr.diagnosis.recorded": claims.on_diagnosis_recorded,
            "emr.paper.signed": clinical.on_paper_signed,
            "emr.note.signed": clinical.on_note_signed,
            "emr.discharge.signed": clinical.on_discharge_signed,
            "emr.report.signed": clinical.on_report_signed,
        },
    )
    return Components(
        http=build_http(services),
        grpc_register=lambda server: grpc_api.register(server, services),
        grpc_service_names=[grpc_api.SERVICE],
        grpc_rules=grpc_api.RULES,
        subscriptions=[admissions, lab, imaging, emr],
        on_stop=payments.close,
    )


DEFINITION = ServiceDefinition(
    name="billing",
    settings_cls=BillingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
