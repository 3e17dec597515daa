"""The cash office: cashier shifts and the reconciliation of bank-feed payments with the bank statement."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Query, Request

from hospital.billing.api.http import schemas as sc
from hospital.billing.api.http.deps import Desk, Svc
from hospital.chassis.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["cash office"])
_STATEMENT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CSV: tab, CR and LF only


@router.post("/shifts", status_code=201, response_model=sc.Shift, summary="Open my cashier shift")
async def open_shift(body: sc.ShiftOpenIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.office.open_shift(body.opening_float, who)


@router.get("/shifts/current", response_model=sc.Shift)
async def current_shift(svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.office.current(who)


@router.post(
    "/shifts/{shift_id}/close", response_model=sc.Shift, summary="Close: totals by method, cash difference"
)
async def close_shift(shift_id: str, body: sc.ShiftCloseIn, svc: Svc, who: Desk) -> dict[str, Any]:
    return await svc.office.close_shift(shift_id, body.counted_cash, who)


@router.post(
    "/reconciliations",
    response_model=sc.Reconciliation,
    summary="Reconcile a day's bank-feed payments against "
    "the bank statement (CSV body: date,reference,amount,description)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def reconcile(
    request: Request, svc: Svc, who: Desk, on: date = Query(..., alias="date")
) -> dict[str, Any]:
    try:
        statement = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("statement.encoding", "the statement must be UTF-8 CSV", field="statement") from None
    bad = _STATEMENT_CONTROL.search(statement)
    if bad:
        line = statement.count("\n", 0, bad.start()) + 1
        raise Invalid(
            "statement.control_character",
            f"line {line} of the statement holds a control character (U+{ord(bad.group()):04X})",
            field="statement",
        )
    return await svc.office.reconcile(on, statement, who)
