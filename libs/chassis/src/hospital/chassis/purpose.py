"""Purpose of use: why a caller reads or changes a patient's record, written on every audit record.

Codes are HL7 v3 PurposeOfUse (the vocabulary of FHIR's AuditEvent.purposeOfEvent and of the IHE
profiles). A caller states it in the ``X-Purpose-Of-Use`` HTTP header (gRPC metadata
``x-purpose-of-use``); without one the caller's role's default applies (:data:`ROLE_DEFAULTS`): care
roles treat, the cashier handles payment, reception runs operations. An unknown code is refused (400 /
INVALID_ARGUMENT) rather than recorded. Calls between services pass the purpose of the request that
caused them on (:func:`outgoing_metadata`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any

HEADER = "X-Purpose-Of-Use"
METADATA_KEY = "x-purpose-of-use"

PURPOSES: dict[str, str] = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment (break the glass)",
    "CAREMGT": "care management (referral, discharge planning)",
    "HPAYMT": "payment (invoices, insurance claims)",
    "HOPERAT": "healthcare operations (registration, queues, beds)",
    "HSYSADMIN": "system administration",
    "HCOMPL": "compliance (audit review)",
    "HQUALIMP": "quality improvement",
    "PATRQT": "the patient's own request (copy of the record)",
    "PUBHLTH": "public health reporting",
    "HRESCH": "research (approved)",
    "HLEGAL": "legal (court order)",
}

# The default for a caller who states none: the first of its roles in this order.
ROLE_DEFAULTS: dict[str, str] = {
    "doctor": "TREAT",
    "nurse": "TREAT",
    "radiologist": "TREAT",
    "lab_technician": "TREAT",
    "radiographer": "TREAT",
    "receptionist": "HOPERAT",
    "cashier": "HPAYMT",
    "auditor": "HCOMPL",
    "admin": "HSYSADMIN",
    "service": "HOPERAT",
}

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("purpose_of_use", default=None)


class UnknownPurpose(ValueError):
    def __init__(self, value: str) -> None:
        super().__init__(
            f"unknown purpose of use {value[:40]!r}; one of: {', '.join(PURPOSES)} ({HEADER} header)"
        )


def parse(value: str | None) -> str | None:
    """A stated purpose (case-insensitive), None when none was stated; raises :class:`UnknownPurpose`."""
    if value is None or not value.strip():
        return None
    code = value.strip().upper()
    if code not in PURPOSES:
        raise UnknownPurpose(value)
    return code


def default_for(roles: Iterable[str]) -> str:
    held = set(roles)
    for role, code in ROLE_DEFAULTS.items():
        if role in held:
            return code
    return "HOPERAT"


def current() -> str | None:
    """The purpose stated by the request being served (HTTP header or gRPC metadata), if any."""
    return _current.get()


def set_current(code: str | None) -> contextvars.Token[str | None]:
    return _current.set(code)


def reset(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata that passes the current request's stated purpose on to another service's gRPC call
    (:func:`hospital.chassis.rpc.call_metadata` adds it to every call between services)."""
    code = _current.get()
    return ((METADATA_KEY, code),) if code else ()


class PurposeMiddleware:
    """ASGI middleware: reads ``X-Purpose-Of-Use`` into :func:`current` for the request; an unknown
    code is answered 400 (problem JSON) before the route runs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope.get("headers", ()):
            if name == b"x-purpose-of-use":
                raw = value.decode("latin-1")
                break
        try:
            code = parse(raw)
        except UnknownPurpose as exc:
            from hospital.chassis.web import problem

            response = problem(400, "Unknown purpose of use", str(exc), "audit.purpose_unknown")
            await response(scope, receive, send)
            return
        token = _current.set(code)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
