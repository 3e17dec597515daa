"""Records of the Decision 130/QĐ-BYT tables (as amended by QĐ 4750/QĐ-BYT) and their totals rule.

Attribute names are the decision's element names in lower case (``ma_lk`` is ``MA_LK``) in the
decision's order (``tables.py`` holds the decision's element lists; a test checks each record against
its table). Every element of a table is written, empty when the record leaves it unset. Tables:
XML0 check-in (``TrangThaiKcb``), XML1 summary, XML2 drugs, XML3 services and supplies, XML4
paraclinical results, XML5 clinical course, XML7 discharge paper, XML8 record summary, XML11 sick-leave
certificate, XML13 referral paper, XML14 re-visit appointment.

Money: unit prices (DON_GIA*) carry up to 3 decimals and amounts up to 2 (the decision's rounding);
``int`` or ``Decimal`` are accepted, floats are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from hospital.billing.domain.vietnam import VIETNAM_TZ
from hospital.billing.domain.xml130.tables import table


class Xml130Error(ValueError):
    """Base class of XML130 errors."""


class TotalsMismatch(Xml130Error):
    """An XML1 total or a line's split disagrees with the amounts it must add up to."""

    def __init__(self, where: str, expected: Decimal | int, given: Decimal | int) -> None:
        super().__init__(f"{where}: lines add up to {expected}, record says {given}")
        self.where = where
        self.expected = expected
        self.given = given


class Kind(Enum):
    """How a field is written into XML."""

    TEXT = "text"
    CDATA = "cdata"  # free text, written as <![CDATA[...]]>
    INT = "int"
    DECIMAL = "decimal"  # int or Decimal: quantities and unit prices (3 places), amounts (2), MUC_HUONG
    DATETIME = "datetime"  # yyyyMMddHHmm, Vietnam time
    DATE = "date"  # yyyyMMdd
    BIRTH = "birth"  # yyyyMMddHHmm; a date gets 0000, a bare year (int) gets 00000000
    TEXT_LIST = "text_list"  # values joined by ';'
    DATE_LIST = "date_list"  # yyyyMMdd values joined by ';'


_TEXT = {"kind": Kind.TEXT}
_CDATA = {"kind": Kind.CDATA}
_INT = {"kind": Kind.INT}
_DECIMAL = {"kind": Kind.DECIMAL}
_DATETIME = {"kind": Kind.DATETIME}
_DATE = {"kind": Kind.DATE}
_BIRTH = {"kind": Kind.BIRTH}
_TEXT_LIST = {"kind": Kind.TEXT_LIST}
_DATE_LIST = {"kind": Kind.DATE_LIST}


def kind_of(record_field: Any) -> Kind:
    kind: Kind = record_field.metadata["kind"]
    return kind


