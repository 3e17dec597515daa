"""Every QĐ130 table a visit produces, for an outpatient, an inpatient moved between departments, a
referral to another hospital and a death, each file validated (lxml) against the XSD generated from the
decision's table; and what a claim without the EMR's inputs lacks."""

from __future__ import annotations

import base64
import dataclasses
from datetime import date, datetime
from decimal import Decimal
from importlib import resources

import pytest
from lxml import etree

from hospital.billing.domain.insurance import ChargeLine, InsuranceCard, Route, split_visit
from hospital.billing.domain.xml130 import (
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    build_checkin,
    build_giamdinhhs,
    build_hoso_files,
    problems,
    validate,
)
from hospital.billing.domain.xml130.assemble import (
    CardUse,
    ClaimVisit,
    ClinicalInputs,
    DischargePaper,
    ReferralPaper,
    Revisit,
    SickLeave,
    assemble,
    checkin,
)
from hospital.billing.domain.xml130.tables import table, xsd_name

FACILITY = "34001"
HEAD = "3499001234"  # MA_TTDV: BHXH number of the director
DOCTOR = "003456/TB-CCHN"
CARD_A = CardUse("HS4340120878811", "34001", date(2025, 1, 1), date(2025, 12, 31), date(2021, 3, 1))
CARD_B = CardUse(
    "HS4340120878811".replace("HS4", "HT3"), "34001", date(2025, 9, 1), date(2026, 8, 31), date(2021, 3, 1)
)


def schema(loai: str) -> etree.XMLSchema:
    path = resources.files("hospital.billing.domain.xml130").joinpath("xsd", xsd_name(loai))
    return etree.XMLSchema(etree.fromstring(path.read_bytes()))


def check_against_decision(files: dict[str, bytes]) -> dict[str, etree._Element]:
    """Each file valid against its table's XSD, every row listing every element in the decision's order."""
    parsed = {}
    for loai, content in files.items():
        root = etree.fromstring(content)
        xsd = schema(loai)
        assert xsd.validate(root), f"{loai}: {xsd.error_log}"
        spec = table(loai)
        rows = [root] if spec.row_tag is None else root.findall(f"{spec.list_tag}/{spec.row_tag}")
        for row in rows:
            assert tuple(child.tag for child in row) == spec.names
        parsed[loai] = root
    return parsed


def visit(**changes: object) -> ClaimVisit:
    values: dict[str, object] = dict(
        ma_lk="KB2509150001",
        facility_code=FACILITY,
        facility_head_id=HEAD,
        patient_code="BN00012345",
        full_name="Phạm Thị Hồng Nhung",
        birth=date(1979, 11, 2),
        sex=2,
        cccd="034179004567",
        cards=(CARD_A,),
        ma_doituong_kcb="1.1",
        opened_at=datetime(2025, 9, 15, 7, 40),
        closed_at=datetime(2025, 9, 15, 10, 5),
        diagnosis_code="J18.9",
        diagnosis_text="Viêm phổi, không đặc hiệu",
        departments=("K01",),
        secondary_codes=("I10",),
        phone="0912345678",
        address="Số 8 Lý Bôn, phường Đề Thám, thành phố Thái Bình, tỉnh Thái Bình",
        province_code="034",
        paid_at=datetime(2025, 9, 15, 10, 20),
        claim_year=2025,
        claim_month=9,
    )
    values.update(changes)
    return ClaimVisit(**values)  # type: ignore[arg-type]


def inputs(**changes: object) -> ClinicalInputs:
    values: dict[str, object] = dict(
        ly_do_vv="Sốt, ho có đờm 5 ngày",
        chan_doan_vao="Theo dõi viêm phổi",
        pp_dieu_tri="Nội khoa",
        ma_quoctich="000",
        ma_dantoc="01",
        ma_nghe_nghiep="00000",
        mahuyen_cu_tru="336",
        maxa_cu_tru="12442",
        ma_khuvuc="",
        can_nang="52.50",
    )
    values.update(changes)
    return ClinicalInputs(**values)  # type: ignore[arg-type]


