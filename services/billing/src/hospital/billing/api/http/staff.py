"""Staff identifiers (reference data): the health-practitioner identifier the claim writes as MA_BAC_SI,
MA_BS, MA_BS_DOC_KQ and NGUOI_THUC_HIEN for a staff member's sign-in subject (``user:bs.minh``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from hospital.billing.adapters.tables import staff_identifiers
from hospital.billing.api.http.deps import Svc
from hospital.billing.app.charges import upsert
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.fields import code, line
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, require_roles


class StaffIn(BaseModel):
    practitioner_id: code(50, 1) = Field(
        ..., description="mã định danh / số chứng chỉ hành nghề", examples=["003456/TB-CCHN"]
    )
    full_name: line(200, 1) = Field(..., examples=["BS. Lê Quang Minh"])
    title: line(100) = ""


class StaffOut(BaseModel):
    subject: str
    practitioner_id: str
    full_name: str
    title: str = ""
    updated_at: datetime


class StaffList(BaseModel):
    items: list[StaffOut]


Admin = Annotated[Principal, Depends(require_roles("admin"))]
Readers = Annotated[Principal, Depends(require_roles("cashier", "admin", "auditor"))]


router = APIRouter(prefix="/api/v1", tags=["reference data"])


@router.get("/staff", response_model=StaffList, summary="Staff health-practitioner identifiers")
async def list_staff(svc: Svc, _: Readers) -> StaffList:
    async with svc.rt.db.session() as s:
        rows = (await s.execute(select(staff_identifiers).order_by(staff_identifiers.c.subject))).mappings()
        return StaffList(items=[StaffOut(**{**r, "title": r["title"] or ""}) for r in rows])


@router.put(
    "/staff/{subject}",
    response_model=StaffOut,
    summary="Set a staff member's health-practitioner identifier (MA_BAC_SI)",
)
async def put_staff(
    body: StaffIn,
    request: Request,
    svc: Svc,
    who: Admin,
    subject: str = Path(..., min_length=3, max_length=100, pattern=r"^[a-z]+:[A-Za-z0-9._@-]+$"),
) -> StaffOut:
    row = {**body.model_dump(), "subject": subject, "updated_at": utcnow()}
    caller = Caller(principal=who, source=client_address(request))
    async with svc.rt.uow() as uow:
        stmt = upsert(uow.session)(staff_identifiers).values(**row)
        await uow.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["subject"], set_={k: stmt.excluded[k] for k in row if k != "subject"}
            )
        )
        uow.audit(
            caller.audit("staff.identifier", "Staff", subject, None, practitioner_id=body.practitioner_id)
        )
        await uow.commit()
    return StaffOut(**row)
