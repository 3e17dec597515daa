"""Orders and specimens: ordering, reading, cancelling, collecting, receiving, tube labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from hospital.lab.api.http import schemas as sc
from hospital.lab.api.http.deps import Collector, Orderer, Reader, Svc, Tech
from hospital.lab.app.orders import NewOrder

router = APIRouter(prefix="/api/v1")


@router.post(
    "/orders",
    status_code=201,
    response_model=sc.Order,
    tags=["orders"],
    summary="Order tests; specimens get barcodes",
)
async def place(body: sc.OrderIn, svc: Svc, who: Orderer) -> dict[str, Any]:
    await svc.ingest.ensure_catalogue()
    p = body.patient
    return await svc.orders.place(
        NewOrder(
            patient_id=p.id,
            patient_code=p.patient_code,
            patient_name=p.full_name,
            patient_sex=p.sex,
            birth_date=p.birth_date,
            tests=body.tests,
            priority=body.priority,
            visit_id=body.visit_id,
            ordering_doctor=body.ordering_doctor,
            placer_order_number=body.placer_order_number,
            request_id=body.request_id,
            clinical_note=body.clinical_note,
            barcode=body.barcode,
        ),
        who,
        source="http",
    )


@router.get("/orders/{order_id}", response_model=sc.Order, tags=["orders"])
async def get_order(order_id: str, svc: Svc, who: Reader) -> dict[str, Any]:
    return await svc.orders.get(order_id, who)


@router.post("/orders/{order_id}/cancel", response_model=sc.Order, tags=["orders"])
async def cancel(order_id: str, body: sc.CancelIn, svc: Svc, who: Orderer) -> dict[str, Any]:
    return await svc.orders.cancel(order_id, body.reason, who)


@router.get(
    "/specimens/{barcode}", response_model=sc.Order, tags=["specimens"], summary="Order lookup by barcode"
)
async def by_barcode(barcode: str, svc: Svc, who: Reader) -> dict[str, Any]:
    return await svc.orders.get(None, who, barcode=barcode)


@router.post("/specimens/{barcode}/collect", response_model=sc.Specimen, tags=["specimens"])
async def collect(barcode: str, svc: Svc, who: Collector) -> dict[str, Any]:
    return await svc.orders.specimen_step(barcode, "collect", who)


@router.post(
    "/specimens/{barcode}/receive",
    response_model=sc.Specimen,
    tags=["specimens"],
    summary="Specimen arrived in the lab",
)
async def receive(barcode: str, svc: Svc, who: Tech) -> dict[str, Any]:
    return await svc.orders.specimen_step(barcode, "receive", who)


@router.get(
    "/specimens/{barcode}/label.png",
    tags=["specimens"],
    summary="Tube label (Code 128, 50×25 mm)",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def label(barcode: str, svc: Svc, who: Collector) -> Response:
    return Response(await svc.orders.label_png(barcode, who), media_type="image/png")
