"""The EMR's boundary types: what use cases take and return. HTTP routes use them as request and response
models (so the OpenAPI documents every body) and the gRPC API converts them to and from the messages of
proto/hospital/emr/v1/emr.proto, whose field names they share (``to_proto`` / ``from_proto``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hospital.chassis.fields import Count, Real, Text, code, line, text

M = TypeVar("M", bound=Message)
Long = text(20000)  # history, examination, plan, a document section
S = TypeVar("S", bound=BaseModel)


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def to_proto(model: BaseModel, cls: type[M]) -> M:
    return json_format.ParseDict(
        model.model_dump(mode="json", exclude_none=True), cls(), ignore_unknown_fields=True
    )


def from_proto(message: Message, cls: type[S], **extra: Any) -> S:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data.update(extra)
    return cls.model_validate(data)


# --- patients and encounters -------------------------------------------------------------------------
class PatientSummary(Model):
    id: str
    patient_code: str = ""
    full_name: str = ""
    birth_date: str = ""
    sex: str = "unknown"
    insurance_card_number: str = ""


class Encounter(Model):
    id: str
    patient_id: str
    visit_id: str = ""
    admission_id: str = ""
    kind: Literal["outpatient", "inpatient", "emergency"]
    status: Literal["open", "closed"]
    department_code: str
    room_code: str = ""
    ward_code: str = ""
    bed_code: str = ""
    ticket_number: int = 0
    visit_code: str = ""
    service_date: date
    opened_at: datetime
    closed_at: datetime | None = None
    attending_doctor: str = ""
    main_diagnosis_code: str = ""
    patient_name: str = ""
    patient_code: str = ""
    discharge_type: str = ""
    insurance_card_number: str = ""


class EncounterPage(Model):
    items: list[Encounter]
    next_page_token: str = ""


# --- consultation ------------------------------------------------------------------------------------
class VitalFlag(Model):
    field: str
    flag: Literal["L", "H", "LL", "HH"]
    message: str


class Vitals(Model):
    systolic_bp: Count | None = Field(None, description="mmHg")
    diastolic_bp: Count | None = Field(None, description="mmHg")
    pulse: Count | None = Field(None, description="beats/min")
    temperature_c: Real | None = Field(None, description="°C")
    spo2: Count | None = Field(None, description="%")
    respiratory_rate: Count | None = Field(None, description="breaths/min")
    weight_kg: Real | None = None
    height_cm: Real | None = None
    bmi: Real | None = Field(None, description="computed, kg/m² (ignored on input)")
    measured_at: datetime | None = None
    flags: list[VitalFlag] = Field(default_factory=list, description="computed (ignored on input)")


class Diagnosis(Model):
    icd10_code: code(10, 1) = Field(..., examples=["J18.9"])
    name: line(300) = Field("", description="filled from the ICD-10 list when empty")
    main: bool = False
    note: text(1000) = ""


class Allergy(Model):
    id: str = ""
    substance: line(200, 1) = Field(..., examples=["Penicilin"])
    category: Literal["drug", "food", "environment", "other"] = "drug"
    ingredient_code: code(60) = Field(
        "",
        description="drug allergy: ingredient key or ATC prefix",
        examples=["penicillin", "J01C"],
    )
    reaction: line(300) = ""
    severity: Literal["mild", "moderate", "severe", ""] = ""
    status: Literal["active", "inactive", "entered_in_error"] = "active"
    recorded_at: datetime | None = None
    recorded_by: str = ""


class Problem(Model):
    id: str = ""
    icd10_code: code(10) = ""
    description: line(500, 1)
    status: Literal["active", "resolved"] = "active"
    onset_date: code(10) = ""
    recorded_at: datetime | None = None


class Consultation(Model):
    encounter_id: str
    patient_id: str
    version: int = 0
    chief_complaint: str = ""
    history: str = ""
    past_history: str = ""
    examination: str = ""
    vitals: Vitals = Field(default_factory=Vitals)
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    treatment_plan: str = ""
    follow_up_date: date | None = None
    updated_at: datetime | None = None
    updated_by: str = ""
    allergies: list[Allergy] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)


class SaveConsultation(Model):
    expected_version: int = Field(0, ge=0, description="the version read; 0 for the first save")
    chief_complaint: Text = ""
    history: Long = ""
    past_history: Long = ""
    examination: Long = ""
    vitals: Vitals = Field(default_factory=Vitals)
    diagnoses: list[Diagnosis] = Field(default_factory=list, max_length=20)
    treatment_plan: Long = ""
    follow_up_date: date | None = None
    allergies_set: bool = False
    allergies: list[Allergy] = Field(default_factory=list, max_length=100)
    problems_set: bool = False
    problems: list[Problem] = Field(default_factory=list, max_length=100)
    break_glass_reason: text(500) = ""


class Icd10Code(Model):
    code: str
    name_vi: str
    name_en: str = ""
    chapter: str
    block: str


class Icd10Page(Model):
    items: list[Icd10Code]


class Chart(Model):
    patient: PatientSummary
    allergies: list[Allergy]
    problems: list[Problem]
    encounters: list[Encounter]
    encounter: Encounter | None = None
    consultation: Consultation | None = None
    documents: list[Any] = Field(default_factory=list)
    orders: list[ClinicalOrder] = Field(default_factory=list)
    prescriptions: list[Prescription] = Field(default_factory=list)
    results: list[LabResult] = Field(default_factory=list)
    studies: list[ImagingStudy] = Field(default_factory=list)
    critical_alerts: list[CriticalAlert] = Field(default_factory=list)
    break_glass: bool = False
    papers: list[Paper] = Field(default_factory=list)


# --- drugs, prescriptions, orders --------------------------------------------------------------------
class Drug(Model):
    code: str
    name: str
    active_ingredient: str
    ingredient_codes: list[str]
    strength: str
    dosage_form: str
    unit: str
    route: str
    atc_code: str
    atc_class: str
    prescription_type: str
    registration_number: str = ""
    insurance_covered: bool = True


class DrugPage(Model):
    items: list[Drug]


class PrescriptionItem(Model):
    drug_code: code(30, 1)
    drug_name: str = ""
    active_ingredient: str = ""
    strength: str = ""
    unit: str = ""
    dose: line(100) = Field("", examples=["1 viên"])
    route: line(60) = ""
    frequency: line(100) = Field("", examples=["2 lần/ngày"])
    duration_days: int = Field(0, ge=0, le=365)
    quantity: code(20) = Field("", examples=["14"])
    instructions: text(500) = Field("", examples=["Uống sau ăn sáng và tối"])


class DrugAlert(Model):
    kind: str
    severity: str
    drug_code: str
    message: str
    related: str = ""


class AlertOverride(Model):
    drug_code: code(30, 1)
    kind: Literal["allergy", "duplicate_drug", "duplicate_therapy"]
    reason: text(500)


class LabOrderIn(Model):
    tests: list[code(20, 1)] = Field(..., min_length=1, max_length=50, examples=[["CBC", "GLU"]])
    stat: bool = False
    clinical_note: text(1000) = ""


class ImagingOrderIn(Model):
    procedure_code: code(16, 1) = Field(..., examples=["CT-SN"])
    description: line(200, 1) = Field(..., examples=["CT sọ não không tiêm thuốc"])
    modality: code(16, 2) = Field(..., examples=["CT"])
    station_ae_title: line(16) = ""
    scheduled_start: datetime | None = None
    clinical_note: text(1000) = ""


class MedicationOrderIn(Model):
    item: PrescriptionItem
    start_date: date | None = None
    note: text(1000) = ""


class PlaceOrders(Model):
    lab: list[LabOrderIn] = Field(default_factory=list, max_length=20)
    imaging: list[ImagingOrderIn] = Field(default_factory=list, max_length=20)
    medication: list[MedicationOrderIn] = Field(default_factory=list, max_length=50)
    overrides: list[AlertOverride] = Field(default_factory=list)
    request_id: code(100) = Field("", description="idempotency key")


class ClinicalOrder(Model):
    id: str
    encounter_id: str
    patient_id: str
    kind: Literal["lab", "imaging", "medication"]
    status: str
    codes: list[str]
    description: str
    stat: bool = False
    placer_order_number: str
    downstream_id: str = ""
    accession_number: str = ""
    refusal_reason: str = ""
    cancel_reason: str = ""
    attempts: int = 0
    last_error: str = ""
    ordered_by: str
    ordered_at: datetime
    updated_at: datetime
    medication: PrescriptionItem | None = None
    clinical_note: str = ""
    overrides: list[AlertOverride] = Field(default_factory=list)


class PlacedOrders(Model):
    orders: list[ClinicalOrder]


class OrderPage(Model):
    items: list[ClinicalOrder]


class CancelIn(Model):
    reason: text(500, 1)


class SavePrescription(Model):
    prescription_id: code(64) = ""
    type: Literal["c", "n", "h", "y"] = "c"
    items: list[PrescriptionItem] = Field(..., min_length=1, max_length=30)
    advice: Text = ""
    revisit_date: date | None = None
    overrides: list[AlertOverride] = Field(default_factory=list)
    request_id: code(100) = ""


class CheckResult(Model):
    alerts: list[DrugAlert]
    unresolved: list[DrugAlert]


class Prescription(Model):
    id: str
    encounter_id: str
    patient_id: str
    code: str
    type: str
    items: list[PrescriptionItem]
    diagnoses: list[Diagnosis]
    advice: str = ""
    revisit_date: date | None = None
    status: str
    document_id: str = ""
    overrides: list[AlertOverride] = Field(default_factory=list)
    national_status: str = "not_sent"
    national_error: str = ""
    national_attempts: int = 0
    created_at: datetime
    signed_at: datetime | None = None
    prescriber: str
    national_sent_at: datetime | None = None
    national_next_at: datetime | None = None


class NationalStatus(Model):
    """A prescription's delivery to the national e-prescription system."""

    prescription_id: str
    code: str  # ma_don_thuoc
    status: Literal["queued", "sent", "failed"]
    attempts: int
    last_error: str = ""
    next_attempt_at: datetime | None = None  # while queued
    sent_at: datetime | None = None
    payload: dict[str, Any]  # the document sent (fixed when the prescription became final)
    response: dict[str, Any] | None = None  # the national system's answer


