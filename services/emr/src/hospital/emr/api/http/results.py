"""Results, trends, critical values and the live notification stream (SSE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from hospital.emr.api.http.deps import Reader, Svc
from hospital.emr.app import schemas as sc

_closing: set[asyncio.Task[None]] = set()


def _close_later(feed: AsyncGenerator[sc.Notification, None]) -> None:
    task = asyncio.ensure_future(feed.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


router = APIRouter(prefix="/api/v1", tags=["results"])
KEEPALIVE_SECONDS = 15.0


@router.get(
    "/patients/{patient_id}/results",
    response_model=sc.ResultsPage,
    summary="Lab results and imaging studies of a patient (or an encounter), newest first",
)
async def list_results(
    patient_id: str,
    svc: Svc,
    caller: Reader,
    encounter_id: str | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> sc.ResultsPage:
    return await svc.results.list(caller, patient_id, encounter_id, limit)


@router.get(
    "/patients/{patient_id}/trends/{test_code}",
    response_model=sc.Trend,
    summary="One analyte over time (lab test code or LOINC), oldest first",
)
async def trend(
    patient_id: str, test_code: str, svc: Svc, caller: Reader, limit: int = Query(100, ge=1, le=1000)
) -> sc.Trend:
    return await svc.results.trend(caller, patient_id, test_code, limit)


@router.get(
    "/critical-alerts",
    response_model=sc.CriticalPage,
    summary="Open critical values: the caller's own and the escalated ones of their departments",
)
async def critical_alerts(
    svc: Svc, caller: Reader, patient_id: str | None = None, include_acknowledged: bool = False
) -> sc.CriticalPage:
    return await svc.results.criticals(caller, patient_id, include_acknowledged)


@router.post(
    "/critical-alerts/{alert_id}/acknowledge",
    response_model=sc.CriticalAlert,
    summary="Acknowledge a critical value with the read-back text",
)
async def acknowledge(alert_id: str, body: sc.AcknowledgeIn, svc: Svc, caller: Reader) -> sc.CriticalAlert:
    return await svc.results.acknowledge(caller, alert_id, body.read_back)


@router.get(
    "/notifications/stream",
    summary="Live notifications (text/event-stream)",
    response_description="Server-sent events: `id` is the notification seq, `event` its kind, "
    "`data` a Notification as JSON. Reconnect with Last-Event-ID to resume.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "each `data:` line is a Notification"}
                }
            }
        }
    },
)
async def stream(
    svc: Svc, caller: Reader, last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None
) -> StreamingResponse:
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    recipients = svc.hub.recipients_of(caller.subject, svc.ctx.departments(caller))
    async with svc.ctx.uow() as uow:
        uow.audit(caller.audit("notification.stream", "Notification", None, None, after=after))
        await uow.commit()

    async def events() -> AsyncIterator[bytes]:
        feed = svc.hub.open(recipients, after)  # registered before the client is told it is connected
        items = feed.__aiter__()
        pending: asyncio.Task[sc.Notification] | None = None
        try:
            yield b": connected\n\n"
            while True:
                pending = pending or asyncio.ensure_future(items.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                item = pending.result()
                pending = None
                data = json.dumps(item.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
                yield f"id: {item.seq}\nevent: {item.kind}\ndata: {data}\n\n".encode()
        finally:
            feed.close()
            if pending is not None and not pending.done():
                # The client left while the feed was waiting: closing it now would find it still running
                # (RuntimeError). Cancel the wait (that ends the feed) and close it once done.
                pending.cancel()
                pending.add_done_callback(lambda _: _close_later(items))
            else:
                await items.aclose()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
