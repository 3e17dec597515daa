"""BHYT (Vietnamese social health insurance) cost split of a visit's claim lines.

For each line this computes the QĐ 130/QĐ-BYT money fields:

* ``THANH_TIEN_BV`` = quantity x hospital price x TYLE_TT_DV: what the hospital charges;
* ``THANH_TIEN_BH`` = quantity x insurance price x TYLE_TT_DV x TYLE_TT_BH: the part inside
  the insurance scope (0 when the service is not covered or the patient is not insured that day);
* ``T_BHTT`` = THANH_TIEN_BH x MUC_HUONG: paid by the insurance fund;
* ``T_BNCCT`` = THANH_TIEN_BH - T_BHTT: the patient's co-payment;
* ``T_BNTT`` = THANH_TIEN_BV - THANH_TIEN_BH: paid outright by the patient (uncovered services,
  the part of a service the fund pays by ratio, and the hospital-over-insurance price difference).

Rounding rule: THANH_TIEN_BV, THANH_TIEN_BH and T_BHTT are each rounded half-up to whole
VND from exact fractions; T_BNCCT and T_BNTT are differences, so
``T_BHTT + T_BNCCT + T_BNTT == THANH_TIEN_BV`` holds exactly on every line.

The rules and their simplifications are listed in docs/billing-insurance-rules.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import TypedDict

#: Lương cơ sở from 1 July 2024 (Decree 73/2024/NĐ-CP), VND per month.
BASE_SALARY_FROM_2024_07_01 = 2_340_000
#: A visit cheaper than this share of the base salary is paid 100% by the fund
#: (Law on Health Insurance art. 22; Decree 146/2018/NĐ-CP art. 14).
SMALL_VISIT_PERCENT = 15

#: One use of a high-cost technical service is paid on at most this many months of the base salary for
#: cards of levels 2, 3 and 4 (Decree 146/2018/NĐ-CP art. 14(1)(b)-(d)); the rest is the patient's.
HIGH_COST_CAP_MONTHS = 40
HIGH_COST_CAPPED_LEVELS = frozenset({2, 3, 4})

#: Benefit level (3rd character of the card number) -> share the fund pays.
#: Level 2 is 100% with a cap on high-cost technical services (not modelled here).
BENEFIT_PERCENT_BY_LEVEL = {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}

_CARD_NUMBER_RE = re.compile(r"([A-Z]{2})([1-5])([0-9]{2})([0-9A-Z]{10})")


class InsuranceError(ValueError):
    """An input to the insurance split is invalid."""


class InvalidCardNumber(InsuranceError):
    """The BHYT card number does not have the 15-character national format."""


def _check_vnd(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InsuranceError(f"{name} must be a non-negative integer number of VND, got {value!r}")


def _check_price(value: object, name: str) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0 or not _at_most_3_decimals(value):
            raise InsuranceError(
                f"{name} must be a non-negative VND amount with at most 3 decimals, got {value}"
            )
        return
    _check_vnd(value, name)


def _check_percent(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InsuranceError(f"{name} must be an integer percent 0..100, got {value!r}")


def _at_most_3_decimals(quantity: Decimal) -> bool:
    exponent = quantity.as_tuple().exponent  # a letter for NaN and infinities
    return isinstance(exponent, int) and exponent >= -3


@dataclass(frozen=True)
class InsuranceCard:
    """A BHYT card: ``XX`` beneficiary group + benefit level 1..5 + 2-digit province + 10 chars.

    ``copay_exempt_from`` is the date of the patient's co-payment exemption
    certificate (5 consecutive years insured and co-payments above 6 months of
    base salary in the year; XML1 ``NGAY_MIEN_CCT``), if any.
    """

    number: str
    valid_from: date
    valid_to: date
    copay_exempt_from: date | None = None

    def __post_init__(self) -> None:
        if not _CARD_NUMBER_RE.fullmatch(self.number):
            raise InvalidCardNumber(
                f"BHYT card number must be 2 letters, a level 1-5, 2 province digits"
                f" and 10 letters/digits (e.g. HS4010120878811), got {self.number!r}"
            )
        if self.valid_to < self.valid_from:
            raise InsuranceError(
                f"card {self.number} ends ({self.valid_to}) before it starts ({self.valid_from})"
            )

    @property
    def group(self) -> str:
        return self.number[:2]

    @property
    def benefit_level(self) -> int:
        return int(self.number[2])

    @property
    def province_code(self) -> str:
        return self.number[3:5]

    @property
    def benefit_percent(self) -> int:
        return BENEFIT_PERCENT_BY_LEVEL[self.benefit_level]

    def covers(self, day: date) -> bool:
        """Whether the card is valid on ``day`` (both ends inclusive)."""
        return self.valid_from <= day <= self.valid_to


class Route(StrEnum):
    """How the patient came to this hospital (tuyến)."""

    REGISTERED = "registered"  # initial registration here, or an accepted equivalent
    REFERRED = "referred"  # with a referral paper (giấy chuyển tuyến)
    EMERGENCY = "emergency"  # cấp cứu: always treated as the correct route
    SELF_REFERRED = "self_referred"  # trái tuyến: came on their own


@dataclass(frozen=True)
class RoutePolicy:
    """Share of the card's benefit a self-referred patient keeps, in percent.

    Defaults are the rule for provincial hospitals since 1 January 2021 (Law on
    Health Insurance art. 22(3)): inpatient care 100% of the benefit level,
    outpatient care not paid by the fund. Facilities set their own values when
    the law changes (Law 51/2024/QH15 from 1 July 2025).
    """

    self_referred_inpatient_percent: int = 100
    self_referred_outpatient_percent: int = 0

    def __post_init__(self) -> None:
        for value in (self.self_referred_inpatient_percent, self.self_referred_outpatient_percent):
            _check_percent(value, "self-referred percent")

    def percent(self, route: Route, *, inpatient: bool) -> int:
        if route is not Route.SELF_REFERRED:
            return 100
        return self.self_referred_inpatient_percent if inpatient else self.self_referred_outpatient_percent


@dataclass(frozen=True)
class BenefitRules:
    """The rules in force from ``effective_from`` (inclusive) until the next version."""

    effective_from: date
    base_salary: int  # lương cơ sở: the 15% small-visit threshold is a share of it
    policy: RoutePolicy  # self-referred percentages
    source: str = ""

    def __post_init__(self) -> None:
        _check_vnd(self.base_salary, "base_salary")


@dataclass(frozen=True)
class RuleSchedule:
    """Benefit and route rules versioned by effective date. Each line of a visit takes the route
    percentage in force on its service date, so a stay across a change is split on the day of the
    change; the small-visit threshold takes the base salary in force on the visit's last service day."""

    versions: tuple[BenefitRules, ...]

    def __post_init__(self) -> None:
        if not self.versions:
            raise InsuranceError("a rule schedule needs at least one version")
        days = [v.effective_from for v in self.versions]
        if days != sorted(days) or len(set(days)) != len(days):
            raise InsuranceError("rule versions must have distinct effective dates in ascending order")

    def at(self, day: date) -> BenefitRules:
        found = None
        for version in self.versions:
            if version.effective_from <= day:
                found = version
        if found is None:
            raise InsuranceError(
                f"no benefit rules in force on {day} (the first start {self.versions[0].effective_from})"
            )
        return found

    def with_version(self, version: BenefitRules) -> RuleSchedule:
        """A copy with ``version`` added (replacing one of the same date): a facility's own rules."""
        kept = [v for v in self.versions if v.effective_from != version.effective_from]
        return RuleSchedule(tuple(sorted([*kept, version], key=lambda v: v.effective_from)))


