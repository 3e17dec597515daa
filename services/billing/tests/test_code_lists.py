"""The national code lists a claim is checked against, the rule version chosen by the visit's day (the
rules before Law 51/2024 and after it, on both sides of each date), and a stay whose card changed: each
line paid under the card of its day. Domain only: no server."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from importlib import resources

import pytest
from lxml import etree

from hospital.billing.domain.insurance import (
    DEFAULT_RULES,
    ChargeLine,
    InsuranceCard,
    Route,
    facility_rules,
    split_visit,
)
from hospital.billing.domain.xml130 import ChiTietDvkt, ChiTietThuoc, build_hoso_files
from hospital.billing.domain.xml130.assemble import CardUse, ClaimVisit, ClinicalInputs, assemble
from hospital.billing.domain.xml130.codelists import (
    DEPARTMENTS,
    DOITUONG_KCB_2025,
    ETHNIC_GROUPS,
    PROVINCES_2004,
    PROVINCES_2025,
    code_problems,
    doituong_table,
    ethnic_code,
    national_code_problem,
    occupation_code,
    province_code,
)
from hospital.billing.domain.xml130.codes import KET_QUA_DTRI, MA_LOAI_KCB, MA_LOAI_RV, doituong_kcb
from hospital.billing.domain.xml130.tables import xsd_name

LAW51 = date(2025, 7, 1)
CARD_4 = InsuranceCard("HS4350120878811", date(2026, 1, 1), date(2026, 12, 31))  # 80%
CARD_3 = InsuranceCard("HT3350120878811", date(2026, 3, 10), date(2027, 3, 9))  # 95%, issued during the stay


def test_the_lists_have_every_value_of_their_tables() -> None:
    assert len(DOITUONG_KCB_2025) == 27 and "7.1" not in DOITUONG_KCB_2025  # the appendix skips 7.1
    assert {"1.1", "1.3", "1.14", "1.15", "1.18", "2", "3.1", "3.2", "3.3", "9", "10"} <= set(
        DOITUONG_KCB_2025
    )
    assert len(DEPARTMENTS) == 47 and sorted(DEPARTMENTS) == [f"K{i:02d}" for i in range(1, 48)]
    assert len(ETHNIC_GROUPS) == 54 and ETHNIC_GROUPS["01"] == "Kinh" and ETHNIC_GROUPS["54"] == "Rơ măm"
    assert len(PROVINCES_2004) == 63 and len(PROVINCES_2025) == 34
    assert set(PROVINCES_2025) <= set(PROVINCES_2004)  # each merged province keeps one former code
    assert sorted(MA_LOAI_KCB) == [f"{i:02d}" for i in range(1, 11)]  # 09: an inpatient stay under 4 hours
    assert sorted(MA_LOAI_RV) == [1, 2, 3, 4, 5] and sorted(KET_QUA_DTRI) == list(range(1, 9))
    assert province_code("1") == "001" and province_code("35") == "035" and province_code("") == ""
    # what reception writes, to the national codes
    assert [ethnic_code(t) for t in ("Kinh", "Dân tộc Tày", "khơ me", "06", "Người Mường", "Pháp", "")] == [
        "01",
        "02",
        "05",
        "06",
        "06",
        "",
        "",
    ]
    assert (occupation_code("22120"), occupation_code("Giáo viên"), occupation_code("2212")) == (
        "22120",
        "",
        "",
    )


@pytest.mark.parametrize(
    ("element", "code", "ok"),
    [
        ("MA_DICH_VU", "22.0121.1370", True),  # technical service: chapter.technique.price code
        ("MA_DICH_VU", "02.1896", True),  # examination
        ("MA_DICH_VU", "K03.1919", True),  # bed-day
        ("MA_DICH_VU", "18.0070.0001_GT", True),
        ("MA_DICH_VU", "XN-CTM", False),  # the hospital's own code, not mapped
        ("MA_DICH_VU", "", False),
        ("MA_DICH_VU", "22.121.1370", False),
        ("MA_THUOC", "40.17", True),
        ("MA_THUOC", "40.17+40.677", True),  # a preparation the facility makes
        ("MA_THUOC", "T-AMOX500", False),
        ("MA_VAT_TU", "N03.02.070", True),
        ("MA_VAT_TU", "VT-BT5", False),
    ],
)
def test_national_codes_of_price_items(element: str, code: str, ok: bool) -> None:
    problem = national_code_problem(element, code)
    assert (problem is None) is ok, problem
    if not ok:
        assert element in problem  # type: ignore[operator]


def _visit(**changes: object) -> ClaimVisit:
    values: dict[str, object] = dict(
        ma_lk="KB2607010001",
        facility_code="35001",
        facility_head_id="3599001234",
        patient_code="BN00054321",
        full_name="Đặng Thị Mỹ Duyên",
        birth=date(1990, 4, 12),
        sex=2,
        cccd="035190004321",
        cards=(CardUse("HS4350120878811", "35001", date(2026, 1, 1), date(2026, 12, 31)),),
        ma_doituong_kcb="1.1",
        opened_at=datetime(2026, 7, 1, 8, 0),
        closed_at=datetime(2026, 7, 1, 10, 30),
        diagnosis_code="J02.9",
        diagnosis_text="Viêm họng cấp",
        departments=("K01",),
        province_code="035",
        claim_year=2026,
        claim_month=7,
    )
    values.update(changes)
    return ClaimVisit(**values)  # type: ignore[arg-type]


def _lines(khoa: str = "K01", service: str = "02.1896", drug: str = "40.17") -> tuple[list, list]:
    at = datetime(2026, 7, 1, 8, 30)
    money = split_visit([ChargeLine(at.date(), True, 100, 100)] * 2, CARD_4).lines
    common = dict(ma_lk="KB2607010001", so_luong=1, ma_khoa=khoa, ma_bac_si="003456/HNA-CCHN", ngay_yl=at)
    thuoc = [
        ChiTietThuoc(
            stt=1,
            ma_nhom=4,
            ma_thuoc=drug,
            ten_thuoc="Oxy",
            don_vi_tinh="lít",
            don_gia=100,
            **common,
            **money[0].xml_fields(),
        )
    ]
    dvkt = [
        ChiTietDvkt(
            stt=1,
            ma_nhom=13,
            ma_dich_vu=service,
            ten_dich_vu="Khám Nội",
            don_vi_tinh="Lần",
            don_gia_bv=100,
            don_gia_bh=100,
            **common,
            **money[1].xml_fields(),
        )
    ]
    return thuoc, dvkt


def _xml1(hoso: object) -> tuple[etree._Element, etree.XMLSchema]:
    """XML1 of ``hoso`` and the decision's schema of it (structural: the form of every element; the
    shipped XSD also needs the EMR's elements filled)."""
    files = build_hoso_files(hoso)  # type: ignore[arg-type]
    return etree.fromstring(files["XML1"]), etree.XMLSchema(etree.fromstring(_structural_xsd("XML1")))


