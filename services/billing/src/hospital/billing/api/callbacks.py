"""The payment providers' callbacks (VNPay IPN, MoMo IPN, SePay/Casso bank webhook), answered by a lean
ASGI handler that runs before FastAPI's middleware and routing (ADR 0201): these endpoints carry no
bearer token, take no pydantic model and need no dependency injection, and at the providers' rates the
generic stack cost more CPU than the settlement itself. The FastAPI routes of the same paths call the
same methods (they document the endpoints in OpenAPI and answer other methods).

Every callback is verified first (signature or API key); forged, stale and malformed calls are recorded
in ``rejected_callbacks`` and refused; authentic ones are settled idempotently on
``(provider, provider_txn_id)`` by :class:`~hospital.billing.app.payments.PaymentService`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse, Response

from hospital.billing.app.payments import PaymentService
from hospital.billing.config import BillingSettings
from hospital.billing.domain.callbacks import (
    CASSO_SIGNATURE_HEADER,
    CallbackError,
    InvalidSignature,
    MalformedCallback,
    StaleCallback,
    VnpRspCode,
    verify_casso_webhook,
    verify_momo_ipn,
    verify_sepay_webhook,
    verify_vnpay_ipn,
    vnpay_ipn_reply,
)
from hospital.chassis.web import Network, forwarded_client, problem, trusted_networks

log = logging.getLogger(__name__)
VNPAY_PATH = "/api/v1/payments/vnpay/ipn"
MOMO_PATH = "/api/v1/payments/momo/ipn"
BANK_PATH = "/api/v1/payments/bank-webhook"
MAX_BODY = 256 * 1024  # a provider's callback is a few hundred bytes
MAX_DEPTH = 8  # MoMo and SePay send flat objects, Casso {"data": {...}}
_JSON = [(b"content-type", b"application/json")]
# VNPay's replies are constant per code: encoded once.
_VNP_BODIES = {code: json.dumps(vnpay_ipn_reply(code), separators=(",", ":")).encode() for code in VnpRspCode}

Asgi = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def _client(headers: dict[str, str], peer: Any, trusted: Sequence[Network]) -> str:
    """The provider's address as :func:`hospital.chassis.web.client_address` gives it (X-Forwarded-For
    believed only from ``trusted_proxies``)."""
    return forwarded_client(peer[0] if peer else "", headers.get("x-forwarded-for"), trusted)


class CallbackEndpoints:
    def __init__(self, payments: PaymentService, settings: BillingSettings) -> None:
        self.pays = payments
        self.settings = settings
        self.trusted = trusted_networks(settings.trusted_proxies)
        self.routes: dict[str, tuple[str, Callable[..., Awaitable[None]]]] = {
            VNPAY_PATH: ("GET", self._asgi_vnpay),
            MOMO_PATH: ("POST", self._asgi_momo),
            BANK_PATH: ("POST", self._asgi_bank),
        }

    # ------------------------------------------------------------------ the providers' logic
    async def vnpay(self, params: dict[str, str], client: str) -> VnpRspCode:
        try:
            payment = verify_vnpay_ipn(params, self.settings.vnpay_hash_secret)
        except InvalidSignature as exc:
            await self.pays.reject("vnpay", str(exc), client, params)
            return VnpRspCode.INVALID_SIGNATURE
        except MalformedCallback as exc:
            await self.pays.reject("vnpay", str(exc), client, params)
            return VnpRspCode.UNKNOWN_ERROR
        try:
            result = await self.pays.settle_gateway(payment)
        except Exception:
            log.exception("vnpay IPN %s failed", payment.provider_txn_id)
            return VnpRspCode.UNKNOWN_ERROR
        return VnpRspCode(result.reply_code)

    async def momo(self, raw: bytes, client: str) -> Response:
        body = _json_object(raw)
        if body is None:
            await self.pays.reject(
                "momo", "body is not a JSON object", client, raw.decode("utf-8", "replace")
            )
            return problem(
                400,
                "Malformed callback",
                f"body must be a JSON object nested at most {MAX_DEPTH} levels deep",
                "callback.malformed",
            )
        s = self.settings
        try:
            payment = verify_momo_ipn(body, access_key=s.momo_access_key, secret_key=s.momo_secret_key)
        except InvalidSignature as exc:
            await self.pays.reject("momo", str(exc), client, body)
            return problem(401, "Invalid signature", str(exc), "callback.invalid_signature")
        except MalformedCallback as exc:
            await self.pays.reject("momo", str(exc), client, body)
            return problem(400, "Malformed callback", str(exc), "callback.malformed", field=exc.field)
        await self.pays.settle_gateway(payment)
        return Response(status_code=204)

    async def bank(
        self, raw: bytes, casso_header: str | None, authorization: str | None, client: str
    ) -> Response:
        provider = "casso" if casso_header else "sepay"
        body = _json_object(raw)
        if body is None:
            await self.pays.reject(
                provider, "body is not a JSON object", client, raw.decode("utf-8", "replace")
            )
            return problem(
                400,
                "Malformed callback",
                f"body must be a JSON object nested at most {MAX_DEPTH} levels deep",
                "callback.malformed",
            )
        s = self.settings
        try:
            if casso_header:
                transfer = verify_casso_webhook(
                    body,
                    casso_header,
                    s.bank_webhook_secret,
                    tolerance=timedelta(seconds=s.casso_tolerance_seconds),
                )
            else:
                transfer = verify_sepay_webhook(body, authorization, s.bank_webhook_secret)
        except (InvalidSignature, StaleCallback) as exc:
            await self.pays.reject(provider, f"{type(exc).__name__}: {exc}", client, body)
            code = "callback.stale" if isinstance(exc, StaleCallback) else "callback.invalid_signature"
            return problem(401, "Callback refused", str(exc), code)
        except (MalformedCallback, CallbackError) as exc:
            await self.pays.reject(provider, str(exc), client, body)
            return problem(400, "Malformed callback", str(exc), "callback.malformed")
        result = await self.pays.settle_transfer(transfer)
        return JSONResponse({"success": True, "outcome": result.outcome, "replay": result.replay})

    # ------------------------------------------------------------------ lean ASGI
    def matches(self, scope: dict[str, Any]) -> Callable[..., Awaitable[None]] | None:
        route = self.routes.get(scope["path"])
        if route is None or route[0] != scope["method"]:
            return None  # FastAPI answers (405, 404, OpenAPI...)
        return route[1]

    async def _asgi_vnpay(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str]
    ) -> None:
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        code = await self.vnpay(params, _client(headers, scope.get("client"), self.trusted))
        body = _VNP_BODIES[code]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _asgi_momo(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str]
    ) -> None:
        raw = await _read_body(receive)
        if raw is None:
            await _too_large()(scope, receive, send)
            return
        reply = await self.momo(raw, _client(headers, scope.get("client"), self.trusted))
        await reply(scope, receive, send)

    async def _asgi_bank(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str]
    ) -> None:
        raw = await _read_body(receive)
        if raw is None:
            await _too_large()(scope, receive, send)
            return
        response = await self.bank(
            raw,
            headers.get(CASSO_SIGNATURE_HEADER.lower()),
            headers.get("authorization"),
            _client(headers, scope.get("client"), self.trusted),
        )
        await response(scope, receive, send)

    async def handle(
        self, handler: Callable[..., Awaitable[None]], scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            await handler(scope, receive, send, headers)
        except Exception:  # the handlers send their response last: normally nothing was sent yet
            log.exception("callback %s failed", scope["path"])
            try:
                await problem(500, "Internal error", "the error was logged", "internal")(scope, receive, send)
            except Exception:  # noqa: BLE001, S110 - the connection is gone or the response had started
                pass


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None: not JSON, not an object, or nested deeper than MAX_DEPTH."""
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        return None
    try:
        body = json.loads(raw)
        if (b"\\ud" in raw or b"\\uD" in raw) and isinstance(body, dict):  # a lone surrogate is not UTF-8
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return body if isinstance(body, dict) else None


def _depth(raw: bytes) -> int:
    """Deepest nesting of objects and arrays, strings skipped (run only for a body with many brackets)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


def _too_large() -> Response:
    """413, and the connection is closed after it: the rest of the body is never read."""
    response = problem(413, "Callback too large", f"at most {MAX_BODY} bytes", "callback.too_large")
    response.headers["connection"] = "close"
    return response


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
