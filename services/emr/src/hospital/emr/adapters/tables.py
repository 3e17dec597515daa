"""EMR database tables (SQLAlchemy Core, one MetaData). The schema history is in migrations/versions as
explicit DDL; tests/test_migrations.py checks that upgrading an empty database gives exactly these tables."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hospital.chassis.db import BigId, UtcDateTime

metadata = MetaData()

# --- patients (a snapshot of admissions' master patient index) ---------------------------------------
patients = Table(
    "emr_patients",
    metadata,
    Column("id", String(36), primary_key=True),  # admissions patient id
    Column("patient_code", String(30), nullable=True),
    Column("full_name", String(200), nullable=False),
    Column("birth_date", String(10), nullable=True),  # YYYY-MM-DD, YYYY-MM or YYYY
    Column("sex", String(10), nullable=False),  # male, female, unknown
    Column("insurance_card_number", String(20), nullable=True),
    Column("merged_into", String(36), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# --- encounters ------------------------------------------------------------------------------------------
encounters = Table(
    "encounters",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), nullable=False),
    Column("visit_id", String(36), nullable=True),
    Column("admission_id", String(36), nullable=True),
    Column("kind", String(12), nullable=False),  # outpatient, inpatient, emergency
    Column("status", String(10), nullable=False),  # open, closed
    Column("department_code", String(20), nullable=False),
    Column("room_code", String(20), nullable=True),
    Column("ward_code", String(20), nullable=True),
    Column("bed_code", String(30), nullable=True),
    Column("ticket_number", Integer, nullable=True),
    Column("visit_code", String(30), nullable=True),
    Column("insurance_card_number", String(20), nullable=True),
    Column("service_date", Date, nullable=False),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("attending_doctor", String(100), nullable=True),
    Column("main_diagnosis_code", String(10), nullable=True),
    Column("discharge_type", String(30), nullable=True),
    Column("source_event_id", String(36), nullable=True),
    UniqueConstraint("visit_id", "admission_id", name="uq_encounters_visit_admission"),
    Index("ix_encounters_patient", "patient_id", "opened_at"),
    Index("ix_encounters_department", "department_code", "status", "service_date"),
    Index("ix_encounters_visit", "visit_id"),
    Index("ix_encounters_admission", "admission_id"),
)

consultations = Table(
    "consultations",
    metadata,
    Column("encounter_id", String(36), primary_key=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("chief_complaint", Text, nullable=False),
    Column("history", Text, nullable=False),
    Column("past_history", Text, nullable=False),
    Column("examination", Text, nullable=False),
    Column("vitals", JSON, nullable=True),
    Column("treatment_plan", Text, nullable=False),
    Column("follow_up_date", Date, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(100), nullable=False),
)

diagnoses = Table(
    "diagnoses",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("seq", Integer, nullable=False),  # 0 is the main diagnosis
    Column("icd10_code", String(10), nullable=False),
    Column("name", String(300), nullable=False),
    Column("main", Boolean, nullable=False),
    Column("note", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("recorded_by", String(100), nullable=False),
)

allergies = Table(
    "allergies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("substance", String(200), nullable=False),
    Column("category", String(20), nullable=False),
    Column("ingredient_code", String(60), nullable=True),
    Column("reaction", String(300), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("recorded_by", String(100), nullable=False),
)

problems = Table(
    "problems",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("icd10_code", String(10), nullable=True),
    Column("description", String(500), nullable=False),
    Column("status", String(10), nullable=False),
    Column("onset_date", String(10), nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

# --- orders (CPOE) and the commands that carry them to lab and imaging ----------------------------------
orders = Table(
    "clinical_orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("visit_id", String(36), nullable=True),
    Column("kind", String(12), nullable=False),  # lab, imaging, medication
    Column("status", String(16), nullable=False),
    Column("codes", JSON, nullable=False),
    Column("description", String(500), nullable=False),
    Column("stat", Boolean, nullable=False),
    Column("placer_order_number", String(30), nullable=False, unique=True),
    Column("downstream_id", String(36), nullable=True, index=True),
    Column("accession_number", String(16), nullable=True, index=True),
    Column("details", JSON, nullable=False),  # imaging: modality, station, scheduled start
    Column("medication", JSON, nullable=True),
    Column("clinical_note", Text, nullable=False),
    Column("overrides", JSON, nullable=False),
    Column("refusal_reason", Text, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("ordered_by", String(100), nullable=False),
    Column("ordered_by_name", String(200), nullable=False),
    Column("department_code", String(20), nullable=False),
    Column("request_key", String(140), nullable=True, unique=True),  # request_id + position in the request
    Column("ordered_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

order_commands = Table(
    "order_commands",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), nullable=False, index=True),
    Column("action", String(10), nullable=False),  # place, cancel
    Column("status", String(10), nullable=False),  # pending, done, refused
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("done_at", UtcDateTime(), nullable=True),
    Index("ix_order_commands_due", "status", "next_attempt_at"),
)

# --- drug catalogue and prescriptions -----------------------------------------------------------------
drugs = Table(
    "drugs",
    metadata,
    Column("code", String(30), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("active_ingredient", String(300), nullable=False),
    Column("ingredient_codes", JSON, nullable=False),
    Column("strength", String(100), nullable=False),
    Column("dosage_form", String(100), nullable=False),
    Column("unit", String(20), nullable=False),
    Column("route", String(60), nullable=False),
    Column("atc_code", String(10), nullable=False, index=True),
    Column("atc_class", String(200), nullable=False),
    Column("prescription_type", String(1), nullable=False),
    Column("registration_number", String(30), nullable=True),
    Column("insurance_covered", Boolean, nullable=False),
    Column("search_text", String(600), nullable=False),  # folded (no diacritics, lower case)
    Column("active", Boolean, nullable=False),
)

prescriptions = Table(
    "prescriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("code", String(14), nullable=False, unique=True),  # ma_don_thuoc
    Column("type", String(1), nullable=False),
    Column("items", JSON, nullable=False),
    Column("diagnoses", JSON, nullable=False),
    Column("advice", Text, nullable=False),
    Column("revisit_date", Date, nullable=True),
    Column("status", String(10), nullable=False),  # draft, signed
    Column("document_id", String(36), nullable=True),
    Column("overrides", JSON, nullable=False),
    Column("national_status", String(10), nullable=False),  # not_sent, queued, accepted, failed
    Column("national_error", Text, nullable=True),
    Column("national_attempts", Integer, nullable=False),
    Column("national_next_at", UtcDateTime(), nullable=True),
    Column("national_sent_at", UtcDateTime(), nullable=True),
    Column("prescriber", String(100), nullable=False),
    Column("prescriber_name", String(200), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("signed_at", UtcDateTime(), nullable=True),
    Index("ix_prescriptions_national", "national_status", "national_next_at"),
)

# --- documents and signatures -----------------------------------------------------------------------
documents = Table(
    "documents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("kind", String(30), nullable=False),
    Column("template_code", String(30), nullable=True),
    Column("title", String(300), nullable=False),
    Column("sections", JSON, nullable=False),
    Column("status", String(12), nullable=False),  # draft, signed, superseded
    Column("version", Integer, nullable=False),
    Column("amends_document_id", String(36), nullable=True, unique=True),
    Column("amended_by_document_id", String(36), nullable=True),
    Column("amendment_reason", Text, nullable=True),
    Column("study_instance_uid", String(64), nullable=True, index=True),
    Column("order_id", String(36), nullable=True),
    Column("author", String(100), nullable=False),
    Column("author_name", String(200), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # the signature (set once, never changed: a signed row is immutable)
    Column("canonical", Text, nullable=True),  # the exact signed bytes (canonical JSON)
    Column("content_sha256", String(64), nullable=True),
    Column("jws", Text, nullable=True),
    Column("key_id", String(64), nullable=True),
    Column("algorithm", String(10), nullable=True),
    Column("provider", String(20), nullable=True),
    Column("signer", String(100), nullable=True),
    Column("signer_name", String(200), nullable=True),
    Column("signed_at", UtcDateTime(), nullable=True),
)

# --- papers a visit produces (migration 0007): discharge paper, referral paper, sick-leave certificate,
# re-visit appointment; each carried by a document of the same kind that its author signs ------------
encounter_papers = Table(
    "encounter_papers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # discharge_paper, referral_paper, sick_leave, revisit
    Column("number", String(50), nullable=False, unique=True),
    Column("data", JSON, nullable=False),  # the kind's fields (schemas.DischargePaperIn, ...)
    Column("diagnoses", JSON, nullable=False),  # the consultation's when saved, main first
    Column("status", String(12), nullable=False),  # draft, signed, superseded
    Column("version", Integer, nullable=False),
    Column("document_id", String(36), nullable=False, unique=True),
    Column("replaces_paper_id", String(36), nullable=True, unique=True),
    Column("author", String(100), nullable=False),
    Column("author_name", String(200), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("signed_at", UtcDateTime(), nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),  # RFC 7638 JWK thumbprint
    Column("subject", String(100), nullable=False, index=True),
    Column("public_jwk", JSON, nullable=False),
    Column("provider", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

# --- results -----------------------------------------------------------------------------------------
lab_results = Table(
    "lab_results",
    metadata,
    Column("id", String(36), primary_key=True),  # the lab's result id
    Column("revision", Integer, nullable=False),
    Column("order_id", String(36), nullable=True, index=True),  # EMR order
    Column("lab_order_id", String(36), nullable=True, index=True),
    Column("encounter_id", String(36), nullable=True, index=True),
    Column("patient_id", String(36), nullable=False),
    Column("test_code", String(20), nullable=False),
    Column("test_name", String(200), nullable=False),
    Column("loinc", String(20), nullable=True),
    Column("value", String(100), nullable=False),
    Column("numeric_value", Float, nullable=True),
    Column("unit", String(20), nullable=False),
    Column("reference_range", String(60), nullable=False),
    Column("flag", String(4), nullable=False),
    Column("critical", Boolean, nullable=False),
    Column("status", String(12), nullable=False),
    Column("previous_value", String(100), nullable=True),
    Column("observed_at", UtcDateTime(), nullable=True),
    Column("verified_at", UtcDateTime(), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Index("ix_lab_results_trend", "patient_id", "test_code", "observed_at"),
)

imaging_studies = Table(
    "imaging_studies",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("accession_number", String(16), nullable=True, index=True),
    Column("order_id", String(36), nullable=True, index=True),
    Column("imaging_order_id", String(36), nullable=True),
    Column("encounter_id", String(36), nullable=True, index=True),
    Column("patient_id", String(36), nullable=True, index=True),
    Column("patient_code", String(30), nullable=True),
    Column("modalities", JSON, nullable=False),
    Column("series_count", Integer, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("description", String(300), nullable=False),
    Column("procedure_status", String(16), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)

critical_alerts = Table(
    "critical_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("result_id", String(36), nullable=False, unique=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("patient_name", String(200), nullable=False),
    Column("encounter_id", String(36), nullable=True),
    Column("order_id", String(36), nullable=True),
    Column("ordering_doctor", String(100), nullable=False),
    Column("department_code", String(20), nullable=False),
    Column("test_code", String(20), nullable=False),
    Column("test_name", String(200), nullable=False),
    Column("value", String(100), nullable=False),
    Column("unit", String(20), nullable=False),
    Column("flag", String(4), nullable=False),
    Column("status", String(12), nullable=False),  # open, acknowledged
    Column("raised_at", UtcDateTime(), nullable=False),
    Column("escalated_at", UtcDateTime(), nullable=True),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("acknowledged_by", String(100), nullable=True),
    Column("read_back", Text, nullable=True),
    Column("seconds_to_acknowledge", Integer, nullable=True),
    Index("ix_critical_alerts_open", "status", "raised_at"),
)

# --- notifications (live push to doctors; tailed by every serve process, resumable by seq) ----------------
notifications = Table(
    "notifications",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("recipient", String(120), nullable=False),  # a subject, or "dept:<code>"
    Column("kind", String(30), nullable=False),
    Column("patient_id", String(36), nullable=True),
    Column("encounter_id", String(36), nullable=True),
    Column("title", String(300), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_notifications_recipient", "recipient", "seq"),
)

# --- chart access (break-the-glass report) -----------------------------------------------------------
chart_access = Table(
    "chart_access",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("subject", String(100), nullable=False, index=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("encounter_id", String(36), nullable=True),
    Column("department_code", String(20), nullable=True),
    Column("reason", Text, nullable=False),
    Column("accessed_at", UtcDateTime(), nullable=False),
)

# --- national e-prescription queue (written in the transaction that makes a prescription final) ------
eprescription_queue = Table(
    "eprescription_queue",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("prescription_id", String(36), nullable=False, unique=True),
    Column("code", String(14), nullable=False, unique=True),  # ma_don_thuoc: the national idempotency key
    Column("payload", JSON, nullable=False),  # the document sent, fixed when the prescription became final
    Column("status", String(10), nullable=False),  # queued, sent, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("response", JSON, nullable=True),  # the national system's answer to the delivery
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Index("ix_eprescription_queue_due", "status", "next_attempt_at"),
)

# --- nursing records of ward encounters -------------------------------------------------------------------
vital_observations = Table(
    "vital_observations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("encounter_id", String(36), nullable=False),
    Column("patient_id", String(36), nullable=False),
    Column("systolic_bp", Integer, nullable=True),
    Column("diastolic_bp", Integer, nullable=True),
    Column("pulse", Integer, nullable=True),
    Column("temperature_c", Float, nullable=True),
    Column("spo2", Integer, nullable=True),
    Column("respiratory_rate", Integer, nullable=True),
    Column("weight_kg", Float, nullable=True),
    Column("flags", JSON, nullable=False),  # [{field, flag, message}] from domain/vitals.py
    Column("note", Text, nullable=False),
    Column("measured_at", UtcDateTime(), nullable=False),
    Column("recorded_by", String(100), nullable=False),
    Column("recorded_by_name", String(200), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_vital_observations_encounter", "encounter_id", "measured_at"),
)

medication_administrations = Table(
    "medication_administrations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), nullable=False, index=True),
    Column("encounter_id", String(36), nullable=False),
    Column("patient_id", String(36), nullable=False),
    Column("status", String(10), nullable=False),  # given, held, refused, missed
    Column("administered_at", UtcDateTime(), nullable=False),  # given: when; otherwise the scheduled time
    Column("dose_given", String(100), nullable=False),
    Column("note", Text, nullable=False),
    Column("recorded_by", String(100), nullable=False),
    Column("recorded_by_name", String(200), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_medication_administrations_encounter", "encounter_id", "administered_at"),
)
