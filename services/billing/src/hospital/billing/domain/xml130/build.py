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
    RECORDS,
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    HoSo,
    Kind,
    TongHop,
    TrangThaiKcb,
    Xml130Error,
    kind_of,
)
from hospital.billing.domain.xml130.tables import FRACTION_DIGITS, table

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _local(moment: datetime) -> datetime:
    """Aware times are converted to Vietnam time; naive ones are taken as Vietnam time already."""
    return moment if moment.tzinfo is None else moment.astimezone(VIETNAM_TZ)


def _decimal_text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Xml130Error(f"{name} must be an integer or a Decimal, got {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise Xml130Error(f"{name} must be a finite non-negative number, got {value}")
    places = FRACTION_DIGITS.get(name, 0)
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise Xml130Error(f"{name} allows {places} decimal places, got {value}")
    return format(number.normalize(), "f")


def _render(value: Any, kind: Kind, name: str) -> str:
    if value is None:
        return ""
    match kind:
        case Kind.DATETIME:
            return str(_local(value).strftime("%Y%m%d%H%M"))
        case Kind.DATE:
            return str(value.strftime("%Y%m%d"))
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
        case Kind.DECIMAL:
            return _decimal_text(value, name)
        case Kind.INT if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        case Kind.INT:
            raise Xml130Error(f"{name} must be an integer, got {value!r}")
        case _:
            return str(value)


def _append_record(parent: etree._Element, record: Any) -> None:
    """Every element of the record's table, in the decision's order (empty when unset)."""
    for record_field in fields(record):
        kind = kind_of(record_field)
        name = record_field.name.upper()
        text = _render(getattr(record, record_field.name), kind, name)
        element = etree.SubElement(parent, name)
        try:
            element.text = etree.CDATA(text) if kind is Kind.CDATA and text else text
        except ValueError as exc:
            raise Xml130Error(f"{parent.tag}/{name}: {exc}") from exc


def _serialize(root: etree._Element) -> bytes:
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _build_table(loai: str, records: Iterable[Any]) -> bytes:
    spec = table(loai)
    rows = list(records)
    for record in rows:
        if not isinstance(record, RECORDS[loai]):
            raise Xml130Error(f"{loai} takes {RECORDS[loai].__name__} records, got {type(record).__name__}")
    root = etree.Element(spec.root)
    if spec.list_tag is None:
        (record,) = rows
        _append_record(root, record)
    else:
        listing = etree.SubElement(root, spec.list_tag)
        for record in rows:
            _append_record(etree.SubElement(listing, str(spec.row_tag)), record)
    return _serialize(root)


def build_table(loai: str, records: Iterable[Any]) -> bytes:
    """Any table file this platform writes (XML0..XML5, XML7, XML8, XML11, XML13, XML14)."""
    return _build_table(loai, records)


def build_checkin(rows: Iterable[TrangThaiKcb]) -> bytes:
    """The check-in file (``CHI_TIEU_TRANG_THAI_KCB``) sent when a visit starts, before any claim."""
    return _build_table("XML0", rows)


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
    """The table files of one visit, keyed by LOAIHOSO; empty tables and papers the visit did not produce
    are left out.

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
    for loai, paper in complete.papers().items():
        files[loai] = _build_table(loai, [paper])
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