def test_a_claim_with_national_codes_passes_and_each_wrong_code_is_named() -> None:
    thuoc, dvkt = _lines()
    inputs = ClinicalInputs(ma_dantoc="01", ma_quoctich="000", ma_nghe_nghiep="00000", maxa_cu_tru="12442")
    good = assemble(_visit(), thuoc, dvkt, inputs)
    assert code_problems(good, doituong=DOITUONG_KCB_2025) == []

    thuoc, dvkt = _lines(khoa="NTH", service="XN-CTM", drug="T-AMOX500")
    bad = assemble(
        _visit(ma_doituong_kcb="3", departments=("NTH",), province_code="35"),
        thuoc,
        dvkt,
        dataclasses.replace(inputs, ma_dantoc="77", maxa_cu_tru="1244"),
    )
    problems = code_problems(bad, doituong=DOITUONG_KCB_2025)
    for expected in (
        "XML1.MA_DOITUONG_KCB '3'",  # the pre-2025 self-referred code is not in QĐ 3276's table
        "XML1.MA_KHOA 'NTH'",
        "XML1.MA_DANTOC '77'",
        "XML1.MATINH_CU_TRU '35'",
        "XML1.MAXA_CU_TRU '1244'",
        "XML2[1].MA_KHOA 'NTH'",
        "XML2[1].MA_THUOC: 'T-AMOX500'",
        "XML3[1].MA_KHOA 'NTH'",
        "XML3[1].MA_DICH_VU: 'XN-CTM'",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    # the schema refuses the forms too: a department that is not K.., a 2-digit province
    root, schema = _xml1(bad)
    assert not schema.validate(root)
    assert {"MA_KHOA", "MATINH_CU_TRU"} <= {e.path.rsplit("/", 1)[-1] for e in schema.error_log}  # type: ignore[union-attr]
    root, schema = _xml1(good)
    assert schema.validate(root), schema.error_log


@pytest.mark.parametrize(
    ("day", "inpatient", "level", "tier", "code"),
    [
        (date(2025, 6, 30), False, "basic", "provincial", "3"),  # the day before Law 51's rules
        (date(2025, 7, 1), False, "basic", "provincial", "1.14"),
        (date(2025, 7, 1), True, "basic", "provincial", "1.15"),
        (date(2025, 7, 1), False, "specialised", "provincial", "1.18"),
        (date(2025, 7, 1), True, "specialised", "provincial", "3.2"),
        (date(2025, 7, 1), True, "specialised", "central", "3.1"),
        (date(2025, 7, 1), False, "basic", "district", "3.3"),
    ],
)
def test_self_referred_code_by_the_visits_day_and_the_facilitys_level(
    day: date, inpatient: bool, level: str, tier: str, code: str
) -> None:
    law51 = day >= LAW51
    assert (
        doituong_kcb("self_referred", inpatient=inpatient, law51=law51, level=level, former_tier=tier) == code
    )
    assert code in doituong_table(day, LAW51)
    for route, same in (("registered", "1.1"), ("referred", "1.3"), ("emergency", "2")):
        assert doituong_kcb(route, inpatient=inpatient, law51=law51, level=level, former_tier=tier) == same


def _self_referred(day: date, *, inpatient: bool = False, rules: object = None) -> object:
    line = ChargeLine(day, True, 500_000, 500_000)
    return split_visit(
        [line], CARD_4, route=Route.SELF_REFERRED, inpatient=inpatient, rules=rules or facility_rules()
    ).lines[0]


def test_law51_shares_on_both_sides_of_each_date() -> None:
    # a provincial general hospital (basic level, formerly provincial): outpatient not paid until
    # 30 June 2026, half of the card's benefit from 1 July 2026; inpatient 100% of it throughout
    before, after = _self_referred(date(2026, 6, 30)), _self_referred(date(2026, 7, 1))
    assert (before.t_bhtt, before.t_bntt) == (0, 500_000)
    assert (after.muc_huong, after.t_bhtt, after.t_bncct) == (40, 200_000, 300_000)  # 80% x 50%
    assert _self_referred(date(2026, 6, 30), inpatient=True).t_bhtt == 400_000
    # a specialised hospital that was central: 40% of the benefit for an inpatient stay, outpatient 0
    central = facility_rules("specialised", "central")
    assert _self_referred(date(2026, 7, 1), inpatient=True, rules=central).muc_huong == 32
    assert _self_referred(date(2026, 7, 1), rules=central).t_bhtt == 0
    # the switch's day is a setting: moved to 1 December 2026, a 1 July 2026 visit keeps the old rules
    later = facility_rules(law51_from=date(2026, 12, 1))
    assert _self_referred(date(2026, 7, 1), rules=later).t_bhtt == 0
    assert _self_referred(date(2026, 12, 1), rules=later).t_bhtt == 200_000
    # the base salary stays the one in force each day (the 15% threshold is unchanged by the switch)
    assert facility_rules().at(date(2026, 7, 1)).base_salary == DEFAULT_RULES.at(date(2026, 7, 1)).base_salary


def test_each_line_is_paid_under_the_card_of_its_day() -> None:
    days = [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)]
    lines = [ChargeLine(d, True, 1_000_000, 1_000_000) for d in days]
    split = split_visit(lines, (CARD_4, CARD_3), inpatient=True)
    assert [ln.muc_huong for ln in split.lines] == [80, 80, 95, 95]  # the new card from its first day
    assert [ln.t_bhtt for ln in split.lines] == [800_000, 800_000, 950_000, 950_000]
    # a day no card covers is not insured
    gap = InsuranceCard("HT3350120878811", date(2026, 3, 11), date(2027, 3, 10))
    short = InsuranceCard("HS4350120878811", date(2026, 1, 1), date(2026, 3, 9))
    split = split_visit(lines, (short, gap), inpatient=True)
    assert [ln.muc_huong for ln in split.lines] == [80, 80, 0, 95]
    assert split.lines[2].t_bntt == 1_000_000