# --- results, critical values, notifications ------------------------------------------------------------
class LabResult(Model):
    id: str
    order_id: str = ""
    lab_order_id: str = ""
    encounter_id: str = ""
    patient_id: str
    test_code: str
    test_name: str
    loinc: str = ""
    value: str
    unit: str = ""
    reference_range: str = ""
    flag: str = ""
    critical: bool = False
    status: str
    revision: int = 0
    previous_value: str = ""
    observed_at: datetime | None = None
    verified_at: datetime | None = None


class ImagingStudy(Model):
    study_instance_uid: str
    accession_number: str = ""
    order_id: str = ""
    imaging_order_id: str = ""
    encounter_id: str = ""
    patient_id: str = ""
    modalities: list[str] = Field(default_factory=list)
    series_count: int = 0
    instance_count: int = 0
    description: str = ""
    viewer_url: str = ""
    report_document_id: str = ""
    report_status: str = "none"
    received_at: datetime | None = None
    procedure_status: str = ""


class ResultsPage(Model):
    results: list[LabResult]
    studies: list[ImagingStudy]


class TrendPoint(Model):
    value: str
    numeric_value: float = 0.0
    numeric: bool = False
    flag: str = ""
    observed_at: datetime | None = None
    result_id: str


class Trend(Model):
    test_code: str
    test_name: str = ""
    unit: str = ""
    reference_range: str = ""
    points: list[TrendPoint]


