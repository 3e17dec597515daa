"""gRPC API for other services (contract: proto/hospital/lab/v1/lab.proto)."""

from __future__ import annotations

from typing import Any

import grpc

from hospital.chassis.rpc import principal
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.contracts.lab.v1 import lab_pb2_grpc as pb_grpc
from hospital.lab.app.common import SEX_NAME, Caller, result_proto
from hospital.lab.app.orders import NewOrder, order_proto

SERVICE = pb.DESCRIPTOR.services_by_name["LabService"].full_name
CLINICAL = ("doctor", "nurse", "lab_technician")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/PlaceOrder": ("doctor",),
    f"/{SERVICE}/CancelOrder": ("doctor", "lab_technician"),
    f"/{SERVICE}/GetOrder": CLINICAL,
    f"/{SERVICE}/GetResults": CLINICAL,
    f"/{SERVICE}/ListCatalogue": CLINICAL,
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


class LabServicer(pb_grpc.LabServiceServicer):
    def __init__(self, services: Any) -> None:
        self.s = services

    async def PlaceOrder(self, request: pb.PlaceOrderRequest, context: Any) -> pb.Order:
        p = request.patient
        o = NewOrder(
            patient_id=p.id,
            patient_code=p.patient_code or None,
            patient_name=p.full_name,
            patient_sex=SEX_NAME.get(p.sex, "unknown"),
            birth_date=p.birth_date or None,
            tests=list(request.tests),
            priority="stat" if request.priority == pb.PRIORITY_STAT else "routine",
            visit_id=request.visit_id or None,
            ordering_doctor=request.ordering_doctor or None,
            placer_order_number=request.placer_order_number or None,
            request_id=request.request_id or None,
            clinical_note=request.clinical_note or None,
            barcode=request.barcode or None,
        )
        return order_proto(await self.s.orders.place(o, _caller(context), source="grpc"))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return order_proto(await self.s.orders.cancel(request.order_id, request.reason, _caller(context)))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.Order:
        return order_proto(
            await self.s.orders.get(
                request.order_id or None, _caller(context), barcode=request.barcode or None
            )
        )

    async def GetResults(self, request: pb.GetResultsRequest, context: Any) -> pb.GetResultsResponse:
        out = await self.s.results.for_order(
            _caller(context),
            request.order_id or None,
            request.barcode or None,
            verified_only=request.verified_only,
        )
        return pb.GetResultsResponse(results=[result_proto(r) for r in out["results"]])

    async def ListCatalogue(self, request: pb.ListCatalogueRequest, context: Any) -> pb.ListCatalogueResponse:
        await self.s.ingest.ensure_catalogue()
        return pb.ListCatalogueResponse(
            tests=[
                pb.CatalogueTest(
                    code=t.code,
                    name_vi=t.name_vi,
                    name_en=t.name_en,
                    loinc=t.loinc or "",
                    unit=t.unit,
                    specimen_type=t.specimen_type,
                    tube=t.tube,
                )
                for t in sorted(self.s.catalogue.tests.values(), key=lambda t: t.sort)
            ]
        )


def register(server: grpc.aio.Server, services: Any) -> None:
    pb_grpc.add_LabServiceServicer_to_server(LabServicer(services), server)
