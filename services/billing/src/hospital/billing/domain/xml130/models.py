"""Records of the Decision 130/QĐ-BYT claim tables XML1..XML5 and their totals rule.

Attribute names are the decision's element names in lower case (``ma_lk`` is
``MA_LK``) and appear in the decision's order, which the builder and the XSDs
follow. Each table carries only the subset of fields this platform fills; the
subset is listed in docs/billing-insurance-rules.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol


class Xml130Error(ValueError):
    """Base class of XML130 errors."""


class TotalsMismatch(Xml130Error):
    """An XML1 total or a line's split disagrees with the amounts it must add up to."""

    def __init__(self, where: str, expected: int, given: int) -> None:
        super().__init__(f"{where}: lines add up to {expected}, record says {given}")
        self.where = where
        self.expected = expected
        self.given = given


class Kind(Enum):
    """How a field is written into XML."""

    TEXT = "text"
    CDATA = "cdata"  # free text, written as <![CDATA[...]]>
    INT = "int"
    QUANTITY = "quantity"  # Decimal, at most 3 decimals
    DATETIME = "datetime"  # yyyyMMddHHmm, Vietnam time
    BIRTH = "birth"  # yyyyMMddHHmm; a date gets 0000, a bare year (int) gets 00000000
    TEXT_LIST = "text_list"  # values joined by ';'
    DATE_LIST = "date_list"  # yyyyMMdd values joined by ';'


_TEXT = {"kind": Kind.TEXT}
_CDATA = {"kind": Kind.CDATA}
_INT = {"kind": Kind.INT}
_QUANTITY = {"kind": Kind.QUANTITY}
_DATETIME = {"kind": Kind.DATETIME}
_BIRTH = {"kind": Kind.BIRTH}
_TEXT_LIST = {"kind": Kind.TEXT_LIST}
_DATE_LIST = {"kind": Kind.DATE_LIST}


def kind_of(record_field: Any) -> Kind:
    kind: Kind = record_field.metadata["kind"]
    return kind


@dataclass(frozen=True, kw_only=True)
class TongHop:
    """XML1 ``TONG_HOP``: one visit's summary. Totals left ``None`` are computed from the lines."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(default=1, metadata=_INT)
    ma_bn: str = field(metadata=_TEXT)
    ho_ten: str = field(metadata=_CDATA)
    so_cccd: str = field(default="", metadata=_TEXT)
    ngay_sinh: date | int = field(metadata=_BIRTH)
    gioi_tinh: int = field(metadata=_INT)  # 1 Nam, 2 Nữ, 3 chưa xác định
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_dkbd: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    gt_the_tu: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    gt_the_den: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    ma_benh_chinh: str = field(metadata=_TEXT)
    ma_benh_kt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_doituong_kcb: str = field(metadata=_TEXT)
    ngay_vao: datetime = field(metadata=_DATETIME)
    ngay_ra: datetime = field(metadata=_DATETIME)
    ket_qua_dtri: int = field(metadata=_INT)
    ma_loai_rv: int = field(metadata=_INT)
    t_thuoc: int | None = field(default=None, metadata=_INT)
    t_vtyt: int | None = field(default=None, metadata=_INT)
    t_tongchi_bv: int | None = field(default=None, metadata=_INT)
    t_tongchi_bh: int | None = field(default=None, metadata=_INT)
    t_bntt: int | None = field(default=None, metadata=_INT)
    t_bncct: int | None = field(default=None, metadata=_INT)
    t_bhtt: int | None = field(default=None, metadata=_INT)
    nam_qt: int = field(metadata=_INT)
    thang_qt: int = field(metadata=_INT)
    ma_loai_kcb: str = field(metadata=_TEXT)
    ma_cskcb: str = field(metadata=_TEXT)


@dataclass(frozen=True, kw_only=True)
class ChiTietThuoc:
    """XML2 ``CHI_TIET_THUOC``: one drug line (money fields from ``LineSplit.xml_fields()``)."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    ma_thuoc: str = field(metadata=_TEXT)
    ma_nhom: int = field(metadata=_INT)
    ten_thuoc: str = field(metadata=_CDATA)
    don_vi_tinh: str = field(metadata=_TEXT)
    ham_luong: str = field(default="", metadata=_CDATA)
    duong_dung: str = field(default="", metadata=_CDATA)
    lieu_dung: str = field(default="", metadata=_CDATA)
    so_dang_ky: str = field(default="", metadata=_TEXT)
    tt_thau: str = field(default="", metadata=_CDATA)
    pham_vi: int = field(metadata=_INT)  # 1 inside the insurance scope, 2 outside
    tyle_tt_bh: int = field(metadata=_INT)
    so_luong: Decimal | int = field(metadata=_QUANTITY)
    don_gia: int = field(metadata=_INT)
    thanh_tien_bv: int = field(metadata=_INT)
    thanh_tien_bh: int = field(metadata=_INT)
    muc_huong: int = field(metadata=_INT)
    t_bhtt: int = field(metadata=_INT)
    t_bncct: int = field(metadata=_INT)
    t_bntt: int = field(metadata=_INT)
    ma_khoa: str = field(metadata=_TEXT)
    ma_bac_si: str = field(metadata=_TEXT)
    ngay_yl: datetime = field(metadata=_DATETIME)