def lines(
    ma_lk: str,
    items: list[tuple[str, str, int, str, str, Decimal | int, int, int, datetime, str]],
    card: InsuranceCard,
    *,
    inpatient: bool = False,
    route: Route = Route.REGISTERED,
) -> tuple[list[ChiTietThuoc], list[ChiTietDvkt]]:
    """(kind, code, group, name, unit, quantity, hospital price, insurance price, time, department)."""
    split = split_visit(
        [ChargeLine(at.date(), True, bv, bh, qty) for _, _, _, _, _, qty, bv, bh, at, _ in items],
        card,
        route=route,
        inpatient=inpatient,
    )
    thuoc, dvkt = [], []
    for (kind, code, group, name, unit, qty, bv, bh, at, khoa), money in zip(items, split.lines, strict=True):
        common = dict(
            ma_lk=ma_lk,
            ma_nhom=group,
            don_vi_tinh=unit,
            so_luong=qty,
            ma_khoa=khoa,
            ma_bac_si=DOCTOR,
            ngay_yl=at,
            **money.xml_fields(),
        )
        if kind == "drug":
            thuoc.append(
                ChiTietThuoc(
                    stt=len(thuoc) + 1,
                    ma_thuoc=code,
                    ten_thuoc=name,
                    ham_luong="500mg",
                    duong_dung="1.01",
                    dang_bao_che="Viên nang cứng",
                    lieu_dung="1 viên/lần * 3 lần/ngày * 5 ngày",
                    cach_dung="Uống sau ăn",
                    so_dang_ky="VD-23456-15",
                    tt_thau="123/QĐ-SYT;G1;N4;2024",
                    don_gia=bv,
                    ngay_th_yl=at,
                    **common,
                )
            )
        else:
            bed = kind == "bed"
            dvkt.append(
                ChiTietDvkt(
                    stt=len(dvkt) + 1,
                    ma_dich_vu=code,
                    ten_dich_vu=name,
                    don_gia_bv=bv,
                    don_gia_bh=bh,
                    ma_giuong="H001" if bed else "",
                    ma_benh="J18.9;I10",
                    nguoi_thuc_hien=DOCTOR,
                    ngay_th_yl=at,
                    ngay_kq=None if bed else at,
                    **common,
                )
            )
    return thuoc, dvkt


AMOX = ("drug", "40.17", 4, "Amoxicilin 500mg", "Viên", 15, 1_250, 1_250)
EXAM = ("service", "02.1896", 1, "Khám Nội", "Lần", 1, 42_100, 42_100)
XQ = ("service", "18.0070.0001", 2, "Chụp X-quang ngực thẳng", "Lần", 1, 65_400, 65_400)
CARD = InsuranceCard(CARD_A.number, date(2025, 1, 1), date(2026, 8, 31))


def xq_result(ma_lk: str) -> ChiTietCls:
    return ChiTietCls(
        ma_lk=ma_lk,
        stt=1,
        ma_dich_vu="18.0070.0001",
        ma_chi_so="18.0070.0001",
        ten_chi_so="X-quang ngực thẳng",
        mo_ta="Đám mờ đáy phổi phải",
        ket_luan="Viêm phổi thùy dưới phải",
        ngay_kq=datetime(2025, 9, 15, 9, 0),
        ma_bs_doc_kq="004567/TB-CCHN",
    )


