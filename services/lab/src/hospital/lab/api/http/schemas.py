"""The HTTP API's request and response models. Requests: every text field is bounded and cleaned (chassis
``fields``). Responses: the JSON the API has always answered (wards and bench screens parse these names)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from hospital.chassis.fields import Id, Real, code, line, text
from hospital.chassis.responses import Instant, Out


class PatientIn(BaseModel):
    id: code(36, min_length=1)
    patient_code: code(30) | None = Field(None, examples=["BN250000123"])
    full_name: line(200) = Field(..., examples=["Nguyễn Thị Hoa"])
    sex: Literal["male", "female", "unknown"]
    birth_date: code(10) | None = Field(None, examples=["1985-03-14", "1985"])


class OrderIn(BaseModel):
    """Text fields are bounded and cleaned (chassis ``fields``): 422 naming the field otherwise."""

    patient: PatientIn
    tests: list[code(20, min_length=1)] = Field(
        ..., min_length=1, max_length=100, examples=[["CBC", "GLU", "CRE"]]
    )
    priority: Literal["routine", "stat"] = "routine"
    visit_id: Id | None = None
    ordering_doctor: line(200) | None = None
    placer_order_number: code(60) | None = None
    request_id: code(100) | None = None
    clinical_note: text(2000) | None = None
    barcode: code(40) | None = Field(None, description="a pre-printed barcode (one tube only)")


class CancelIn(BaseModel):
    reason: text(300, min_length=1)


class VerifyIn(BaseModel):
    result_ids: list[Id] = Field(..., min_length=1, max_length=500)


class AmendIn(BaseModel):
    value: line(200, min_length=1)
    reason: text(300, min_length=1)


class AssignIn(BaseModel):
    instrument: code(40, min_length=1)
    barcode_received: code(40, min_length=1)
    barcode: code(40, min_length=1) = Field(..., description="the specimen the results belong to")


class CriticalCallIn(BaseModel):
    notified_person: line(200, min_length=1) = Field(..., examples=["BS. Trần Văn Nam"])
    notified_role: line(60, min_length=1) = Field(..., examples=["bác sĩ điều trị"])
    notified_at: datetime | None = None
    read_back_confirmed: bool
    note: text(1000) | None = None


class AutoVerifyIn(BaseModel):
    enabled: bool


class QcLotIn(BaseModel):
    instrument_id: code(40, min_length=1)
    test_code: code(20, min_length=1)
    lot_number: code(60, min_length=1)
    level: code(20, min_length=1) = Field(..., examples=["1", "2", "normal", "high"])
    material: line(200) = ""
    sample_id: code(60, min_length=1) = Field(..., description="the specimen ID the analyzer reports for it")
    mean: Real = Field(..., ge=-1e12, le=1e12, description="target mean (finite)")
    sd: Real = Field(..., gt=0, le=1e12, description="target standard deviation (finite, > 0)")
    expires: date | None = None


class QcResultIn(BaseModel):
    value: Real = Field(..., ge=-1e12, le=1e12)
    measured_at: datetime | None = None


# --- responses -----------------------------------------------------------------------------------------
class Range(Out):
    sex: str = Field(..., examples=["male", "female", "any"])
    age_min_days: int
    age_max_days: int
    range: str = Field(..., examples=["3.9-6.4", "<5", ">60"])


class TestInfo(Out):
    code: str = Field(..., examples=["GLU"])
    name_vi: str
    name_en: str
    loinc: str | None
    unit: str
    specimen_type: str
    tube: str
    ranges: list[Range]


class Panel(Out):
    code: str = Field(..., examples=["CBC"])
    name_vi: str
    tests: list[str]


class CatalogueOut(Out):
    tests: list[TestInfo]
    panels: list[Panel]


class OrderPatient(Out):
    check: str = Field(..., description="the admissions check of the patient", examples=["verified"])
    id: str
    patient_code: str | None
    full_name: str | None
    sex: str | None
    birth_date: str | None


class OrderItem(Out):
    test_code: str
    test_name: str
    specimen_barcode: str
    status: str = Field(..., examples=["ordered", "resulted", "verified", "cancelled"])


class OrderSpecimen(Out):
    id: str
    barcode: str
    specimen_type: str
    tube: str
    status: str = Field(..., examples=["ordered", "collected", "received", "cancelled"])
    collected_at: Instant | None
    received_at: Instant | None
    tests: list[str]


class Order(Out):
    id: str
    order_number: str
    status: str = Field(..., examples=["active", "completed", "cancelled"])
    priority: str = Field(..., examples=["routine", "stat"])
    patient: OrderPatient
    visit_id: str | None
    ordering_doctor: str | None
    placer_order_number: str | None
    ordered_at: Instant | None
    cancel_reason: str | None
    clinical_note: str | None
    items: list[OrderItem]
    specimens: list[OrderSpecimen]


class Specimen(OrderSpecimen):
    order_id: str


class Result(Out):
    id: str
    order_id: str | None
    specimen_barcode: str
    barcode_received: str
    patient_id: str | None
    test_code: str | None
    test_name: str
    loinc: str | None
    value: str
    unit: str
    reference_range: str
    flag: str = Field(..., examples=["", "L", "H", "LL", "HH", "A"])
    critical: bool
    delta_failed: bool
    delta_previous: str | None
    status: str = Field(..., examples=["unmatched", "info", "preliminary", "verified", "superseded"])
    revision: int
    instrument: str
    analyzer_code: str
    analyzer_value: str
    analyzer_unit: str
    analyzer_flags: str
    observed_at: Instant | None
    received_at: Instant | None
    verified_at: Instant | None
    verified_by: str | None
    autoverify_rule: str | None
    hold_reason: str | None
    note: str | None


class ResultPage(Out):
    items: list[Result]


class WorklistResult(Result):
    patient_name: str | None
    order_number: str


class Worklist(Out):
    items: list[WorklistResult]


class OrderResults(Out):
    order_id: str
    patient_id: str
    patient_name: str | None
    results: list[Result]


class CriticalCall(Out):
    id: str
    result_id: str
    notified_person: str
    notified_role: str
    notified_at: Instant | None
    read_back_confirmed: bool
    called_by: str
    note: str | None


class Revision(Out):
    """A result's earlier revision, kept when it was corrected."""

    id: str
    result_id: str
    revision: int
    value: str
    unit: str
    flag: str
    status: str
    verified_by: str | None
    verified_at: Instant | None
    replaced_at: Instant | None
    replaced_by: str
    reason: str