#: The rules for a provincial general hospital: base salaries (Decree 38/2019/NĐ-CP, 24/2023/NĐ-CP,
#: 73/2024/NĐ-CP) and the self-referred shares of Law on Health Insurance art. 22(3) (provincial
#: hospitals: inpatient 60% until 2020, 100% from 1 January 2021; outpatient not paid). Law 51/2024/QH15
#: sets the shares by facility level from 1 July 2025: a facility adds its version (``with_version``).
DEFAULT_RULES = RuleSchedule(
    (
        BenefitRules(
            date(2019, 7, 1), 1_490_000, RoutePolicy(60, 0), "Decree 38/2019/NĐ-CP; Law 46/2014/QH13"
        ),
        BenefitRules(date(2021, 1, 1), 1_490_000, RoutePolicy(100, 0), "Law on Health Insurance art. 22(3)"),
        BenefitRules(date(2023, 7, 1), 1_800_000, RoutePolicy(100, 0), "Decree 24/2023/NĐ-CP"),
        BenefitRules(date(2024, 7, 1), 2_340_000, RoutePolicy(100, 0), "Decree 73/2024/NĐ-CP"),
    )
)


#: Law 51/2024/QH15 (amending the Law on Health Insurance) takes effect on 1 July 2025: facilities are
#: ranked by professional level (basic, specialised) instead of route, and a self-referred patient's share
#: depends on the level and on the tier the facility had before 2025 (Decree 188/2025/NĐ-CP art. 19,
#: QĐ 3276/QĐ-BYT Phụ lục 1).
LAW51_FROM = date(2025, 7, 1)
#: From 1 July 2026 a self-referred outpatient at a basic-level facility that was a provincial or central
#: hospital, or at a specialised facility that was a provincial hospital, is paid 50% (0% before).
LAW51_OUTPATIENT_FROM = date(2026, 7, 1)