def test_outpatient_with_sick_leave_and_revisit() -> None:
    v = visit()
    at = datetime(2025, 9, 15, 8, 0)
    thuoc, dvkt = lines(v.ma_lk, [(*EXAM, at, "K01"), (*XQ, at, "K01"), (*AMOX, at, "K01")], CARD)
    extra = inputs(
        results=(xq_result(v.ma_lk),),
        sick_leave=SickLeave(
            "000123",
            "AB-2025-000123",
            5,
            date(2025, 9, 15),
            date(2025, 9, 19),
            ma_bhxh="3418004567",
            don_vi="Công ty TNHH May Thái Bình",
            ma_bs="3412345678",
        ),
        revisit=Revisit("HK000045", datetime(2025, 9, 22, 8, 0), DOCTOR),
    )
    files = build_hoso_files(assemble(v, thuoc, dvkt, extra))
    assert list(files) == ["XML1", "XML2", "XML3", "XML4", "XML11", "XML14"]
    t = check_against_decision(files)
    xml1 = t["XML1"]
    assert xml1.findtext("MA_LOAI_KCB") == "01" and xml1.findtext("SO_NGAY_DTRI") == "0"
    assert xml1.findtext("KET_QUA_DTRI") == "7" and xml1.findtext("MA_LOAI_RV") == "1"
    assert xml1.findtext("NGAY_TTOAN") == "202509151020" and xml1.findtext("MA_TTDV") == HEAD
    assert xml1.findtext("NAM_NAM_LIEN_TUC") == "20210301" and xml1.findtext("NGAY_TAI_KHAM") == "20250922"
    assert xml1.findtext("T_NGUONKHAC") == "0" and xml1.findtext("T_BHTT_GDV") == xml1.findtext("T_BHTT")
    assert t["XML11"].findtext("MAU_SO") == "CT07" and t["XML14"].findtext("NGAY_HEN_KL") == "202509220800"
    row = t["XML2"].find("DSACH_CHI_TIET_THUOC/CHI_TIET_THUOC")
    assert [row.findtext(e) for e in ("SO_DANG_KY", "TT_THAU", "HAM_LUONG", "DUONG_DUNG", "LIEU_DUNG")] == [
        "VD-23456-15",
        "123/QĐ-SYT;G1;N4;2024",
        "500mg",
        "1.01",
        "1 viên/lần * 3 lần/ngày * 5 ngày",
    ]
    document = build_giamdinhhs(
        [assemble(v, thuoc, dvkt, extra)], ma_cskcb=FACILITY, ngay_lap=date(2025, 9, 16)
    )
    validate(document)


def test_inpatient_moved_between_departments_with_a_second_card() -> None:
    v = visit(
        ma_lk="BA2509100002",
        inpatient=True,
        admitted_at=datetime(2025, 8, 28, 9, 0),
        opened_at=datetime(2025, 8, 28, 8, 15),
        closed_at=datetime(2025, 9, 3, 10, 0),
        discharge_type="improved",
        departments=("K03", "K19"),
        cards=(CARD_A, CARD_B),
    )
    items = [
        (*EXAM, datetime(2025, 8, 28, 8, 30), "K01"),
        (
            "bed",
            "K03.1950",
            14,
            "Giường Hồi sức tích cực",
            "Ngày",
            3,
            705_000,
            705_000,
            datetime(2025, 8, 28, 9, 0),
            "K03",
        ),
        (
            "bed",
            "K19.1937",
            14,
            "Giường Nội khoa loại 1",
            "Ngày",
            Decimal("3.5"),
            242_300,
            242_300,
            datetime(2025, 8, 31, 11, 0),
            "K19",
        ),
        (*AMOX, datetime(2025, 9, 1, 8, 0), "K19"),
    ]
    thuoc, dvkt = lines(v.ma_lk, items, CARD, inpatient=True)
    course = (
        ChiTietDienBienBenh(
            ma_lk=v.ma_lk,
            stt=1,
            dien_bien_ls="Sốt 39 độ, ran nổ đáy phổi phải",
            thoi_diem_dbls=datetime(2025, 8, 28, 10, 0),
            nguoi_thuc_hien=DOCTOR,
        ),
        ChiTietDienBienBenh(
            ma_lk=v.ma_lk,
            stt=2,
            dien_bien_ls="Hết sốt, chuyển khoa Nội",
            hoi_chan="Hội chẩn khoa: chuyển Nội",
            thoi_diem_dbls=datetime(2025, 8, 31, 10, 30),
            nguoi_thuc_hien=DOCTOR,
        ),
    )
    extra = inputs(
        ly_do_vnt="Suy hô hấp",
        clinical_course=course,
        qt_benhly="Sốt cao, khó thở",
        tomtat_kq="X-quang: viêm phổi thùy dưới phải",
        discharge=DischargePaper("LT-2025-0456", "3412345678", "Nguyễn Văn Hải"),
    )
    files = build_hoso_files(assemble(v, thuoc, dvkt, extra))
    assert list(files) == ["XML1", "XML2", "XML3", "XML5", "XML7", "XML8"]
    t = check_against_decision(files)
    xml1 = t["XML1"]
    assert xml1.findtext("MA_LOAI_KCB") == "03" and xml1.findtext("SO_NGAY_DTRI") == "7"
    assert xml1.findtext("MA_KHOA") == "K03;K19"
    assert xml1.findtext("MA_THE_BHYT") == f"{CARD_A.number};{CARD_B.number}"
    assert xml1.findtext("GT_THE_DEN") == "20251231;20260831"
    assert xml1.findtext("NGAY_VAO_NOI_TRU") == "202508280900"
    assert t["XML7"].findtext("MA_KHOA_RV") == "K19" and t["XML8"].findtext("KET_QUA_DTRI") == "2"
    assert [r.findtext("SO_LUONG") for r in t["XML3"].iter("CHI_TIET_DVKT")] == ["1", "3", "3.5"]


