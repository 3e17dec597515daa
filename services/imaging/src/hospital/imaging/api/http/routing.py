"""Routing rules (forward received instances to other AEs), the routing queue and the ingest pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hospital.imaging.api.http import schemas as sc
from hospital.imaging.api.http.deps import Admin, Reviewer, Svc

router = APIRouter(prefix="/api/v1", tags=["routing"])


@router.get("/routing/rules", response_model=sc.RoutingRulePage)
async def rules(svc: Svc, _: Reviewer) -> dict[str, Any]:
    return {"items": await svc.routing.rules()}


@router.post("/routing/rules", status_code=201, response_model=sc.RoutingRule)
async def add_rule(body: sc.RuleBody, svc: Svc, _: Admin) -> dict[str, Any]:
    return await svc.routing.add_rule(body.model_dump())


@router.delete("/routing/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, svc: Svc, _: Admin) -> None:
    await svc.routing.delete_rule(rule_id)


@router.get("/routing/queue", response_model=sc.RoutingQueue)
async def routing_queue(svc: Svc, _: Reviewer) -> dict[str, Any]:
    return await svc.routing.queue_status()


@router.get("/pipeline", response_model=sc.Pipeline, tags=["ops"])
async def pipeline(svc: Svc, _: Reviewer) -> dict[str, Any]:
    return {
        "spooled": len(svc.spool.pending()),
        "indexed_since_start": svc.pipeline.indexed,
        "last_error": svc.pipeline.last_error,
    }