class ResultDetail(Result):
    history: list[Revision]
    critical_calls: list[CriticalCall]


class UnmatchedGroup(Out):
    instrument: str
    barcode_received: str
    first_received_at: Instant | None
    results: list[Result]


class UnmatchedPage(Out):
    items: list[UnmatchedGroup]


class Critical(Result):
    patient_name: str | None
    ordering_doctor: str | None
    calls: list[CriticalCall]


class CriticalPage(Out):
    items: list[Critical]


class AutoVerify(Out):
    enabled: bool


class QcLot(Out):
    id: str
    instrument_id: str
    test_code: str
    lot_number: str
    level: str
    material: str
    sample_id: str
    mean: float
    sd: float
    expires: date | None
    active: bool


class QcLotPage(Out):
    items: list[QcLot]


class QcViolation(Out):
    rule: str = Field(..., examples=["1-3s", "2-2s", "R-4s"])
    rejection: bool


class QcRun(Out):
    id: str
    lot_id: str
    value: float
    z: float
    accepted: bool
    violations: list[QcViolation]
    measured_at: Instant | None


class QcPoint(Out):
    measured_at: Instant | None
    value: float
    z: float
    violations: list[str]
    accepted: bool
    source: str = Field(..., examples=["analyzer", "manual"])


class LeveyJennings(Out):
    lot: QcLot
    mean: float
    sd: float
    limits: dict[str, float] = Field(..., examples=[{"-3sd": 4.1, "+3sd": 5.9}])
    points: list[QcPoint]


class QcState(Out):
    instrument_id: str
    test_code: str
    accepted: bool
    last_run_at: Instant | None
    lot_id: str
    violations: list[str]


class QcStatePage(Out):
    items: list[QcState]
