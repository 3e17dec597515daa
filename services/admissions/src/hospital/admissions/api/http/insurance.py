"""Card-less reception over HTTP: look a BHYT card up on the insurance portal (kept apart from the
patient search routes)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hospital.admissions.api.http.deps import Svc, caller_for
from hospital.chassis.caller import Caller
from hospital.chassis.fields import Id, code, line
from hospital.chassis.responses import Instant, Out

DESK = ("receptionist", "cashier", "nurse", "doctor", "admin")
Desk = Annotated[Caller, caller_for(*DESK)]
router = APIRouter(prefix="/api/v1", tags=["insurance"])


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


class CheckedCard(Out):
    number: str
    benefit_level: int | None
    registered_facility: str | None
    valid_from: date | None
    valid_to: date | None
    five_year_date: date | None


class Check(Out):
    id: str
    patient_id: str | None
    visit_id: str | None
    identifier_kind: str = Field(..., examples=["cccd", "social_insurance_number"])
    status: str = Field(..., examples=["valid", "expired", "refused", "unavailable", "not_configured"])
    result_code: str | None
    message: str | None
    card: CheckedCard | None
    checked_at: Instant
    checked_by: str


class Lookup(Check):
    card_added: bool = Field(..., description="the valid card was added to the patient")


class CheckPage(Out):
    items: list[Check]


@router.post(
    "/insurance/lookups",
    response_model=Lookup,
    summary="Look a BHYT card up on the insurance portal (card-less reception)",
    description="Answers 200 with `status`: `valid` (the card is added to the patient when given), "
    "`expired`, `refused` (the portal's `message` says why), `unavailable` (portal down, slow or "
    "refusing the hospital's account: proceed fee-paying or retry) or `not_configured`. Every look-up "
    "is recorded with its check time, on the visit when `visit_id` is given.",
)
async def lookup(body: LookupIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.insurance.check(
        who,
        identifier=body.identifier,
        full_name=body.full_name,
        birth_date=body.birth_date,
        patient_id=body.patient_id,
        visit_id=body.visit_id,
    )


@router.get(
    "/visits/{visit_id}/insurance-checks",
    response_model=CheckPage,
    summary="The insurance look-ups recorded on a visit",
)
async def checks(visit_id: Id, svc: Svc, who: Desk) -> dict[str, Any]:
    return {"items": await svc.insurance.checks_of_visit(visit_id, who)}
