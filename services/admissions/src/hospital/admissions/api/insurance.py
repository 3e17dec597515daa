"""Card-less reception over HTTP: look a BHYT card up on the insurance portal (kept apart from the
patient search routes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from hospital.chassis.fields import Id, code, line
from hospital.chassis.security import Principal
from hospital.chassis.web import require_roles

DESK = ("receptionist", "cashier", "nurse", "doctor", "admin")
Desk = Annotated[Principal, Depends(require_roles(*DESK))]


class LookupIn(BaseModel):
    identifier: code(12) | None = Field(
        None,
        description="12-digit CCCD or 10-digit social-insurance number (default: the patient's CCCD)",
        examples=["034185001234"],
    )
    full_name: line(200) | None = Field(None, description="default: the patient's name")
    birth_date: code(10) | None = Field(None, description="YYYY-MM-DD or YYYY (default: the patient's)")
    patient_id: Id | None = Field(None, description="a valid card found is added to this patient")
    visit_id: Id | None = Field(None, description="the check is recorded on this visit")


def router(services: Any, caller: Callable[[Request, Principal], Any]) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["insurance"])

    @api.post(
        "/insurance/lookups",
        summary="Look a BHYT card up on the insurance portal (card-less reception)",
        description="Answers 200 with `status`: `valid` (the card is added to the patient when given), "
        "`expired`, `refused` (the portal's `message` says why), `unavailable` (portal down, slow or "
        "refusing the hospital's account: proceed fee-paying or retry) or `not_configured`. Every look-up "
        "is recorded with its check time, on the visit when `visit_id` is given.",
    )
    async def lookup(body: LookupIn, request: Request, who: Desk) -> dict[str, Any]:
        return await services.insurance.check(
            caller(request, who),
            identifier=body.identifier,
            full_name=body.full_name,
            birth_date=body.birth_date,
            patient_id=body.patient_id,
            visit_id=body.visit_id,
        )

    @api.get("/visits/{visit_id}/insurance-checks", summary="The insurance look-ups recorded on a visit")
    async def checks(visit_id: Id, request: Request, who: Desk) -> dict[str, Any]:
        return {"items": await services.insurance.checks_of_visit(visit_id, caller(request, who))}

    return api