@dataclass(frozen=True, kw_only=True)
class TrangThaiKcb:
    """XML0 ``TRANG_THAI_KCB``: Chỉ tiêu dữ liệu về trạng thái KBCB (check-in)."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(default=1, metadata=_INT)
    ma_bn: str = field(metadata=_TEXT)
    ho_ten: str = field(metadata=_CDATA)
    so_cccd: str = field(default="", metadata=_TEXT)
    ngay_sinh: date | datetime | int = field(metadata=_BIRTH)
    gioi_tinh: int = field(metadata=_INT)
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_dkbd: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    gt_the_tu: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    gt_the_den: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    ma_doituong_kcb: str = field(default="", metadata=_TEXT)
    ngay_vao: datetime = field(metadata=_DATETIME)
    ngay_vao_noi_tru: datetime | None = field(default=None, metadata=_DATETIME)
    ly_do_vnt: str = field(default="", metadata=_CDATA)
    ma_ly_do_vnt: str = field(default="", metadata=_TEXT)
    ma_loai_kcb: str = field(default="", metadata=_TEXT)
    ma_cskcb: str = field(metadata=_TEXT)
    ma_dich_vu: str = field(default="", metadata=_TEXT)
    ten_dich_vu: str = field(default="", metadata=_CDATA)
    ma_thuoc: str = field(default="", metadata=_TEXT)
    ten_thuoc: str = field(default="", metadata=_CDATA)
    ma_vat_tu: str = field(default="", metadata=_TEXT)
    ten_vat_tu: str = field(default="", metadata=_CDATA)
    ngay_yl: datetime | None = field(default=None, metadata=_DATETIME)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class TongHop:
    """XML1 ``TONG_HOP``: Chỉ tiêu tổng hợp KBCB."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(default=1, metadata=_INT)
    ma_bn: str = field(metadata=_TEXT)
    ho_ten: str = field(metadata=_CDATA)
    so_cccd: str = field(default="", metadata=_TEXT)
    ngay_sinh: date | datetime | int = field(metadata=_BIRTH)
    gioi_tinh: int = field(metadata=_INT)
    nhom_mau: str = field(default="", metadata=_TEXT)
    ma_quoctich: str = field(default="", metadata=_TEXT)
    ma_dantoc: str = field(default="", metadata=_TEXT)
    ma_nghe_nghiep: str = field(default="", metadata=_TEXT)
    dia_chi: str = field(default="", metadata=_CDATA)
    matinh_cu_tru: str = field(default="", metadata=_TEXT)
    mahuyen_cu_tru: str = field(default="", metadata=_TEXT)
    maxa_cu_tru: str = field(default="", metadata=_TEXT)
    dien_thoai: str = field(default="", metadata=_TEXT)
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_dkbd: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    gt_the_tu: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    gt_the_den: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    ngay_mien_cct: date | None = field(default=None, metadata=_DATE)
    ly_do_vv: str = field(default="", metadata=_CDATA)
    ly_do_vnt: str = field(default="", metadata=_CDATA)
    ma_ly_do_vnt: str = field(default="", metadata=_TEXT)
    chan_doan_vao: str = field(default="", metadata=_CDATA)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    ma_benh_chinh: str = field(metadata=_TEXT)
    ma_benh_kt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_benh_yhct: str = field(default="", metadata=_TEXT)
    ma_pttt_qt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_doituong_kcb: str = field(metadata=_TEXT)
    ma_noi_di: str = field(default="", metadata=_TEXT)
    ma_noi_den: str = field(default="", metadata=_TEXT)
    ma_tai_nan: int | None = field(default=None, metadata=_INT)
    ngay_vao: datetime = field(metadata=_DATETIME)
    ngay_vao_noi_tru: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_ra: datetime = field(metadata=_DATETIME)
    giay_chuyen_tuyen: str = field(default="", metadata=_TEXT)
    so_ngay_dtri: int | None = field(default=None, metadata=_INT)
    pp_dieu_tri: str = field(default="", metadata=_CDATA)
    ket_qua_dtri: int = field(metadata=_INT)
    ma_loai_rv: int = field(metadata=_INT)
    ghi_chu: str = field(default="", metadata=_CDATA)
    ngay_ttoan: datetime | None = field(default=None, metadata=_DATETIME)
    t_thuoc: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_vtyt: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_tongchi_bv: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_tongchi_bh: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_bntt: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_bncct: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_bhtt: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_nguonkhac: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    t_bhtt_gdv: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    nam_qt: int = field(metadata=_INT)
    thang_qt: int = field(metadata=_INT)
    ma_loai_kcb: str = field(metadata=_TEXT)
    ma_khoa: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)  # several departments, ";"-joined
    ma_cskcb: str = field(metadata=_TEXT)
    ma_khuvuc: str = field(default="", metadata=_TEXT)
    can_nang: str = field(default="", metadata=_TEXT)
    can_nang_con: str = field(default="", metadata=_TEXT)
    nam_nam_lien_tuc: date | None = field(default=None, metadata=_DATE)
    ngay_tai_kham: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    ma_hsba: str = field(default="", metadata=_TEXT)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class ChiTietThuoc:
    """XML2 ``CHI_TIET_THUOC``: Chỉ tiêu chi tiết thuốc."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    ma_thuoc: str = field(metadata=_TEXT)
    ma_pp_chebien: str = field(default="", metadata=_TEXT)
    ma_cskcb_thuoc: str = field(default="", metadata=_TEXT)
    ma_nhom: int = field(metadata=_INT)
    ten_thuoc: str = field(metadata=_CDATA)
    don_vi_tinh: str = field(metadata=_TEXT)
    ham_luong: str = field(default="", metadata=_CDATA)
    duong_dung: str = field(default="", metadata=_TEXT)
    dang_bao_che: str = field(default="", metadata=_CDATA)
    lieu_dung: str = field(default="", metadata=_CDATA)
    cach_dung: str = field(default="", metadata=_CDATA)
    so_dang_ky: str = field(default="", metadata=_TEXT)
    tt_thau: str = field(default="", metadata=_CDATA)
    pham_vi: int = field(metadata=_INT)
    tyle_tt_bh: int = field(metadata=_INT)
    so_luong: Decimal | int = field(metadata=_DECIMAL)
    don_gia: Decimal | int = field(metadata=_DECIMAL)
    thanh_tien_bv: Decimal | int = field(metadata=_DECIMAL)
    thanh_tien_bh: Decimal | int = field(metadata=_DECIMAL)
    t_nguonkhac_nsnn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_vtnn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_vttn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_cl: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac: Decimal | int = field(default=0, metadata=_DECIMAL)
    muc_huong: Decimal | int = field(metadata=_DECIMAL)
    t_bntt: Decimal | int = field(metadata=_DECIMAL)
    t_bncct: Decimal | int = field(metadata=_DECIMAL)
    t_bhtt: Decimal | int = field(metadata=_DECIMAL)
    ma_khoa: str = field(metadata=_TEXT)
    ma_bac_si: str = field(metadata=_TEXT)
    ma_dich_vu: str = field(default="", metadata=_TEXT)
    ngay_yl: datetime = field(metadata=_DATETIME)
    ngay_th_yl: datetime | None = field(default=None, metadata=_DATETIME)
    ma_pttt: int = field(default=1, metadata=_INT)  # 1 fee for service, 2 capitation, 3 DRG
    nguon_ctra: int = field(default=1, metadata=_INT)  # 1 the BHYT fund
    vet_thuong_tp: int | None = field(default=None, metadata=_INT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class ChiTietDvkt:
    """XML3 ``CHI_TIET_DVKT``: Chỉ tiêu chi tiết DVKT và VTYT."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    ma_dich_vu: str = field(default="", metadata=_TEXT)
    ma_pttt_qt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_vat_tu: str = field(default="", metadata=_TEXT)
    ma_nhom: int = field(metadata=_INT)
    goi_vtyt: str = field(default="", metadata=_TEXT)
    ten_vat_tu: str = field(default="", metadata=_CDATA)
    ten_dich_vu: str = field(default="", metadata=_CDATA)
    ma_xang_dau: str = field(default="", metadata=_TEXT)
    don_vi_tinh: str = field(metadata=_TEXT)
    pham_vi: int = field(metadata=_INT)
    so_luong: Decimal | int = field(metadata=_DECIMAL)
    don_gia_bv: Decimal | int = field(metadata=_DECIMAL)
    don_gia_bh: Decimal | int = field(metadata=_DECIMAL)
    tt_thau: str = field(default="", metadata=_CDATA)
    tyle_tt_dv: int = field(default=100, metadata=_INT)
    tyle_tt_bh: int = field(metadata=_INT)
    thanh_tien_bv: Decimal | int = field(metadata=_DECIMAL)
    thanh_tien_bh: Decimal | int = field(metadata=_DECIMAL)
    t_trantt: Decimal | int | None = field(default=None, metadata=_DECIMAL)
    muc_huong: Decimal | int = field(metadata=_DECIMAL)
    t_nguonkhac_nsnn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_vtnn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_vttn: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac_cl: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_nguonkhac: Decimal | int = field(default=0, metadata=_DECIMAL)
    t_bntt: Decimal | int = field(metadata=_DECIMAL)
    t_bncct: Decimal | int = field(metadata=_DECIMAL)
    t_bhtt: Decimal | int = field(metadata=_DECIMAL)
    ma_khoa: str = field(metadata=_TEXT)
    ma_giuong: str = field(default="", metadata=_TEXT)
    ma_bac_si: str = field(metadata=_TEXT)
    nguoi_thuc_hien: str = field(default="", metadata=_TEXT)
    ma_benh: str = field(default="", metadata=_TEXT)
    ma_benh_yhct: str = field(default="", metadata=_TEXT)
    ngay_yl: datetime = field(metadata=_DATETIME)
    ngay_th_yl: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_kq: datetime | None = field(default=None, metadata=_DATETIME)
    ma_pttt: int = field(default=1, metadata=_INT)  # 1 fee for service, 2 capitation, 3 DRG
    vet_thuong_tp: int | None = field(default=None, metadata=_INT)
    pp_vo_cam: int | None = field(default=None, metadata=_INT)
    vi_tri_th_dvkt: int | None = field(default=None, metadata=_INT)
    ma_may: str = field(default="", metadata=_TEXT)
    ma_hieu_sp: str = field(default="", metadata=_TEXT)
    tai_su_dung: int | None = field(default=None, metadata=_INT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class ChiTietCls:
    """XML4 ``CHI_TIET_CLS``: Chỉ tiêu chi tiết dịch vụ cận lâm sàng."""

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
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class ChiTietDienBienBenh:
    """XML5 ``CHI_TIET_DIEN_BIEN_BENH``: Chỉ tiêu chi tiết diễn biến lâm sàng."""

    ma_lk: str = field(metadata=_TEXT)
    stt: int = field(metadata=_INT)
    dien_bien_ls: str = field(metadata=_CDATA)
    giai_doan_benh: str = field(default="", metadata=_CDATA)
    hoi_chan: str = field(default="", metadata=_CDATA)
    phau_thuat: str = field(default="", metadata=_CDATA)
    thoi_diem_dbls: datetime = field(metadata=_DATETIME)
    nguoi_thuc_hien: str = field(default="", metadata=_TEXT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class GiayRaVien:
    """XML7 ``CHI_TIEU_DU_LIEU_GIAY_RA_VIEN``: Chỉ tiêu dữ liệu giấy ra viện."""

    ma_lk: str = field(metadata=_TEXT)
    so_luu_tru: str = field(default="", metadata=_TEXT)
    ma_yte: str = field(default="", metadata=_TEXT)
    ma_khoa_rv: str = field(default="", metadata=_TEXT)
    ngay_vao: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_ra: datetime | None = field(default=None, metadata=_DATETIME)
    ma_dinh_chi_thai: int | None = field(default=None, metadata=_INT)
    nguyennhan_dinhchi: str = field(default="", metadata=_CDATA)
    thoigian_dinhchi: datetime | None = field(default=None, metadata=_DATETIME)
    tuoi_thai: int | None = field(default=None, metadata=_INT)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    pp_dieutri: str = field(default="", metadata=_CDATA)
    ghi_chu: str = field(default="", metadata=_CDATA)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    ma_bs: str = field(default="", metadata=_TEXT)
    ten_bs: str = field(default="", metadata=_CDATA)
    ngay_ct: date | None = field(default=None, metadata=_DATE)
    ma_cha: str = field(default="", metadata=_TEXT)
    ma_me: str = field(default="", metadata=_TEXT)
    ma_the_tam: str = field(default="", metadata=_TEXT)
    ho_ten_cha: str = field(default="", metadata=_CDATA)
    ho_ten_me: str = field(default="", metadata=_CDATA)
    so_ngay_nghi: int | None = field(default=None, metadata=_INT)
    ngoaitru_tungay: date | None = field(default=None, metadata=_DATE)
    ngoaitru_denngay: date | None = field(default=None, metadata=_DATE)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class TomTatHoSoBenhAn:
    """XML8 ``CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN``: Chỉ tiêu dữ liệu tóm tắt hồ sơ bệnh án."""

    ma_lk: str = field(metadata=_TEXT)
    ma_loai_kcb: str = field(default="", metadata=_TEXT)
    ho_ten_cha: str = field(default="", metadata=_CDATA)
    ho_ten_me: str = field(default="", metadata=_CDATA)
    nguoi_giam_ho: str = field(default="", metadata=_CDATA)
    don_vi: str = field(default="", metadata=_CDATA)
    ngay_vao: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_ra: datetime | None = field(default=None, metadata=_DATETIME)
    chan_doan_vao: str = field(default="", metadata=_CDATA)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    qt_benhly: str = field(default="", metadata=_CDATA)
    tomtat_kq: str = field(default="", metadata=_CDATA)
    pp_dieutri: str = field(default="", metadata=_CDATA)
    ngay_sinhcon: str = field(default="", metadata=_TEXT)
    ngay_conchet: str = field(default="", metadata=_TEXT)
    so_conchet: int | None = field(default=None, metadata=_INT)
    ket_qua_dtri: int | None = field(default=None, metadata=_INT)
    ghi_chu: str = field(default="", metadata=_CDATA)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    ngay_ct: date | None = field(default=None, metadata=_DATE)
    ma_the_tam: str = field(default="", metadata=_TEXT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class GiayNghiViecHuongBhxh:
    """XML11 ``CHI_TIEU_DU_LIEU_GIAY_CHUNG_NHAN_NGHI_VIEC_HUONG_BAO_HIEM_XA_HOI``: sick-leave certificate
    (giấy chứng nhận nghỉ việc hưởng BHXH)."""

    ma_lk: str = field(metadata=_TEXT)
    so_ct: str = field(default="", metadata=_TEXT)
    so_seri: str = field(default="", metadata=_TEXT)
    so_kcb: str = field(default="", metadata=_TEXT)
    don_vi: str = field(default="", metadata=_CDATA)
    ma_bhxh: str = field(default="", metadata=_TEXT)
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    pp_dieutri: str = field(default="", metadata=_CDATA)
    ma_dinh_chi_thai: int | None = field(default=None, metadata=_INT)
    nguyennhan_dinhchi: str = field(default="", metadata=_CDATA)
    tuoi_thai: int | None = field(default=None, metadata=_INT)
    so_ngay_nghi: int | None = field(default=None, metadata=_INT)
    tu_ngay: date | None = field(default=None, metadata=_DATE)
    den_ngay: date | None = field(default=None, metadata=_DATE)
    ho_ten_cha: str = field(default="", metadata=_CDATA)
    ho_ten_me: str = field(default="", metadata=_CDATA)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    ma_bs: str = field(default="", metadata=_TEXT)
    ngay_ct: date | None = field(default=None, metadata=_DATE)
    ma_the_tam: str = field(default="", metadata=_TEXT)
    mau_so: str = field(default="", metadata=_TEXT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class GiayChuyenTuyen:
    """XML13 ``CHI_TIEU_GIAYCHUYENTUYEN``: Chỉ tiêu dữ liệu giấy chuyển tuyến KBCB BHYT."""

    ma_lk: str = field(metadata=_TEXT)
    so_hoso: str = field(default="", metadata=_TEXT)
    so_chuyentuyen: str = field(default="", metadata=_TEXT)
    giay_chuyen_tuyen: str = field(default="", metadata=_TEXT)
    ma_cskcb: str = field(default="", metadata=_TEXT)
    ma_noi_di: str = field(default="", metadata=_TEXT)
    ma_noi_den: str = field(default="", metadata=_TEXT)
    ho_ten: str = field(default="", metadata=_CDATA)
    ngay_sinh: date | datetime | int | None = field(default=None, metadata=_BIRTH)
    gioi_tinh: int | None = field(default=None, metadata=_INT)
    ma_quoctich: str = field(default="", metadata=_TEXT)
    ma_dantoc: str = field(default="", metadata=_TEXT)
    ma_nghe_nghiep: str = field(default="", metadata=_TEXT)
    dia_chi: str = field(default="", metadata=_CDATA)
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    gt_the_den: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    ngay_vao: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_vao_noi_tru: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_ra: datetime | None = field(default=None, metadata=_DATETIME)
    dau_hieu_ls: str = field(default="", metadata=_CDATA)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    qt_benhly: str = field(default="", metadata=_CDATA)
    tomtat_kq: str = field(default="", metadata=_CDATA)
    pp_dieutri: str = field(default="", metadata=_CDATA)
    ma_benh_chinh: str = field(default="", metadata=_TEXT)
    ma_benh_kt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_benh_yhct: str = field(default="", metadata=_TEXT)
    ten_dich_vu: str = field(default="", metadata=_CDATA)
    ten_thuoc: str = field(default="", metadata=_CDATA)
    pp_dieu_tri: str = field(default="", metadata=_CDATA)
    ma_loai_rv: int | None = field(default=None, metadata=_INT)
    ma_lydo_ct: int | None = field(default=None, metadata=_INT)
    huong_dieu_tri: str = field(default="", metadata=_CDATA)
    phuongtien_vc: str = field(default="", metadata=_CDATA)
    hoten_nguoi_ht: str = field(default="", metadata=_CDATA)
    chucdanh_nguoi_ht: str = field(default="", metadata=_CDATA)
    ma_bac_si: str = field(default="", metadata=_TEXT)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    du_phong: str = field(default="", metadata=_CDATA)


@dataclass(frozen=True, kw_only=True)
class GiayHenKhamLai:
    """XML14 ``CHI_TIEU_GIAYHEN_KHAMLAI``: Chỉ tiêu dữ liệu giấy hẹn khám lại."""

    ma_lk: str = field(metadata=_TEXT)
    so_giayhen_kl: str = field(default="", metadata=_TEXT)
    ma_cskcb: str = field(default="", metadata=_TEXT)
    ho_ten: str = field(default="", metadata=_CDATA)
    ngay_sinh: date | datetime | int | None = field(default=None, metadata=_BIRTH)
    gioi_tinh: int | None = field(default=None, metadata=_INT)
    dia_chi: str = field(default="", metadata=_CDATA)
    ma_the_bhyt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    gt_the_den: tuple[date, ...] = field(default=(), metadata=_DATE_LIST)
    ngay_vao: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_vao_noi_tru: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_ra: datetime | None = field(default=None, metadata=_DATETIME)
    ngay_hen_kl: datetime | None = field(default=None, metadata=_DATETIME)
    chan_doan_rv: str = field(default="", metadata=_CDATA)
    ma_benh_chinh: str = field(default="", metadata=_TEXT)
    ma_benh_kt: tuple[str, ...] = field(default=(), metadata=_TEXT_LIST)
    ma_benh_yhct: str = field(default="", metadata=_TEXT)
    ma_doituong_kcb: str = field(default="", metadata=_TEXT)
    ma_bac_si: str = field(default="", metadata=_TEXT)
    ma_ttdv: str = field(default="", metadata=_TEXT)
    ngay_ct: date | None = field(default=None, metadata=_DATE)
    du_phong: str = field(default="", metadata=_CDATA)


#: The record class of each table this platform writes, by LOAIHOSO.
RECORDS: dict[str, type] = {
    "XML0": TrangThaiKcb,
    "XML1": TongHop,
    "XML2": ChiTietThuoc,
    "XML3": ChiTietDvkt,
    "XML4": ChiTietCls,
    "XML5": ChiTietDienBienBenh,
    "XML7": GiayRaVien,
    "XML8": TomTatHoSoBenhAn,
    "XML11": GiayNghiViecHuongBhxh,
    "XML13": GiayChuyenTuyen,
    "XML14": GiayHenKhamLai,
}


def check_record_order() -> None:
    """Every record's attributes are its table's elements, in the decision's order (import-time check)."""
    for loai, record in RECORDS.items():
        names = tuple(f.name.upper() for f in fields(record))
        if names != table(loai).names:
            raise AssertionError(f"{record.__name__} does not list {loai}'s elements in order")


check_record_order()

#: MA_NHOM codes of medical supplies (VTYT), whose XML3 lines make up XML1 T_VTYT.
SUPPLY_GROUPS = frozenset({10, 11})


class MoneyLine(Protocol):
    """The money fields shared by XML2 and XML3 lines."""

    @property
    def ma_nhom(self) -> int: ...
    @property
    def thanh_tien_bv(self) -> Decimal | int: ...
    @property
    def thanh_tien_bh(self) -> Decimal | int: ...
    @property
    def t_nguonkhac(self) -> Decimal | int: ...
    @property
    def t_bhtt(self) -> Decimal | int: ...
    @property
    def t_bncct(self) -> Decimal | int: ...
    @property
    def t_bntt(self) -> Decimal | int: ...
    @property
    def ma_pttt(self) -> int: ...


TOTAL_FIELDS = (
    "t_thuoc",
    "t_vtyt",
    "t_tongchi_bv",
    "t_tongchi_bh",
    "t_bntt",
    "t_bncct",
    "t_bhtt",
    "t_nguonkhac",
    "t_bhtt_gdv",
)


def _amount(value: Decimal | int | None) -> Decimal:
    return Decimal(value or 0)


def compute_totals(drugs: Iterable[MoneyLine], services: Iterable[MoneyLine]) -> dict[str, Decimal]:
    """XML1 totals from the XML2 (drug) and XML3 (service/supply) lines.

    T_THUOC sums the drug lines' THANH_TIEN_BV, T_VTYT the supply lines' (MA_NHOM 10/11), T_BHTT_GDV the
    fund's share of the lines paid by fee for service (MA_PTTT 1); the other totals sum
    the same field over all lines. Every line must satisfy
    T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC == THANH_TIEN_BV.
    """
    drug_lines, service_lines = list(drugs), list(services)
    for name, lines in (("XML2", drug_lines), ("XML3", service_lines)):
        for index, line in enumerate(lines, start=1):
            parts = (
                _amount(line.t_bhtt)
                + _amount(line.t_bncct)
                + _amount(line.t_bntt)
                + _amount(line.t_nguonkhac)
            )
            if parts != _amount(line.thanh_tien_bv):
                raise TotalsMismatch(
                    f"{name} line {index} T_BHTT+T_BNCCT+T_BNTT+T_NGUONKHAC",
                    parts,
                    _amount(line.thanh_tien_bv),
                )
    every = drug_lines + service_lines

    def total(attr: str, lines: Iterable[MoneyLine]) -> Decimal:
        return sum((_amount(getattr(line, attr)) for line in lines), Decimal(0))

    return {
        "t_thuoc": total("thanh_tien_bv", drug_lines),
        "t_vtyt": total("thanh_tien_bv", [ln for ln in service_lines if ln.ma_nhom in SUPPLY_GROUPS]),
        "t_tongchi_bv": total("thanh_tien_bv", every),
        "t_tongchi_bh": total("thanh_tien_bh", every),
        "t_bntt": total("t_bntt", every),
        "t_bncct": total("t_bncct", every),
        "t_bhtt": total("t_bhtt", every),
        "t_nguonkhac": total("t_nguonkhac", every),
        "t_bhtt_gdv": total("t_bhtt", [ln for ln in every if ln.ma_pttt == 1]),
    }


def check_totals(given: dict[str, Decimal | int | None], expected: dict[str, Decimal]) -> None:
    """Raise :class:`TotalsMismatch` for the first given total that differs from ``expected``."""
    for name in TOTAL_FIELDS:
        value = given.get(name)
        if value is not None and Decimal(value) != expected[name]:
            raise TotalsMismatch(f"XML1 {name.upper()}", expected[name], value)


#: MA_LOAI_KCB whose SO_NGAY_DTRI is 0, and those counted as (NGAY_RA day - NGAY_VAO day + 1).
_NO_DAYS = frozenset({"01", "07", "09"})
_COUNTED_DAYS = frozenset({"02", "03", "04", "06"})


def treatment_days(summary: TongHop) -> int | None:
    """SO_NGAY_DTRI as the decision defines it; None for 05 and 08 (drug days / service days: given)."""
    if summary.ma_loai_kcb in _NO_DAYS:
        return 0
    if summary.ma_loai_kcb in _COUNTED_DAYS:
        return (_vietnam_date(summary.ngay_ra) - _vietnam_date(summary.ngay_vao)).days + 1
    return None


def _vietnam_date(moment: datetime) -> date:
    """The calendar day in Vietnam, as NGAY_VAO / NGAY_RA are written (a naive time is Vietnam time)."""
    return (moment if moment.tzinfo is None else moment.astimezone(VIETNAM_TZ)).date()


Line = ChiTietThuoc | ChiTietDvkt | ChiTietCls | ChiTietDienBienBenh


@dataclass(frozen=True)
class HoSo:
    """One visit's claim: its XML1 summary, the lines of XML2..XML5 and the papers the visit produced
    (discharge paper, record summary, sick-leave certificate, referral paper, re-visit appointment),
    all linked by MA_LK."""

    tong_hop: TongHop
    thuoc: tuple[ChiTietThuoc, ...] = ()
    dvkt: tuple[ChiTietDvkt, ...] = ()
    cls: tuple[ChiTietCls, ...] = ()
    dien_bien: tuple[ChiTietDienBienBenh, ...] = ()
    giay_ra_vien: GiayRaVien | None = None
    tom_tat: TomTatHoSoBenhAn | None = None
    nghi_viec: GiayNghiViecHuongBhxh | None = None
    chuyen_tuyen: GiayChuyenTuyen | None = None
    hen_kham: GiayHenKhamLai | None = None

    def __post_init__(self) -> None:
        rows: tuple[Any, ...] = (*self.thuoc, *self.dvkt, *self.cls, *self.dien_bien, *self.papers().values())
        for row in rows:
            if row.ma_lk != self.tong_hop.ma_lk:
                raise Xml130Error(
                    f"{type(row).__name__} {'STT ' + str(row.stt) if hasattr(row, 'stt') else ''}"
                    f" has MA_LK {row.ma_lk!r}, the visit is {self.tong_hop.ma_lk!r}"
                )

    def papers(self) -> dict[str, Any]:
        """The single-record tables present, by LOAIHOSO."""
        found = {
            "XML7": self.giay_ra_vien,
            "XML8": self.tom_tat,
            "XML11": self.nghi_viec,
            "XML13": self.chuyen_tuyen,
            "XML14": self.hen_kham,
        }
        return {loai: paper for loai, paper in found.items() if paper is not None}

    def with_totals(self) -> HoSo:
        """A copy whose XML1 totals (and SO_NGAY_DTRI, when not given) are computed from the lines;
        given totals must agree."""
        expected = compute_totals(self.thuoc, self.dvkt)
        check_totals({name: getattr(self.tong_hop, name) for name in TOTAL_FIELDS}, expected)
        days = (
            self.tong_hop.so_ngay_dtri
            if self.tong_hop.so_ngay_dtri is not None
            else treatment_days(self.tong_hop)
        )
        summary = replace(self.tong_hop, so_ngay_dtri=days, **expected)
        return replace(self, tong_hop=summary)
