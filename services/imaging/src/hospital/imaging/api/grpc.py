"""gRPC API (contract: proto/hospital/imaging/v1/imaging.proto). The EMR schedules orders here."""

from __future__ import annotations

from typing import Any

import grpc

from hospital.chassis.rpc import principal
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.imaging.app.orders import NewOrder, order_proto, proto_time

SERVICE = pb.DESCRIPTOR.services_by_name["ImagingService"].full_name
READ = ("doctor", "radiographer", "radiologist", "nurse")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/ScheduleOrder": ("doctor",),
    f"/{SERVICE}/GetOrder": READ,
    f"/{SERVICE}/CancelOrder": ("doctor",),
    f"/{SERVICE}/GetStudy": READ,
    f"/{SERVICE}/ListStudies": READ,
}


class ImagingServicer(pb_grpc.ImagingServiceServicer):
    def __init__(self, services: Any) -> None:
        self.s = services

    async def ScheduleOrder(self, request: pb.ScheduleOrderRequest, context: Any) -> pb.Order:
        p = request.patient
        o = NewOrder(
            accession_number=request.accession_number,
            requested_procedure_id=request.requested_procedure_id,
            requested_procedure_description=request.requested_procedure_description,
            modality=request.modality,
            station_ae_title=request.station_ae_title,
            scheduled_start=proto_time(request.scheduled_start)
            if request.HasField("scheduled_start")
            else None,
            patient_ref=p.patient_ref,
            patient_code=p.patient_code,
            full_name=p.full_name,
            birth_date=p.birth_date,
            sex=p.sex,
            referring_physician=request.referring_physician,
            order_ref=request.order_ref,
            request_id=request.request_id,
            visit_ref=request.visit_ref,
        )
        return await self.s.orders.schedule(o, principal())

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.Order:
        return order_proto(await self.s.orders.get(request.id, request.accession_number))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return await self.s.orders.cancel(request.id, principal(), request.reason)

    async def GetStudy(self, request: pb.GetStudyRequest, context: Any) -> pb.Study:
        return await self.s.studies.get(request.study_instance_uid)

    async def ListStudies(self, request: pb.ListStudiesRequest, context: Any) -> pb.ListStudiesResponse:
        return pb.ListStudiesResponse(
            items=await self.s.studies.list(request.patient_code, request.accession_number, request.limit)
        )


def register(server: grpc.aio.Server, services: Any) -> None:
    pb_grpc.add_ImagingServiceServicer_to_server(ImagingServicer(services), server)
