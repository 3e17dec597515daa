"""HTTP conventions: RFC 9457 problem JSON for every error, bearer-token authentication, role checks,
health/readiness/metrics endpoints."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hospital.chassis.errors import DomainError
from hospital.chassis.security import AuthError, PermissionDenied, Principal
from hospital.chassis.telemetry import current_trace_id

log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str = "", code: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:hospital:problem:{code or status}",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if code:
        body["code"] = code
    trace_id = current_trace_id()
    if trace_id:
        body["trace_id"] = trace_id
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        extra = {"field": exc.field} if exc.field else {}
        return problem(exc.status, exc.message, exc.message, exc.code, **extra)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return problem(401, "Not authenticated", exc.reason, "auth.unauthenticated")

    @app.exception_handler(PermissionDenied)
    async def _perm(_: Request, exc: PermissionDenied) -> JSONResponse:
        return problem(403, "Forbidden", str(exc), "auth.forbidden")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body"),
                "message": e["msg"],
                "code": e["type"],
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problem(
            422, "Invalid request", f"{first['field']}: {first['message']}", "request.invalid", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), code=f"http.{exc.status_code}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the error was logged with this trace id", "internal")


async def current_principal(request: Request) -> Principal:
    verifier = request.app.state.verifier
    principal = verifier.verify_header(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency: the caller must hold one of ``roles`` (services always may)."""

    async def dep(principal: CurrentPrincipal) -> Principal:
        if not principal.is_service:
            principal.require(*roles)
        return principal

    return dep


def client_address(request: Request) -> str:
    fwd = request.headers.get("x-forwarded-for")
    if fwd:
        return fwd.split(",")[0].strip()
    return request.client.host if request.client else ""


def install_ops_endpoints(app: FastAPI, ready: Callable[[], Awaitable[dict[str, str]]]) -> None:
    @app.get("/healthz", tags=["ops"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: database, event bus and storage reachable")
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_endpoint() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)
