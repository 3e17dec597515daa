"""One visit's claim (``HoSo``) from what billing knows and what the clinical side gives.

Billing knows the patient's identity, the cards used, the route, the stay (admission, wards, discharge),
the diagnosis recorded for the claim and every priced line with its BHYT split (:class:`ClaimVisit` and
the XML2/XML3 lines). The rest of the decision's elements come from reception and the EMR: the reason
for the visit, the admission diagnosis, the treatment method, administrative-unit codes, results
(XML4), clinical course (XML5) and the details of the papers a visit produces (discharge paper,
referral paper, sick-leave certificate, re-visit appointment). They are :class:`ClinicalInputs`; until
the EMR sends them the claim is built without them, the elements stay empty and
:func:`hospital.billing.domain.xml130.validate.problems` names each one BHXH review needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from hospital.billing.domain.xml130.codes import loai_kcb, outcome
from hospital.billing.domain.xml130.models import (
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    GiayChuyenTuyen,
    GiayHenKhamLai,
    GiayNghiViecHuongBhxh,
    GiayRaVien,
    HoSo,
    TomTatHoSoBenhAn,
    TongHop,
    TrangThaiKcb,
)


@dataclass(frozen=True)
class CardUse:
    """One BHYT card used during the visit (a stay may change card: all are listed, ``;``-joined)."""

    number: str
    registered_facility: str = ""  # MA_DKBD, 5 digits
    valid_from: date | None = None
    valid_to: date | None = None
    five_year_date: date | None = None  # NAM_NAM_LIEN_TUC
    copay_exempt_from: date | None = None  # NGAY_MIEN_CCT


@dataclass(frozen=True)
class ClaimVisit:
    """What billing knows of a closed visit."""

    ma_lk: str
    facility_code: str  # MA_CSKCB
    facility_head_id: str  # MA_TTDV: health identifier (BHXH number) of the head of the facility
    patient_code: str
    full_name: str
    birth: date | datetime | int  # a bare year when only the year is known
    sex: int  # 1 Nam, 2 Nữ, 3 chưa xác định
    cccd: str
    cards: tuple[CardUse, ...]
    ma_doituong_kcb: str
    opened_at: datetime
    closed_at: datetime
    diagnosis_code: str
    diagnosis_text: str
    inpatient: bool = False
    admitted_at: datetime | None = None  # NGAY_VAO_NOI_TRU
    discharge_type: str | None = None  # admissions' discharge type
    departments: tuple[str, ...] = ()  # MA_KHOA, in the order the patient was treated there
    secondary_codes: tuple[str, ...] = ()
    phone: str = ""
    address: str = ""
    province_code: str = ""
    referred_from: str = ""  # MA_NOI_DI: facility that sent the patient
    referral_paper: str = ""  # GIAY_CHUYEN_TUYEN of the paper the patient came with
    referred_to: str = ""  # MA_NOI_DEN: facility the patient was transferred to
    paid_at: datetime | None = None  # NGAY_TTOAN
    claim_year: int = 0
    claim_month: int = 0


@dataclass(frozen=True)
class DischargePaper:
    """XML7 inputs (giấy ra viện) beyond billing's data: the EMR's signed discharge paper."""

    so_luu_tru: str = ""
    ma_bs: str = ""  # health identifier of the doctor who signs
    ten_bs: str = ""
    ghi_chu: str = ""
    pp_dieutri: str = ""
    ma_khoa_rv: str = ""
    ma_dinh_chi_thai: int | None = None
    nguyennhan_dinhchi: str = ""
    thoigian_dinhchi: datetime | None = None
    tuoi_thai: int | None = None
    ma_cha: str = ""
    ma_me: str = ""
    ma_the_tam: str = ""
    ho_ten_cha: str = ""
    ho_ten_me: str = ""
    so_ngay_nghi: int | None = None
    ngoaitru_tungay: date | None = None
    ngoaitru_denngay: date | None = None
    ngay_ct: date | None = None  # the day it was signed


@dataclass(frozen=True)
class ReferralPaper:
    """XML13 inputs (giấy chuyển tuyến)."""

    so_hoso: str = ""
    so_chuyentuyen: str = ""
    giay_chuyen_tuyen: str = ""
    dau_hieu_ls: str = ""
    qt_benhly: str = ""
    tomtat_kq: str = ""
    ma_lydo_ct: int | None = None  # 1 meets the referral conditions, 2 at the patient's request
    huong_dieu_tri: str = ""
    phuongtien_vc: str = ""
    hoten_nguoi_ht: str = ""
    chucdanh_nguoi_ht: str = ""
    ma_bac_si: str = ""
    ten_dich_vu: str = ""  # the services given, as the doctor wrote them (else the claim's lines)
    ten_thuoc: str = ""
    pp_dieutri: str = ""


@dataclass(frozen=True)
class SickLeave:
    """XML11 inputs (giấy chứng nhận nghỉ việc hưởng BHXH)."""

    so_ct: str
    so_seri: str
    so_ngay_nghi: int
    tu_ngay: date
    den_ngay: date
    ma_bhxh: str = ""
    don_vi: str = ""
    ma_bs: str = ""
    so_kcb: str = ""
    pp_dieutri: str = ""
    ma_dinh_chi_thai: int | None = None
    nguyennhan_dinhchi: str = ""
    tuoi_thai: int | None = None
    ho_ten_cha: str = ""
    ho_ten_me: str = ""
    ma_the_tam: str = ""
    mau_so: str = "CT07"
    ngay_ct: date | None = None


@dataclass(frozen=True)
class Revisit:
    """XML14 inputs (giấy hẹn khám lại)."""

    so_giayhen_kl: str
    ngay_hen_kl: datetime
    ma_bac_si: str = ""
    ngay_ct: date | None = None


@dataclass(frozen=True)
class ClinicalInputs:
    """What reception and the EMR give the claim; every field is optional."""

    ly_do_vv: str = ""
    ly_do_vnt: str = ""
    chan_doan_vao: str = ""
    pp_dieu_tri: str = ""
    ghi_chu: str = ""
    ma_quoctich: str = ""
    ma_dantoc: str = ""
    ma_nghe_nghiep: str = ""
    mahuyen_cu_tru: str = ""
    maxa_cu_tru: str = ""
    ma_khuvuc: str = ""
    can_nang: str = ""
    qt_benhly: str = ""
    tomtat_kq: str = ""
    results: tuple[ChiTietCls, ...] = ()
    clinical_course: tuple[ChiTietDienBienBenh, ...] = ()
    discharge: DischargePaper = field(default_factory=DischargePaper)
    referral: ReferralPaper | None = None
    sick_leave: SickLeave | None = None
    revisit: Revisit | None = None
    # the outcome the EMR's discharge or referral paper states; None: from admissions' discharge type
    ket_qua_dtri: int | None = None
    ma_loai_rv: int | None = None


def _card_fields(cards: Sequence[CardUse]) -> dict[str, object]:
    five_year = [c.five_year_date for c in cards if c.five_year_date]
    exempt = [c.copay_exempt_from for c in cards if c.copay_exempt_from]
    return {
        "ma_the_bhyt": tuple(c.number for c in cards),
        "ma_dkbd": tuple(c.registered_facility for c in cards if c.registered_facility),
        "gt_the_tu": tuple(c.valid_from for c in cards if c.valid_from),
        "gt_the_den": tuple(c.valid_to for c in cards if c.valid_to),
        "nam_nam_lien_tuc": five_year[-1] if five_year else None,
        "ngay_mien_cct": exempt[-1] if exempt else None,
    }


def assemble(
    visit: ClaimVisit,
    thuoc: Sequence[ChiTietThuoc],
    dvkt: Sequence[ChiTietDvkt],
    inputs: ClinicalInputs | None = None,
) -> HoSo:
    """The visit's claim: XML1 from the visit, XML2/XML3 as given, XML4/XML5 and the papers the visit
    produced: XML8 for an inpatient stay (MA_LOAI_KCB 03, 04, 06) and XML7 when it ended otherwise than
    by death, XML13 for a transfer to another facility, XML11 and XML14 when the EMR issued them."""
    extra = inputs or ClinicalInputs()
    kcb = loai_kcb(inpatient=visit.inpatient, admitted_at=visit.admitted_at, discharged_at=visit.closed_at)
    ket_qua, loai_rv = outcome(visit.discharge_type)
    ket_qua = extra.ket_qua_dtri or ket_qua
    loai_rv = extra.ma_loai_rv or loai_rv
    cards = _card_fields(visit.cards)
    referral_out = loai_rv in (2, 5)
    summary = TongHop(
        ma_lk=visit.ma_lk,
        ma_bn=visit.patient_code,
        ho_ten=visit.full_name,
        so_cccd=visit.cccd,
        ngay_sinh=visit.birth,
        gioi_tinh=visit.sex,
        ma_quoctich=extra.ma_quoctich,
        ma_dantoc=extra.ma_dantoc,
        ma_nghe_nghiep=extra.ma_nghe_nghiep,
        dia_chi=visit.address,
        matinh_cu_tru=visit.province_code,
        mahuyen_cu_tru=extra.mahuyen_cu_tru,
        maxa_cu_tru=extra.maxa_cu_tru,
        dien_thoai=visit.phone,
        ly_do_vv=extra.ly_do_vv,
        ly_do_vnt=extra.ly_do_vnt if visit.inpatient else "",
        chan_doan_vao=extra.chan_doan_vao,
        chan_doan_rv=visit.diagnosis_text,
        ma_benh_chinh=visit.diagnosis_code,
        ma_benh_kt=visit.secondary_codes,
        ma_doituong_kcb=visit.ma_doituong_kcb,
        ma_noi_di=visit.referred_from,
        ma_noi_den=visit.referred_to if referral_out else "",
        ngay_vao=visit.opened_at,
        ngay_vao_noi_tru=visit.admitted_at if visit.inpatient else None,
        ngay_ra=visit.closed_at,
        giay_chuyen_tuyen=visit.referral_paper,
        pp_dieu_tri=extra.pp_dieu_tri,
        ket_qua_dtri=ket_qua,
        ma_loai_rv=loai_rv,
        ghi_chu=extra.ghi_chu,
        ngay_ttoan=visit.paid_at,
        nam_qt=visit.claim_year,
        thang_qt=visit.claim_month,
        ma_loai_kcb=kcb,
        ma_khoa=visit.departments,
        ma_cskcb=visit.facility_code,
        ma_khuvuc=extra.ma_khuvuc,
        can_nang=extra.can_nang,
        ngay_tai_kham=(extra.revisit.ngay_hen_kl.date(),) if extra.revisit else (),
        ma_hsba=visit.ma_lk,
        ma_ttdv=visit.facility_head_id,
        **cards,  # type: ignore[arg-type]
    )
    stay = visit.inpatient and kcb in ("03", "04", "06")  # XML8 is sent for these only
    day = visit.closed_at.date()
    giay_ra_vien = tom_tat = chuyen_tuyen = nghi_viec = hen_kham = None
    if stay and ket_qua not in (5, 8):  # a death gets a death notice, not a discharge paper
        paper7 = extra.discharge
        giay_ra_vien = GiayRaVien(
            ma_lk=visit.ma_lk,
            so_luu_tru=paper7.so_luu_tru,
            ma_yte=visit.patient_code,
            ma_khoa_rv=paper7.ma_khoa_rv or (visit.departments[-1] if visit.departments else ""),
            ngay_vao=visit.admitted_at or visit.opened_at,
            ngay_ra=visit.closed_at,
            ma_dinh_chi_thai=paper7.ma_dinh_chi_thai,
            nguyennhan_dinhchi=paper7.nguyennhan_dinhchi,
            thoigian_dinhchi=paper7.thoigian_dinhchi,
            tuoi_thai=paper7.tuoi_thai,
            chan_doan_rv=visit.diagnosis_text,
            pp_dieutri=paper7.pp_dieutri or extra.pp_dieu_tri,
            ghi_chu=paper7.ghi_chu or extra.ghi_chu,
            ma_ttdv=visit.facility_head_id,
            ma_bs=paper7.ma_bs,
            ten_bs=paper7.ten_bs,
            ngay_ct=paper7.ngay_ct or day,
            ma_cha=paper7.ma_cha,
            ma_me=paper7.ma_me,
            ma_the_tam=paper7.ma_the_tam,
            ho_ten_cha=paper7.ho_ten_cha,
            ho_ten_me=paper7.ho_ten_me,
            so_ngay_nghi=paper7.so_ngay_nghi,
            ngoaitru_tungay=paper7.ngoaitru_tungay,
            ngoaitru_denngay=paper7.ngoaitru_denngay,
        )
    if stay:
        tom_tat = TomTatHoSoBenhAn(
            ma_lk=visit.ma_lk,
            ma_loai_kcb=kcb,
            ngay_vao=visit.admitted_at or visit.opened_at,
            ngay_ra=visit.closed_at,
            chan_doan_vao=extra.chan_doan_vao,
            chan_doan_rv=visit.diagnosis_text,
            qt_benhly=extra.qt_benhly,
            tomtat_kq=extra.tomtat_kq,
            pp_dieutri=extra.pp_dieu_tri,
            ket_qua_dtri=ket_qua,
            ghi_chu=extra.ghi_chu,
            ma_ttdv=visit.facility_head_id,
            ngay_ct=day,
        )
    if referral_out:
        paper = extra.referral or ReferralPaper()
        chuyen_tuyen = GiayChuyenTuyen(
            ma_lk=visit.ma_lk,
            so_hoso=paper.so_hoso,
            so_chuyentuyen=paper.so_chuyentuyen,
            giay_chuyen_tuyen=paper.giay_chuyen_tuyen,
            ma_cskcb=visit.facility_code,
            ma_noi_di=visit.referred_from,
            ma_noi_den=visit.referred_to,
            ho_ten=visit.full_name,
            ngay_sinh=visit.birth,
            gioi_tinh=visit.sex,
            ma_quoctich=extra.ma_quoctich,
            ma_dantoc=extra.ma_dantoc,
            ma_nghe_nghiep=extra.ma_nghe_nghiep,
            dia_chi=visit.address,
            ma_the_bhyt=summary.ma_the_bhyt,
            gt_the_den=summary.gt_the_den,
            ngay_vao=visit.opened_at,
            ngay_vao_noi_tru=summary.ngay_vao_noi_tru,
            ngay_ra=visit.closed_at,
            dau_hieu_ls=paper.dau_hieu_ls,
            chan_doan_rv=visit.diagnosis_text,
            qt_benhly=paper.qt_benhly,
            tomtat_kq=paper.tomtat_kq,
            pp_dieutri=paper.pp_dieutri or extra.pp_dieu_tri,
            ma_benh_chinh=visit.diagnosis_code,
            ma_benh_kt=visit.secondary_codes,
            ten_dich_vu=paper.ten_dich_vu
            or "; ".join(dict.fromkeys(line.ten_dich_vu for line in dvkt if line.ten_dich_vu))[:1024],
            ten_thuoc=paper.ten_thuoc or "; ".join(dict.fromkeys(line.ten_thuoc for line in thuoc))[:1024],
            pp_dieu_tri=paper.pp_dieutri or extra.pp_dieu_tri,
            ma_loai_rv=loai_rv,
            ma_lydo_ct=paper.ma_lydo_ct,
            huong_dieu_tri=paper.huong_dieu_tri,
            phuongtien_vc=paper.phuongtien_vc,
            hoten_nguoi_ht=paper.hoten_nguoi_ht,
            chucdanh_nguoi_ht=paper.chucdanh_nguoi_ht,
            ma_bac_si=paper.ma_bac_si,
            ma_ttdv=visit.facility_head_id,
        )
    if extra.sick_leave is not None:
        leave = extra.sick_leave
        nghi_viec = GiayNghiViecHuongBhxh(
            ma_lk=visit.ma_lk,
            so_ct=leave.so_ct,
            so_seri=leave.so_seri,
            so_kcb=leave.so_kcb or visit.ma_lk,
            don_vi=leave.don_vi,
            ma_bhxh=leave.ma_bhxh,
            ma_the_bhyt=summary.ma_the_bhyt,
            chan_doan_rv=visit.diagnosis_text,
            pp_dieutri=leave.pp_dieutri or extra.pp_dieu_tri,
            ma_dinh_chi_thai=leave.ma_dinh_chi_thai,
            nguyennhan_dinhchi=leave.nguyennhan_dinhchi,
            tuoi_thai=leave.tuoi_thai,
            so_ngay_nghi=leave.so_ngay_nghi,
            tu_ngay=leave.tu_ngay,
            den_ngay=leave.den_ngay,
            ho_ten_cha=leave.ho_ten_cha,
            ho_ten_me=leave.ho_ten_me,
            ma_ttdv=visit.facility_head_id,
            ma_bs=leave.ma_bs,
            ngay_ct=leave.ngay_ct or day,
            ma_the_tam=leave.ma_the_tam,
            mau_so=leave.mau_so,
        )
    if extra.revisit is not None:
        hen_kham = GiayHenKhamLai(
            ma_lk=visit.ma_lk,
            so_giayhen_kl=extra.revisit.so_giayhen_kl,
            ma_cskcb=visit.facility_code,
            ho_ten=visit.full_name,
            ngay_sinh=visit.birth,
            gioi_tinh=visit.sex,
            dia_chi=visit.address,
            ma_the_bhyt=summary.ma_the_bhyt,
            gt_the_den=summary.gt_the_den,
            ngay_vao=visit.opened_at,
            ngay_vao_noi_tru=summary.ngay_vao_noi_tru,
            ngay_ra=visit.closed_at,
            ngay_hen_kl=extra.revisit.ngay_hen_kl,
            chan_doan_rv=visit.diagnosis_text,
            ma_benh_chinh=visit.diagnosis_code,
            ma_benh_kt=visit.secondary_codes,
            ma_doituong_kcb=visit.ma_doituong_kcb,
            ma_bac_si=extra.revisit.ma_bac_si,
            ma_ttdv=visit.facility_head_id,
            ngay_ct=extra.revisit.ngay_ct or day,
        )
    return HoSo(
        summary,
        thuoc=tuple(thuoc),
        dvkt=tuple(dvkt),
        cls=extra.results,
        dien_bien=extra.clinical_course,
        giay_ra_vien=giay_ra_vien,
        tom_tat=tom_tat,
        nghi_viec=nghi_viec,
        chuyen_tuyen=chuyen_tuyen,
        hen_kham=hen_kham,
    )


def checkin(
    visit: ClaimVisit,
    *,
    ma_loai_kcb: str = "01",
    first_line: ChiTietDvkt | ChiTietThuoc | None = None,
    ly_do_vnt: str = "",
) -> TrangThaiKcb:
    """The check-in row (XML0) sent when the patient is received, with the first service or drug ordered."""
    cards = _card_fields(visit.cards)
    row: dict[str, object] = {}
    if isinstance(first_line, ChiTietDvkt):
        row = {
            "ma_dich_vu": first_line.ma_dich_vu,
            "ten_dich_vu": first_line.ten_dich_vu,
            "ma_vat_tu": first_line.ma_vat_tu,
            "ten_vat_tu": first_line.ten_vat_tu,
            "ngay_yl": first_line.ngay_yl,
        }
    elif isinstance(first_line, ChiTietThuoc):
        row = {
            "ma_thuoc": first_line.ma_thuoc,
            "ten_thuoc": first_line.ten_thuoc,
            "ngay_yl": first_line.ngay_yl,
        }
    return TrangThaiKcb(
        ma_lk=visit.ma_lk,
        ma_bn=visit.patient_code,
        ho_ten=visit.full_name,
        so_cccd=visit.cccd,
        ngay_sinh=visit.birth,
        gioi_tinh=visit.sex,
        ma_the_bhyt=cards["ma_the_bhyt"],  # type: ignore[arg-type]
        ma_dkbd=cards["ma_dkbd"],
        gt_the_tu=cards["gt_the_tu"],
        gt_the_den=cards["gt_the_den"],  # type: ignore[arg-type]
        ma_doituong_kcb=visit.ma_doituong_kcb,
        ngay_vao=visit.opened_at,
        ngay_vao_noi_tru=visit.admitted_at if visit.inpatient else None,
        ly_do_vnt=ly_do_vnt,
        ma_loai_kcb=ma_loai_kcb,
        ma_cskcb=visit.facility_code,
        **row,
    )  # type: ignore[arg-type]
