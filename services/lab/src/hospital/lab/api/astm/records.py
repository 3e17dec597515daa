"""ASTM E1394 (CLSI LIS2-A2) record layer: delimiters, escape sequences and generic records.

A message is a sequence of records separated by CR. The H record declares the delimiters right after
its type letter: ``H|\\^&`` means field ``|``, repeat ``\\``, component ``^``, escape ``&`` (the usual
set); GeneXpert declares ``H|@^\\`` (repeat ``@``, escape ``\\``); a DPC Immulite sends ``H|\\^`` with no
escape character at all, in which case no escape sequences are recognised.

Escape sequences are ``<esc>F<esc>`` (field), ``<esc>S<esc>`` (component), ``<esc>R<esc>`` (repeat) and
``<esc>E<esc>`` (escape), e.g. ``&R&`` with the usual set. They are resolved *after* a field has been
split into repeats and components, so an escaped delimiter never splits anything.

Field numbers follow the standard: the record type letter is field 1, so ``O-3`` (specimen ID) is
``record.text(3)``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str | None = "&"

    @classmethod
    def from_header(cls, header: str) -> Delimiters:
        """Read the delimiters declared by an H record (``H`` + field delimiter + H-2)."""
        if len(header) < 2 or header[0] not in "Hh":
            raise ValueError(f"not an H record: {header[:20]!r}")
        field = header[1]
        end = header.find(field, 2)
        spec = header[2:] if end < 0 else header[2:end]
        return cls(
            field=field,
            repeat=spec[0] if len(spec) > 0 else "\\",
            component=spec[1] if len(spec) > 1 else "^",
            escape=spec[2] if len(spec) > 2 else None,
        )

    @property
    def definition(self) -> str:
        """The declaration that follows ``H`` in a header record, e.g. ``|\\^&``."""
        return self.field + self.repeat + self.component + (self.escape or "")

    def join_components(self, parts: Iterable[str]) -> str:
        """Escape each part and join them with the component delimiter."""
        return self.component.join(escape(part, self) for part in parts)

    def join_repeats(self, items: Iterable[str]) -> str:
        """Join already-composed field values with the repeat delimiter."""
        return self.repeat.join(items)


DEFAULT_DELIMITERS = Delimiters()


@functools.lru_cache(maxsize=32)
def _unescape_pattern(esc: str) -> re.Pattern[str]:
    return re.compile(re.escape(esc) + "([FSRE])" + re.escape(esc))


def unescape(value: str, delimiters: Delimiters) -> str:
    """Resolve ``&F& &S& &R& &E&`` (with the declared escape character) in a split value."""
    esc = delimiters.escape
    if not esc or esc not in value:
        return value
    table = {"F": delimiters.field, "S": delimiters.component, "R": delimiters.repeat, "E": esc}
    return _unescape_pattern(esc).sub(lambda m: table[m.group(1)], value)


def escape(value: str, delimiters: Delimiters) -> str:
    """Replace delimiter characters in a value by escape sequences (inverse of :func:`unescape`)."""
    esc = delimiters.escape
    if not esc:
        return value
    table = {delimiters.field: "F", delimiters.component: "S", delimiters.repeat: "R", esc: "E"}
    return "".join(f"{esc}{table[ch]}{esc}" if ch in table else ch for ch in value)


@dataclass(frozen=True, slots=True)
class Record:
    """One E1394 record, kept as its raw field strings plus the delimiters it was written with."""

    fields: tuple[str, ...]
    delimiters: Delimiters = DEFAULT_DELIMITERS

    @classmethod
    def parse(cls, text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> Record:
        return cls(tuple(text.split(delimiters.field)), delimiters)

    @property
    def type(self) -> str:
        """Record type letter (H, P, O, R, C, Q, M, L, ...), upper case."""
        return self.fields[0][:1].upper()

    @property
    def raw(self) -> str:
        return self.delimiters.field.join(self.fields)

    def raw_field(self, n: int) -> str:
        """Field ``n`` (1-based, the type letter is field 1) exactly as sent, or ``""`` if absent."""
        return self.fields[n - 1] if 0 < n <= len(self.fields) else ""

    def text(self, n: int) -> str:
        """Field ``n`` with escape sequences resolved and delimiters left in place (for display)."""
        return unescape(self.raw_field(n), self.delimiters)

    def repeats(self, n: int) -> list[list[str]]:
        """Field ``n`` split into repeats, each split into unescaped components."""
        raw = self.raw_field(n)
        if not raw:
            return []
        d = self.delimiters
        return [[unescape(c, d) for c in rep.split(d.component)] for rep in raw.split(d.repeat)]

    def components(self, n: int) -> list[str]:
        """Components of the first repeat of field ``n``."""
        reps = self.repeats(n)
        return reps[0] if reps else []

    def component(self, n: int, c: int) -> str:
        """Component ``c`` (1-based) of the first repeat of field ``n``, or ``""``."""
        comps = self.components(n)
        return comps[c - 1] if 0 < c <= len(comps) else ""


def decode_text(raw: bytes, encoding: str = "utf-8") -> str:
    """Decode message bytes with ``encoding``, falling back to Latin-1 (old analyzers) on error."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        log.info("ASTM message is not valid %s; decoding as latin-1", encoding)
        return raw.decode("latin-1")


def split_records(text: str) -> list[str]:
    """Split message text into records on CR, tolerating stray LFs and blank lines."""
    records = (part.strip("\n") for part in text.split("\r"))
    return [record for record in records if record.strip()]


def parse_records(text: str) -> list[Record]:
    """Parse message text into records, using the delimiters declared by a leading H record."""
    lines = split_records(text)
    delimiters = DEFAULT_DELIMITERS
    if lines and lines[0][:1] in ("H", "h") and len(lines[0]) > 1:
        delimiters = Delimiters.from_header(lines[0])
    return [Record.parse(line, delimiters) for line in lines]


def is_terminator_record(data: bytes) -> bool:
    """True when the last complete record in ``data`` is an L (message terminator) record."""
    body = data.rstrip(b"\r\n")
    last = body[body.rfind(b"\r") + 1 :].lstrip(b"\n")
    return last[:1] in (b"L", b"l") and (len(last) == 1 or not last[1:2].isalnum())
