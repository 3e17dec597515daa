"""Validation of a ``GIAMDINHHS`` submission against the shipped XSDs and the totals rule."""

from __future__ import annotations

import base64
import binascii
import functools
from importlib import resources
from types import SimpleNamespace

import xmlschema
from lxml import etree

from hospital.billing.domain.xml130.models import (
    TABLES,
    TOTAL_FIELDS,
    TotalsMismatch,
    Xml130Error,
    check_totals,
    compute_totals,
)

WRAPPER_SCHEMA = "giamdinhhs.xsd"
_MONEY_TAGS = ("MA_NHOM", "THANH_TIEN_BV", "THANH_TIEN_BH", "T_BHTT", "T_BNCCT", "T_BNTT")


class Xml130ValidationError(Xml130Error):
    """The document breaks its schema or the totals rule; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@functools.cache
def load_schema(name: str) -> xmlschema.XMLSchema:
    """One of the shipped XSDs (``giamdinhhs.xsd``, ``xml1.xsd`` .. ``xml5.xsd``)."""
    text = resources.files("hospital.billing.domain.xml130").joinpath("xsd", name).read_text(encoding="utf-8")
    return xmlschema.XMLSchema(text)


def _parse(data: bytes, what: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise Xml130ValidationError([f"{what}: not well-formed XML ({exc})"]) from exc


def _schema_errors(schema: xmlschema.XMLSchema, root: etree._Element, what: str) -> list[str]:
    return [f"{what} {error.path}: {error.reason}" for error in schema.iter_errors(root)]


def _rows(root: etree._Element, loai: str) -> list[etree._Element]:
    spec = TABLES[loai]
    return [root] if spec.row_tag is None else list(root.iter(spec.row_tag))


def _money_lines(rows: list[etree._Element]) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(**{tag.lower(): int(row.findtext(tag) or 0) for tag in _MONEY_TAGS}) for row in rows
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
        check_totals({name: int(summary.findtext(name.upper()) or 0) for name in TOTAL_FIELDS}, expected)
    except TotalsMismatch as exc:
        errors.append(f"HOSO {number} (MA_LK {ma_lk}): {exc}")
    return errors


def validate(document: bytes) -> None:
    """Check a ``GIAMDINHHS`` document, signed or not; raise :class:`Xml130ValidationError`.

    Checks, in order: the wrapper against ``giamdinhhs.xsd``; SOLUONGHOSO against
    the HOSO count; each NOIDUNGFILE is base64 of a file valid against the XSD of
    its LOAIHOSO (XML1..XML5; other types have no shipped schema and are refused);
    each HOSO has exactly one file per type, XML1 among them, one MA_LK, and XML1
    totals equal to the sums of its lines.
    """
    wrapper = _parse(document, "GIAMDINHHS")
    errors = _schema_errors(load_schema(WRAPPER_SCHEMA), wrapper, "GIAMDINHHS")
    if errors:
        raise Xml130ValidationError(errors)
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
            if loai not in TABLES:
                errors.append(f"{what}: no schema is shipped for this file type")
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
            file_errors = _schema_errors(load_schema(f"{loai.lower()}.xsd"), root, what)
            errors.extend(file_errors)
            valid = valid and not file_errors
            tables[loai] = root
        if valid:
            errors.extend(_check_visit(number, tables))
    if errors:
        raise Xml130ValidationError(errors)