FACILITY_LEVELS = ("basic", "specialised")
FORMER_TIERS = ("district", "provincial", "central")


def law51_policies(level: str, former_tier: str) -> tuple[RoutePolicy, RoutePolicy]:
    """Self-referred shares under Law 51/2024 for a facility of ``level`` (basic, specialised) that was
    of ``former_tier`` (district, provincial, central) before 2025: the policy from the law's start and
    the one from 1 July 2026 (QĐ 3276/QĐ-BYT Phụ lục 1, codes 1.14, 1.15, 1.18, 3.1, 3.2, 3.3)."""
    if level not in FACILITY_LEVELS or former_tier not in FORMER_TIERS:
        raise InsuranceError(f"unknown facility level {level!r} or former tier {former_tier!r}")
    if former_tier == "district":  # 3.3: paid as the correct route
        return RoutePolicy(100, 100), RoutePolicy(100, 100)
    if level == "specialised" and former_tier == "central":  # 3.1: 40% inpatient, outpatient not paid
        return RoutePolicy(40, 0), RoutePolicy(40, 0)
    # 1.14/1.15 (basic, formerly provincial or central), 1.18/3.2 (specialised, formerly provincial)
    return RoutePolicy(100, 0), RoutePolicy(100, 50)


def facility_rules(
    level: str = "basic",
    former_tier: str = "provincial",
    law51_from: date = LAW51_FROM,
    rules: RuleSchedule | None = None,
) -> RuleSchedule:
    """The dated rules of one facility: ``rules`` (default :data:`DEFAULT_RULES`) before ``law51_from``,
    from then on Law 51/2024's self-referred shares for the facility's level and former tier (with the
    step of 1 July 2026). Every version keeps the base salary in force on its day."""
    base = rules or DEFAULT_RULES
    first, later = law51_policies(level, former_tier)
    days = {v.effective_from for v in base.versions} | {law51_from, max(law51_from, LAW51_OUTPATIENT_FROM)}
    versions = []
    for day in sorted(d for d in days if d >= base.versions[0].effective_from):
        current = base.at(day)
        if day < law51_from:
            versions.append(current)
            continue
        policy = later if day >= LAW51_OUTPATIENT_FROM else first
        source = "Law 51/2024/QH15; Decree 188/2025/NĐ-CP" + (f"; {current.source}" if current.source else "")
        versions.append(BenefitRules(day, current.base_salary, policy, source))
    return RuleSchedule(tuple(versions))


def card_on(cards: tuple[InsuranceCard, ...], day: date) -> InsuranceCard | None:
    """The card a line of ``day`` is paid under: of the cards valid that day, the one that started last
    (a card issued during a stay takes over from its first day of validity)."""
    valid = [c for c in cards if c.covers(day)]
    return max(valid, key=lambda c: c.valid_from) if valid else None


@dataclass(frozen=True)
class ChargeLine:
    """One drug, supply or service line of a visit, before the split.

    ``payment_ratio`` is TYLE_TT_BH (share of the insurance price the fund
    recognises, e.g. 50 for some drugs and supplies); ``service_ratio`` is
    TYLE_TT_DV (share of the price charged for the service, e.g. 50 for a second
    procedure in the same session). ``quantity`` allows 3 decimals (XML130 SO_LUONG).
    """

    service_date: date
    covered: bool
    hospital_unit_price: int | Decimal  # VND; a Decimal with at most 3 decimals (tender drug prices)
    insurance_unit_price: int | Decimal
    quantity: int | Decimal = 1
    payment_ratio: int = 100
    service_ratio: int = 100
    high_cost: bool = False  # a high-cost technical service (DVKT cao chi phí): capped for levels 2, 3, 4

    def __post_init__(self) -> None:
        _check_price(self.hospital_unit_price, "hospital_unit_price")
        _check_price(self.insurance_unit_price, "insurance_unit_price")
        _check_percent(self.payment_ratio, "payment_ratio (TYLE_TT_BH)")
        _check_percent(self.service_ratio, "service_ratio (TYLE_TT_DV)")
        quantity = self.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
            raise InsuranceError(f"quantity must be an int or a Decimal, got {quantity!r}")
        if isinstance(quantity, Decimal) and not _at_most_3_decimals(quantity):
            raise InsuranceError(f"quantity must be finite with at most 3 decimals, got {quantity}")
        if quantity <= 0:
            raise InsuranceError(f"quantity must be positive, got {quantity}")