def test_referral_to_another_hospital() -> None:
    v = visit(
        ma_lk="BA2509120003",
        inpatient=True,
        admitted_at=datetime(2025, 9, 12, 14, 0),
        opened_at=datetime(2025, 9, 12, 13, 10),
        closed_at=datetime(2025, 9, 14, 16, 30),
        discharge_type="transferred_out",
        referred_to="01929",
        referred_from="34105",
        referral_paper="CT-34105-000778",
        ma_doituong_kcb="1.3",
    )
    thuoc, dvkt = lines(
        v.ma_lk,
        [(*EXAM, datetime(2025, 9, 12, 13, 30), "K01"), (*XQ, datetime(2025, 9, 12, 15, 0), "K03")],
        CARD,
        inpatient=True,
        route=Route.REFERRED,
    )
    paper = ReferralPaper(
        "HS-000778",
        "SCT-2025-0112",
        "CT-34001-000912",
        "Khó thở tăng, SpO2 88%",
        "Viêm phổi nặng không đáp ứng điều trị",
        "X-quang: tổn thương lan rộng",
        1,
        "Tiếp tục điều trị tại tuyến trên",
        "Xe cứu thương",
        "Trần Văn Bình",
        "Điều dưỡng",
        DOCTOR,
    )
    hoso = assemble(
        v,
        thuoc,
        dvkt,
        inputs(
            referral=paper,
            results=(xq_result(v.ma_lk),),
            qt_benhly="Khó thở",
            tomtat_kq="X-quang: tổn thương lan rộng",
            discharge=DischargePaper("LT-2025-0470", "3412345678", "Nguyễn Văn Hải"),
        ),
    )
    files = build_hoso_files(hoso)
    assert list(files) == ["XML1", "XML3", "XML4", "XML7", "XML8", "XML13"]
    t = check_against_decision(files)
    xml1 = t["XML1"]
    assert (xml1.findtext("MA_LOAI_RV"), xml1.findtext("MA_NOI_DI"), xml1.findtext("MA_NOI_DEN")) == (
        "2",
        "34105",
        "01929",
    )
    assert xml1.findtext("GIAY_CHUYEN_TUYEN") == "CT-34105-000778"
    xml13 = t["XML13"]
    assert (
        xml13.findtext("MA_NOI_DEN") == "01929" and xml13.findtext("GIAY_CHUYEN_TUYEN") == "CT-34001-000912"
    )
    assert xml13.findtext("TEN_DICH_VU") == "Khám Nội; Chụp X-quang ngực thẳng"


def test_death_gets_a_record_summary_and_no_discharge_paper() -> None:
    v = visit(
        ma_lk="BA2509050004",
        inpatient=True,
        admitted_at=datetime(2025, 9, 5, 2, 10),
        opened_at=datetime(2025, 9, 5, 1, 50),
        closed_at=datetime(2025, 9, 6, 4, 40),
        discharge_type="deceased",
        ma_doituong_kcb="2",
        departments=("K02", "K03"),
        diagnosis_code="I21.9",
        diagnosis_text="Nhồi máu cơ tim cấp",
    )
    thuoc, dvkt = lines(
        v.ma_lk,
        [
            (*EXAM, datetime(2025, 9, 5, 2, 0), "K02"),
            (
                "bed",
                "K03.1950",
                14,
                "Giường Hồi sức tích cực",
                "Ngày",
                2,
                705_000,
                705_000,
                datetime(2025, 9, 5, 2, 10),
                "K03",
            ),
        ],
        CARD,
        inpatient=True,
        route=Route.EMERGENCY,
    )
    files = build_hoso_files(
        assemble(v, thuoc, dvkt, inputs(qt_benhly="Đau ngực dữ dội", tomtat_kq="ST chênh lên"))
    )
    assert list(files) == ["XML1", "XML3", "XML8"]
    t = check_against_decision(files)
    assert t["XML1"].findtext("KET_QUA_DTRI") == "5" and t["XML8"].findtext("KET_QUA_DTRI") == "5"
    assert t["XML1"].findtext("SO_NGAY_DTRI") == "2"


