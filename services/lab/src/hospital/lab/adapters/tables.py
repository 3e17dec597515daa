"""Lab database tables (SQLAlchemy Core, one MetaData)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hospital.chassis.db import UtcDateTime

metadata = MetaData()

# --- catalogue ------------------------------------------------------------------------------------------
lab_tests = Table(
    "lab_tests",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name_vi", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("loinc", String(20), nullable=True, index=True),
    Column("unit", String(20), nullable=False),  # canonical unit reported by the hospital
    Column("decimals", Integer, nullable=False),
    Column("value_type", String(4), nullable=False),  # NM numeric, ST text
    Column("specimen_type", String(40), nullable=False),
    Column("tube", String(60), nullable=False),
    Column("molar_factor", Float, nullable=True),  # SI unit per mg/dL
    Column("critical_low", Float, nullable=True),
    Column("critical_high", Float, nullable=True),
    Column("delta_abs", Float, nullable=True),
    Column("delta_pct", Float, nullable=True),
    Column("delta_window_hours", Integer, nullable=True),
    Column("normal_text", String(40), nullable=True),  # ST tests: the normal answer (e.g. "NEG")
    Column("sort", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
)

panels = Table(
    "lab_panels",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name_vi", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("loinc", String(20), nullable=True, index=True),
)

panel_members = Table(
    "lab_panel_members",
    metadata,
    Column("panel_code", String(20), ForeignKey("lab_panels.code"), primary_key=True),
    Column("test_code", String(20), ForeignKey("lab_tests.code"), primary_key=True),
)

reference_ranges = Table(
    "lab_reference_ranges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("test_code", String(20), ForeignKey("lab_tests.code"), nullable=False, index=True),
    Column("sex", String(10), nullable=False),  # male, female, any
    Column("age_min_days", Integer, nullable=False),
    Column("age_max_days", Integer, nullable=False),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
)

instruments = Table(
    "lab_instruments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("sender_pattern", String(200), nullable=False),  # regex searched in ASTM H-5 / HL7 MSH-3
    Column("protocol", String(10), nullable=False),
)

analyzer_mappings = Table(
    "lab_analyzer_mappings",
    metadata,
    Column("instrument_id", String(40), ForeignKey("lab_instruments.id"), primary_key=True),
    Column("analyzer_code", String(200), primary_key=True),
    Column("test_code", String(20), ForeignKey("lab_tests.code"), nullable=False),
    Column("analyzer_unit", String(20), nullable=True),  # when the analyzer sends none
)

# --- orders and specimens ---------------------------------------------------------------------------------
orders = Table(
    "lab_orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_number", String(20), nullable=False, unique=True),
    Column("patient_id", String(36), nullable=False, index=True),
    Column("patient_code", String(30), nullable=True),
    Column("patient_name", String(200), nullable=False),
    Column("patient_sex", String(10), nullable=False),  # male, female, unknown
    Column("birth_date", Date, nullable=True),
    Column("birth_date_text", String(10), nullable=True),
    Column("visit_id", String(36), nullable=True),
    Column("ordering_doctor", String(200), nullable=True),
    Column("placer_order_number", String(60), nullable=True, unique=True),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("priority", String(10), nullable=False),  # routine, stat
    Column("status", String(20), nullable=False),  # active, completed, cancelled
    Column("source", String(20), nullable=False),  # grpc, http, hl7
    Column("clinical_note", Text, nullable=True),
    Column("ordered_at", UtcDateTime(), nullable=False),
    Column("cancelled_at", UtcDateTime(), nullable=True),
    Column("cancel_reason", String(300), nullable=True),
    # verified (admissions knows the patient), unverified (admissions was unreachable: checked again
    # later), unknown (admissions answered it does not know the patient; ADR 0103)
    Column("patient_check", String(12), nullable=False, server_default="unverified"),
    Index("ix_orders_patient_check", "patient_check"),
)

specimens = Table(
    "lab_specimens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("lab_orders.id"), nullable=False, index=True),
    Column("barcode", String(40), nullable=False, unique=True),
    Column("specimen_type", String(40), nullable=False),
    Column("tube", String(60), nullable=False),
    Column("status", String(20), nullable=False),  # ordered, collected, received, cancelled
    Column("collected_at", UtcDateTime(), nullable=True),
    Column("collected_by", String(100), nullable=True),
    Column("received_at", UtcDateTime(), nullable=True),
    Column("received_by", String(100), nullable=True),
)

order_items = Table(
    "lab_order_items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey("lab_orders.id"), nullable=False, index=True),
    Column("specimen_id", String(36), ForeignKey("lab_specimens.id"), nullable=False, index=True),
    Column("test_code", String(20), ForeignKey("lab_tests.code"), nullable=False),
    Column("status", String(20), nullable=False),  # ordered, resulted, verified, cancelled
)

# --- ingestion ------------------------------------------------------------------------------------------
raw_messages = Table(
    "lab_raw_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("content_hash", String(64), nullable=False, unique=True),  # sha256 of the bytes received
    Column("protocol", String(10), nullable=False),  # astm, hl7
    Column("kind", String(20), nullable=False),  # results, query, order, qc
    Column("endpoint", String(60), nullable=False),
    Column("sender", String(200), nullable=False),
    Column("peer", String(100), nullable=False),
    Column("control_id", String(100), nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("result_count", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),  # identical retransmissions seen afterwards
)

results = Table(
    "lab_results",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("dedupe_key", String(64), nullable=False, unique=True),
    Column("raw_message_id", String(36), ForeignKey("lab_raw_messages.id"), nullable=False, index=True),
    Column("instrument", String(40), nullable=False),
    Column("barcode_received", String(60), nullable=False),
    Column("specimen_id", String(36), ForeignKey("lab_specimens.id"), nullable=True, index=True),
    Column("order_id", String(36), ForeignKey("lab_orders.id"), nullable=True, index=True),
    Column("order_item_id", String(36), nullable=True),
    Column("patient_id", String(36), nullable=True),
    Column("test_code", String(20), nullable=True),
    Column("analyzer_code", String(200), nullable=False),
    Column("analyzer_value", Text, nullable=False),
    Column("analyzer_unit", String(40), nullable=False),
    Column("analyzer_flags", String(40), nullable=False),
    Column("analyzer_status", String(4), nullable=False),
    Column("analyzer_range", String(100), nullable=False),
    Column("value", Text, nullable=False),  # normalised (catalogue unit) when numeric
    Column("value_num", Float, nullable=True),
    Column("unit", String(40), nullable=False),
    Column("reference_range", String(60), nullable=False),
    Column("flag", String(4), nullable=False),
    Column("critical", Boolean, nullable=False),
    Column("delta_failed", Boolean, nullable=False),
    Column("delta_previous", String(60), nullable=True),
    Column("status", String(20), nullable=False),  # unmatched, info, preliminary, verified
    Column("revision", Integer, nullable=False),
    Column("note", Text, nullable=True),
    Column("observed_at", UtcDateTime(), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("verified_at", UtcDateTime(), nullable=True),
    Column("verified_by", String(100), nullable=True),
    Column("autoverify_rule", String(200), nullable=True),
    Column("hold_reason", String(200), nullable=True),  # why auto-verification did not release it
    Index("ix_results_patient_test", "patient_id", "test_code", "observed_at"),
    Index("ix_results_status", "status", "received_at"),
    Index("ix_results_unmatched", "instrument", "barcode_received"),
)

result_history = Table(
    "lab_result_history",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("result_id", String(36), ForeignKey("lab_results.id"), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("value", Text, nullable=False),
    Column("unit", String(40), nullable=False),
    Column("flag", String(4), nullable=False),
    Column("status", String(20), nullable=False),
    Column("verified_by", String(100), nullable=True),
    Column("verified_at", UtcDateTime(), nullable=True),
    Column("replaced_at", UtcDateTime(), nullable=False),
    Column("replaced_by", String(100), nullable=False),
    Column("reason", String(300), nullable=False),
)

critical_calls = Table(
    "lab_critical_calls",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("result_id", String(36), ForeignKey("lab_results.id"), nullable=False, index=True),
    Column("notified_person", String(200), nullable=False),
    Column("notified_role", String(60), nullable=False),
    Column("notified_at", UtcDateTime(), nullable=False),
    Column("read_back_confirmed", Boolean, nullable=False),
    Column("called_by", String(100), nullable=False),
    Column("note", Text, nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

# --- QC -------------------------------------------------------------------------------------------------
qc_lots = Table(
    "lab_qc_lots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instrument_id", String(40), nullable=False),
    Column("test_code", String(20), ForeignKey("lab_tests.code"), nullable=False),
    Column("lot_number", String(60), nullable=False),
    Column("level", String(20), nullable=False),
    Column("material", String(200), nullable=False),
    Column("sample_id", String(60), nullable=False),  # what the analyzer reports as the specimen ID
    Column("mean", Float, nullable=False),
    Column("sd", Float, nullable=False),
    Column("expires", Date, nullable=True),
    Column("active", Boolean, nullable=False),
    UniqueConstraint("instrument_id", "test_code", "sample_id", name="uq_qc_lot_sample"),
)

qc_results = Table(
    "lab_qc_results",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("lot_id", String(36), ForeignKey("lab_qc_lots.id"), nullable=False),
    Column("value", Float, nullable=False),
    Column("z", Float, nullable=False),
    Column("violations", String(100), nullable=False),  # comma-separated rule names
    Column("accepted", Boolean, nullable=False),
    Column("measured_at", UtcDateTime(), nullable=False),
    Column("source", String(20), nullable=False),  # analyzer, manual
    Column("raw_message_id", String(36), nullable=True),
    Column("recorded_by", String(100), nullable=False),
    Index("ix_qc_results_lot", "lot_id", "measured_at"),
)

qc_status = Table(
    "lab_qc_status",
    metadata,
    Column("instrument_id", String(40), primary_key=True),
    Column("test_code", String(20), primary_key=True),
    Column("accepted", Boolean, nullable=False),
    Column("last_run_at", UtcDateTime(), nullable=False),
    Column("lot_id", String(36), nullable=False),
    Column("violations", String(100), nullable=False),
)

lab_settings = Table(
    "lab_settings",
    metadata,
    Column("key", String(60), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(100), nullable=False),
)