class CriticalAlert(Model):
    id: str
    result_id: str
    patient_id: str
    patient_name: str = ""
    encounter_id: str = ""
    order_id: str = ""
    ordering_doctor: str
    department_code: str
    test_code: str
    test_name: str
    value: str
    unit: str = ""
    flag: str = ""
    status: Literal["open", "acknowledged"]
    escalated: bool = False
    raised_at: datetime
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    read_back: str = ""
    seconds_to_acknowledge: int | None = None


class CriticalPage(Model):
    items: list[CriticalAlert]


class AcknowledgeIn(Model):
    read_back: text(500, 3) = Field(
        ...,
        description="what the clinician repeated back, e.g. 'Kali 6,9 mmol/L'",
    )


class Notification(Model):
    id: str
    seq: int = 0
    kind: str
    patient_id: str = ""
    encounter_id: str = ""
    title: str
    at: datetime
    result: LabResult | None = None
    critical: CriticalAlert | None = None
    order: ClinicalOrder | None = None
    study: ImagingStudy | None = None


# --- documents and signatures ---------------------------------------------------------------------------
class DocumentSection(Model):
    code: code(40, 1)
    title: line(200) = ""
    text: Long = ""


class Signature(Model):
    signer: str
    signer_name: str = ""
    key_id: str
    algorithm: str
    provider: str
    jws: str
    content_sha256: str
    signed_at: datetime