def test_every_card_of_the_stay_is_in_the_claim_in_order() -> None:
    first = CardUse("HS4350120878811", "35001", date(2026, 1, 1), date(2026, 12, 31), date(2021, 1, 1))
    second = CardUse("HT3350120878811", "35002", date(2026, 3, 10), date(2027, 3, 9), date(2021, 1, 1))
    thuoc, dvkt = _lines()
    hoso = assemble(_visit(cards=(first, second)), thuoc, dvkt)
    root, schema = _xml1(hoso)
    assert schema.validate(root), schema.error_log
    assert root.findtext("MA_THE_BHYT") == "HS4350120878811;HT3350120878811"
    assert root.findtext("MA_DKBD") == "35001;35002"
    assert root.findtext("GT_THE_TU") == "20260101;20260310"
    assert root.findtext("GT_THE_DEN") == "20261231;20270309"
    # the shipped XSD (the elements BHXH review needs) takes the ;-joined cards too
    path = resources.files("hospital.billing.domain.xml130").joinpath("xsd", xsd_name("XML1"))
    shipped = etree.XMLSchema(etree.fromstring(path.read_bytes()))
    shipped.validate(root)
    assert not [
        e for e in shipped.error_log if any(n in e.path for n in ("MA_THE_BHYT", "MA_DKBD", "GT_THE"))
    ]


