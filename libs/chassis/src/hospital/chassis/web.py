"""HTTP conventions: RFC 9457 problem JSON for every error, bearer-token authentication, role checks,
health/readiness/metrics endpoints."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hospital.chassis.caller import Caller
from hospital.chassis.errors import DomainError
from hospital.chassis.responses import Out
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
        response = problem(exc.status, exc.message, exc.message, exc.code, **extra)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            response.headers["Retry-After"] = str(max(1, round(retry_after)))
        return response

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        # The reason (expired, audience, the JWT library's message) is for the log, not for the caller.
        log.info(
            "request to %s not authenticated: %s",
            request.url.path,
            exc.reason,
            extra={"client": client_address(request)},
        )
        return problem(401, "Not authenticated", exc.public, "auth.unauthenticated")

    @app.exception_handler(PermissionDenied)
    async def _perm(_: Request, exc: PermissionDenied) -> JSONResponse:
        return problem(403, "Forbidden", str(exc), "auth.forbidden")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"][1 if e["loc"][:1] == ("body",) else 0 :]),
                "message": e["msg"],
                "code": e["type"],
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problem(
            422,
            "Invalid request",
            f"{first['field']}: {first['message']}",
            "request.invalid",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, _BodyTooLarge):  # FastAPI wraps errors while reading the body
            raise exc.__cause__
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """The ``trusted_proxies`` setting (addresses or CIDRs) as networks."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def forwarded_client(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the connection's peer, unless the peer is a trusted proxy
    (``trusted_proxies``; none by default); then ``X-Forwarded-For`` is read from the right, past
    every trusted proxy, to the first address a trusted proxy saw connect. A header from anyone
    else is ignored: a client cannot choose the address that goes into the audit trail."""
    if not forwarded_for or not trusted or not _trusted(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if _trusted(hop, trusted):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # garbage where an address should be: keep what we know
    return peer


def client_address(request: Request) -> str:
    """The client's address for audit records and logs (see :func:`forwarded_client`)."""
    peer = request.client.host if request.client else ""
    trusted = getattr(request.app.state, "trusted_proxies", ())
    return forwarded_client(peer, request.headers.get("x-forwarded-for"), trusted)


def caller_for(*roles: str) -> Any:
    """A dependency giving the :class:`Caller` (principal and client address), who must hold one of
    ``roles`` (services always may): ``Doctor = Annotated[Caller, caller_for("doctor")]``."""
    check = require_roles(*roles)

    async def dep(request: Request, principal: Principal = Depends(check)) -> Caller:
        return Caller(principal=principal, source=client_address(request))

    return Depends(dep)


LOOPBACK = frozenset({"127.0.0.1", "::1"})


class Health(Out):
    status: str


class Readiness(Out):
    status: str  # "ok" or "unavailable"
    checks: dict[str, str]  # database, nats, object_storage: "ok", "error", "disconnected"


def install_ops_endpoints(
    app: FastAPI, ready: Callable[[], Awaitable[dict[str, str]]], metrics_access: str = "open"
) -> None:
    """``/healthz`` and ``/readyz`` answer anyone (probes; they name no host, version or error text);
    ``/metrics`` answers anyone or, with ``metrics_access="loopback"``, only a peer on this host (the TCP
    peer, never a forwarded-for header)."""

    @app.get("/healthz", tags=["ops"], summary="Liveness", response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: database, event bus and storage reachable",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Something the service needs is unreachable"}},
    )
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint(request: Request) -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if metrics_access == "loopback" and (request.client is None or request.client.host not in LOOPBACK):
            raise StarletteHTTPException(404, "Not Found")

        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)


def hide_api_docs(app: FastAPI) -> None:
    """Production default: no /docs, /redoc or /openapi.json (404). The API is documented in the
    repository and served by a development instance."""
    hidden = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) not in hidden]
    app.openapi_url = app.docs_url = app.redoc_url = None


# ---------------------------------------------------------------------------------------------- limits
DEFAULT_MAX_BODY = 1024 * 1024
# Percent-encoded control characters in a query string (%00-%1F, %7F): no query value needs one.
_QUERY_CONTROL = re.compile(rb"%(?:[01][0-9A-Fa-f]|7[Ff])")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """Pure ASGI middleware in front of every service's routes:

    * a request body larger than the limit is refused with 413 problem JSON: from ``Content-Length``
      before anything is read, or as soon as a chunked body passes it. ``limits`` maps a path prefix to
      its own limit (``None``: the route enforces its own, e.g. STOW-RS);
    * a path or query string carrying a control character (``%00``...) is refused with 400;
    * an unexpected error answers a problem JSON 500 that names nothing internal (the traceback is logged
      with the trace id) and, unlike Starlette's last-resort handler, the connection stays open for the
      client's next request.

    (Starlette's own ``max_body_size`` answers a plain-text 413 whenever Content-Length is too large,
    whatever the exception handlers say, hence this.)
    """

    def __init__(
        self, app: Any, max_body: int = DEFAULT_MAX_BODY, limits: Mapping[str, int | None] | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int | None:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if _CONTROL_CHARS.search(path) or _QUERY_CONTROL.search(scope.get("query_string", b"")):
            await problem(
                400,
                "Invalid request",
                "the path or query string contains a control character",
                "request.control_character",
            )(scope, receive, send)
            return
        limit = self.limit_for(path)
        if limit is not None:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > limit:
                        await _too_large(limit)(scope, receive, send)
                        return
                    break
            receive = _counting(receive, limit)
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            if _body_too_large(exc):
                await _too_large(limit or 0)(scope, receive, send)
                return
            log.exception("unhandled error in %s %s", scope.get("method"), path)
            await problem(500, "Internal error", "the error was logged with this trace id", "internal")(
                scope, receive, send
            )


def _body_too_large(exc: BaseException | None) -> bool:
    """FastAPI turns an error while reading the body into a 400 HTTPException ``from`` it."""
    while exc is not None:
        if isinstance(exc, _BodyTooLarge):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _too_large(limit: int) -> JSONResponse:
    # The connection stays open: uvicorn discards the rest of the body as it arrives, and the client reads
    # the answer instead of a reset connection.
    return problem(
        413,
        "Request body too large",
        f"the request body must be at most {limit} bytes",
        "request.too_large",
        max_bytes=limit,
    )


def _counting(receive: Any, limit: int) -> Any:
    size = 0

    async def counted() -> Any:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _BodyTooLarge
        return message

    return counted


def install_request_guard(app: FastAPI, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Add :class:`RequestGuard`. A service whose routes take larger bodies sets ``app.state.body_limits``
    ({path prefix: bytes, or None when the route enforces its own}) before the chassis starts it."""
    app.add_middleware(RequestGuard, max_body=max_body, limits=getattr(app.state, "body_limits", None))
