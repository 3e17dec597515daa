"""The papers' rules between fields (domain/papers.py): which encounter may have a discharge paper, the
outpatient period after discharge, pregnancy termination, sick-leave periods and their length, re-visit
dates, and the numbers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from hospital.emr.domain import papers as rules

DAY = date(2026, 12, 8)


def discharge(**kw: object) -> rules.Problem | None:
    args: dict[str, object] = {
        "encounter_kind": "inpatient",
        "treatment_result": 2,
        "outpatient_from": None,
        "outpatient_to": None,
        "pregnancy_terminated": False,
        "termination_reason": "",
        "gestational_weeks": 0,
    }
    return rules.check_discharge(**{**args, **kw})  # type: ignore[arg-type]


def leave(**kw: object) -> rules.Problem | None:
    args: dict[str, object] = {
        "encounter_kind": "outpatient",
        "service_date": DAY,
        "from_date": DAY,
        "to_date": DAY + timedelta(days=4),
        "days": 0,
        "pregnancy_terminated": False,
        "termination_reason": "",
        "gestational_weeks": 0,
    }
    return rules.check_sick_leave(**{**args, **kw})  # type: ignore[arg-type]


def code(problem: rules.Problem | None) -> tuple[str, str] | None:
    return (problem.code, problem.field) if problem else None


def test_discharge_paper_rules() -> None:
    assert discharge() is None
    assert code(discharge(encounter_kind="outpatient")) == ("paper.not_inpatient", "kind")
    assert code(discharge(treatment_result=rules.DEATH)) == ("paper.death", "discharge.treatment_result")
    assert code(discharge(outpatient_from=DAY)) == ("paper.outpatient_period", "discharge.outpatient_to")
    assert code(discharge(outpatient_to=DAY)) == ("paper.outpatient_period", "discharge.outpatient_from")
    later = {"outpatient_from": DAY + timedelta(days=3), "outpatient_to": DAY}
    assert code(discharge(**later)) == ("paper.outpatient_period", "discharge.outpatient_to")
    assert discharge(outpatient_from=DAY, outpatient_to=DAY) is None  # one day
    # a pregnancy termination states its cause and the gestational age, and only then
    assert code(discharge(pregnancy_terminated=True, gestational_weeks=10)) == (
        "paper.termination",
        "discharge.termination_reason",
    )
    assert code(discharge(pregnancy_terminated=True, termination_reason="Thai lưu")) == (
        "paper.termination",
        "discharge.gestational_weeks",
    )
    assert discharge(pregnancy_terminated=True, termination_reason="Thai lưu", gestational_weeks=10) is None
    assert code(discharge(gestational_weeks=10)) == ("paper.termination", "discharge.pregnancy_terminated")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, None),
        ({"days": 5}, None),
        ({"days": 4}, ("sick_leave.days", "sick_leave.days")),
        ({"to_date": DAY - timedelta(days=1)}, ("sick_leave.period", "sick_leave.to_date")),
        ({"from_date": DAY - timedelta(days=1)}, ("sick_leave.period", "sick_leave.from_date")),
        ({"to_date": DAY + timedelta(days=29)}, None),  # 30 days: the most for an outpatient
        ({"to_date": DAY + timedelta(days=30)}, ("sick_leave.too_long", "sick_leave.to_date")),
        ({"to_date": DAY + timedelta(days=30), "encounter_kind": "inpatient"}, None),
        ({"pregnancy_terminated": True}, ("paper.termination", "sick_leave.termination_reason")),
    ],
)
def test_sick_leave_rules(change: dict[str, object], expected: tuple[str, str] | None) -> None:
    assert code(leave(**change)) == expected


def test_revisit_dates_and_numbers() -> None:
    check = rules.check_revisit
    assert check(service_date=DAY, today=DAY, revisit_date=DAY + timedelta(days=1)) is None
    assert code(check(service_date=DAY, today=DAY, revisit_date=DAY)) == (
        "revisit.date",
        "revisit.revisit_date",
    )
    # a late-written appointment is after today, not only after the visit
    assert code(check(service_date=DAY, today=DAY + timedelta(days=5), revisit_date=DAY + timedelta(days=3)))
    assert code(check(service_date=DAY, today=DAY, revisit_date=DAY + timedelta(days=367)))
    assert check(service_date=DAY, today=DAY, revisit_date=DAY + timedelta(days=366)) is None
    assert rules.number("revisit", "35001", 12) == "35001-HK0000012"
    assert rules.number("sick_leave", "350010", 1) == "35001-NV0000001"
    assert rules.leave_days(DAY, DAY) == 1
    assert {rules.REFERRAL_TYPE[1][1], rules.REFERRAL_TYPE[2][1]} == {2, 5}  # MA_LOAI_RV of a referral
