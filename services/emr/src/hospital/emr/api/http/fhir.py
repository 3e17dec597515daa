"""FHIR R4 read API under /fhir: each resource type by id and searched by patient (a searchset Bundle);
every error answered as an OperationOutcome (application/fhir+json)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hospital.chassis.errors import NotFound
from hospital.chassis.responses import FHIR_JSON, FhirBundle, FhirJSONResponse, FhirResource
from hospital.emr.api.http.deps import BreakGlass, Reader, Svc
from hospital.emr.app.fhir import DEFAULT_COUNT, MAX_COUNT, TYPES, FhirService

router = APIRouter(prefix="/fhir", tags=["fhir"], default_response_class=FhirJSONResponse)


def _fhir(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=FHIR_JSON)


def _svc(svc: Svc) -> FhirService:
    return svc.fhir


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _type(resource_type: str) -> str:
    if resource_type not in TYPES:
        raise NotFound(
            "fhir.unsupported_type",
            f"resource type {resource_type!r} is not served here (served: {', '.join(TYPES)})",
            field="type",
        )
    return resource_type


@router.get(
    "/metadata",
    response_model=FhirResource,
    summary="CapabilityStatement: the resource types served and their search",
)
async def metadata(request: Request) -> JSONResponse:
    return _fhir(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-07",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "implementation": {"description": "EMR FHIR read API", "url": f"{_base(request)}/fhir"},
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": t,
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": [
                                {"name": "patient", "type": "reference"},
                                {"name": "_count", "type": "number"},
                                {"name": "_offset", "type": "number"},
                            ],
                        }
                        for t in TYPES
                    ],
                }
            ],
        }
    )


@router.get(
    "/{resource_type}",
    summary="Search a resource type by patient (the admissions patient id): a searchset Bundle",
    response_model=FhirBundle,
)
async def search(
    resource_type: str,
    request: Request,
    svc: Svc,
    caller: Reader,
    reason: BreakGlass,
    patient: str = Query(..., max_length=80, description="patient id, or Patient/<id>"),
    count: int = Query(
        DEFAULT_COUNT,
        alias="_count",
        ge=0,
        le=MAX_COUNT,
        description=f"page size (default {DEFAULT_COUNT}, at most {MAX_COUNT}; 0: the total only)",
    ),
    offset: int = Query(
        0, alias="_offset", ge=0, le=100_000, description="where the page starts (the `next` link sets it)"
    ),
) -> JSONResponse:
    rtype = _type(resource_type)
    bundle = await _svc(svc).search(
        caller, rtype, patient, reason, _base(request), str(request.url), count, offset
    )
    return _fhir(bundle)


@router.get("/{resource_type}/{resource_id}", summary="Read one resource by id", response_model=FhirResource)
async def read(
    resource_type: str, resource_id: str, request: Request, svc: Svc, caller: Reader, reason: BreakGlass
) -> JSONResponse:
    rtype = _type(resource_type)
    return _fhir(await _svc(svc).read(caller, rtype, resource_id, reason, _base(request)))


ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    422: "invalid",
    429: "throttled",
}


def operation_outcome(status: int, body: bytes) -> bytes:
    try:
        problem = json.loads(body or b"{}")
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": ISSUE_CODES.get(status, "exception" if status >= 500 else "processing"),
        "details": {"text": str(problem.get("detail") or problem.get("title") or f"HTTP {status}")},
    }
    if problem.get("code"):
        issue["diagnostics"] = str(problem["code"])
    if problem.get("field"):
        issue["expression"] = [str(problem["field"]).removeprefix("query.")]
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}, ensure_ascii=False).encode()


class OperationOutcomes:
    """ASGI middleware: an error answer under /fhir becomes an OperationOutcome with the same status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/fhir" or path.startswith("/fhir/")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                else:
                    start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = operation_outcome(start["status"], b"".join(chunks))
            headers = [
                (k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")
            ]
            headers += [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": start["status"], "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.add_middleware(OperationOutcomes)
