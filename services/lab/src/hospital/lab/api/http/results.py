"""Results at the bench and on the wards: worklist, verification, corrections, unmatched results,
critical values and their calls, the auto-verification switch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from hospital.lab.api.http import schemas as sc
from hospital.lab.api.http.deps import Reader, Svc, Tech

router = APIRouter(prefix="/api/v1")


@router.get(
    "/orders/{order_id}/results",
    response_model=sc.OrderResults,
    tags=["results"],
    summary="Results of an order (doctors read here)",
)
async def order_results(
    order_id: str, svc: Svc, who: Reader, verified_only: bool = False, include_info: bool = False
) -> dict[str, Any]:
    return await svc.results.for_order(who, order_id, verified_only=verified_only, include_info=include_info)


@router.get(
    "/worklist",
    response_model=sc.Worklist,
    tags=["bench"],
    summary="Results waiting for verification (critical first)",
)
async def worklist(
    svc: Svc,
    who: Tech,
    status: str = "preliminary",
    instrument: str | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    return {"items": await svc.results.worklist(who, status, instrument, limit)}


@router.get(
    "/results/{result_id}",
    response_model=sc.ResultDetail,
    tags=["results"],
    summary="A result with its history and calls",
)
async def get_result(result_id: str, svc: Svc, who: Reader) -> dict[str, Any]:
    return await svc.results.get(result_id, who)


@router.post(
    "/results/verify", response_model=sc.ResultPage, tags=["bench"], summary="Verify results (one or a batch)"
)
async def verify(body: sc.VerifyIn, svc: Svc, who: Tech) -> dict[str, Any]:
    return {"items": await svc.results.verify(body.result_ids, who)}


@router.post("/results/{result_id}/verify", response_model=sc.Result, tags=["bench"])
async def verify_one(result_id: str, svc: Svc, who: Tech) -> dict[str, Any]:
    return (await svc.results.verify([result_id], who))[0]


@router.post(
    "/results/{result_id}/amend",
    response_model=sc.Result,
    tags=["bench"],
    summary="Correct a verified result (history kept)",
)
async def amend(result_id: str, body: sc.AmendIn, svc: Svc, who: Tech) -> dict[str, Any]:
    return await svc.results.amend(result_id, body.value, body.reason, who)


@router.get(
    "/unmatched",
    response_model=sc.UnmatchedPage,
    tags=["bench"],
    summary="Results whose barcode matched no specimen",
)
async def unmatched(svc: Svc, who: Tech) -> dict[str, Any]:
    return {"items": await svc.results.unmatched(who)}


@router.post(
    "/unmatched/assign",
    response_model=sc.ResultPage,
    tags=["bench"],
    summary="Attach unmatched results to a specimen",
)
async def assign(body: sc.AssignIn, svc: Svc, who: Tech) -> dict[str, Any]:
    await svc.ingest.ensure_catalogue()
    return {"items": await svc.results.assign(body.instrument, body.barcode_received, body.barcode, who)}


@router.get(
    "/critical",
    response_model=sc.CriticalPage,
    tags=["critical"],
    summary="Critical values and their documented calls",
)
async def criticals(svc: Svc, who: Reader, pending_only: bool = False) -> dict[str, Any]:
    return {"items": await svc.results.criticals(who, pending_only)}


@router.post(
    "/results/{result_id}/critical-calls",
    status_code=201,
    response_model=sc.CriticalCall,
    tags=["critical"],
    summary="Document who was told of a critical value, when, and the read-back",
)
async def critical_call(result_id: str, body: sc.CriticalCallIn, svc: Svc, who: Tech) -> dict[str, Any]:
    return await svc.results.record_call(result_id, body.model_dump(), who)


@router.get("/settings/autoverify", response_model=sc.AutoVerify, tags=["settings"])
async def get_autoverify(svc: Svc, _: Tech) -> dict[str, Any]:
    return {"enabled": await svc.results.autoverify()}


@router.put(
    "/settings/autoverify",
    response_model=sc.AutoVerify,
    tags=["settings"],
    summary="Switch auto-verification on or off",
)
async def set_autoverify(body: sc.AutoVerifyIn, svc: Svc, who: Tech) -> dict[str, Any]:
    return {"enabled": await svc.results.set_autoverify(body.enabled, who)}