class LineMoneyFields(TypedDict):
    """The split as keyword arguments of ``ChiTietThuoc``/``ChiTietDvkt``."""

    pham_vi: int
    thanh_tien_bv: int | Decimal
    thanh_tien_bh: int | Decimal
    tyle_tt_bh: int
    muc_huong: int | Decimal
    t_bhtt: int | Decimal
    t_bncct: int | Decimal
    t_bntt: int | Decimal


@dataclass(frozen=True)
class LineSplit:
    """The QĐ130 money fields of one line, in VND (percent for the ratios).

    ``pham_vi`` is 1 for a service inside the insurance scope, 2 outside it.
    """

    pham_vi: int
    thanh_tien_bv: int | Decimal
    thanh_tien_bh: int | Decimal
    tyle_tt_bh: int
    muc_huong: int | Decimal  # a Decimal when not a whole percent (47.5)
    t_bhtt: int | Decimal
    t_bncct: int | Decimal
    t_bntt: int | Decimal

    def xml_fields(self) -> LineMoneyFields:
        """Keyword arguments for the XML2/XML3 line records of :mod:`hospital.billing.domain.xml130`."""
        return LineMoneyFields(
            pham_vi=self.pham_vi,
            thanh_tien_bv=self.thanh_tien_bv,
            thanh_tien_bh=self.thanh_tien_bh,
            tyle_tt_bh=self.tyle_tt_bh,
            muc_huong=self.muc_huong,
            t_bhtt=self.t_bhtt,
            t_bncct=self.t_bncct,
            t_bntt=self.t_bntt,
        )


@dataclass(frozen=True)
class VisitSplit:
    """The split of every line of a visit, in input order, with visit totals."""

    lines: tuple[LineSplit, ...]
    small_visit_rule_applied: bool

    @property
    def t_tongchi_bv(self) -> int | Decimal:
        return sum(line.thanh_tien_bv for line in self.lines)

    @property
    def t_tongchi_bh(self) -> int | Decimal:
        return sum(line.thanh_tien_bh for line in self.lines)

    @property
    def t_bhtt(self) -> int | Decimal:
        return sum(line.t_bhtt for line in self.lines)

    @property
    def t_bncct(self) -> int | Decimal:
        return sum(line.t_bncct for line in self.lines)

    @property
    def t_bntt(self) -> int | Decimal:
        return sum(line.t_bntt for line in self.lines)


