"""gRPC conventions: bearer-token authentication and role checks in one interceptor, domain errors as
status codes, and calls between services carrying the caller's service identity."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from pydantic import ValidationError

from hospital.chassis import purpose as purpose_of_use
from hospital.chassis.errors import DomainError
from hospital.chassis.security import AuthError, Principal, TokenVerifier

log = logging.getLogger(__name__)
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Every method needs a valid token; ``rules`` maps full method names to the roles allowed
    (service identities are always allowed). A method missing from ``rules`` is denied."""

    def __init__(self, verifier: TokenVerifier, rules: Mapping[str, tuple[str, ...]]) -> None:
        self.verifier, self.rules = verifier, dict(rules)

    async def intercept_service(
        self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(PUBLIC_PREFIXES):
            return await continuation(details)
        md = dict(details.invocation_metadata or ())
        try:
            principal = self.verifier.verify_header(md.get("authorization"))
        except AuthError as exc:
            log.info("gRPC %s refused: %s", method, exc.reason)
            return _deny(grpc.StatusCode.UNAUTHENTICATED, exc.public)
        allowed = self.rules.get(method)
        if allowed is None:
            return _deny(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not open to any role")
        if not principal.is_service and not principal.has_any(allowed):
            return _deny(
                grpc.StatusCode.PERMISSION_DENIED, f"role(s) {sorted(principal.roles)} may not call {method}"
            )
        try:
            purpose = purpose_of_use.parse(md.get(purpose_of_use.METADATA_KEY))
        except purpose_of_use.UnknownPurpose as exc:
            return _deny(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        handler = await continuation(details)
        return _with_principal(handler, principal, purpose)


def _invalid(exc: ValidationError) -> str:
    """A request message that failed a use case's input model (bounded text, finite numbers): the first
    error, naming the field as the HTTP API's 422 does."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(p) for p in first["loc"])
    return f"request.invalid: {first['msg']}" + (f" (field {field})" if field else "")


def _with_principal(
    handler: grpc.RpcMethodHandler, principal: Principal, purpose: str | None = None
) -> grpc.RpcMethodHandler:
    if handler is not None and handler.unary_stream is not None:
        return _stream_with_principal(handler, principal, purpose)
    if handler is None or handler.unary_unary is None:
        return handler
    inner = handler.unary_unary

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = current_principal.set(principal)
        purpose_token = purpose_of_use.set_current(purpose)
        try:
            return await inner(request, context)
        except DomainError as exc:
            await context.abort(
                _STATUS.get(exc.status, grpc.StatusCode.FAILED_PRECONDITION),
                f"{exc.code}: {exc.message}" + (f" (field {exc.field})" if exc.field else ""),
            )
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _invalid(exc))
        finally:
            purpose_of_use.reset(purpose_token)
            current_principal.reset(token)

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _stream_with_principal(
    handler: grpc.RpcMethodHandler, principal: Principal, purpose: str | None = None
) -> grpc.RpcMethodHandler:
    """A server-streaming method sees the caller too (``principal()``), and a DomainError raised before or
    while streaming ends the call with the mapped status."""
    inner = handler.unary_stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = current_principal.set(principal)
        purpose_token = purpose_of_use.set_current(purpose)
        try:
            async for item in inner(request, context):
                yield item
        except DomainError as exc:
            await context.abort(
                _STATUS.get(exc.status, grpc.StatusCode.FAILED_PRECONDITION),
                f"{exc.code}: {exc.message}" + (f" (field {exc.field})" if exc.field else ""),
            )
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _invalid(exc))
        finally:
            purpose_of_use.reset(purpose_token)
            current_principal.reset(token)

    return grpc.unary_stream_rpc_method_handler(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def principal() -> Principal:
    p = current_principal.get()
    if p is None:
        raise RuntimeError("no authenticated principal in this context")
    return p


class BearerAuth(grpc.AuthMetadataPlugin):
    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def __call__(self, context: Any, callback: Any) -> None:
        callback((("authorization", f"Bearer {self._token()}"),), None)


def call_metadata(token: str, purpose: str | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata of a call to another service: the bearer token and the purpose of use, so the callee's
    audit records say why. The purpose is the one stated by the request being served (HTTP header or gRPC
    metadata, :func:`hospital.chassis.purpose.current`); ``purpose`` is the calling service's own purpose
    for work no request stated one for (a worker, a message from a device). Without either the callee
    applies the caller's role's default."""
    code = purpose_of_use.current() or purpose
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
    return md + (((purpose_of_use.METADATA_KEY, code),) if code else ())
