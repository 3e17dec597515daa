"""Validation of a ``GIAMDINHHS`` submission against the shipped XSDs and the totals rule."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from decimal import Decimal
from importlib import resources
from types import SimpleNamespace

import xmlschema
from lxml import etree

from hospital.billing.domain.xml130.models import (
    TOTAL_FIELDS,
    TotalsMismatch,
    Xml130Error,
    check_totals,
    compute_totals,
)
from hospital.billing.domain.xml130.tables import render_xsd, table, tables, xsd_name

WRAPPER_SCHEMA = "giamdinhhs.xsd"
_MONEY_TAGS = ("THANH_TIEN_BV", "THANH_TIEN_BH", "T_NGUONKHAC", "T_BHTT", "T_BNCCT", "T_BNTT")
#: Tables that travel inside GIAMDINHHS (the check-in table XML0 is sent on its own).
CLAIM_TABLES = tuple(loai for loai in tables() if loai != "XML0")


class Xml130ValidationError(Xml130Error):
    """The document breaks its schema or the totals rule; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@functools.cache
def load_schema(name: str) -> xmlschema.XMLSchema:
    """One of the shipped XSDs (``giamdinhhs.xsd``, ``checkin.xsd``, ``xml1.xsd`` .. ``xml15.xsd``)."""
    text = resources.files("hospital.billing.domain.xml130").joinpath("xsd", name).read_text(encoding="utf-8")
    return xmlschema.XMLSchema(text)


@functools.cache
def _structural_schema(loai: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(render_xsd(table(loai), strict=False))


def table_schema(loai: str, *, strict: bool = True) -> xmlschema.XMLSchema:
    """The schema of a table file: strict (the shipped XSD: also the elements BHXH review needs filled)
    or structural (elements, order, types, sizes, formats; only MA_LK and STT must be filled)."""
    return load_schema(xsd_name(loai)) if strict else _structural_schema(loai)


def _parse(data: bytes, what: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise Xml130ValidationError([f"{what}: not well-formed XML ({exc})"]) from exc


def _schema_errors(schema: xmlschema.XMLSchema, root: etree._Element, what: str) -> list[str]:
    return [f"{what} {error.path}: {error.reason}" for error in schema.iter_errors(root)]


def _rows(root: etree._Element, loai: str) -> list[etree._Element]:
    spec = table(loai)
    return [root] if spec.row_tag is None else list(root.iter(spec.row_tag))


def _number(text: str | None) -> Decimal:
    return Decimal(text) if text else Decimal(0)


def _money_lines(rows: list[etree._Element]) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            ma_nhom=int(row.findtext("MA_NHOM") or 0),
            ma_pttt=int(row.findtext("MA_PTTT") or 0),
            **{tag.lower(): _number(row.findtext(tag)) for tag in _MONEY_TAGS},
        )
        for row in rows
    ]


def _check_visit(number: int, tables: dict[str, etree._Element]) -> list[str]:
    """MA_LK links and XML1 totals of one HOSO whose files are schema-valid."""
    if "XML1" not in tables:
        return [f"HOSO {number}: has no XML1"]
    summary = tables["XML1"]
    ma_lk = summary.findtext("MA_LK")
    errors = [
        f"HOSO {number} {loai} STT {row.findtext('STT')}: MA_LK {row.findtext('MA_LK')!r} is not {ma_lk!r}"
        for loai, root in tables.items()
        for row in _rows(root, loai)
        if row.findtext("MA_LK") != ma_lk
    ]
    drugs = _money_lines(_rows(tables["XML2"], "XML2")) if "XML2" in tables else []
    services = _money_lines(_rows(tables["XML3"], "XML3")) if "XML3" in tables else []
    try:
        expected = compute_totals(drugs, services)
        check_totals({name: _number(summary.findtext(name.upper())) for name in TOTAL_FIELDS}, expected)
    except TotalsMismatch as exc:
        errors.append(f"HOSO {number} (MA_LK {ma_lk}): {exc}")
    return errors


def validate(document: bytes, *, strict: bool = True) -> None:
    """Check a ``GIAMDINHHS`` document, signed or not; raise :class:`Xml130ValidationError`.

    Checks, in order: the wrapper against ``giamdinhhs.xsd``; SOLUONGHOSO against
    the HOSO count; each NOIDUNGFILE is base64 of a file valid against the schema of
    its LOAIHOSO (XML1..XML15, see :func:`table_schema` for ``strict``);
    each HOSO has exactly one file per type, XML1 among them, one MA_LK, and XML1
    totals equal to the sums of its lines.
    """
    errors = problems(document, strict=strict)
    if errors:
        raise Xml130ValidationError(errors)


def problems(document: bytes, *, strict: bool = True) -> list[str]:
    """What :func:`validate` would refuse, as a list (empty when the document passes)."""
    try:
        return _problems(document, strict)
    except Xml130ValidationError as exc:
        return exc.errors


_WHERE = re.compile(r"HOSO (\d+) (XML\d+) /(?:[A-Z0-9_]+(?:\[\d+\])?/)*([A-Z0-9_]+):")


def missing_elements(document: bytes) -> list[str]:
    """``XMLn.ELEMENT`` of each element BHXH review needs filled that the document leaves empty (or
    otherwise breaks a strict schema), once each; for a document that passes the structural check."""
    found = [m.group(2) + "." + m.group(3) for p in problems(document, strict=True) if (m := _WHERE.match(p))]
    return list(dict.fromkeys(found))


def _problems(document: bytes, strict: bool) -> list[str]:
    wrapper = _parse(document, "GIAMDINHHS")
    errors = _schema_errors(load_schema(WRAPPER_SCHEMA), wrapper, "GIAMDINHHS")
    if errors:
        return errors
    hosos = wrapper.findall("THONGTINHOSO/DANHSACHHOSO/HOSO")
    declared = int(wrapper.findtext("THONGTINHOSO/SOLUONGHOSO") or 0)
    if declared != len(hosos):
        errors.append(f"SOLUONGHOSO is {declared}, the document has {len(hosos)} HOSO")
    for number, hoso in enumerate(hosos, start=1):
        tables: dict[str, etree._Element] = {}
        valid = True
        for file_element in hoso.findall("FILEHOSO"):
            loai = file_element.findtext("LOAIHOSO") or ""
            what = f"HOSO {number} {loai}"
            if loai not in CLAIM_TABLES:
                errors.append(f"{what}: not a table of the decision")
                valid = False
                continue
            if loai in tables:
                errors.append(f"{what}: appears twice")
                valid = False
                continue
            try:
                content = base64.b64decode(file_element.findtext("NOIDUNGFILE") or "", validate=True)
                root = _parse(content, what)
            except (binascii.Error, Xml130ValidationError) as exc:
                errors.append(f"{what}: NOIDUNGFILE is not base64 of an XML file ({exc})")
                valid = False
                continue
            file_errors = _schema_errors(table_schema(loai, strict=strict), root, what)
            errors.extend(file_errors)
            valid = valid and not file_errors
            tables[loai] = root
        if valid:
            errors.extend(_check_visit(number, tables))
    return errors