class Document(Model):
    id: str
    encounter_id: str
    patient_id: str
    kind: str
    template_code: str = ""
    title: str
    sections: list[DocumentSection]
    status: Literal["draft", "signed", "superseded"]
    version: int
    amends_document_id: str = ""
    amended_by_document_id: str = ""
    author: str
    author_name: str = ""
    created_at: datetime
    updated_at: datetime
    signature: Signature | None = None
    study_instance_uid: str = ""
    order_id: str = ""
    amendment_reason: str = ""


class SaveDocument(Model):
    kind: Literal[
        "outpatient_note", "admission_note", "progress_note", "discharge_summary", "radiology_report"
    ]
    template_code: str = ""
    title: line(300) = ""
    sections: list[DocumentSection] = Field(default_factory=list, max_length=50)
    study_instance_uid: code(64) = ""
    request_id: code(100) = ""


class SaveWholeConsultation(Model):
    """What the doctor's screen saves at once: the consultation, then any orders, a prescription and a
    note, the note (and the prescription) signed if asked; one transaction, all or nothing."""

    consultation: SaveConsultation
    orders: PlaceOrders | None = None
    prescription: SavePrescription | None = None
    note: SaveDocument | None = None
    sign_note: bool = False
    sign_prescription: bool = False


class SavedConsultation(Model):
    consultation: Consultation
    orders: list[ClinicalOrder] = Field(default_factory=list)
    prescription: Prescription | None = None
    note: Document | None = None


class UpdateDocument(Model):
    title: line(300) = ""
    sections: list[DocumentSection] = Field(default_factory=list, max_length=50)


class AmendDocument(Model):
    reason: text(1000, 5)
    title: line(300) = ""
    sections: list[DocumentSection] = Field(..., min_length=1, max_length=50)


class VerifyResult(Model):
    document_id: str
    signed: bool
    valid: bool
    reason: str = ""
    signature: Signature | None = None
    version: int
    amends_document_id: str = ""
    amended_by_document_id: str = ""


class StudyPage(Model):
    items: list[ImagingStudy]


class NoteTemplates(Model):
    items: list[dict[str, Any]]


# --- reports ---------------------------------------------------------------------------------------------
class BreakGlassAccess(Model):
    id: str
    subject: str
    patient_id: str
    encounter_id: str = ""
    department_code: str = ""
    reason: str
    accessed_at: datetime


class BreakGlassReport(Model):
    since: datetime | None = None
    items: list[BreakGlassAccess]


class CriticalDepartmentStats(Model):
    department_code: str
    raised: int
    acknowledged: int
    open: int
    escalated: int
    median_seconds_to_acknowledge: float | None = None
    p90_seconds_to_acknowledge: float | None = None
    max_seconds_to_acknowledge: int | None = None


class CriticalReport(Model):
    since: datetime | None = None
    departments: list[CriticalDepartmentStats]


