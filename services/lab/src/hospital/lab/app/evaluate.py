"""Turn one analyzer result into the stored, checked result: unit normalisation, reference range,
critical limits, delta check against the patient's previous result, auto-verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hospital.lab.app.catalogue import TestDef
from hospital.lab.domain.units import UnitError, canonical_unit, convert, format_value
from hospital.lab.domain.validation import (
    AutoVerifyInput,
    age_in_days,
    autoverify,
    delta_failed,
    flag_for,
    pick_range,
)


@dataclass
class Context:
    sex: str
    birth: date | None
    autoverify_on: bool
    qc_ok: dict[str, bool]
    previous: dict[str, tuple[float, datetime]]  # test code → (value, when) of the patient's last result
    allow_autoverify: bool = True
    hold: str | None = None


def parse_number(text: str) -> Decimal | None:
    t = text.strip()
    if not t:
        return None
    try:
        n = Decimal(t)
    except InvalidOperation:
        return None
    return n if n.is_finite() else None


def evaluate(test: TestDef, a: dict[str, Any], ctx: Context, at: datetime) -> dict[str, Any]:
    """Computed columns for analyzer fields ``a`` (analyzer_value, analyzer_unit, analyzer_flags,
    analyzer_status, mapped_unit)."""
    out: dict[str, Any] = {
        "test_code": test.code,
        "value_num": None,
        "unit": test.unit,
        "reference_range": "",
        "flag": "",
        "critical": False,
        "delta_failed": False,
        "delta_previous": None,
        "hold_reason": None,
        "autoverify_rule": None,
    }
    raw = a["analyzer_value"].strip()
    number = parse_number(raw) if test.value_type == "NM" else None
    out["value"] = raw
    age = age_in_days(ctx.birth, at)
    ref = pick_range(test.ranges, ctx.sex, age)
    out["reference_range"] = ref.text() if ref else (test.normal_text or "")
    hold: str | None = ctx.hold
    if number is not None:
        sent = a["analyzer_unit"].strip()
        if sent.isdigit():  # a unit-set index (Horiba ABX "1"): the instrument is set up in the lab's units
            sent = ""
        unit_in = sent or a.get("mapped_unit") or test.unit
        try:
            converted = convert(number, unit_in, test.unit, test.molar_factor)
        except UnitError:
            converted = None
            out["unit"] = a["analyzer_unit"]
            hold = f"unit {unit_in!r} cannot be converted to {test.unit!r}"
        if converted is not None:
            if canonical_unit(unit_in) != canonical_unit(test.unit) and unit_in:
                out["value"] = format_value(converted, test.decimals)
            else:
                out["value"] = str(number)
            out["value_num"] = float(converted)
            flag, critical = flag_for(converted, ref, test.critical)
            out["flag"], out["critical"] = flag, critical
            prev = ctx.previous.get(test.code)
            if prev is not None and test.delta is not None:
                out["delta_previous"] = f"{prev[0]:g}"
                out["delta_failed"] = delta_failed(test.delta, converted, Decimal(str(prev[0])), prev[1], at)
    elif test.value_type == "ST" and raw and test.normal_text:
        out["flag"] = "N" if raw.upper() == test.normal_text.upper() else "A"
    rule, reason = None, "not auto-verifiable"
    if hold is None and ctx.allow_autoverify:
        rule, reason = autoverify(
            AutoVerifyInput(
                enabled=ctx.autoverify_on,
                numeric=out["value_num"] is not None,
                flag=out["flag"],
                critical=out["critical"],
                delta_failed=out["delta_failed"],
                analyzer_flags=tuple(f for f in a["analyzer_flags"].split(",") if f),
                analyzer_status=a["analyzer_status"],
                qc_ok=ctx.qc_ok.get(test.code, False),
            )
        )
    out["autoverify_rule"] = rule
    out["hold_reason"] = None if rule else (hold or reason)
    return out
