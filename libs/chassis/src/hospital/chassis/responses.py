"""Response models: what an HTTP route answers, so the OpenAPI documents every body.

Use cases may keep returning plain dicts: a route declares ``response_model=...`` and FastAPI checks the
dict against it and writes it out. The types here keep the JSON exactly as the services wrote it before
they had models (kiosks and integrators parse it):

* ``Instant``: a date-time written as Python's ``isoformat()`` (``2026-12-07T09:30:00+00:00``, not
  pydantic's ``Z``); it takes a datetime or an ISO string.
* ``Number``: an int stays an int, a float a float, a ``Decimal`` becomes an int when whole, else a float
  (as FastAPI's encoder did).
* ``Out``: the base of every response model. Fields a model does not declare are passed through (and the
  schema says ``additionalProperties``), so a new key never disappears from an answer before its model
  names it.
* ``FhirResource``, ``FhirBundle`` and ``FhirJSONResponse`` for FHIR read APIs (application/fhir+json).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

T = TypeVar("T")


def _iso(value: datetime) -> str:
    return value.isoformat()


def _number(value: int | float | Decimal) -> int | float:
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    return value


Instant = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Number = Annotated[
    int | float | Decimal,
    PlainSerializer(_number, when_used="json"),
    WithJsonSchema({"type": "number"}),
]


class Out(BaseModel):
    """Base of response models (see the module's docstring)."""

    model_config = ConfigDict(extra="allow")


class Items(Out, Generic[T]):
    """``{"items": [...]}``: the shape of every list answer."""

    items: list[T]


# --- FHIR R4 -----------------------------------------------------------------------------------------
FHIR_JSON = "application/fhir+json"


class FhirJSONResponse(JSONResponse):
    """JSON with FHIR's media type; as a route's ``response_class`` the OpenAPI shows the body under it."""

    media_type = FHIR_JSON


class FhirResource(Out):
    """A FHIR R4 resource (the elements a route fills are in its description; the rest is FHIR's)."""

    resourceType: str = Field(..., examples=["Patient"])  # noqa: N815 - FHIR's element name
    id: str | None = None


class FhirBundleEntry(Out):
    resource: FhirResource
    fullUrl: str | None = None  # noqa: N815


class FhirBundle(FhirResource):
    """A searchset Bundle."""

    type: str = Field(..., examples=["searchset"])
    total: int | None = None
    entry: list[FhirBundleEntry] = Field(default_factory=list)
