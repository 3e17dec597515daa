"""Helpers for the EMR tests: an admissions event publisher on the real NATS server, tokens for doctors of
given departments, a gRPC stub with a bearer token, and a condition poller."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Self

import grpc

from hospital.chassis.app import Service
from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import events_pb2 as adm_events
from hospital.contracts.emr.v1 import emr_pb2_grpc
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns a truthy value (event consumers are asynchronous)."""
    return await wait_for(check, timeout)


def token(
    svc: Service,
    role: str = "doctor",
    *,
    subject: str = "user:bs.minh",
    name: str = "BS. Lê Quang Minh",
    departments: list[str] | None = None,
) -> str:
    extra = {"departments": departments} if departments is not None else None
    return issuer_for(svc).mint(subject, [role], name=name, extra=extra)


def client(svc: Service, role: str = "doctor", **kw: Any) -> Any:
    return http_client(svc, token=token(svc, role, **kw))


class Grpc:
    def __init__(self, svc: Service, tok: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}")
        self.stub = emr_pb2_grpc.EmrServiceStub(self.channel)
        self.md = call_metadata(tok)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()


class Admissions:
    """Publishes admissions events onto the ADMISSIONS stream, as the admissions relay does."""

    def __init__(self, js: Any) -> None:
        self.js = js

    async def publish(self, subject: str, msg: Any, event_id: str | None = None) -> str:
        eid = event_id or str(uuid.uuid4())
        headers = {
            "Hospital-Event-Id": eid,
            "Hospital-Event-Type": msg.DESCRIPTOR.full_name,
            "Hospital-Event-Source": "admissions",
            "Hospital-Event-Time": datetime.now(UTC).isoformat(),
            "Nats-Msg-Id": eid,
        }
        await self.js.publish(subject, msg.SerializeToString(), headers=headers)
        return eid

    @staticmethod
    def patient(name: str = "Nguyễn Thị Hồng Nhung", patient_id: str | None = None) -> adm.Patient:
        p = adm.Patient(
            id=patient_id or str(uuid.uuid4()),
            patient_code=f"BN{uuid.uuid4().int % 10**8:08d}",
            full_name=name,
            sex=adm.SEX_FEMALE,
            cccd="035190001234",
        )
        p.birth_date.year, p.birth_date.month, p.birth_date.day = 1972, 3, 14
        p.insurance_cards.append(adm.InsuranceCard(number="HT3350123456789", benefit_level=3))
        return p

    async def open_visit(
        self,
        *,
        patient: adm.Patient | None = None,
        department: str = "KKB",
        room: str = "P101",
        ticket: int = 1,
        kind: int = adm.VISIT_KIND_INSURED,
    ) -> tuple[str, adm.Patient]:
        p = patient or self.patient()
        visit = adm.Visit(
            id=str(uuid.uuid4()),
            visit_code=f"KB{uuid.uuid4().int % 10**10:010d}",
            patient_id=p.id,
            kind=kind,
            department_code=department,
            room_code=room,
            ticket_number=ticket,
            status="open",
            insurance_card_number="HT3350123456789",
        )
        visit.opened_at.FromDatetime(datetime.now(UTC))
        await self.publish("admissions.visit.opened", adm_events.VisitOpened(visit=visit, patient=p))
        return visit.id, p

    async def close_visit(self, visit_id: str, patient_id: str) -> None:
        visit = adm.Visit(id=visit_id, patient_id=patient_id, status="closed")
        visit.closed_at.FromDatetime(datetime.now(UTC))
        await self.publish("admissions.visit.closed", adm_events.VisitClosed(visit=visit))

    async def admit(
        self,
        visit_id: str,
        patient_id: str,
        ward: str = "NOI",
        bed: str = "NOI-101-01",
        at: datetime | None = None,
    ) -> str:
        a = adm.Admission(
            id=str(uuid.uuid4()), patient_id=patient_id, visit_id=visit_id, ward_code=ward, bed_code=bed
        )
        a.admitted_at.FromDatetime(at or datetime.now(UTC))
        await self.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=a))
        return a.id

    async def transfer(self, admission_id: str, patient_id: str, ward: str, bed: str) -> None:
        a = adm.Admission(id=admission_id, patient_id=patient_id, ward_code=ward, bed_code=bed)
        await self.publish(
            "admissions.inpatient.transferred",
            adm_events.InpatientTransferred(admission=a, from_ward_code="NOI"),
        )

    async def discharge(self, admission_id: str, patient_id: str, discharge_type: str = "recovered") -> None:
        a = adm.Admission(id=admission_id, patient_id=patient_id)
        msg = adm_events.InpatientDischarged(admission=a, discharge_type=discharge_type)
        msg.discharged_at.FromDatetime(datetime.now(UTC))
        await self.publish("admissions.inpatient.discharged", msg)

    async def merge(self, survivor_id: str, merged_id: str) -> None:
        msg = adm_events.PatientMerged(survivor_id=survivor_id, merged_id=merged_id)
        msg.merged_at.FromDatetime(datetime.now(UTC))
        await self.publish("admissions.patient.merged", msg)


async def wait_encounter(svc: Service, patient_id: str, n: int = 1, **filters: str) -> list[dict[str, Any]]:
    async with client(svc) as c:

        async def check() -> Any:
            r = await c.get("/api/v1/encounters", params={"patient_id": patient_id, **filters})
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            return items if len(items) >= n else None

        return await eventually(check)
