"""XML130 claim export: building, XSD validation, totals, and rejection of invalid data."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from lxml import etree

from hospital.billing.domain.insurance import ChargeLine, InsuranceCard, split_visit
from hospital.billing.domain.xml130 import (
    ChiTietCls,
    ChiTietDienBienBenh,
    ChiTietDvkt,
    ChiTietThuoc,
    HoSo,
    TongHop,
    TotalsMismatch,
    Xml130Error,
    Xml130ValidationError,
    build_giamdinhhs,
    build_hoso_files,
    validate,
)
from hospital.billing.domain.xml130.models import RECORDS, treatment_days
from hospital.billing.domain.xml130.tables import render_xsd, table, tables, xsd_name

MA_CSKCB = "35001"
DAY = date(2024, 8, 2)
CARD = InsuranceCard("HS4350120878811", date(2024, 1, 1), date(2024, 12, 31))
PATIENT = "Trần Thị Bích Ngọc"

# (code, group, name, unit, quantity, hospital price, insurance price)
DRUG = ("40.17", 4, "Amoxicilin 500mg", "Viên", Decimal(21), 1_250, 1_250)
SERVICES = [
    ("18.0014.0001", "", 2, "Siêu âm ổ bụng", "Lần", 1, 300_000, 250_000),
    ("18.0070.0001", "", 2, "Chụp CT sọ não không tiêm thuốc cản quang", "Lần", 1, 522_000, 522_000),
    ("", "N03.02.070", 10, "Bơm tiêm nhựa 5ml", "Cái", 2, 1_500, 1_500),
]


def tong_hop(ma_lk: str = "LK2408020001", **changes: object) -> TongHop:
    values: dict[str, object] = {
        "ma_lk": ma_lk,
        "ma_bn": "BN0012345",
        "ho_ten": PATIENT,
        "so_cccd": "035188012345",
        "ngay_sinh": date(1988, 3, 14),
        "gioi_tinh": 2,
        "ma_quoctich": "000",
        "ma_dantoc": "01",
        "ma_nghe_nghiep": "00000",
        "dia_chi": "Số 12 Lê Lợi, phường Đề Thám, thành phố Thái Bình, tỉnh Thái Bình",
        "matinh_cu_tru": "034",
        "mahuyen_cu_tru": "336",
        "maxa_cu_tru": "12442",
        "ma_the_bhyt": (CARD.number,),
        "ma_dkbd": ("35001",),
        "gt_the_tu": (CARD.valid_from,),
        "gt_the_den": (CARD.valid_to,),
        "ly_do_vv": "Đau hạ sườn phải",
        "chan_doan_vao": "Theo dõi sỏi túi mật",
        "chan_doan_rv": "Sỏi túi mật; theo dõi chấn thương đầu",
        "ma_benh_chinh": "K80.2",
        "ma_benh_kt": ("S09.9",),
        "ma_doituong_kcb": "1.1",
        "ngay_vao": datetime(2024, 8, 2, 8, 5),
        "ngay_ra": datetime(2024, 8, 2, 11, 40),
        "ket_qua_dtri": 1,
        "ma_loai_rv": 1,
        "nam_qt": 2024,
        "thang_qt": 8,
        "ma_loai_kcb": "01",
        "ma_khoa": ("K01",),
        "ma_cskcb": MA_CSKCB,
        "ma_hsba": "KB2408020001",
        "ma_ttdv": "3599001234",
    }
    values.update(changes)
    return TongHop(**values)  # type: ignore[arg-type]


def visit(ma_lk: str = "LK2408020001", **summary_changes: object) -> HoSo:
    """A realistic outpatient visit whose money fields come from the insurance split."""
    charge_lines = [ChargeLine(DAY, True, DRUG[5], DRUG[6], DRUG[4])] + [
        ChargeLine(DAY, True, bv, bh, quantity) for *_, quantity, bv, bh in SERVICES
    ]
    split = split_visit(charge_lines, CARD)
    doctor = "003456/TB-CCHN"
    order_time = datetime(2024, 8, 2, 8, 30)
    drug = ChiTietThuoc(
        ma_lk=ma_lk,
        stt=1,
        ma_thuoc=DRUG[0],
        ma_nhom=DRUG[1],
        ten_thuoc=DRUG[2],
        don_vi_tinh=DRUG[3],
        ham_luong="500mg",
        duong_dung="Uống",
        lieu_dung="Ngày uống 3 lần, mỗi lần 1 viên, sau ăn",
        so_dang_ky="VD-12345-10",
        tt_thau="G1;N4;2023;QĐ 123/QĐ-SYT",
        so_luong=DRUG[4],
        don_gia=DRUG[5],
        ma_khoa="K01",
        ma_bac_si=doctor,
        ngay_yl=order_time,
        **split.lines[0].xml_fields(),
    )
    services = tuple(
        ChiTietDvkt(
            ma_lk=ma_lk,
            stt=index,
            ma_dich_vu=code,
            ma_vat_tu=supply,
            ma_nhom=group,
            ten_dich_vu=name if code else "",
            ten_vat_tu=name if supply else "",
            don_vi_tinh=unit,
            so_luong=quantity,
            don_gia_bv=bv,
            don_gia_bh=bh,
            ma_khoa="K01",
            ma_bac_si=doctor,
            ngay_yl=order_time,
            ngay_th_yl=datetime(2024, 8, 2, 9, 0),
            ngay_kq=datetime(2024, 8, 2, 9, 45) if code else None,
            ma_benh=("K80.2;S09.9"),
            **line.xml_fields(),
        )
        for index, ((code, supply, group, name, unit, quantity, bv, bh), line) in enumerate(
            zip(SERVICES, split.lines[1:], strict=True), start=1
        )
    )
    results = (
        ChiTietCls(
            ma_lk=ma_lk,
            stt=1,
            ma_dich_vu="18.0014.0001",
            mo_ta="Túi mật có sỏi <5mm & dịch quanh túi mật ít",
            ket_luan="Sỏi túi mật",
            ngay_kq=datetime(2024, 8, 2, 9, 45),
            ma_bs_doc_kq="004567/TB-CCHN",
        ),
    )
    notes = (
        ChiTietDienBienBenh(
            ma_lk=ma_lk,
            stt=1,
            dien_bien_ls="Bệnh nhân tỉnh, tiếp xúc tốt; đau hạ sườn phải",
            thoi_diem_dbls=datetime(2024, 8, 2, 8, 10),
            nguoi_thuc_hien=doctor,
        ),
    )
    return HoSo(
        tong_hop(ma_lk, **summary_changes), thuoc=(drug,), dvkt=services, cls=results, dien_bien=notes
    )


def files_of(document: bytes) -> list[dict[str, bytes]]:
    root = etree.fromstring(document)
    return [
        {
            f.findtext("LOAIHOSO") or "": base64.b64decode(f.findtext("NOIDUNGFILE") or "")
            for f in hoso.iter("FILEHOSO")
        }
        for hoso in root.iter("HOSO")
    ]


def rewrite(document: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(document)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def replace_file(loai: str, content: bytes) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        for file_element in root.iter("FILEHOSO"):
            if file_element.findtext("LOAIHOSO") == loai:
                file_element.find("NOIDUNGFILE").text = base64.b64encode(content).decode()  # type: ignore[union-attr]

    return change


def test_submission_builds_and_validates() -> None:
    document = build_giamdinhhs([visit()], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    validate(document)
    root = etree.fromstring(document)
    assert root.findtext("THONGTINDONVI/MACSKCB") == MA_CSKCB
    assert root.findtext("THONGTINHOSO/NGAYLAP") == "20240802"
    assert root.findtext("THONGTINHOSO/SOLUONGHOSO") == "1"
    assert root.find("CHUKYDONVI") is not None and len(root.find("CHUKYDONVI")) == 0  # type: ignore[arg-type]
    assert list(files_of(document)[0]) == ["XML1", "XML2", "XML3", "XML4", "XML5"]


def test_inner_files_are_utf8_with_cdata_and_decision_formats() -> None:
    files = build_hoso_files(visit())
    xml1 = files["XML1"]
    assert xml1.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert f"<HO_TEN><![CDATA[{PATIENT}]]></HO_TEN>".encode() in xml1
    summary = etree.fromstring(xml1)
    assert summary.tag == "TONG_HOP"
    assert summary.findtext("HO_TEN") == PATIENT
    assert summary.findtext("NGAY_SINH") == "198803140000"
    assert summary.findtext("NGAY_VAO") == "202408020805"
    assert summary.findtext("GT_THE_TU") == "20240101"
    assert summary.findtext("MA_THE_BHYT") == "HS4350120878811"
    assert b"<MO_TA><![CDATA[T\xc3\xbai m\xe1\xba\xadt c\xc3\xb3 s\xe1\xbb\x8fi <5mm & d" in files["XML4"]
    rows = etree.fromstring(files["XML3"]).findall("DSACH_CHI_TIET_DVKT/CHI_TIET_DVKT")
    assert [row.findtext("MA_LK") for row in rows] == ["LK2408020001"] * 3
    assert rows[2].findtext("NGAY_KQ") == "" and rows[0].findtext("NGAY_KQ") == "202408020945"
    assert etree.fromstring(files["XML2"]).findtext(".//SO_LUONG") == "21"


def test_xml1_totals_are_computed_from_the_lines() -> None:
    summary = etree.fromstring(build_hoso_files(visit())["XML1"])
    totals = {name: int(summary.findtext(name) or -1) for name in ("T_THUOC", "T_VTYT", "T_TONGCHI_BV")}
    assert totals == {"T_THUOC": 26_250, "T_VTYT": 3_000, "T_TONGCHI_BV": 26_250 + 300_000 + 522_000 + 3_000}
    # covered 801,250 at 80%: fund 641,000, co-pay 160,250; price difference 50,000 paid outright
    assert int(summary.findtext("T_TONGCHI_BH") or -1) == 801_250
    assert int(summary.findtext("T_BHTT") or -1) == 641_000
    assert int(summary.findtext("T_BNCCT") or -1) == 160_250
    assert int(summary.findtext("T_BNTT") or -1) == 50_000


def test_given_totals_are_checked() -> None:
    good = visit(t_bhtt=641_000, t_tongchi_bv=851_250)
    validate(build_giamdinhhs([good], ma_cskcb=MA_CSKCB, ngay_lap=DAY))
    with pytest.raises(TotalsMismatch) as info:
        build_giamdinhhs([visit(t_bhtt=641_001)], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    assert (info.value.expected, info.value.given) == (641_000, 641_001)


def test_line_whose_parts_do_not_add_up_is_refused() -> None:
    hoso = visit()
    broken = dataclasses.replace(hoso.thuoc[0], t_bntt=hoso.thuoc[0].t_bntt + 1)
    with pytest.raises(TotalsMismatch, match="XML2 line 1"):
        build_hoso_files(dataclasses.replace(hoso, thuoc=(broken,)))


def test_lines_must_share_the_visit_ma_lk() -> None:
    hoso = visit()
    stray = dataclasses.replace(hoso.cls[0], ma_lk="LK2408020002")
    with pytest.raises(Xml130Error, match="MA_LK"):
        HoSo(hoso.tong_hop, cls=(stray,))


def test_visit_of_another_facility_is_refused() -> None:
    with pytest.raises(Xml130Error, match="facility"):
        build_giamdinhhs([visit(ma_cskcb="35002")], ma_cskcb=MA_CSKCB, ngay_lap=DAY)


def test_free_text_survives_markup_and_the_cdata_terminator() -> None:
    text = "Theo dõi ]]> thêm <b>&amp;</b>"
    document = build_giamdinhhs([visit(chan_doan_rv=text)], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    validate(document)
    assert etree.fromstring(files_of(document)[0]["XML1"]).findtext("CHAN_DOAN_RV") == text


def test_money_must_be_integers() -> None:
    hoso = visit()
    floating = dataclasses.replace(hoso.dvkt[0], don_gia_bv=300_000.0)  # type: ignore[arg-type]
    with pytest.raises(Xml130Error, match="DON_GIA_BV"):
        build_hoso_files(dataclasses.replace(hoso, dvkt=(floating, *hoso.dvkt[1:])))
    fractional = dataclasses.replace(hoso.dvkt[0], so_luong=1.5)  # type: ignore[arg-type]
    with pytest.raises(Xml130Error, match="SO_LUONG"):
        build_hoso_files(dataclasses.replace(hoso, dvkt=(fractional,)))


def test_text_that_xml_cannot_carry_is_refused() -> None:
    with pytest.raises(Xml130Error, match="HO_TEN"):
        build_hoso_files(visit(ho_ten="Trần Thị\x00 Ngọc"))


def test_several_visits_in_one_submission() -> None:
    document = build_giamdinhhs([visit(), visit("LK2408020002")], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    validate(document)
    assert etree.fromstring(document).findtext("THONGTINHOSO/SOLUONGHOSO") == "2"
    assert [etree.fromstring(f["XML1"]).findtext("MA_LK") for f in files_of(document)] == [
        "LK2408020001",
        "LK2408020002",
    ]


def test_birth_year_only_and_aware_times() -> None:
    hoso = visit(ngay_sinh=1951, ngay_vao=datetime(2024, 8, 2, 1, 5, tzinfo=UTC))
    summary = etree.fromstring(build_hoso_files(hoso)["XML1"])
    assert summary.findtext("NGAY_SINH") == "195100000000"
    assert summary.findtext("NGAY_VAO") == "202408020805"  # 01:05 UTC is 08:05 in Vietnam
    validate(build_giamdinhhs([hoso], ma_cskcb=MA_CSKCB, ngay_lap=DAY))


@pytest.mark.parametrize(
    ("changes", "element"),
    [
        ({"gioi_tinh": 7}, "GIOI_TINH"),
        ({"ma_the_bhyt": ("HS435012087881",)}, "MA_THE_BHYT"),
        ({"ma_benh_chinh": "viêm họng"}, "MA_BENH_CHINH"),
        ({"so_cccd": "0351880123456789"}, "SO_CCCD"),
        ({"ma_dantoc": ""}, "MA_DANTOC"),
        ({"ho_ten": ""}, "HO_TEN"),
        ({"thang_qt": 13}, "THANG_QT"),
        ({"ma_loai_kcb": "1"}, "MA_LOAI_KCB"),
        ({"ma_benh_kt": tuple(f"J{i:02d}" for i in range(30))}, "MA_BENH_KT"),
    ],
)
def test_invalid_summary_is_rejected_by_validation(changes: dict[str, Any], element: str) -> None:
    document = build_giamdinhhs([visit(**changes)], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    with pytest.raises(Xml130ValidationError) as info:
        validate(document)
    assert any(element in error for error in info.value.errors), info.value.errors


def test_invalid_line_is_rejected_by_validation() -> None:
    hoso = visit()
    line = hoso.dvkt[0]
    over = dataclasses.replace(line, muc_huong=120, tyle_tt_dv=150)
    document = build_giamdinhhs(
        [dataclasses.replace(hoso, dvkt=(over, *hoso.dvkt[1:]))], ma_cskcb=MA_CSKCB, ngay_lap=DAY
    )
    with pytest.raises(Xml130ValidationError) as info:
        validate(document)
    reported = " ".join(info.value.errors)
    assert "MUC_HUONG" in reported and "TYLE_TT_DV" in reported


def test_tampered_total_inside_a_file_is_rejected() -> None:
    document = build_giamdinhhs([visit()], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    xml1 = files_of(document)[0]["XML1"].replace(b"<T_BHTT>641000</T_BHTT>", b"<T_BHTT>700000</T_BHTT>")
    with pytest.raises(Xml130ValidationError, match="T_BHTT"):
        validate(rewrite(document, replace_file("XML1", xml1)))


def test_tampered_line_amount_is_rejected() -> None:
    document = build_giamdinhhs([visit()], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    xml2 = files_of(document)[0]["XML2"].replace(b"<T_BHTT>21000</T_BHTT>", b"<T_BHTT>26250</T_BHTT>")
    assert xml2 != files_of(document)[0]["XML2"]
    with pytest.raises(Xml130ValidationError, match="XML2 line 1"):
        validate(rewrite(document, replace_file("XML2", xml2)))


def test_wrong_ma_lk_inside_a_file_is_rejected() -> None:
    document = build_giamdinhhs([visit()], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    xml5 = files_of(document)[0]["XML5"].replace(b"LK2408020001", b"LK2408020009")
    with pytest.raises(Xml130ValidationError, match="LK2408020009"):
        validate(rewrite(document, replace_file("XML5", xml5)))


def _set_text(path: str, text: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        root.find(path).text = text  # type: ignore[union-attr]

    return change


def _drop_first_file(root: etree._Element) -> None:
    first = root.find(".//FILEHOSO")
    assert first is not None
    first.getparent().remove(first)  # type: ignore[union-attr]


def _duplicate_last_file(root: etree._Element) -> None:
    hoso = root.find(".//HOSO")
    assert hoso is not None
    hoso.append(etree.fromstring(etree.tostring(hoso[-1])))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_text("THONGTINHOSO/SOLUONGHOSO", "2"), "SOLUONGHOSO"),
        (_set_text("THONGTINHOSO/NGAYLAP", "20241302"), "NGAYLAP"),
        (_set_text("THONGTINDONVI/MACSKCB", "BV01"), "MACSKCB"),
        (_set_text(".//FILEHOSO[5]/LOAIHOSO", "XML16"), "LOAIHOSO"),
        (_set_text(".//FILEHOSO[5]/LOAIHOSO", "XML7"), "HOSO 1 XML7"),
        (_set_text(".//FILEHOSO[2]/NOIDUNGFILE", "bm90IHhtbA=="), "XML2"),  # base64 of "not xml"
        (_set_text(".//FILEHOSO[2]/NOIDUNGFILE", "@@@"), "NOIDUNGFILE"),
        (_drop_first_file, "no XML1"),
        (_duplicate_last_file, "twice"),
    ],
)
def test_broken_wrapper_is_rejected(change: Callable[[etree._Element], None], message: str) -> None:
    document = build_giamdinhhs([visit()], ma_cskcb=MA_CSKCB, ngay_lap=DAY)
    with pytest.raises(Xml130ValidationError, match=message):
        validate(rewrite(document, change))


def test_not_xml_is_rejected() -> None:
    with pytest.raises(Xml130ValidationError):
        validate(b"<GIAMDINHHS><THONGTINDONVI>")


def test_xsd_element_order_matches_the_records() -> None:
    """The shipped XSDs are the decision's tables (regenerated from qd130_tables.csv), and every record
    lists its table's elements in the decision's order."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    for loai, spec in tables().items():
        text = (
            resources.files("hospital.billing.domain.xml130")
            .joinpath("xsd", xsd_name(loai))
            .read_text("utf-8")
        )
        assert text == render_xsd(spec), (
            f"{xsd_name(loai)} is stale: python -m hospital.billing.domain.xml130.tables"
        )
        record_type = next(
            t for t in etree.fromstring(text.encode()).iter(f"{xs}complexType") if t.get("name") == "record"
        )
        declared = [
            element.get("name") for element in record_type.find(f"{xs}sequence").findall(f"{xs}element")
        ]
        assert declared == list(spec.names)
        if loai in RECORDS:
            assert declared == [f.name.upper() for f in dataclasses.fields(RECORDS[loai])], loai
    assert len(table("XML1").elements) == 66  # 65 rows of QĐ 130 + NHOM_MAU inserted by QĐ 4750
    assert table("XML3").names[27:30] == ("T_BNTT", "T_BNCCT", "T_BHTT")


def test_treatment_days_count_vietnam_calendar_days() -> None:
    """An inpatient stay opened at 06:30 in Vietnam (23:30 UTC the day before) and closed at 07:10 three
    days later (00:10 UTC) is 4 days (NGAY_RA day - NGAY_VAO day + 1, both in Vietnam time), not 5."""
    opened = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)  # 4 Dec 06:30 in Vietnam
    closed = datetime(2026, 12, 7, 0, 10, tzinfo=UTC)  # 7 Dec 07:10 in Vietnam
    summary = tong_hop(ma_loai_kcb="03", ngay_vao=opened, ngay_ra=closed)
    assert treatment_days(summary) == 4
    assert treatment_days(tong_hop(ma_loai_kcb="01", ngay_vao=opened, ngay_ra=closed)) == 0
