"""Result validation: reference-range flags by sex and age, critical limits, delta checks,
auto-verification. Pure functions over plain values; the use cases load the rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class RefRange:
    sex: str  # "male", "female" or "any"
    age_min_days: int  # inclusive
    age_max_days: int  # exclusive
    low: Decimal | None
    high: Decimal | None

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low}-{self.high}"
        if self.high is not None:
            return f"<{self.high}"
        if self.low is not None:
            return f">{self.low}"
        return ""


def age_in_days(birth: date | None, at: datetime | date) -> int | None:
    if birth is None:
        return None
    day = at.date() if isinstance(at, datetime) else at
    return max(0, (day - birth).days)


def pick_range(ranges: Sequence[RefRange], sex: str, age_days: int | None) -> RefRange | None:
    """The most specific range: matching sex beats ``any``; the age band must contain the age
    (an unknown age matches only the adult band, ≥ 18 years)."""
    age = age_days if age_days is not None else 18 * 366
    fits = [r for r in ranges if r.sex in (sex, "any") and r.age_min_days <= age < r.age_max_days]
    fits.sort(key=lambda r: (r.sex == "any", r.age_max_days - r.age_min_days))
    return fits[0] if fits else None


@dataclass(frozen=True, slots=True)
class CriticalLimits:
    low: Decimal | None
    high: Decimal | None


def flag_for(
    value: Decimal | None, ref: RefRange | None, critical: CriticalLimits | None, abnormal_text: bool = False
) -> tuple[str, bool]:
    """(flag, is_critical): ``LL``/``HH`` beyond critical limits, ``L``/``H`` outside the range, ``N``;
    ``A`` for an abnormal qualitative result, ``""`` when there is nothing to compare."""
    if value is None:
        return ("A" if abnormal_text else ""), False
    if critical is not None:
        if critical.low is not None and value < critical.low:
            return "LL", True
        if critical.high is not None and value > critical.high:
            return "HH", True
    if ref is None:
        return "", False
    if ref.low is not None and value < ref.low:
        return "L", False
    if ref.high is not None and value > ref.high:
        return "H", False
    return "N", False


@dataclass(frozen=True, slots=True)
class DeltaRule:
    absolute: Decimal | None  # |new - old| above this fails
    percent: Decimal | None  # |new - old| / |old| * 100 above this fails
    window_hours: int = 72


def delta_failed(
    rule: DeltaRule | None,
    value: Decimal | None,
    previous: Decimal | None,
    previous_at: datetime | None,
    at: datetime,
) -> bool:
    """True when the change from the patient's previous result (inside the window) exceeds the rule.
    Either threshold failing is a failure; no previous result, no check."""
    if rule is None or value is None or previous is None or previous_at is None:
        return False
    if at - previous_at > timedelta(hours=rule.window_hours):
        return False
    change = abs(value - previous)
    if rule.absolute is not None and change > rule.absolute:
        return True
    return rule.percent is not None and previous != 0 and change / abs(previous) * 100 > rule.percent


ANALYZER_OK_FLAGS = frozenset({"", "N"})
AUTOVERIFY_RULE = "AV1: numeric, within reference range, no delta/critical/analyzer flag, QC accepted"


@dataclass(frozen=True, slots=True)
class AutoVerifyInput:
    enabled: bool
    numeric: bool
    flag: str
    critical: bool
    delta_failed: bool
    analyzer_flags: tuple[str, ...]
    analyzer_status: str
    qc_ok: bool


def autoverify(x: AutoVerifyInput) -> tuple[str | None, str]:
    """(rule that passed or None, reason it did not)."""
    if not x.enabled:
        return None, "auto-verification is off"
    if not x.numeric:
        return None, "not a numeric result"
    if x.critical:
        return None, "critical value"
    if x.flag != "N":
        return None, f"outside reference range ({x.flag or 'no range'})"
    if x.delta_failed:
        return None, "delta check failed"
    if any(f.upper() not in ANALYZER_OK_FLAGS for f in x.analyzer_flags) or x.analyzer_status.upper() not in (
        "",
        "F",
        "P",
    ):
        return None, "analyzer flag"
    if not x.qc_ok:
        return None, "QC not accepted for this instrument and test"
    return AUTOVERIFY_RULE, ""
