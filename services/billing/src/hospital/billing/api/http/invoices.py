"""Invoices: list, read (with lines, the BHYT split and payments), issue, void, printable receipts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from hospital.billing.api.http import schemas as sc
from hospital.billing.api.http.deps import Admin, Desk, Reader, Svc

router = APIRouter(prefix="/api/v1", tags=["invoices"])


@router.get("/invoices", response_model=sc.InvoicePage)
async def list_invoices(
    svc: Svc,
    who: Reader,
    patient_id: str | None = None,
    visit_id: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    return {
        "items": await svc.invoices.list(
            caller=who, patient_id=patient_id, visit_id=visit_id, status=status, limit=limit
        )
    }


@router.get(
    "/invoices/{invoice_id}", response_model=sc.Invoice, summary="Invoice with lines, split and payments"
)
async def get_invoice(invoice_id: str, svc: Svc, who: Reader) -> dict[str, Any]:
    return await svc.invoices.get(invoice_id, caller=who)


@router.get("/visits/{visit_id}/invoice", response_model=sc.Invoice)
async def visit_invoice(visit_id: str, svc: Svc, who: Reader) -> dict[str, Any]:
    return await svc.invoices.for_visit(visit_id, caller=who)


@router.post("/invoices/{invoice_id}/issue", response_model=sc.Invoice)
async def issue(invoice_id: str, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.invoices.issue(invoice_id, who)


@router.post("/invoices/{invoice_id}/void", response_model=sc.Invoice)
async def void(invoice_id: str, body: sc.VoidIn, svc: Svc, who: Admin) -> dict[str, Any]:
    return await svc.invoices.void(invoice_id, body.reason, who)


@router.get(
    "/invoices/{invoice_id}/receipt",
    summary="Printable receipt (HTML, or ?format=pdf)",
    response_class=HTMLResponse,
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def receipt(
    invoice_id: str, svc: Svc, who: Reader, format: Literal["html", "pdf"] = "html"
) -> Response:
    facility = svc.settings.facility_name
    if format == "pdf":
        return Response(
            await svc.invoices.receipt_pdf(invoice_id, facility, caller=who), media_type="application/pdf"
        )
    return HTMLResponse(await svc.invoices.receipt_html(invoice_id, facility, caller=who))
