"""Outpatient visits and their queues: tickets, calls, waiting-room displays (state and live stream)."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hospital.admissions.api.http import schemas as sc
from hospital.admissions.api.http.deps import Clinical, Receptionist, Svc, caller_for
from hospital.admissions.app.queue_display import DisplaysFull, sse
from hospital.chassis.caller import Caller
from hospital.chassis.errors import DomainError

router = APIRouter(prefix="/api/v1")
Closer = Annotated[Caller, caller_for("doctor", "receptionist")]
Calling = Annotated[Caller, caller_for("doctor", "nurse")]
LinkIssuer = Annotated[Caller, caller_for("receptionist", "nurse", "admin")]


@router.post(
    "/visits",
    status_code=201,
    response_model=sc.OpenedVisit,
    tags=["visits"],
    summary="Open a visit; returns it with its queue ticket",
)
async def open_visit(body: sc.VisitIn, svc: Svc, who: Receptionist) -> dict[str, Any]:
    return await svc.visits.open(
        body.patient_id, body.room, who, body.kind, body.insurance_card_number, body.referral_code
    )


@router.get("/visits/{visit_id}", response_model=sc.Visit, tags=["visits"])
async def get_visit(visit_id: str, svc: Svc, who: Clinical) -> dict[str, Any]:
    return await svc.visits.get(visit_id, who)


@router.post("/visits/{visit_id}/close", response_model=sc.Visit, tags=["visits"])
async def close_visit(visit_id: str, svc: Svc, who: Closer) -> dict[str, Any]:
    return await svc.visits.close(visit_id, who)


@router.post(
    "/queues/{room}/next",
    response_model=sc.QueueCall,
    tags=["queues"],
    summary="Call the next ticket (or recall / skip)",
)
async def queue_next(
    room: str, svc: Svc, who: Calling, body: sc.QueueActionIn | None = None
) -> dict[str, Any]:
    body = body or sc.QueueActionIn()
    return await svc.visits.call(room, who, body.action, body.ticket_number)


@router.post(
    "/queues/{room}/display-link",
    response_model=sc.DisplayLink,
    tags=["queues"],
    summary="A signed link for a waiting-room screen of this room (no login on the screen)",
)
async def display_link(
    room: str, svc: Svc, who: LinkIssuer, body: sc.DisplayLinkIn | None = None
) -> dict[str, Any]:
    body = body or sc.DisplayLinkIn()
    return await svc.display_links.issue(room, who, body.valid_days)


@router.get(
    "/queues/{room}",
    response_model=sc.QueueState,
    tags=["queues"],
    summary="Queue state for a waiting-room display (numbers only); "
    "with the room's display link (exp, sig) or a bearer token",
)
async def queue_state(
    room: str, request: Request, svc: Svc, exp: sc.DisplayExp = None, sig: sc.DisplaySig = None
) -> dict[str, Any]:
    await svc.display_links.check_access(
        room, exp, sig, request.headers.get("authorization"), request.app.state.verifier
    )
    return await svc.visits.queue(room)


@router.get(
    "/queues/{room}/stream",
    tags=["queues"],
    summary="Live queue (Server-Sent Events): the state now, then each change as it happens; with the "
    "room's display link (exp, sig) or a bearer token. 503 when the server's display streams are full",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`data:` lines, each a queue state (the schema of GET /api/v1/queues/{room})",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def queue_stream(
    room: str, request: Request, svc: Svc, exp: sc.DisplayExp = None, sig: sc.DisplaySig = None
) -> StreamingResponse:
    await svc.display_links.check_access(
        room, exp, sig, request.headers.get("authorization"), request.app.state.verifier
    )
    try:
        release = svc.displays.reserve(room)
    except DisplaysFull as exc:
        raise DomainError("queue.displays_full", str(exc), status=503) from None

    async def events() -> AsyncIterator[str]:
        try:
            async for state in svc.displays.watch(room):
                yield sse(state)
        finally:
            release()

    stream = events()
    weakref.finalize(stream, release)  # also when the stream is never started
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