@dataclass(frozen=True, kw_only=True)
class ChiTietDvkt:
    """XML3 ``CHI_TIET_DVKT``: one technical service or medical supply line."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    ma_dich_vu: str = field(default="", metadata=_TEXT)
    ma_vat_tu: str = field(default="", metadata=_TEXT)
    ma_nhom: int = field(metadata=_INT)
    ten_vat_tu: str = field(default="", metadata=_CDATA)
    ten_dich_vu: str = field(default="", metadata=_CDATA)
    don_vi_tinh: str = field(metadata=_TEXT)
    pham_vi: int = field(metadata=_INT)
    so_luong: Decimal | int = field(metadata=_QUANTITY)
    don_gia_bv: int = field(metadata=_INT)
    don_gia_bh: int = field(metadata=_INT)
    tyle_tt_dv: int = field(default=100, metadata=_INT)
    tyle_tt_bh: int = field(metadata=_INT)
    thanh_tien_bv: int = field(metadata=_INT)
    thanh_tien_bh: int = field(metadata=_INT)
    muc_huong: int = field(metadata=_INT)
    t_bhtt: int = field(metadata=_INT)
    t_bntt: int = field(metadata=_INT)
    t_bncct: int = field(metadata=_INT)
    ma_khoa: str = field(metadata=_TEXT)
    ma_giuong: str = field(default="", metadata=_TEXT)
    ma_bac_si: str = field(metadata=_TEXT)
    nguoi_thuc_hien: str = field(default="", metadata=_TEXT)
    ngay_yl: datetime = field(metadata=_DATETIME)
    ngay_th_yl: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_kq: datetime | None = field(default=None, metadata=_DATETIME)
    ma_may: str = field(default="", metadata=_TEXT)


@dataclass(frozen=True, kw_only=True)
class ChiTietCls:
    """XML4 ``CHI_TIET_CLS``: one paraclinical result (lab index, imaging conclusion)."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    ma_dich_vu: str = field(metadata=_TEXT)
    ma_chi_so: str = field(default="", metadata=_TEXT)
    ten_chi_so: str = field(default="", metadata=_CDATA)
    gia_tri: str = field(default="", metadata=_CDATA)
    don_vi_do: str = field(default="", metadata=_CDATA)
    mo_ta: str = field(default="", metadata=_CDATA)
    ket_luan: str = field(default="", metadata=_CDATA)
    ngay_kq: datetime = field(metadata=_DATETIME)
    ma_bs_doc_kq: str = field(default="", metadata=_TEXT)


@dataclass(frozen=True, kw_only=True)
class ChiTietDienBienBenh:
    """XML5 ``CHI_TIET_DIEN_BIEN_BENH``: one clinical progress note (optional table)."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    dien_bien_ls: str = field(metadata=_CDATA)
    giai_doan_benh: str = field(default="", metadata=_CDATA)
    hoi_chan: str = field(default="", metadata=_CDATA)
    phau_thuat: str = field(default="", metadata=_CDATA)
    thoi_diem_dbls: datetime = field(metadata=_DATETIME)
    nguoi_thuc_hien: str = field(default="", metadata=_TEXT)


@dataclass(frozen=True)
class TableSpec:
    """Where a table's rows sit in its file: root element, list element, row element."""

    loai: str
    record: type
    root: str
    list_tag: str | None
    row_tag: str | None


TABLES: dict[str, TableSpec] = {
    spec.loai: spec
    for spec in (
        TableSpec("XML1", TongHop, "TONG_HOP", None, None),
        TableSpec("XML2", ChiTietThuoc, "CHITIEU_CHITIET_THUOC", "DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC"),
        TableSpec("XML3", ChiTietDvkt, "CHITIEU_CHITIET_DVKT_VTYT", "DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT"),
        TableSpec(
            "XML4", ChiTietCls, "CHITIEU_CHITIET_DICHVUCANLAMSANG", "DSACH_CHI_TIET_CLS", "CHI_TIET_CLS"
        ),
        TableSpec(
            "XML5",
            ChiTietDienBienBenh,
            "CHITIEU_CHITIET_DIENBIENLAMSANG",
            "DSACH_CHI_TIET_DIEN_BIEN_BENH",
            "CHI_TIET_DIEN_BIEN_BENH",
        ),
    )
}

