"""Domain errors that every API surface maps the same way (HTTP problem JSON, gRPC status)."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses. ``code`` is stable for machines, ``message`` is for people."""

    status = 400

    def __init__(
        self, code: str, message: str, *, field: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        if status is not None:
            self.status = status


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    status = 422
