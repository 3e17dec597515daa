"""The HTTP API's request and response models (DICOMweb answers DICOM JSON and multipart bodies; see
api/dicomweb.py). Responses: the JSON the API has always answered (review screens and ops tooling parse
these names); index rows keep their column names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from hospital.chassis.fields import Id, code, line
from hospital.chassis.responses import Instant, Out


class ResolveBody(BaseModel):
    order_id: Id | None = Field(
        default=None, description="link to this order; null accepts the study as unordered"
    )


class ConflictResolveBody(BaseModel):
    action: Literal["keep_existing", "take_new"] = Field(
        description="keep_existing: the indexed instance stays; take_new: the flagged copy replaces it "
        "(the replaced copy is kept under conflicts/)"
    )


class MppsResolveBody(BaseModel):
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = Field(
        description="how the MPPS was handled (1-500 characters, trimmed), e.g. the order re-made or why "
        "none was owed"
    )


class DeleteBody(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)] = Field(
        description="why it is deleted (5-500 characters, trimmed), e.g. the retention period ended or the "
        "images were sent for the wrong patient; kept on the job, in the audit trail and in the event"
    )


AeTitle = code(16, min_length=1)  # PS3.5: AE is at most 16 characters


class RuleBody(BaseModel):
    name: line(100) = ""
    destination_ae: AeTitle
    modality: code(16) | None = None
    source_ae: AeTitle | None = None
    attributes: dict[code(64, min_length=1), line(200)] = Field(default_factory=dict, max_length=20)
    enabled: bool = True


# --- responses -----------------------------------------------------------------------------------------
class Series(Out):
    series_instance_uid: str | None = None
    modality: str | None = None
    series_number: int | None = None
    description: str | None = None
    body_part: str | None = None
    instance_count: int | None = None


class Study(Out):
    """A study's index entry (the gRPC ``Study`` message as JSON: fields at their default are left out)."""

    study_instance_uid: str | None = None
    patient_code: str | None = Field(None, description="DICOM PatientID")
    patient_name: str | None = None
    accession_number: str | None = None
    study_date: str | None = Field(None, description="YYYYMMDD as sent")
    description: str | None = None
    modalities: list[str] | None = None
    series_count: int | None = None
    instance_count: int | None = None
    order_id: str | None = None
    reconciliation: str | None = Field(None, examples=["matched", "pending", "resolved", "unmatched"])
    series: list[Series] | None = None
    size_bytes: str | None = Field(None, description="int64 as a JSON string (proto3 JSON mapping)")


class Deletion(Out):
    id: str
    level: str = Field(..., examples=["study", "series"])
    study_instance_uid: str
    series_instance_uid: str | None
    patient_id: str | None
    reason: str
    requested_by: str
    status: str = Field(..., examples=["pending", "done"])
    instance_count: int
    objects_total: int
    attempts: int
    next_attempt_at: Instant | None
    last_error: str | None
    created_at: Instant | None
    completed_at: Instant | None


class DeletionJob(Deletion):
    objects_left: int = Field(..., description="objects still to remove from the bucket")


class DeletionPage(Out):
    items: list[Deletion]


class Order(Out):
    id: str
    accession_number: str
    request_id: str | None
    order_ref: str | None
    requested_procedure_id: str | None
    requested_procedure_description: str | None
    modality: str | None
    station_ae_title: str | None
    scheduled_start: Instant | None
    scheduled_date: str | None
    patient_ref: str | None
    patient_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    referring_physician: str | None
    visit_ref: str | None
    study_instance_uid: str | None
    mpps_instance_uid: str | None
    created_at: Instant | None
    updated_at: Instant | None


class OrderPage(Out):
    items: list[Order]


class ReconciliationItem(Out):
    id: str
    study_instance_uid: str
    reason: str
    detail: str
    candidate_order_id: str | None
    status: str = Field(..., examples=["open", "resolved"])
    resolved_order_id: str | None
    resolved_by: str | None
    created_at: Instant
    resolved_at: Instant | None
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    modalities: str | None


class ReconciliationPage(Out):
    items: list[ReconciliationItem]


class Reconciled(Out):
    id: str
    status: str
    order_id: str | None
    study_instance_uid: str


class InstanceConflict(Out):
    id: str
    sop_instance_uid: str
    digest: str | None
    object_key: str | None
    source_ae: str | None
    received_at: Instant | None
    status: str = Field(..., examples=["open", "resolved"])
    resolution: str | None
    resolved_by: str | None
    resolved_at: Instant | None
    existing_digest: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    existing_object_key: str | None
    existing_source_ae: str | None
    existing_received_at: Instant | None


class ConflictPage(Out):
    items: list[InstanceConflict]


class ConflictResolved(Out):
    """The resolution and what it changed (with ``take_new``: the new copy's index attributes and where
    the replaced copy is kept, ``superseded_copy``)."""

    id: str
    status: str
    resolution: Literal["keep_existing", "take_new"]


class Mpps(Out):
    mpps_instance_uid: str
    order_id: str | None
    accession_number: str | None
    study_instance_uid: str | None
    patient_id: str | None
    patient_name: str | None
    calling_ae: str | None
    status: str | None = Field(..., examples=["IN PROGRESS", "COMPLETED", "DISCONTINUED"])
    attention: str | None = Field(
        ...,
        examples=["no_order", "order_cancelled", "already_completed", "redo_discontinued", "superseded"],
    )
    resolved_by: str | None
    resolved_at: Instant | None
    resolution_note: str | None
    created_at: Instant | None
    updated_at: Instant | None


class MppsPage(Out):
    items: list[Mpps]


class RoutingRule(Out):
    id: str
    name: str
    destination_ae: str
    modality: str | None
    source_ae: str | None
    attributes: dict[str, str]
    enabled: bool
    created_at: Instant


class RoutingRulePage(Out):
    items: list[RoutingRule]


class QueuedSend(Out):
    seq: int
    destination_ae: str
    sop_instance_uid: str
    study_instance_uid: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: Instant | None


class RoutingQueue(Out):
    destinations: dict[str, dict[str, int]] = Field(..., description="destination AE → status → count")
    waiting: list[QueuedSend]


class Pipeline(Out):
    spooled: int = Field(..., description="instances in the spool, not yet in object storage and indexed")
    indexed_since_start: int
    last_error: str | None
