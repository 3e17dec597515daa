"""Bounded input types for every service's HTTP models (and any other typed boundary).

Every string a client sends is bounded and clean before it reaches a use case, a table or an event:

* ``ShortText`` (200 characters): names, places, occupations, one line; runs of whitespace are collapsed
  to one space and the ends trimmed.
* ``Text`` (2,000 characters): notes, reasons, free text; line breaks and tabs are kept, the ends trimmed.
* ``Code`` (64 characters): identifiers, codes, references, one line, trimmed.
* ``Id`` (64 characters): an identifier another record gave (UUID, ULID, UID), trimmed.
* ``text(n)``/``code(n)``/``line(n)``: the same rules with another maximum, e.g. ``text(500)``.

All of them refuse NUL and other control characters (except line break and tab in ``Text``), lone UTF-16
surrogates (``"\\ud800"`` is valid JSON but not encodable as UTF-8, so it would fail later in the
database, the event or the claim XML) and they are normalised to Unicode NFC (a Vietnamese letter typed
as base letter + combining marks is stored as one code point, as search and XML130 expect).

Numbers: ``Count`` and ``Offset`` (0 to 2**31-1), ``Limit`` (1 to 2**31-1), ``Money`` (whole VND, up to
10**15) and ``Real`` (finite floats: no NaN, no Infinity).

Errors are pydantic validation errors, so the chassis answers 422 problem JSON naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from annotated_types import Interval
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, Field

INT32_MAX = 2**31 - 1
MONEY_MAX = 10**15  # whole VND: far above any hospital bill, far below int64
SHORT = 200
LONG = 2000
CODE = 64

# C0 and C1 control characters and DEL; Text allows tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def _clean(value: str, control: re.Pattern[str]) -> str:
    if _SURROGATE.search(value):
        raise ValueError("contains an invalid character (lone UTF-16 surrogate)")
    m = control.search(value)
    if m:
        raise ValueError(f"contains a control character (U+{ord(m.group()):04X})")
    return unicodedata.normalize("NFC", value)


def _one_line(value: str) -> str:
    if not isinstance(value, str):
        return value
    value = _clean(value, _CONTROL_MULTILINE)
    return _SPACES.sub(" ", value).strip()


def _multi_line(value: str) -> str:
    if not isinstance(value, str):
        return value
    return _clean(value, _CONTROL_MULTILINE).replace("\r\n", "\n").strip()


def _no_control(value: str) -> str:
    """After the one-line normalisation no line break may remain (they became spaces)."""
    if _CONTROL.search(value):
        raise ValueError("contains a control character")
    return value


def line(max_length: int, min_length: int = 0) -> type[str]:
    """One line of text, whitespace collapsed, at most ``max_length`` characters."""
    return Annotated[  # type: ignore[return-value]
        str,
        BeforeValidator(_one_line),
        Field(min_length=min_length, max_length=max_length),
        AfterValidator(_no_control),
    ]


def text(max_length: int, min_length: int = 0) -> type[str]:
    """Free text (line breaks kept), trimmed, at most ``max_length`` characters."""
    return Annotated[  # type: ignore[return-value]
        str, BeforeValidator(_multi_line), Field(min_length=min_length, max_length=max_length)
    ]


def _code(value: str) -> str:
    if not isinstance(value, str):
        return value
    return _clean(value, _CONTROL).strip()


def code(max_length: int = CODE, min_length: int = 0) -> type[str]:
    """A code, identifier or reference: one line, trimmed, at most ``max_length`` characters."""
    return Annotated[  # type: ignore[return-value]
        str, BeforeValidator(_code), Field(min_length=min_length, max_length=max_length)
    ]


ShortText = line(SHORT)
Text = text(LONG)
Code = code(CODE)
Id = code(CODE, min_length=1)

# annotated-types constraints (not Field) so they hold in FastAPI query parameters too: ``limit: Count = 20``.
Count = Annotated[int, Interval(ge=0, le=INT32_MAX)]
Offset = Annotated[int, Interval(ge=0, le=INT32_MAX)]
Limit = Annotated[int, Interval(ge=1, le=INT32_MAX)]  # a page size: a service clamps it to its own maximum
Money = Annotated[int, Interval(ge=0, le=MONEY_MAX)]
Real = Annotated[float, AllowInfNan(False)]


def clean_text(
    value: str,
    *,
    field: str,
    max_length: int = SHORT,
    error_code: str = "request.invalid",
    multiline: bool = False,
) -> str:
    """The ``line(max_length)`` rules (``text(max_length)`` with ``multiline``) for a value that does not come
    through a pydantic model, e.g. a gRPC request (raises :class:`~hospital.chassis.errors.Invalid` naming
    ``field``); returns the cleaned value."""
    from hospital.chassis.errors import Invalid

    try:
        out = _multi_line(value) if multiline else _no_control(_one_line(value))
    except ValueError as exc:
        raise Invalid(error_code, f"{field}: {exc}", field=field) from None
    if len(out) > max_length:
        raise Invalid(error_code, f"{field}: at most {max_length} characters", field=field)
    return out
