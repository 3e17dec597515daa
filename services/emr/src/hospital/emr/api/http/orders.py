"""CPOE (lab, imaging, medication orders), the drug catalogue and prescriptions."""

from __future__ import annotations

from fastapi import APIRouter, Query

from hospital.emr.api.http.deps import Doctor, Reader, Svc
from hospital.emr.app import schemas as sc

router = APIRouter(prefix="/api/v1", tags=["orders"])


@router.post(
    "/encounters/{encounter_id}/orders",
    response_model=sc.PlacedOrders,
    status_code=201,
    summary="Place lab, imaging and medication orders (lab/imaging are sent by the worker)",
)
async def place_orders(encounter_id: str, body: sc.PlaceOrders, svc: Svc, caller: Doctor) -> sc.PlacedOrders:
    return await svc.orders.place(caller, encounter_id, body)


@router.get("/encounters/{encounter_id}/orders", response_model=sc.OrderPage)
async def list_orders(encounter_id: str, svc: Svc, caller: Reader) -> sc.OrderPage:
    return await svc.orders.list(caller, encounter_id, None)


@router.post("/orders/{order_id}/cancel", response_model=sc.ClinicalOrder)
async def cancel_order(order_id: str, body: sc.CancelIn, svc: Svc, caller: Doctor) -> sc.ClinicalOrder:
    return await svc.orders.cancel(caller, order_id, body.reason)


@router.post(
    "/orders/{order_id}/stop",
    response_model=sc.ClinicalOrder,
    summary="Stop an active medication order (ngừng thuốc): no more doses; the doses given stay",
)
async def stop_order(order_id: str, body: sc.CancelIn, svc: Svc, caller: Doctor) -> sc.ClinicalOrder:
    return await svc.orders.stop(caller, order_id, body.reason)


@router.get("/drugs", response_model=sc.DrugPage, summary="Drug catalogue by name, ingredient or code")
async def search_drugs(
    svc: Svc,
    _: Reader,
    q: str = Query(..., min_length=1, max_length=100),
    limit: int = Query(20, ge=1, le=100),
) -> sc.DrugPage:
    return await svc.prescriptions.search_drugs(q, limit)


@router.post(
    "/encounters/{encounter_id}/prescriptions/check",
    response_model=sc.CheckResult,
    summary="Allergy and duplicate checks of a prescription, without saving it",
)
async def check_prescription(
    encounter_id: str, body: sc.SavePrescription, svc: Svc, caller: Doctor
) -> sc.CheckResult:
    return await svc.prescriptions.check(caller, encounter_id, body)


@router.post(
    "/encounters/{encounter_id}/prescriptions",
    response_model=sc.Prescription,
    status_code=201,
    summary="Save a prescription draft (422 prescription.alerts_not_overridden lists open alerts)",
)
async def save_prescription(
    encounter_id: str, body: sc.SavePrescription, svc: Svc, caller: Doctor
) -> sc.Prescription:
    return await svc.prescriptions.save(caller, encounter_id, body)
