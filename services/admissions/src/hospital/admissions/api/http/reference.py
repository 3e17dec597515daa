"""Reference data: clinic rooms, departments, wards, provinces."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hospital.admissions.api.http import schemas as sc
from hospital.admissions.api.http.deps import Anyone, Svc

router = APIRouter(prefix="/api/v1", tags=["reference"])


@router.get("/rooms", response_model=sc.RoomPage, summary="Outpatient clinic rooms")
async def rooms(svc: Svc, _: Anyone) -> dict[str, Any]:
    return {"items": await svc.reference.rooms()}


@router.get("/departments", response_model=sc.DepartmentPage)
async def departments(svc: Svc, _: Anyone) -> dict[str, Any]:
    return {"items": await svc.reference.departments()}


@router.get("/wards", response_model=sc.WardPage)
async def wards(svc: Svc, _: Anyone) -> dict[str, Any]:
    return {"items": await svc.reference.wards()}


@router.get("/provinces", response_model=sc.ProvincePage)
async def provinces(svc: Svc, _: Anyone) -> dict[str, Any]:
    return {"items": svc.reference.provinces()}
