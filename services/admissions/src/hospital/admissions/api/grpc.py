"""gRPC API for other services (contract: proto/hospital/admissions/v1/admissions.proto)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from hospital.admissions.app.mapping import SEX, patient_proto, stay_proto, visit_proto
from hospital.admissions.app.patients import Caller, NewPatient
from hospital.chassis.rpc import principal
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["AdmissionsService"].full_name
CLINICAL = ("receptionist", "nurse", "doctor", "lab_technician", "radiographer", "radiologist", "cashier")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/GetPatient": CLINICAL,
    f"/{SERVICE}/SearchPatients": CLINICAL,
    f"/{SERVICE}/RegisterPatient": ("receptionist",),
    f"/{SERVICE}/GetVisit": CLINICAL,
    f"/{SERVICE}/ListActiveAdmissions": ("nurse", "doctor"),
}
SEX_NAME = {v: k for k, v in SEX.items()}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


class AdmissionsServicer(pb_grpc.AdmissionsServiceServicer):
    def __init__(self, services: Any) -> None:
        self.s = services

    async def GetPatient(self, request: pb.GetPatientRequest, context: Any) -> pb.Patient:  # noqa: N802
        return patient_proto(await self.s.patients.get(request.id, _caller(context)))

    async def RegisterPatient(self, request: pb.RegisterPatientRequest, context: Any) -> pb.Patient:  # noqa: N802
        p = NewPatient(
            full_name=request.full_name,
            birth_date=request.birth_date,
            sex=SEX_NAME.get(request.sex, ""),
            cccd=request.cccd or None,
            bhyt_number=request.bhyt_number or None,
            phone=request.phone or None,
            request_id=request.request_id or None,
        )
        return patient_proto(await self.s.patients.register(p, _caller(context)))

    async def SearchPatients(
        self, request: pb.SearchPatientsRequest, context: Any
    ) -> pb.SearchPatientsResponse:  # noqa: N802
        items = await self.s.patients.search(request.query, _caller(context), request.limit or None)
        return pb.SearchPatientsResponse(
            items=[patient_proto(await self.s.patients.get(i["id"], _caller(context))) for i in items]
        )

    async def GetVisit(self, request: pb.GetVisitRequest, context: Any) -> pb.Visit:  # noqa: N802
        v = await self.s.visits.get(request.id, _caller(context))
        return visit_proto(_visit_row(v))

    async def ListActiveAdmissions(
        self,
        request: pb.ListActiveAdmissionsRequest,  # noqa: N802
        context: Any,
    ) -> pb.ListActiveAdmissionsResponse:
        rows = await self.s.inpatient.active(request.ward_code or None)
        return pb.ListActiveAdmissionsResponse(items=[stay_proto(r) for r in rows])


def _visit_row(v: dict[str, Any]) -> dict[str, Any]:
    return dict(
        v,
        room_code=v["room"],
        opened_at=datetime.fromisoformat(v["opened_at"]),
        closed_at=datetime.fromisoformat(v["closed_at"]) if v["closed_at"] else None,
    )


def register(server: grpc.aio.Server, services: Any) -> None:
    pb_grpc.add_AdmissionsServiceServicer_to_server(AdmissionsServicer(services), server)
