"""The HTTP API's request and response models. Requests: every text field is bounded and cleaned (chassis
``fields``). Responses: the JSON the API has always answered (kiosks and integrators parse these names)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, Field

from hospital.chassis.fields import INT32_MAX, Code, Id, code, line, text
from hospital.chassis.responses import Instant, Out

Name = line(200)  # a blank name gets the domain's own error (patient.full_name)
Place = line(100)  # ward, district, ethnicity, occupation
AddressLine = line(300)
Phone = code(20)
IdNumber = code(20)  # CCCD, CMND, BHYT number: the domain checks the format
Ticket = Annotated[int, Field(ge=1, le=INT32_MAX)]


class PatientIn(BaseModel):
    """Every text field is bounded and cleaned (chassis ``fields``): one line, no control characters,
    Unicode NFC; a longer or dirty value is refused with 422 naming the field."""

    full_name: Name = Field(..., examples=["Nguyễn Văn An"])
    birth_date: code(10) = Field(
        ..., description="YYYY-MM-DD, or YYYY when only the year is known", examples=["1985-09-04"]
    )
    sex: Literal["male", "female"]
    cccd: IdNumber | None = Field(None, description="12-digit citizen ID", examples=["001085012345"])
    old_id_number: IdNumber | None = Field(None, description="9-digit CMND")
    bhyt_number: IdNumber | None = Field(None, examples=["HS4010120878811"])
    bhyt_valid_from: date | None = None
    bhyt_valid_to: date | None = None
    bhyt_registered_facility: code(20) | None = Field(None, examples=["01 - 043"])
    bhyt_five_year_date: date | None = None
    phone: Phone | None = Field(None, examples=["0912345678"])
    address_line: AddressLine | None = Field(
        None, description="at most 300 characters", examples=["Số 12 ngõ 34"]
    )
    ward: Place | None = Field(None, description="at most 100 characters")
    district: Place | None = Field(None, description="at most 100 characters")
    province_code: code(2) | None = None
    ethnicity: Place | None = Field(None, examples=["Kinh"])
    occupation: Place | None = None
    guardian_name: Name | None = None
    guardian_phone: Phone | None = None
    request_id: code(100) | None = Field(
        None, description="idempotency key: a retry returns the same patient"
    )


class PatientPatch(BaseModel):
    full_name: Name | None = None
    birth_date: code(10) | None = None
    sex: Literal["male", "female"] | None = None
    cccd: IdNumber | None = None
    old_id_number: IdNumber | None = None
    phone: Phone | None = None
    address_line: AddressLine | None = None
    ward: Place | None = None
    district: Place | None = None
    province_code: code(2) | None = None
    ethnicity: Place | None = None
    occupation: Place | None = None
    guardian_name: Name | None = None
    guardian_phone: Phone | None = None


class CardIn(BaseModel):
    number: IdNumber = Field(..., examples=["HS4010120878811"])
    valid_from: date | None = None
    valid_to: date | None = None
    registered_facility: code(20) | None = Field(None, examples=["01 - 043"])
    five_year_date: date | None = None


class MergeIn(BaseModel):
    merged_id: Id = Field(..., description="the duplicate record to fold into this one")


class ScanIn(BaseModel):
    qr: text(4000, min_length=1) = Field(..., description="raw text of a CCCD or BHYT card QR code")


class VisitIn(BaseModel):
    patient_id: Id
    room: code(20, min_length=1) = Field(
        ..., description="clinic room code from GET /api/v1/rooms", examples=["P101"]
    )
    kind: Literal["insured", "fee_paying", "emergency", "referral"] = "fee_paying"
    insurance_card_number: IdNumber | None = None
    referral_code: Code | None = None


class QueueActionIn(BaseModel):
    action: Literal["next", "recall", "skip"] = "next"
    ticket_number: Ticket | None = None


class DisplayLinkIn(BaseModel):
    valid_days: int = Field(90, ge=1, le=366, description="how long the screen may use the link")


DisplayExp = Annotated[int | None, Query(ge=0, le=2**40, description="display link: expiry (Unix time)")]
DisplaySig = Annotated[str | None, Query(max_length=64, description="display link: signature")]


class AdmitIn(BaseModel):
    patient_id: Id
    bed: code(30, min_length=1) = Field(..., examples=["NOI-101-01"])
    visit_id: Id | None = None


class TransferIn(BaseModel):
    bed: code(30, min_length=1)


class DischargeIn(BaseModel):
    discharge_type: code(30, min_length=1) = Field(
        "improved", examples=["recovered", "improved", "transferred_out", "deceased"]
    )


# --- responses -----------------------------------------------------------------------------------------
class InsuranceCard(Out):
    number: str
    benefit_level: int
    benefit_rate: int = Field(..., description="percent paid by the insurance fund")
    province_code: str | None
    registered_facility: str | None
    valid_from: date | None
    valid_to: date | None
    five_year_date: date | None


class Address(Out):
    line: str | None
    ward: str | None
    district: str | None
    province_code: str | None


class Guardian(Out):
    name: str
    phone: str | None


class Patient(Out):
    id: str
    patient_code: str = Field(..., examples=["BN250000123"])
    full_name: str = Field(..., examples=["Nguyễn Văn An"])
    birth_date: str = Field(..., description="YYYY-MM-DD, YYYY-MM or YYYY", examples=["1985-09-04"])
    sex: str = Field(..., examples=["male", "female"])
    cccd: str | None
    old_id_number: str | None
    phone: str | None
    address: Address
    ethnicity: str | None
    occupation: str | None
    guardian: Guardian | None
    bhyt_number: str | None = Field(..., description="the first insurance card's number")
    insurance_cards: list[InsuranceCard]
    merged_into: str | None = Field(..., description="the surviving record when this one was merged")
    created_at: Instant
    updated_at: Instant


class PatientPage(Out):
    items: list[Patient]


class Candidate(Patient):
    match: Literal["cccd", "bhyt_number", "name_birth_sex"]


class ScanConflict(Out):
    code: str = Field(..., examples=["cccd_differs", "card_expired"])
    message: str
    cccd_value: str | None = None
    bhyt_value: str | None = None


class ScannedCccd(Out):
    cccd: str
    old_id: str | None
    full_name: str
    birth_date: str
    sex: str
    address: str
    issue_date: date | None
    extra_fields: list[str]


class RegisteredFacility(Out):
    raw: str = Field(..., examples=["01 - 043"])
    province_code: str | None
    facility_code: str | None


class ScannedBhyt(Out):
    card_number: str
    group_code: str
    benefit_level: int
    benefit_rate: int
    province_code: str
    insured_id: str
    full_name: str
    birth_date: str
    sex: str
    address: str
    registered_facility: RegisteredFacility
    valid_from: date | None
    valid_to: date | None
    issue_date: date | None
    management_code: str | None
    guardian_name: str | None
    living_area_code: str | None
    five_year_date: date | None


class Scan(Out):
    kind: Literal["cccd", "bhyt"]
    identity: ScannedCccd | ScannedBhyt
    candidates: list[Candidate]
    conflicts: list[ScanConflict]


class Duplicate(Out):
    patient: Patient
    score: float
    reasons: list[str]


class DuplicatePage(Out):
    items: list[Duplicate]


class Room(Out):
    code: str
    name: str
    department: str
    department_code: str


class Department(Out):
    code: str
    name: str


class Ward(Out):
    code: str
    name: str
    department_code: str


class Province(Out):
    code: str
    name: str


class RoomPage(Out):
    items: list[Room]


class DepartmentPage(Out):
    items: list[Department]


class WardPage(Out):
    items: list[Ward]


class ProvincePage(Out):
    items: list[Province]


class Visit(Out):
    id: str
    visit_code: str = Field(..., examples=["KB2612070001"])
    patient_id: str
    kind: str
    department_code: str
    room: str
    service_date: date
    ticket_number: int
    queue_status: str = Field(..., examples=["waiting", "called", "skipped", "done"])
    status: str = Field(..., examples=["open", "closed"])
    insurance_card_number: str | None
    referral_code: str | None
    opened_at: Instant
    closed_at: Instant | None


class VisitPatient(Out):
    id: str
    patient_code: str
    full_name: str


class OpenedVisit(Visit):
    patient: VisitPatient


class QueueCall(Out):
    room: str
    ticket_number: int
    visit_id: str
    status: str
    patient_name: str | None


class QueueState(Out):
    room: str
    service_date: date
    now_serving: int | None
    called: list[int] = Field(..., description="called tickets, the latest first")
    waiting: list[int]


class DisplayLink(Out):
    room: str
    exp: int
    sig: str
    expires_at: Instant
    stream_path: str
    state_path: str
    display_path: str


class Stay(Out):
    id: str
    patient_id: str
    visit_id: str | None
    ward: str
    bed: str
    status: str
    admitted_at: Instant
    discharged_at: Instant | None
    discharge_type: str | None


class Bed(Out):
    code: str
    ward: str
    ward_name: str
    room: str | None
    occupied: bool
    admission_id: str | None
    patient_id: str | None


class BedPage(Out):
    items: list[Bed]
