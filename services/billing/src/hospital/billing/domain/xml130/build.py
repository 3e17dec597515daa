"""Builders for the XML130 table files and the ``GIAMDINHHS`` submission wrapper.

Each table file is UTF-8 XML; free text goes in CDATA; times are
``yyyyMMddHHmm`` in Vietnam time and dates ``yyyyMMdd``. The wrapper carries
each file base64-encoded in ``NOIDUNGFILE`` and an empty ``CHUKYDONVI`` for
:func:`hospital.billing.domain.xml130.signing.sign`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from hospital.billing.domain.vietnam import VIETNAM_TZ
from hospital.billing.domain.xml130.models import (
    TABLES,
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    HoSo,
    Kind,
    TongHop,
    Xml130Error,
    kind_of,
)

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _local(moment: datetime) -> datetime:
    """Aware times are converted to Vietnam time; naive ones are taken as Vietnam time already."""
    return moment if moment.tzinfo is None else moment.astimezone(VIETNAM_TZ)


def _render(value: Any, kind: Kind, name: str) -> str:
    if value is None:
        return ""
    match kind:
        case Kind.DATETIME:
            return str(_local(value).strftime("%Y%m%d%H%M"))
        case Kind.BIRTH:
            if isinstance(value, int):
                return f"{value:04d}00000000"
            if isinstance(value, datetime):
                return _local(value).strftime("%Y%m%d%H%M")
            return str(value.strftime("%Y%m%d")) + "0000"
        case Kind.DATE_LIST:
            return ";".join(day.strftime("%Y%m%d") for day in value)
        case Kind.TEXT_LIST:
            return ";".join(value)
        case Kind.QUANTITY if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return format(Decimal(value).normalize(), "f")
        case Kind.INT if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        case Kind.QUANTITY | Kind.INT:
            raise Xml130Error(
                f"{name} must be an integer{' or a Decimal' if kind is Kind.QUANTITY else ''}, got {value!r}"
            )
        case _:
            return str(value)


def _append_record(parent: etree._Element, record: Any) -> None:
    for record_field in fields(record):
        kind = kind_of(record_field)
        name = record_field.name.upper()
        text = _render(getattr(record, record_field.name), kind, name)
        element = etree.SubElement(parent, name)
        try:
            element.text = etree.CDATA(text) if kind is Kind.CDATA else text
        except ValueError as exc:
            raise Xml130Error(f"{parent.tag}/{name}: {exc}") from exc


def _serialize(root: etree._Element) -> bytes:
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _build_table(loai: str, records: Iterable[Any]) -> bytes:
    spec = TABLES[loai]
    root = etree.Element(spec.root)
    if spec.list_tag is None:
        (record,) = records
        _append_record(root, record)
    else:
        listing = etree.SubElement(root, spec.list_tag)
        for record in records:
            _append_record(etree.SubElement(listing, str(spec.row_tag)), record)
    return _serialize(root)


def build_xml1(tong_hop: TongHop) -> bytes:
    """XML1 file (``TONG_HOP``). Use :meth:`HoSo.with_totals` first to fill the totals."""
    return _build_table("XML1", [tong_hop])


def build_xml2(rows: Iterable[ChiTietThuoc]) -> bytes:
    """XML2 file (``CHITIEU_CHITIET_THUOC``)."""
    return _build_table("XML2", rows)


def build_xml3(rows: Iterable[ChiTietDvkt]) -> bytes:
    """XML3 file (``CHITIEU_CHITIET_DVKT_VTYT``)."""
    return _build_table("XML3", rows)


def build_xml4(rows: Iterable[ChiTietCls]) -> bytes:
    """XML4 file (``CHITIEU_CHITIET_DICHVUCANLAMSANG``)."""
    return _build_table("XML4", rows)


def build_xml5(rows: Iterable[ChiTietDienBienBenh]) -> bytes:
    """XML5 file (``CHITIEU_CHITIET_DIENBIENLAMSANG``)."""
    return _build_table("XML5", rows)


def build_hoso_files(hoso: HoSo) -> dict[str, bytes]:
    """The table files of one visit, keyed by LOAIHOSO; empty tables are left out.

    XML1 totals are computed from the lines; a total given in ``hoso`` that
    disagrees raises :class:`~hospital.billing.domain.xml130.models.TotalsMismatch`.
    """
    complete = hoso.with_totals()
    files = {"XML1": build_xml1(complete.tong_hop)}
    tables: dict[str, tuple[Any, ...]] = {
        "XML2": complete.thuoc,
        "XML3": complete.dvkt,
        "XML4": complete.cls,
        "XML5": complete.dien_bien,
    }
    for loai, rows in tables.items():
        if rows:
            files[loai] = _build_table(loai, rows)
    return files


def build_giamdinhhs(hosos: Sequence[HoSo], *, ma_cskcb: str, ngay_lap: date) -> bytes:
    """The unsigned ``GIAMDINHHS`` submission for the facility ``ma_cskcb``.

    Every visit must belong to that facility (XML1 MA_CSKCB); visits are written
    in the given order.
    """
    if not hosos:
        raise Xml130Error("a submission needs at least one visit")
    root = etree.Element("GIAMDINHHS")
    etree.SubElement(etree.SubElement(root, "THONGTINDONVI"), "MACSKCB").text = ma_cskcb
    info = etree.SubElement(root, "THONGTINHOSO")
    etree.SubElement(info, "NGAYLAP").text = ngay_lap.strftime("%Y%m%d")
    etree.SubElement(info, "SOLUONGHOSO").text = str(len(hosos))
    listing = etree.SubElement(info, "DANHSACHHOSO")
    for hoso in hosos:
        if hoso.tong_hop.ma_cskcb != ma_cskcb:
            raise Xml130Error(
                f"visit {hoso.tong_hop.ma_lk} belongs to facility {hoso.tong_hop.ma_cskcb}, not {ma_cskcb}"
            )
        hoso_element = etree.SubElement(listing, "HOSO")
        for loai, content in build_hoso_files(hoso).items():
            file_element = etree.SubElement(hoso_element, "FILEHOSO")
            etree.SubElement(file_element, "LOAIHOSO").text = loai
            etree.SubElement(file_element, "NOIDUNGFILE").text = base64.b64encode(content).decode("ascii")
    etree.SubElement(root, "CHUKYDONVI")
    return _serialize(root)
