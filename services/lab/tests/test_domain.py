"""Pure rules: Westgard, reference ranges by sex and age, critical limits, delta checks,
auto-verification, unit conversion."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal as D

import pytest

from hospital.lab.domain import westgard
from hospital.lab.domain.units import UnitError, canonical_unit, convert
from hospital.lab.domain.validation import (
    AUTOVERIFY_RULE,
    AutoVerifyInput,
    CriticalLimits,
    DeltaRule,
    RefRange,
    age_in_days,
    autoverify,
    delta_failed,
    flag_for,
    pick_range,
)


def rules(zs: list[float]) -> list[str]:
    return [v.rule for v in westgard.evaluate(zs)]


@pytest.mark.parametrize(
    "zs,expected",
    [
        ([0.5, -0.3, 0.8], []),
        ([0.1, 2.4], ["1-2s"]),
        ([0.1, -3.2], ["1-3s"]),
        ([2.3, 2.5], ["2-2s"]),
        ([-2.1, -2.6], ["2-2s"]),
        ([2.1, -2.2], ["R-4s"]),
        ([1.2, 1.5, 1.1, 1.3], ["4-1s"]),
        ([0.3, 0.5, 0.2, 0.4, 0.6, 0.1, 0.7, 0.3, 0.2, 0.5], ["10-x"]),
        ([-0.3, -0.5, -0.2, -0.4, -0.6, -0.1, -0.7, -0.3, -0.2, 0.5], []),
        ([1.2, 1.5, 1.1, 0.9], []),
    ],
)
def test_westgard_rules(zs, expected) -> None:
    assert rules(zs) == expected
    violations = westgard.evaluate(zs)
    assert westgard.accepted(violations) == (expected in ([], ["1-2s"]))


def test_westgard_z_score_needs_a_positive_sd() -> None:
    assert westgard.z_score(5.5, 5.0, 0.25) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        westgard.z_score(1, 1, 0)


RANGES = [
    RefRange("male", 6574, 54900, D(130), D(170)),
    RefRange("female", 6574, 54900, D(120), D(150)),
    RefRange("any", 0, 6574, D(110), D(140)),
]


def test_reference_range_by_sex_and_age() -> None:
    adult = age_in_days(date(1985, 3, 14), datetime(2025, 1, 1))
    child = age_in_days(date(2019, 3, 2), datetime(2025, 1, 1))
    assert pick_range(RANGES, "male", adult).low == 130
    assert pick_range(RANGES, "female", adult).low == 120
    assert pick_range(RANGES, "female", child).low == 110
    assert pick_range(RANGES, "male", None).low == 130  # unknown age: adult band
    assert pick_range(RANGES, "unknown", adult) is None


def test_flags_and_critical_limits() -> None:
    ref, crit = RefRange("any", 0, 99999, D("3.5"), D("5.0")), CriticalLimits(D("2.5"), D("6.5"))
    assert flag_for(D("4.1"), ref, crit) == ("N", False)
    assert flag_for(D("5.4"), ref, crit) == ("H", False)
    assert flag_for(D("3.0"), ref, crit) == ("L", False)
    assert flag_for(D("6.8"), ref, crit) == ("HH", True)
    assert flag_for(D("2.1"), ref, crit) == ("LL", True)
    assert flag_for(D("6.5"), ref, crit) == ("H", False)  # the limit itself is not beyond it


def test_delta_check() -> None:
    now = datetime(2025, 7, 6, 8, 0)
    hgb = DeltaRule(D(20), None, 72)
    assert delta_failed(hgb, D(95), D(128), now - timedelta(hours=20), now)
    assert not delta_failed(hgb, D(120), D(128), now - timedelta(hours=20), now)
    assert not delta_failed(hgb, D(95), D(128), now - timedelta(hours=80), now)  # outside the window
    assert not delta_failed(hgb, D(95), None, None, now)
    plt = DeltaRule(None, D(50), 72)
    assert delta_failed(plt, D(90), D(250), now - timedelta(hours=1), now)
    assert not delta_failed(plt, D(200), D(250), now - timedelta(hours=1), now)


def test_autoverification_rules() -> None:
    ok = AutoVerifyInput(
        enabled=True,
        numeric=True,
        flag="N",
        critical=False,
        delta_failed=False,
        analyzer_flags=("N",),
        analyzer_status="F",
        qc_ok=True,
    )
    assert autoverify(ok) == (AUTOVERIFY_RULE, "")
    for change, reason in [
        ({"enabled": False}, "off"),
        ({"flag": "H"}, "range"),
        ({"critical": True}, "critical"),
        ({"delta_failed": True}, "delta"),
        ({"analyzer_flags": ("A",)}, "analyzer"),
        ({"analyzer_status": "X"}, "analyzer"),
        ({"qc_ok": False}, "QC"),
        ({"numeric": False}, "numeric"),
    ]:
        rule, why = autoverify(
            AutoVerifyInput(**{**ok.__dict__, **change})
            if hasattr(ok, "__dict__")
            else AutoVerifyInput(**{f: getattr(ok, f) for f in ok.__slots__} | change)
        )
        assert rule is None and reason in why


def test_units() -> None:
    assert canonical_unit("10*3/uL") == canonical_unit("10E3/uL") == canonical_unit("G/L") == "10^9/L"
    assert canonical_unit("um3") == "fL" and canonical_unit("U/l") == "U/L"
    assert convert(D("8.0"), "g/dL", "g/L") == D("80.0")
    assert convert(D(100), "mg/dL", "mmol/L", D("0.0555")) == D("5.5500")
    assert convert(D("1.2"), "mg/dL", "µmol/L", D("88.4")) == D("106.08")
    assert convert(D("5.5"), "10*3/uL", "10^9/L") == D("5.5")
    with pytest.raises(UnitError):
        convert(D(1), "mg/dL", "mmol/L")
