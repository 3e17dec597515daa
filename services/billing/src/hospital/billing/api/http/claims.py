"""Insurance claims: the main diagnosis of a visit, and the signed QĐ130 XML of a closed insured visit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hospital.billing.api.http import schemas as sc
from hospital.billing.api.http.deps import Desk, Diagnoser, Svc

router = APIRouter(prefix="/api/v1", tags=["claims"])


@router.put(
    "/visits/{visit_id}/diagnosis",
    response_model=sc.Diagnosis,
    summary="Main diagnosis (ICD-10) for the claim",
)
async def diagnosis(visit_id: str, body: sc.DiagnosisIn, svc: Svc, who: Diagnoser) -> dict[str, Any]:
    return await svc.claims.set_diagnosis(visit_id, body.code, body.text, who)


@router.post(
    "/visits/{visit_id}/cards",
    response_model=sc.VisitCards,
    summary="Record a BHYT card issued during the visit (lines from its first day are paid under it)",
)
async def record_card(visit_id: str, body: sc.CardIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.claims.record_card(
        visit_id,
        body.number,
        body.valid_from,
        body.valid_to,
        body.registered_facility,
        body.five_year_date,
        who,
    )


@router.get(
    "/claims/{visit_id}/xml130",
    summary="Signed QĐ130 GIAMDINHHS of a closed insured visit",
    response_class=Response,
    responses={
        200: {
            "content": {"application/xml": {"schema": {"type": "string"}}},
            "headers": {
                "Hospital-Claim-Incomplete": {
                    "description": "elements BHXH review needs that reception or the EMR have not given yet"
                }
            },
        }
    },
)
async def xml130(
    visit_id: str,
    svc: Svc,
    who: Desk,
    ma_bac_si: str | None = Query(None, max_length=50, description="doctor for lines that name none"),
) -> Response:
    claim = await svc.claims.export(visit_id, who, ma_bac_si)
    headers = {"Content-Disposition": f'attachment; filename="xml130-{visit_id}.xml"'}
    if claim.incomplete:  # elements BHXH review needs that reception or the EMR have not given yet
        headers["Hospital-Claim-Incomplete"] = ",".join(claim.incomplete)
    return Response(claim.document, media_type="application/xml", headers=headers)
