"""Rules of the nursing records of a ward encounter: vital signs measured by nurses several times a day
and the medication administration record (MAR). Vitals are checked and flagged by domain/vitals.py."""

from __future__ import annotations

from datetime import datetime, timedelta

from hospital.chassis.errors import Conflict, Invalid

#: Encounters with a ward chart (a nurse's vitals and the MAR); an outpatient's vitals are the doctor's.
WARD_KINDS = ("inpatient", "emergency")
#: Who records: the ward's nurses (and its doctors), department-scoped like every chart write.
RECORDERS = ("nurse", "doctor")
#: A clock a few minutes ahead on a ward computer is not a measurement in the future.
CLOCK_SKEW = timedelta(minutes=5)
VITAL_FIELDS = (
    "systolic_bp",
    "diastolic_bp",
    "pulse",
    "temperature_c",
    "spo2",
    "respiratory_rate",
    "weight_kg",
)
STATUS_WORDS = {"given": "đã dùng", "held": "tạm hoãn", "refused": "người bệnh từ chối", "missed": "bỏ lỡ"}
ORDER_STATUS_WORDS = {"cancelled": "đã hủy", "stopped": "đã ngừng", "completed": "đã kết thúc"}


def check_ward_encounter(kind: str, status: str) -> None:
    if kind not in WARD_KINDS:
        raise Conflict(
            "nursing.not_inpatient",
            "chỉ ghi phiếu chăm sóc cho người bệnh nội trú hoặc cấp cứu (lượt khám ngoại trú: sinh hiệu do "
            "bác sĩ ghi trong phiếu khám)",
            field="encounter_id",
        )
    if status != "open":
        raise Conflict("encounter.closed", "lượt điều trị đã kết thúc: không ghi thêm", field="encounter_id")


def check_time(at: datetime, now: datetime, opened_at: datetime | None, field: str) -> None:
    if at > now + CLOCK_SKEW:
        raise Invalid("nursing.time_future", "thời điểm ghi không được ở tương lai", field=field)
    if opened_at is not None and at < opened_at - CLOCK_SKEW:
        raise Invalid("nursing.time_before_encounter", "thời điểm ghi trước khi vào điều trị", field=field)


def check_order_administrable(kind: str, status: str) -> None:
    if kind != "medication":
        raise Conflict(
            "administration.not_medication", "chỉ ghi dùng thuốc cho y lệnh thuốc", field="order_id"
        )
    if status != "active":
        word = ORDER_STATUS_WORDS.get(status, status)
        raise Conflict(
            "administration.order_not_active",
            f"y lệnh thuốc {word}: không ghi thêm lần dùng thuốc",
            field="order_id",
        )


def check_administration(status: str, dose_given: str, note: str) -> None:
    if status == "given" and not dose_given:
        raise Invalid("administration.dose_required", "ghi liều đã dùng", field="dose_given")
    if status != "given" and not note:
        raise Invalid(
            "administration.reason_required",
            f"ghi lý do ({STATUS_WORDS[status]})",
            field="note",
        )