#: MA_NHOM codes of medical supplies (VTYT), whose XML3 lines make up XML1 T_VTYT.
SUPPLY_GROUPS = frozenset({10, 11})


class MoneyLine(Protocol):
    """The money fields shared by XML2 and XML3 lines."""

    @property
    def ma_nhom(self) -> int: ...
    @property
    def thanh_tien_bv(self) -> int: ...
    @property
    def thanh_tien_bh(self) -> int: ...
    @property
    def t_bhtt(self) -> int: ...
    @property
    def t_bncct(self) -> int: ...
    @property
    def t_bntt(self) -> int: ...


TOTAL_FIELDS = ("t_thuoc", "t_vtyt", "t_tongchi_bv", "t_tongchi_bh", "t_bntt", "t_bncct", "t_bhtt")


def compute_totals(drugs: Iterable[MoneyLine], services: Iterable[MoneyLine]) -> dict[str, int]:
    """XML1 totals from the XML2 (drug) and XML3 (service/supply) lines.

    T_THUOC sums the drug lines' THANH_TIEN_BV, T_VTYT the supply lines'
    (MA_NHOM 10/11); the other totals sum the same field over all lines. Every
    line must satisfy T_BHTT + T_BNCCT + T_BNTT == THANH_TIEN_BV.
    """
    drug_lines, service_lines = list(drugs), list(services)
    for table, lines in (("XML2", drug_lines), ("XML3", service_lines)):
        for index, line in enumerate(lines, start=1):
            parts = line.t_bhtt + line.t_bncct + line.t_bntt
            if parts != line.thanh_tien_bv:
                raise TotalsMismatch(f"{table} line {index} T_BHTT+T_BNCCT+T_BNTT", parts, line.thanh_tien_bv)
    every = drug_lines + service_lines
    return {
        "t_thuoc": sum(line.thanh_tien_bv for line in drug_lines),
        "t_vtyt": sum(line.thanh_tien_bv for line in service_lines if line.ma_nhom in SUPPLY_GROUPS),
        "t_tongchi_bv": sum(line.thanh_tien_bv for line in every),
        "t_tongchi_bh": sum(line.thanh_tien_bh for line in every),
        "t_bntt": sum(line.t_bntt for line in every),
        "t_bncct": sum(line.t_bncct for line in every),
        "t_bhtt": sum(line.t_bhtt for line in every),
    }


def check_totals(given: dict[str, int | None], expected: dict[str, int]) -> None:
    """Raise :class:`TotalsMismatch` for the first given total that differs from ``expected``."""
    for name in TOTAL_FIELDS:
        value = given.get(name)
        if value is not None and value != expected[name]:
            raise TotalsMismatch(f"XML1 {name.upper()}", expected[name], value)


@dataclass(frozen=True)
class HoSo:
    """One visit's claim: its XML1 summary and the lines of XML2..XML5, linked by MA_LK."""

    tong_hop: TongHop
    thuoc: tuple[ChiTietThuoc, ...] = ()
    dvkt: tuple[ChiTietDvkt, ...] = ()
    cls: tuple[ChiTietCls, ...] = ()
    dien_bien: tuple[ChiTietDienBienBenh, ...] = ()

    def __post_init__(self) -> None:
        rows: tuple[ChiTietThuoc | ChiTietDvkt | ChiTietCls | ChiTietDienBienBenh, ...] = (
            *self.thuoc,
            *self.dvkt,
            *self.cls,
            *self.dien_bien,
        )
        for row in rows:
            if row.ma_lk != self.tong_hop.ma_lk:
                raise Xml130Error(
                    f"{type(row).__name__} STT {row.stt} has MA_LK {row.ma_lk!r},"
                    f" the visit is {self.tong_hop.ma_lk!r}"
                )

    def with_totals(self) -> HoSo:
        """A copy whose XML1 totals are computed from the lines; given totals must agree."""
        expected = compute_totals(self.thuoc, self.dvkt)
        check_totals({name: getattr(self.tong_hop, name) for name in TOTAL_FIELDS}, expected)
        summary = replace(
            self.tong_hop,
            t_thuoc=expected["t_thuoc"],
            t_vtyt=expected["t_vtyt"],
            t_tongchi_bv=expected["t_tongchi_bv"],
            t_tongchi_bh=expected["t_tongchi_bh"],
            t_bntt=expected["t_bntt"],
            t_bncct=expected["t_bncct"],
            t_bhtt=expected["t_bhtt"],
        )
        return replace(self, tong_hop=summary)
