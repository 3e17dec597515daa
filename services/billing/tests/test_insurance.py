"""BHYT split per line and per visit: benefit levels, card validity, prices, the 15% rule, exact sums."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from hospital.billing.domain.insurance import (
    BASE_SALARY_FROM_2024_07_01,
    DEFAULT_RULES,
    BenefitRules,
    ChargeLine,
    InsuranceCard,
    InsuranceError,
    InvalidCardNumber,
    LineSplit,
    Route,
    RoutePolicy,
    RuleSchedule,
    split_visit,
)

DAY = date(2024, 8, 2)


def card(
    level: int, *, valid_from: date = date(2024, 1, 1), valid_to: date = date(2024, 12, 31)
) -> InsuranceCard:
    return InsuranceCard(f"HS{level}010120878811", valid_from, valid_to)


def service(hospital: int, insurance: int | None = None, **kwargs: object) -> ChargeLine:
    return ChargeLine(
        service_date=kwargs.pop("service_date", DAY),  # type: ignore[arg-type]
        covered=kwargs.pop("covered", True),  # type: ignore[arg-type]
        hospital_unit_price=hospital,
        insurance_unit_price=hospital if insurance is None else insurance,
        **kwargs,  # type: ignore[arg-type]
    )


def only_line(lines: list[ChargeLine], insurance_card: InsuranceCard | None, **kwargs: object) -> LineSplit:
    result = split_visit(lines, insurance_card, **kwargs)  # type: ignore[arg-type]
    return result.lines[0]


def test_card_number_fields() -> None:
    insurance_card = InsuranceCard("HS4010120878811", date(2024, 1, 1), date(2024, 12, 31))
    assert (insurance_card.group, insurance_card.benefit_level, insurance_card.province_code) == (
        "HS",
        4,
        "01",
    )
    assert insurance_card.benefit_percent == 80
    assert InsuranceCard("TE1790000012345", DAY, DAY).benefit_percent == 100  # newborn temporary card


@pytest.mark.parametrize(
    "number", ["HS401012087881", "HS6010120878811", "hs4010120878811", "H14010120878811", "HS4A10120878811"]
)
def test_bad_card_numbers(number: str) -> None:
    with pytest.raises(InvalidCardNumber):
        InsuranceCard(number, DAY, DAY)


def test_card_ending_before_it_starts() -> None:
    with pytest.raises(InsuranceError):
        InsuranceCard("HS4010120878811", DAY, DAY - timedelta(days=1))


@pytest.mark.parametrize(
    ("level", "fund", "copay"),
    [(1, 500_000, 0), (2, 500_000, 0), (3, 475_000, 25_000), (4, 400_000, 100_000), (5, 500_000, 0)],
)
def test_benefit_levels(level: int, fund: int, copay: int) -> None:
    line = only_line([service(500_000)], card(level))
    assert line.muc_huong == {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}[level]
    assert (line.thanh_tien_bv, line.thanh_tien_bh) == (500_000, 500_000)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (fund, copay, 0)


@pytest.mark.parametrize("service_date", [date(2025, 1, 1), date(2023, 12, 31)])
def test_card_not_valid_on_the_service_date(service_date: date) -> None:
    line = only_line([service(500_000, service_date=service_date)], card(4))
    assert (line.thanh_tien_bv, line.thanh_tien_bh, line.muc_huong) == (500_000, 0, 0)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (0, 0, 500_000)


def test_card_expiring_during_a_stay() -> None:
    stay = [
        service(400_000, service_date=date(2024, 12, 31)),
        service(400_000, service_date=date(2025, 1, 1)),
    ]
    first, second = split_visit(stay, card(4), inpatient=True).lines
    assert (first.t_bhtt, first.t_bncct, first.t_bntt) == (320_000, 80_000, 0)
    assert (second.t_bhtt, second.t_bncct, second.t_bntt) == (0, 0, 400_000)


def test_no_card_pays_everything() -> None:
    line = only_line([service(500_000)], None)
    assert (line.thanh_tien_bh, line.t_bhtt, line.t_bntt) == (0, 0, 500_000)


def test_uncovered_service() -> None:
    line = only_line([service(500_000, covered=False)], card(1))
    assert (line.pham_vi, line.tyle_tt_bh, line.muc_huong) == (2, 0, 0)
    assert (line.thanh_tien_bv, line.thanh_tien_bh) == (500_000, 0)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (0, 0, 500_000)


def test_hospital_price_above_insurance_price() -> None:
    # service on demand: the patient pays the 100,000 difference outright, then 20% of the rest
    line = only_line([service(600_000, 500_000)], card(4))
    assert (line.thanh_tien_bv, line.thanh_tien_bh) == (600_000, 500_000)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (400_000, 100_000, 100_000)


def test_hospital_price_below_insurance_price_caps_the_fund() -> None:
    line = only_line([service(450_000, 500_000)], card(4))
    assert (line.thanh_tien_bv, line.thanh_tien_bh, line.t_bhtt, line.t_bntt) == (
        450_000,
        450_000,
        360_000,
        0,
    )


def test_payment_ratio_of_a_drug() -> None:
    # TYLE_TT_BH 50: the fund recognises half the price, the other half is paid outright
    line = only_line([service(20_000, quantity=40, payment_ratio=50)], card(3))
    assert (line.thanh_tien_bv, line.thanh_tien_bh, line.tyle_tt_bh) == (800_000, 400_000, 50)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (380_000, 20_000, 400_000)


def test_service_ratio_applies_to_both_prices() -> None:
    # TYLE_TT_DV 50: second procedure in the same session, charged and covered at half price
    line = only_line([service(2_000_000, 1_800_000, service_ratio=50)], card(4))
    assert (line.thanh_tien_bv, line.thanh_tien_bh) == (1_000_000, 900_000)
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (720_000, 180_000, 100_000)


def test_rounding_rule() -> None:
    # 0.5 x 1,235 = 617.5 -> 618; the fund's 95% of 618 = 587.1 -> 587; the co-pay is the rest
    line = only_line([service(1_235, quantity=Decimal("0.5")), service(500_000)], card(3))
    assert (line.thanh_tien_bv, line.thanh_tien_bh, line.t_bhtt, line.t_bncct) == (618, 618, 587, 31)
    # 95% of 1,001 = 950.95 -> 951; 95% of 1,010 = 959.5 -> 960 (halves go up)
    assert only_line([service(1_001), service(500_000)], card(3)).t_bhtt == 951
    assert only_line([service(1_010), service(500_000)], card(3)).t_bhtt == 960


def test_small_visit_below_15_percent_of_base_salary_is_fully_paid() -> None:
    # 15% of 2,340,000 = 351,000: a visit of 350,000 is paid 100% even for a level-4 card
    result = split_visit([service(200_000), service(150_000)], card(4))
    assert result.small_visit_rule_applied is True
    assert [line.muc_huong for line in result.lines] == [100, 100]
    assert (result.t_bhtt, result.t_bncct, result.t_bntt) == (350_000, 0, 0)


def test_small_visit_threshold_is_strict() -> None:
    result = split_visit([service(351_000)], card(4))
    assert result.small_visit_rule_applied is False
    assert (result.t_bhtt, result.t_bncct) == (280_800, 70_200)


def test_small_visit_uses_the_covered_cost_and_keeps_the_price_difference() -> None:
    # covered cost 300,000 < 351,000 although the hospital charges 420,000 and one line is not covered
    result = split_visit([service(350_000, 300_000), service(70_000, covered=False)], card(4))
    assert result.small_visit_rule_applied is True
    assert (result.t_tongchi_bv, result.t_tongchi_bh) == (420_000, 300_000)
    assert (result.t_bhtt, result.t_bncct, result.t_bntt) == (300_000, 0, 120_000)


def test_base_salary_is_a_parameter() -> None:
    # under the 1,800,000 base salary (2023) the threshold was 270,000
    assert split_visit([service(300_000)], card(4), base_salary=1_800_000).small_visit_rule_applied is False
    assert split_visit([service(300_000)], card(4)).small_visit_rule_applied is True
    assert BASE_SALARY_FROM_2024_07_01 == 2_340_000


def test_self_referred_outpatient_is_not_covered_by_default() -> None:
    line = only_line([service(500_000)], card(4), route=Route.SELF_REFERRED)
    assert (line.thanh_tien_bh, line.muc_huong, line.t_bntt) == (0, 0, 500_000)


def test_self_referred_inpatient_keeps_the_benefit_level_but_not_the_small_visit_rule() -> None:
    result = split_visit([service(300_000)], card(4), route=Route.SELF_REFERRED, inpatient=True)
    assert result.small_visit_rule_applied is False
    assert (result.lines[0].muc_huong, result.t_bhtt, result.t_bncct) == (80, 240_000, 60_000)


@pytest.mark.parametrize("route", [Route.REFERRED, Route.EMERGENCY])
def test_referral_and_emergency_count_as_correct_route(route: Route) -> None:
    assert only_line([service(500_000)], card(4), route=route).t_bhtt == 400_000
    assert split_visit([service(300_000)], card(4), route=route).small_visit_rule_applied is True


def test_custom_route_policy() -> None:
    policy = RoutePolicy(self_referred_outpatient_percent=50)
    line = only_line([service(500_000)], card(4), route=Route.SELF_REFERRED, policy=policy)
    assert (line.muc_huong, line.t_bhtt, line.t_bncct) == (40, 200_000, 300_000)


def test_a_benefit_that_is_not_a_whole_percent_is_computed() -> None:
    """95% (level 3) x 50% (self-referred outpatient) = 47.5%: computed exactly, not refused."""
    line = only_line([service(500_000)], card(3), route=Route.SELF_REFERRED, policy=RoutePolicy(100, 50))
    assert line.muc_huong == Decimal("47.5")
    assert (line.t_bhtt, line.t_bncct, line.t_bntt) == (237_500, 262_500, 0)
    odd = only_line([service(123_457)], card(3), route=Route.SELF_REFERRED, policy=RoutePolicy(30, 30))
    assert odd.muc_huong == Decimal("28.5") and odd.t_bhtt == 35_185  # 35,185.245 rounded half-up
    assert odd.t_bhtt + odd.t_bncct + odd.t_bntt == odd.thanh_tien_bv


def test_claim_amounts_keep_two_decimals_and_unit_prices_three() -> None:
    """A tender drug price of 1,234.567 VND x 1.333 (self-referred inpatient: no 15% rule): the claim
    rounds THANH_TIEN_BV, THANH_TIEN_BH and T_BHTT to 2 decimals (QĐ 130), the invoice to whole VND;
    both add up exactly."""
    line = ChargeLine(DAY, True, Decimal("1234.567"), Decimal("1234.567"), Decimal("1.333"), payment_ratio=50)
    claim = split_visit([line], card(4), inpatient=True, route=Route.SELF_REFERRED, places=2).lines[0]
    assert (claim.thanh_tien_bv, claim.thanh_tien_bh) == (Decimal("1645.68"), Decimal("822.84"))
    assert (claim.t_bhtt, claim.t_bncct, claim.t_bntt) == (
        Decimal("658.27"),
        Decimal("164.57"),
        Decimal("822.84"),
    )
    invoice = split_visit([line], card(4), inpatient=True, route=Route.SELF_REFERRED).lines[0]
    assert (invoice.thanh_tien_bv, invoice.thanh_tien_bh, invoice.t_bhtt) == (1646, 823, 658)
    with pytest.raises(InsuranceError, match="3 decimals"):
        ChargeLine(DAY, True, Decimal("1.2345"), 1)
    with pytest.raises(InsuranceError, match="decimal places"):
        split_visit([line], card(4), places=3)


def test_high_cost_service_is_capped_at_40_months_of_base_salary_for_levels_2_to_4() -> None:
    """A 120,000,000 VND procedure (a high-cost technical service), cap 40 x 2,340,000 = 93,600,000."""
    cap = 40 * 2_340_000
    surgery = service(120_000_000, high_cost=True)
    for level, share in ((2, 100), (3, 95), (4, 80)):
        line = only_line([surgery], card(level), inpatient=True)
        assert line.t_bhtt == cap * share // 100, level
        assert line.t_bhtt + line.t_bncct == line.thanh_tien_bh == 120_000_000
    assert only_line([surgery], card(1), inpatient=True).t_bhtt == 120_000_000  # level 1: no cap
    assert only_line([service(120_000_000)], card(2), inpatient=True).t_bhtt == 120_000_000  # not high-cost
    # the cap follows the base salary of the day: 40 x 1,800,000 before 1 July 2024
    june = InsuranceCard("HS2010120878811", date(2024, 1, 1), date(2024, 12, 31))
    early = split_visit([service(120_000_000, high_cost=True, service_date=date(2024, 6, 30))], june).lines[0]
    assert early.t_bhtt == 40 * 1_800_000


def test_a_stay_across_a_rule_change_is_split_on_the_day_of_the_change() -> None:
    """Self-referred inpatient at a provincial hospital: 60% of the benefit until 31 December 2020, 100%
    from 1 January 2021 (DEFAULT_RULES); each line takes the rule of its own day."""
    stay = InsuranceCard("HS4010120878811", date(2020, 1, 1), date(2021, 12, 31))
    days = [date(2020, 12, 30), date(2020, 12, 31), date(2021, 1, 1), date(2021, 1, 2)]
    result = split_visit(
        [service(500_000, service_date=d) for d in days], stay, route=Route.SELF_REFERRED, inpatient=True
    )
    assert [ln.muc_huong for ln in result.lines] == [48, 48, 80, 80]
    assert [ln.t_bhtt for ln in result.lines] == [240_000, 240_000, 400_000, 400_000]


def test_the_small_visit_threshold_follows_the_base_salary_of_the_visit_day() -> None:
    """300,000 VND is under 15% of 2,340,000 (351,000, from 1 July 2024) but not of 1,800,000 (270,000)."""
    june, july = date(2024, 6, 30), date(2024, 7, 1)
    early = InsuranceCard("HS4010120878811", date(2024, 1, 1), date(2024, 12, 31))
    assert split_visit([service(300_000, service_date=june)], early).small_visit_rule_applied is False
    assert split_visit([service(300_000, service_date=july)], early).small_visit_rule_applied is True
    # a facility's own version (Law 51/2024/QH15: self-referred outpatient 50% from 1 July 2025)
    own = DEFAULT_RULES.with_version(BenefitRules(date(2025, 7, 1), 2_340_000, RoutePolicy(100, 50)))
    later = InsuranceCard("HS4010120878811", date(2025, 1, 1), date(2025, 12, 31))
    before, after = split_visit(
        [service(500_000, service_date=date(2025, 6, 30)), service(500_000, service_date=date(2025, 7, 1))],
        later,
        route=Route.SELF_REFERRED,
        rules=own,
    ).lines
    assert (before.muc_huong, after.muc_huong) == (0, 40)
    with pytest.raises(InsuranceError, match="no benefit rules"):
        split_visit([service(1_000, service_date=date(2019, 6, 30))], early)
    with pytest.raises(InsuranceError, match="ascending"):
        RuleSchedule(
            (
                BenefitRules(date(2024, 7, 1), 1, RoutePolicy()),
                BenefitRules(date(2023, 7, 1), 1, RoutePolicy()),
            )
        )


def test_copay_exemption_from_its_date() -> None:
    exempt = InsuranceCard("HS4010120878811", date(2024, 1, 1), date(2024, 12, 31), copay_exempt_from=DAY)
    before, after = split_visit(
        [service(500_000, service_date=DAY - timedelta(days=1)), service(500_000)], exempt, inpatient=True
    ).lines
    assert (before.muc_huong, before.t_bncct) == (80, 100_000)
    assert (after.muc_huong, after.t_bncct) == (100, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hospital_unit_price": 1500.5},
        {"hospital_unit_price": True},
        {"insurance_unit_price": -1},
        {"payment_ratio": 101},
        {"service_ratio": -1},
        {"quantity": Decimal("0.0005")},
        {"quantity": 0},
        {"quantity": 1.5},
        {"quantity": Decimal("NaN")},
    ],
)
def test_invalid_lines_are_refused(kwargs: dict[str, object]) -> None:
    values: dict[str, object] = {
        "service_date": DAY,
        "covered": True,
        "hospital_unit_price": 1000,
        "insurance_unit_price": 1000,
        **kwargs,
    }
    with pytest.raises(InsuranceError):
        ChargeLine(**values)  # type: ignore[arg-type]


def test_random_visits_always_add_up_exactly() -> None:
    rng = random.Random(130)
    for _ in range(1500):
        insurance_card = card(rng.randint(1, 5), valid_from=DAY - timedelta(days=rng.randint(0, 3)))
        lines = []
        for _ in range(rng.randint(1, 6)):
            hospital = rng.randint(0, 5_000_000)
            lines.append(
                ChargeLine(
                    service_date=DAY - timedelta(days=rng.randint(0, 5)),
                    covered=rng.random() < 0.85,
                    hospital_unit_price=hospital,
                    insurance_unit_price=max(0, hospital - rng.choice([0, 0, rng.randint(0, 200_000)])),
                    quantity=Decimal(rng.randint(1, 100_000)) / Decimal(rng.choice([1, 10, 100, 1000])),
                    payment_ratio=rng.choice([100, 100, 70, 50, 30]),
                    service_ratio=rng.choice([100, 100, 80, 50]),
                )
            )
        route = rng.choice(list(Route))
        result = split_visit(lines, insurance_card, route=route, inpatient=rng.random() < 0.5)
        assert len(result.lines) == len(lines)
        for line, split in zip(lines, result.lines, strict=True):
            assert split.t_bhtt + split.t_bncct + split.t_bntt == split.thanh_tien_bv
            assert 0 <= split.t_bhtt <= split.thanh_tien_bh <= split.thanh_tien_bv
            assert min(split.t_bncct, split.t_bntt) >= 0
            exact_bv = Fraction(line.quantity) * line.hospital_unit_price * line.service_ratio / 100
            assert abs(split.thanh_tien_bv - exact_bv) <= Fraction(1, 2)
            assert abs(split.t_bhtt - Fraction(split.thanh_tien_bh * split.muc_huong, 100)) <= Fraction(1, 2)
            if split.thanh_tien_bh:
                assert split.muc_huong in (80, 95, 100)
        assert result.t_bhtt + result.t_bncct + result.t_bntt == result.t_tongchi_bv


def test_bed_segment_lines_one_bed_day_per_calendar_day() -> None:
    from datetime import date

    from hospital.billing.domain.pricing import HALF, BedLine, segment_lines

    d = date(2026, 11, 2)
    # a transfer three days after admission: the three days before it at the ward's class
    assert segment_lines(d, date(2026, 11, 5), "GB-NOI2", None, last_segment=False) == [
        BedLine("GB-NOI2", 3, False)
    ]
    # the next segment began on a transfer day (ICU -> internal medicine): half a day at the dearest
    # class of that day, half at the cheapest, then the ward's own days
    assert segment_lines(
        date(2026, 11, 5), date(2026, 11, 7), "GB-NOI2", "GB-HSTC", last_segment=True, day_low_class="GB-NOI2"
    ) == [
        BedLine("GB-HSTC", HALF, True, "bed-first"),
        BedLine("GB-NOI2", HALF, True, "bed-first-low"),
        BedLine("GB-NOI2", 2, False),
    ]
    # three wards in one day: the dearest and the cheapest of them, neither being the last ward
    assert segment_lines(
        d, date(2026, 11, 3), "GB-NOI1", "GB-HSTC", last_segment=False, day_low_class="GB-NOI3"
    ) == [
        BedLine("GB-HSTC", HALF, True, "bed-first"),
        BedLine("GB-NOI3", HALF, True, "bed-first-low"),
    ]
    # moved on the same day again: nothing yet, the day goes on with the next ward
    assert segment_lines(d, d, "GB-NOI1", "GB-HSTC", last_segment=False, day_low_class="GB-NOI1") == []
    # discharged on the day the segment began: that one day, in halves
    assert segment_lines(d, d, "GB-NOI1", "GB-HSTC", last_segment=True, day_low_class="GB-NOI1") == [
        BedLine("GB-HSTC", HALF, True, "bed-first"),
        BedLine("GB-NOI1", HALF, True, "bed-first-low"),
    ]
    assert segment_lines(d, d, "GB-NOI1", None, last_segment=True) == [BedLine("GB-NOI1", 1, False)]
    # a segment recorded before the half-day rule: its whole first day at the dearer class
    assert segment_lines(d, d, "GB-NOI1", "GB-HSTC", last_segment=True) == [
        BedLine("GB-HSTC", 1, True, "bed-first")
    ]
    with pytest.raises(ValueError):
        segment_lines(date(2026, 11, 5), d, "GB-NOI2", None, last_segment=True)


def test_random_claims_with_decimal_prices_and_fractional_benefits_add_up_exactly() -> None:
    """The claim's rounding (2 decimals) with unit prices of 3 decimals and self-referred shares that make
    fractional MUC_HUONG: every line and the visit still add up exactly, each rounded amount within half a
    cent of the exact one."""
    rng = random.Random(4750)
    for _ in range(1000):
        insurance_card = card(rng.randint(1, 5))
        lines = []
        for _ in range(rng.randint(1, 6)):
            hospital = Decimal(rng.randint(0, 5_000_000_000)) / 1000
            lines.append(
                ChargeLine(
                    service_date=DAY - timedelta(days=rng.randint(0, 5)),
                    covered=rng.random() < 0.85,
                    hospital_unit_price=hospital,
                    insurance_unit_price=max(
                        Decimal(0), hospital - rng.choice([0, 0, rng.randint(0, 200_000)])
                    ),
                    quantity=Decimal(rng.randint(1, 100_000)) / Decimal(rng.choice([1, 10, 100, 1000])),
                    payment_ratio=rng.choice([100, 100, 70, 50, 30]),
                    service_ratio=rng.choice([100, 100, 80, 50]),
                )
            )
        policy = RoutePolicy(rng.choice([100, 50, 30]), rng.choice([0, 50, 30]))
        result = split_visit(
            lines,
            insurance_card,
            route=rng.choice(list(Route)),
            inpatient=rng.random() < 0.5,
            policy=policy,
            places=2,
        )
        for line, split in zip(lines, result.lines, strict=True):
            for amount in (
                split.thanh_tien_bv,
                split.thanh_tien_bh,
                split.t_bhtt,
                split.t_bncct,
                split.t_bntt,
            ):
                assert Decimal(amount) == Decimal(amount).quantize(Decimal("0.01"))
            assert split.t_bhtt + split.t_bncct + split.t_bntt == split.thanh_tien_bv
            exact_bv = Fraction(line.quantity) * Fraction(line.hospital_unit_price) * line.service_ratio / 100
            assert abs(Fraction(split.thanh_tien_bv) - exact_bv) <= Fraction(1, 200)
            exact_fund = Fraction(split.thanh_tien_bh) * Fraction(split.muc_huong) / 100
            assert abs(Fraction(split.t_bhtt) - exact_fund) <= Fraction(1, 200)
            assert Decimal(split.muc_huong) == Decimal(split.muc_huong).quantize(Decimal("0.01"))
        assert result.t_bhtt + result.t_bncct + result.t_bntt == result.t_tongchi_bv
