"""Rules of the papers a visit produces, as QĐ 130/QĐ-BYT's tables carry them (XML7 giấy ra viện, XML13 giấy
chuyển tuyến, XML11 giấy chứng nhận nghỉ việc hưởng BHXH, XML14 giấy hẹn khám lại): which encounter may have
which paper, and the checks between fields that a field's own type cannot make. Pure functions: the use case
(app/papers.py) gives the encounter and today's date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

KINDS = ("discharge_paper", "referral_paper", "sick_leave", "revisit")
#: the request field that carries each kind's data
FIELD = {
    "discharge_paper": "discharge",
    "referral_paper": "referral",
    "sick_leave": "sick_leave",
    "revisit": "revisit",
}
#: number prefixes: RV số lưu trữ giấy ra viện, CT số chuyển tuyến, NV số chứng từ nghỉ việc, HK số giấy hẹn
PREFIX = {"discharge_paper": "RV", "referral_paper": "CT", "sick_leave": "NV", "revisit": "HK"}
TITLE = {
    "discharge_paper": "Giấy ra viện",
    "referral_paper": "Giấy chuyển tuyến",
    "sick_leave": "Giấy chứng nhận nghỉ việc hưởng BHXH",
    "revisit": "Giấy hẹn khám lại",
}
#: fields the EMR assigns when a paper is created (kept when its draft is changed)
ASSIGNED = {"referral_paper": ("paper_code",), "sick_leave": ("serial",)}
#: KET_QUA_DTRI 5 (tử vong): a death gets a death certificate, not a discharge paper (QĐ 130, XML7)
DEATH = 5
#: MA_LYDO_CT → MA_LOAI_RV: 1 meets the referral conditions (chuyển tuyến theo yêu cầu chuyên môn, 2),
#: 2 at the patient's request (chuyển tuyến theo yêu cầu người bệnh, 5)
REFERRAL_TYPE = {1: ("expertise", 2), 2: ("patient_request", 5)}
#: an outpatient sick-leave certificate covers at most 30 days per issue (Thông tư 56/2017/TT-BYT as amended
#: by Thông tư 18/2022/TT-BYT); an inpatient one is not capped here
OUTPATIENT_LEAVE_MAX_DAYS = 30
#: the platform's own bound: a re-visit appointment is within a year of the visit
REVISIT_MAX_DAYS = 366


@dataclass(frozen=True)
class Problem:
    code: str
    message: str  # Vietnamese, for the doctor
    field: str


def number(kind: str, facility_code: str, n: int) -> str:
    """The paper's number: facility code, the kind's prefix and a 7-digit sequence (``35001-RV0000012``)."""
    return f"{facility_code[:5]}-{PREFIX[kind]}{n:07d}"


def leave_days(start: date, end: date) -> int:
    return (end - start).days + 1


def check_discharge(
    *,
    encounter_kind: str,
    treatment_result: int,
    outpatient_from: date | None,
    outpatient_to: date | None,
    pregnancy_terminated: bool,
    termination_reason: str,
    gestational_weeks: int,
) -> Problem | None:
    if encounter_kind != "inpatient":
        return Problem("paper.not_inpatient", "giấy ra viện chỉ cấp cho người bệnh điều trị nội trú", "kind")
    if treatment_result == DEATH:
        return Problem(
            "paper.death",
            "người bệnh tử vong không cấp giấy ra viện (cấp giấy báo tử)",
            "discharge.treatment_result",
        )
    if (outpatient_from is None) != (outpatient_to is None):
        return Problem(
            "paper.outpatient_period",
            "điều trị ngoại trú sau ra viện cần cả ngày bắt đầu và ngày kết thúc",
            "discharge.outpatient_to" if outpatient_to is None else "discharge.outpatient_from",
        )
    if outpatient_from and outpatient_to and outpatient_to < outpatient_from:
        return Problem(
            "paper.outpatient_period", "ngày kết thúc trước ngày bắt đầu", "discharge.outpatient_to"
        )
    return _termination(pregnancy_terminated, termination_reason, gestational_weeks, "discharge")


def check_sick_leave(
    *,
    encounter_kind: str,
    service_date: date,
    from_date: date,
    to_date: date,
    days: int,
    pregnancy_terminated: bool,
    termination_reason: str,
    gestational_weeks: int,
) -> Problem | None:
    if to_date < from_date:
        return Problem("sick_leave.period", "ngày kết thúc nghỉ trước ngày bắt đầu", "sick_leave.to_date")
    if from_date < service_date:
        return Problem(
            "sick_leave.period",
            f"ngày bắt đầu nghỉ trước ngày khám ({service_date.isoformat()})",
            "sick_leave.from_date",
        )
    counted = leave_days(from_date, to_date)
    if days and days != counted:
        return Problem(
            "sick_leave.days",
            f"số ngày nghỉ {days} không khớp từ ngày đến ngày ({counted} ngày)",
            "sick_leave.days",
        )
    if encounter_kind != "inpatient" and counted > OUTPATIENT_LEAVE_MAX_DAYS:
        return Problem(
            "sick_leave.too_long",
            f"điều trị ngoại trú: nghỉ tối đa {OUTPATIENT_LEAVE_MAX_DAYS} ngày một lần cấp ({counted} ngày)",
            "sick_leave.to_date",
        )
    return _termination(pregnancy_terminated, termination_reason, gestational_weeks, "sick_leave")


def check_revisit(*, service_date: date, today: date, revisit_date: date) -> Problem | None:
    earliest = max(service_date, today)
    if revisit_date <= earliest:
        return Problem(
            "revisit.date", f"ngày hẹn khám lại phải sau {earliest.isoformat()}", "revisit.revisit_date"
        )
    if revisit_date > service_date + timedelta(days=REVISIT_MAX_DAYS):
        return Problem("revisit.date", "ngày hẹn khám lại quá một năm", "revisit.revisit_date")
    return None


def _termination(terminated: bool, reason: str, weeks: int, prefix: str) -> Problem | None:
    if terminated and not reason:
        return Problem(
            "paper.termination", "đình chỉ thai nghén cần nguyên nhân", f"{prefix}.termination_reason"
        )
    if terminated and not weeks:
        return Problem(
            "paper.termination", "đình chỉ thai nghén cần tuổi thai", f"{prefix}.gestational_weeks"
        )
    if not terminated and (reason or weeks):
        return Problem(
            "paper.termination",
            "nguyên nhân / tuổi thai chỉ ghi khi có đình chỉ thai nghén",
            f"{prefix}.pregnancy_terminated",
        )
    return None