def _structural_xsd(loai: str) -> bytes:
    from hospital.billing.domain.xml130.tables import render_xsd, table

    return render_xsd(table(loai), strict=False).encode()


def test_a_ward_segment_is_cut_where_a_new_card_starts() -> None:
    from hospital.billing.domain.pricing import BedLine, dated_lines, segment_lines

    start, end = date(2026, 3, 5), date(2026, 3, 12)
    lines = segment_lines(start, end, "GB-NOI2", None, last_segment=True)
    assert dated_lines(lines, start, end, last_segment=True) == [(lines[0], None)]  # no change: as before
    cut = dated_lines(lines, start, end, last_segment=True, changes=[date(2026, 3, 10)])
    assert cut == [
        (BedLine("GB-NOI2", 5, False, "bed-20260309"), date(2026, 3, 9)),  # 5th..9th under the old card
        (BedLine("GB-NOI2", 3, False, "bed"), None),  # 10th..12th under the new one
    ]
    # a transfer day's halves stay on their day; the ward's days are cut
    lines = segment_lines(start, end, "GB-NOI2", "GB-HSTC", last_segment=False, day_low_class="GB-NOI2")
    cut = dated_lines(lines, start, end, last_segment=False, changes=[date(2026, 3, 8)])
    assert [(ln.key, ln.days, day) for ln, day in cut] == [
        ("bed-first", Decimal("0.5"), start),
        ("bed-first-low", Decimal("0.5"), start),
        ("bed-20260307", 2, date(2026, 3, 7)),  # 6th, 7th
        ("bed", 4, None),  # 8th..11th (the 12th goes with the next segment)
    ]