def test_stay_under_four_hours_is_09() -> None:
    v = visit(
        ma_lk="BA2509070005",
        inpatient=True,
        admitted_at=datetime(2025, 9, 7, 9, 0),
        closed_at=datetime(2025, 9, 7, 12, 30),
        discharge_type="recovered",
    )
    thuoc, dvkt = lines(v.ma_lk, [(*EXAM, datetime(2025, 9, 7, 8, 0), "K01")], CARD, inpatient=True)
    files = build_hoso_files(assemble(v, thuoc, dvkt, inputs()))
    t = check_against_decision(files)
    assert t["XML1"].findtext("MA_LOAI_KCB") == "09" and t["XML1"].findtext("SO_NGAY_DTRI") == "0"
    assert list(files) == ["XML1", "XML3"]  # no record summary below 4 hours


def test_checkin_row() -> None:
    v = visit()
    _, dvkt = lines(v.ma_lk, [(*EXAM, datetime(2025, 9, 15, 7, 45), "K01")], CARD)
    row = etree.fromstring(build_checkin([checkin(v, first_line=dvkt[0])]))
    assert schema("XML0").validate(row), schema("XML0").error_log
    record = row.find("DSACH_TRANG_THAI_KCB/TRANG_THAI_KCB")
    assert tuple(c.tag for c in record) == table("XML0").names
    assert record.findtext("MA_DICH_VU") == "02.1896" and record.findtext("NGAY_YL") == "202509150745"


def test_claim_without_the_emr_inputs_names_what_is_missing() -> None:
    v = visit(address="", province_code="")
    thuoc, dvkt = lines(v.ma_lk, [(*EXAM, datetime(2025, 9, 15, 8, 0), "K01")], CARD)
    document = build_giamdinhhs([assemble(v, thuoc, dvkt)], ma_cskcb=FACILITY, ngay_lap=date(2025, 9, 16))
    validate(document, strict=False)  # the structure, types and formats of the decision hold
    missing = " ".join(problems(document))
    for element in (
        "LY_DO_VV",
        "CHAN_DOAN_VAO",
        "MA_DANTOC",
        "MA_QUOCTICH",
        "MA_NGHE_NGHIEP",
        "DIA_CHI",
        "MATINH_CU_TRU",
        "MAHUYEN_CU_TRU",
        "MAXA_CU_TRU",
    ):
        assert f"/TONG_HOP/{element}" in missing, element
    assert "MA_BN" not in missing and "T_BHTT" not in missing


@pytest.mark.parametrize("loai", ["XML1", "XML3"])
def test_a_file_out_of_the_decision_order_is_refused(loai: str) -> None:
    v = visit()
    thuoc, dvkt = lines(v.ma_lk, [(*EXAM, datetime(2025, 9, 15, 8, 0), "K01")], CARD)
    content = build_hoso_files(assemble(v, thuoc, dvkt, inputs()))[loai]
    root = etree.fromstring(content)
    row = root if loai == "XML1" else root.find(".//CHI_TIET_DVKT")
    row.append(row.find("MA_LK"))  # first element moved to the end
    assert not schema(loai).validate(root)
    assert base64.b64encode(content)  # the unchanged file stays valid
    assert schema(loai).validate(etree.fromstring(content))


def test_a_bed_code_not_in_the_decisions_form_is_refused() -> None:
    v = visit(inpatient=True, admitted_at=datetime(2025, 9, 10, 9, 0), closed_at=datetime(2025, 9, 12, 9, 0))
    bed = ("bed", "K19.1937", 14, "Giường Nội khoa loại 1", "Ngày", 2, 242_300, 242_300)
    _, dvkt = lines(v.ma_lk, [(*bed, datetime(2025, 9, 10, 9, 0), "K19")], CARD, inpatient=True)
    assert dvkt[0].ma_giuong == "H001"
    for code, ok in (("H001", True), ("T012;C003", True), ("NOI-101-01", False), ("H01", False)):
        row = dataclasses.replace(dvkt[0], ma_giuong=code)
        document = build_giamdinhhs(
            [assemble(v, [], [row], inputs())], ma_cskcb=FACILITY, ngay_lap=date(2025, 9, 13)
        )
        assert (not any("MA_GIUONG" in p for p in problems(document, strict=False))) is ok, code