# --- papers a visit produces (QĐ 130 XML7, XML13, XML11, XML14) ----------------------------------------
PaperKind = Literal["discharge_paper", "referral_paper", "sick_leave", "revisit"]
Digits10 = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
Facility5 = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]
Card15 = Annotated[str, StringConstraints(pattern=r"^([A-Z]{2}[1-5][0-9]{2}[0-9A-Z]{10})?$")]


class DischargePaperIn(Model):
    """Giấy ra viện (XML7): the outcome and what the patient takes home."""

    discharge_type: int = Field(1, ge=1, le=5, description="MA_LOAI_RV: 1 ra viện, 2/5 chuyển tuyến, 3, 4")
    treatment_result: int = Field(..., ge=1, le=7, description="KET_QUA_DTRI 1..7 (a death has no paper)")
    treatment_method: text(1500, 1) = Field(..., description="PP_DIEUTRI")
    note: text(1500) = Field("", description="GHI_CHU: lời dặn")
    department_code: code(20) = Field("", description="MA_KHOA_RV; set from the encounter")
    leave_days: int = Field(0, ge=0, le=99, description="SO_NGAY_NGHI")
    outpatient_from: date | None = Field(None, description="NGOAITRU_TUNGAY")
    outpatient_to: date | None = Field(None, description="NGOAITRU_DENNGAY")
    pregnancy_terminated: bool = False
    termination_reason: text(1500) = ""
    terminated_at: datetime | None = None
    gestational_weeks: int = Field(0, ge=0, le=45)
    father_id: code(10) = ""
    mother_id: code(10) = ""
    temporary_card: Card15 = ""
    father_name: line(255) = ""
    mother_name: line(255) = ""


class ReferralIn(Model):
    """Giấy chuyển tuyến (XML13)."""

    to_facility_code: Facility5 = Field(..., description="MA_NOI_DEN", examples=["01929"])
    to_facility_name: line(255) = ""
    reason_code: int = Field(..., ge=1, le=2, description="MA_LYDO_CT: 1 đủ điều kiện, 2 người bệnh yêu cầu")
    reason: text(1000) = ""
    referral_type: code(20) = Field("", description="set from reason_code: expertise, patient_request")
    clinical_signs: text(4000, 1) = Field(..., description="DAU_HIEU_LS")
    course: text(4000, 1) = Field(..., description="QT_BENHLY")
    results_summary: text(4000) = Field("", description="TOMTAT_KQ")
    treatment_given: text(4000) = Field("", description="PP_DIEUTRI")
    services_given: text(1024) = Field("", description="TEN_DICH_VU (default: the encounter's orders)")
    drugs_given: text(1024) = Field("", description="TEN_THUOC (default: the encounter's drugs)")
    treatment_direction: text(4000, 1) = Field(..., description="HUONG_DIEU_TRI")
    condition: text(1000) = ""
    transport: line(255, 1) = Field(..., description="PHUONGTIEN_VC", examples=["Xe cứu thương"])
    escort: line(255) = Field("", description="HOTEN_NGUOI_HT")
    escort_title: line(255) = Field("", description="CHUCDANH_NGUOI_HT")
    treatment_result: int = Field(0, ge=0, le=7, description="KET_QUA_DTRI at the transfer; 0 not stated")
    record_number: code(50) = Field("", description="SO_HOSO (default: the visit code)")
    paper_code: code(50) = Field("", description="GIAY_CHUYEN_TUYEN (assigned)")


class SickLeaveIn(Model):
    """Giấy chứng nhận nghỉ việc hưởng BHXH (XML11)."""

    from_date: date = Field(..., description="TU_NGAY")
    to_date: date = Field(..., description="DEN_NGAY")
    days: int = Field(0, ge=0, le=999, description="SO_NGAY_NGHI: computed (inclusive); must match if given")
    reason: text(1000) = ""
    social_insurance_number: Digits10 = Field(..., description="MA_BHXH", examples=["3521234567"])
    employer: line(1024, 1) = Field(..., description="DON_VI")
    treatment_method: text(1500, 1) = Field(..., description="PP_DIEUTRI")
    pregnancy_terminated: bool = False
    termination_reason: text(1500) = ""
    gestational_weeks: int = Field(0, ge=0, le=45)
    father_name: line(255) = ""
    mother_name: line(255) = ""
    temporary_card: Card15 = ""
    serial: code(50) = Field("", description="SO_SERI (assigned)")
    record_number: code(50) = Field("", description="SO_KCB (default: the visit code)")
    form: Literal["CT07", "CT08", ""] = Field("", description="MAU_SO (default CT07)")