def split_visit(
    lines: Iterable[ChargeLine],
    card: InsuranceCard | Sequence[InsuranceCard] | None,
    *,
    route: Route = Route.REGISTERED,
    inpatient: bool = False,
    base_salary: int | None = None,
    policy: RoutePolicy | None = None,
    rules: RuleSchedule = DEFAULT_RULES,
    places: int = 0,
) -> VisitSplit:
    """Split every line of one visit (lượt khám/điều trị) between fund and patient.

    A line is insured when the patient has a card valid on the line's service
    date, the service is covered and the route keeps a non-zero benefit. Its
    MUC_HUONG is the card's benefit percent times the route percent, raised to
    100 when the patient holds a co-payment exemption on that date or, for the
    whole visit, when the visit's covered cost (sum of THANH_TIEN_BH) is below
    15% of the base salary. Neither raise applies to self-referred patients.

    The route percentage and the base salary come from ``rules`` (dated versions: each line takes the
    version in force on its service date, the 15% threshold the version of the last day); giving
    ``base_salary`` or ``policy`` fixes them for the whole visit. A benefit that is not a whole percent
    (95% x 50% = 47.5) is kept exact: MUC_HUONG is then a ``Decimal``.

    ``places`` is where amounts are rounded (half-up): 0, whole VND (``int``), for the invoice the
    patient pays; 2, the decision's rounding of THANH_TIEN_BV, THANH_TIEN_BH and T_BHTT
    (``Decimal`` with 2 places), for the claim. Unit prices may carry 3 decimals either way.

    ``card`` may be the cards of a stay whose card changed (a new card issued during it): each line is
    paid under the card valid on its day (the newest when two are; :func:`card_on`), with that card's
    benefit level, exemption and high-cost cap.
    """
    if places not in (0, 2):
        raise InsuranceError(f"amounts are rounded to 0 or 2 decimal places, not {places}")
    charge_lines = tuple(lines)
    if base_salary is not None or policy is not None:
        fixed = rules.at(max((ln.service_date for ln in charge_lines), default=date.max))
        rules = RuleSchedule(
            (
                BenefitRules(
                    date.min,
                    fixed.base_salary if base_salary is None else base_salary,
                    fixed.policy if policy is None else policy,
                ),
            )
        )
    correct_route = route is not Route.SELF_REFERRED
    cards: tuple[InsuranceCard, ...] = (
        () if card is None else (card,) if isinstance(card, InsuranceCard) else tuple(card)
    )

    priced = []
    for line in charge_lines:
        route_percent = rules.at(line.service_date).policy.percent(route, inpatient=inpatient)
        line_card = card_on(cards, line.service_date)
        insured = line_card is not None and line.covered and route_percent > 0
        billed = _round_half_up(
            Fraction(line.quantity) * Fraction(line.hospital_unit_price) * line.service_ratio / 100, places
        )
        covered = 0
        benefit = 0
        if insured and line_card is not None:
            unit = min(line.hospital_unit_price, line.insurance_unit_price)
            covered = _round_half_up(
                Fraction(line.quantity) * Fraction(unit) * line.service_ratio * line.payment_ratio / 10_000,
                places,
            )
            benefit = _benefit_percent(line_card, route_percent, line.service_date, correct_route)
        priced.append((line, line_card, insured, billed, covered, benefit))

    covered_total = sum((Fraction(covered) for _, _, _, _, covered, _ in priced), Fraction(0))
    base_salary = rules.at(max((ln.service_date for ln in charge_lines), default=date.max)).base_salary
    small_visit = (
        correct_route and covered_total > 0 and covered_total * 100 < base_salary * SMALL_VISIT_PERCENT
    )

    splits = []
    for line, line_card, insured, billed, covered, benefit in priced:
        muc_huong = 100 if insured and small_visit else benefit
        base = Fraction(covered)
        if (
            insured
            and line_card is not None
            and line.high_cost
            and line_card.benefit_level in HIGH_COST_CAPPED_LEVELS
        ):
            # one use of a high-cost service: the fund's base is at most 40 months of the base salary
            base = min(base, Fraction(rules.at(line.service_date).base_salary * HIGH_COST_CAP_MONTHS))
        fund = _round_half_up(base * Fraction(muc_huong) / 100, places)
        splits.append(
            LineSplit(
                pham_vi=1 if line.covered else 2,
                thanh_tien_bv=billed,
                thanh_tien_bh=covered,
                tyle_tt_bh=line.payment_ratio if line.covered else 0,
                muc_huong=muc_huong,
                t_bhtt=fund,
                t_bncct=covered - fund,
                t_bntt=billed - covered,
            )
        )
    return VisitSplit(lines=tuple(splits), small_visit_rule_applied=small_visit)


def _benefit_percent(
    card: InsuranceCard, route_percent: int, day: date, correct_route: bool
) -> int | Decimal:
    """MUC_HUONG: the card's benefit times the route's share; exact (at most 2 decimals, as the product of
    two whole percentages divided by 100 has)."""
    if correct_route and card.copay_exempt_from is not None and day >= card.copay_exempt_from:
        return 100
    effective = Fraction(card.benefit_percent * route_percent, 100)
    if effective.denominator == 1:
        return int(effective)
    return Decimal(effective.numerator) / Decimal(effective.denominator)


def _round_half_up(value: Fraction, places: int = 0) -> int | Decimal:
    """Round an exact amount half-up: to whole VND (``int``) or to ``places`` decimals (``Decimal``)."""
    if places == 0:
        return math.floor(value + Fraction(1, 2))
    scale = 10**places
    return Decimal(math.floor(value * scale + Fraction(1, 2))) / scale
