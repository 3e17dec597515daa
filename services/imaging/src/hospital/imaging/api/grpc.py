"""gRPC API (contract: proto/hospital/imaging/v1/imaging.proto). The EMR schedules orders here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc

from hospital.chassis.rpc import principal
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.imaging.app.access_audit import AccessAudit, http_entry
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
        self.access = AccessAudit(services.rt)

    async def _audited(
        self,
        context: Any,
        action: str,
        resource_type: str,
        resource_id: str | None,
        patients: list[str],
        **kw: Any,
    ) -> None:
        """Record the read (who, from where, which patients) before it is answered."""
        rows = [{"PatientID": p} for p in patients]
        entry = http_entry(principal(), str(context.peer() or ""), action, resource_id, rows, **kw)
        await self.access.record(replace(entry, resource_type=resource_type))

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
        order = order_proto(await self.s.orders.get(request.id, request.accession_number))
        await self._audited(
            context, "imaging_order.read", "ImagingOrder", order.id, [order.patient.patient_code]
        )
        return order

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return await self.s.orders.cancel(request.id, principal(), request.reason)

    async def GetStudy(self, request: pb.GetStudyRequest, context: Any) -> pb.Study:
        study = await self.s.studies.get(request.study_instance_uid)
        shown = [study.patient_code]
        await self._audited(context, "imaging_study.read", "ImagingStudy", study.study_instance_uid, shown)
        return study

    async def ListStudies(self, request: pb.ListStudiesRequest, context: Any) -> pb.ListStudiesResponse:
        items = await self.s.studies.list(request.patient_code, request.accession_number, request.limit)
        await self._audited(
            context,
            "imaging_study.search",
            "ImagingStudy",
            None,
            [st.patient_code for st in items],
            query={"PatientID": request.patient_code, "AccessionNumber": request.accession_number},
        )
        return pb.ListStudiesResponse(items=items)


def register(server: grpc.aio.Server, services: Any) -> None:
    pb_grpc.add_ImagingServiceServicer_to_server(ImagingServicer(services), server)