class RevisitIn(Model):
    """Giấy hẹn khám lại (XML14)."""

    revisit_date: date = Field(..., description="NGAY_HEN_KL")
    note: text(1000) = ""


class SavePaper(Model):
    paper_id: code(64) = ""
    kind: PaperKind
    replaces_paper_id: code(64) = ""
    discharge: DischargePaperIn | None = None
    referral: ReferralIn | None = None
    sick_leave: SickLeaveIn | None = None
    revisit: RevisitIn | None = None
    request_id: code(100) = ""


class Paper(Model):
    id: str
    encounter_id: str
    patient_id: str
    kind: PaperKind
    number: str
    status: Literal["draft", "signed", "superseded"]
    version: int
    document_id: str
    replaces_paper_id: str = ""
    diagnoses: list[Diagnosis]
    discharge: DischargePaperIn | None = None
    referral: ReferralIn | None = None
    sick_leave: SickLeaveIn | None = None
    revisit: RevisitIn | None = None
    author: str
    author_name: str = ""
    created_at: datetime
    signed_at: datetime | None = None
    department_code: str = ""
    visit_code: str = ""


class PaperPage(Model):
    items: list[Paper]


# --- nursing records of ward encounters -------------------------------------------------------------------
class RecordVitals(Model):
    """One set of vital signs a nurse measured (at least one value)."""

    systolic_bp: Count | None = Field(None, description="mmHg")
    diastolic_bp: Count | None = Field(None, description="mmHg")
    pulse: Count | None = Field(None, description="beats/min")
    temperature_c: Real | None = Field(None, description="°C")
    spo2: Count | None = Field(None, description="%")
    respiratory_rate: Count | None = Field(None, description="breaths/min")
    weight_kg: Real | None = None
    measured_at: datetime | None = Field(None, description="when measured (default: now); not in the future")
    note: text(1000) = ""
    request_id: code(100) = Field("", description="idempotency key: a repeated request returns the first")


class VitalObservation(Model):
    id: str
    encounter_id: str
    patient_id: str
    systolic_bp: int | None = None
    diastolic_bp: int | None = None
    pulse: int | None = None
    temperature_c: float | None = None
    spo2: int | None = None
    respiratory_rate: int | None = None
    weight_kg: float | None = None
    flags: list[VitalFlag] = Field(default_factory=list)
    note: str = ""
    measured_at: datetime
    recorded_by: str
    recorded_by_name: str = ""
    recorded_at: datetime


class VitalObservationPage(Model):
    items: list[VitalObservation] = Field(description="newest first")


AdministrationStatus = Literal["given", "held", "refused", "missed"]


class RecordAdministration(Model):
    """A dose of a medication order: given (with the dose), or held / refused / missed (with the reason)."""

    status: AdministrationStatus
    administered_at: datetime | None = Field(
        None, description="given: when (default now); otherwise the scheduled time; not in the future"
    )
    dose_given: line(100) = Field("", description="required when given, e.g. '1 viên', '500 mg'")
    note: text(1000) = Field("", description="required when held, refused or missed: the reason")
    request_id: code(100) = Field("", description="idempotency key: a repeated request returns the first")


class MedicationAdministration(Model):
    id: str
    order_id: str
    encounter_id: str
    patient_id: str
    status: AdministrationStatus
    administered_at: datetime
    dose_given: str = ""
    note: str = ""
    drug_code: str = ""
    drug_name: str = ""
    recorded_by: str
    recorded_by_name: str = ""
    recorded_at: datetime


class MedicationAdministrationPage(Model):
    items: list[MedicationAdministration] = Field(description="newest first")


Chart.model_rebuild()  # once its orders, results and papers are defined
