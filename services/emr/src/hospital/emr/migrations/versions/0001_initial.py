"""Initial schema, frozen as explicit DDL: chassis tables (outbox, inbox, counters, audit), patients'
snapshots, encounters, consultations, diagnoses, allergies, problems, orders and their commands, drug
catalogue, prescriptions, documents and signing keys, lab results, imaging studies, critical alerts, chart
access (break-the-glass).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime
from hospital.chassis.migrations import create_chassis_tables, drop_chassis_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_chassis_tables(op)
    op.create_table(
        "allergies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("substance", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("ingredient_code", sa.String(length=60), nullable=True),
        sa.Column("reaction", sa.String(length=300), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_allergies_patient_id"), "allergies", ["patient_id"], unique=False)
    op.create_table(
        "chart_access",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=True),
        sa.Column("department_code", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("accessed_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_chart_access_patient_id"), "chart_access", ["patient_id"], unique=False)
    op.create_index(op.f("ix_chart_access_subject"), "chart_access", ["subject"], unique=False)
    op.create_table(
        "clinical_orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("stat", sa.Boolean(), nullable=False),
        sa.Column("placer_order_number", sa.String(length=30), nullable=False),
        sa.Column("downstream_id", sa.String(length=36), nullable=True),
        sa.Column("accession_number", sa.String(length=16), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("medication", sa.JSON(), nullable=True),
        sa.Column("clinical_note", sa.Text(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ordered_by", sa.String(length=100), nullable=False),
        sa.Column("ordered_by_name", sa.String(length=200), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("request_key", sa.String(length=140), nullable=True),
        sa.Column("ordered_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("placer_order_number"),
        sa.UniqueConstraint("request_key"),
    )
    op.create_index(
        op.f("ix_clinical_orders_accession_number"), "clinical_orders", ["accession_number"], unique=False
    )
    op.create_index(
        op.f("ix_clinical_orders_downstream_id"), "clinical_orders", ["downstream_id"], unique=False
    )
    op.create_index(
        op.f("ix_clinical_orders_encounter_id"), "clinical_orders", ["encounter_id"], unique=False
    )
    op.create_index(op.f("ix_clinical_orders_patient_id"), "clinical_orders", ["patient_id"], unique=False)
    op.create_table(
        "consultations",
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("chief_complaint", sa.Text(), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("past_history", sa.Text(), nullable=False),
        sa.Column("examination", sa.Text(), nullable=False),
        sa.Column("vitals", sa.JSON(), nullable=True),
        sa.Column("treatment_plan", sa.Text(), nullable=False),
        sa.Column("follow_up_date", sa.Date(), nullable=True),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("encounter_id"),
    )
    op.create_index(op.f("ix_consultations_patient_id"), "consultations", ["patient_id"], unique=False)
    op.create_table(
        "critical_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("result_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("ordering_doctor", sa.String(length=100), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("test_name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("flag", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("raised_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("read_back", sa.Text(), nullable=True),
        sa.Column("seconds_to_acknowledge", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("result_id"),
    )
    op.create_index("ix_critical_alerts_open", "critical_alerts", ["status", "raised_at"], unique=False)
    op.create_index(op.f("ix_critical_alerts_patient_id"), "critical_alerts", ["patient_id"], unique=False)
    op.create_table(
        "diagnoses",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("icd10_code", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("main", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_diagnoses_encounter_id"), "diagnoses", ["encounter_id"], unique=False)
    op.create_index(op.f("ix_diagnoses_patient_id"), "diagnoses", ["patient_id"], unique=False)
    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("template_code", sa.String(length=30), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("amends_document_id", sa.String(length=36), nullable=True),
        sa.Column("amended_by_document_id", sa.String(length=36), nullable=True),
        sa.Column("amendment_reason", sa.Text(), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("jws", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("algorithm", sa.String(length=10), nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("signer", sa.String(length=100), nullable=True),
        sa.Column("signer_name", sa.String(length=200), nullable=True),
        sa.Column("signed_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("amends_document_id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(op.f("ix_documents_encounter_id"), "documents", ["encounter_id"], unique=False)
    op.create_index(op.f("ix_documents_patient_id"), "documents", ["patient_id"], unique=False)
    op.create_index(
        op.f("ix_documents_study_instance_uid"), "documents", ["study_instance_uid"], unique=False
    )
    op.create_table(
        "drugs",
        sa.Column("code", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active_ingredient", sa.String(length=300), nullable=False),
        sa.Column("ingredient_codes", sa.JSON(), nullable=False),
        sa.Column("strength", sa.String(length=100), nullable=False),
        sa.Column("dosage_form", sa.String(length=100), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("route", sa.String(length=60), nullable=False),
        sa.Column("atc_code", sa.String(length=10), nullable=False),
        sa.Column("atc_class", sa.String(length=200), nullable=False),
        sa.Column("prescription_type", sa.String(length=1), nullable=False),
        sa.Column("registration_number", sa.String(length=30), nullable=True),
        sa.Column("insurance_covered", sa.Boolean(), nullable=False),
        sa.Column("search_text", sa.String(length=600), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(op.f("ix_drugs_atc_code"), "drugs", ["atc_code"], unique=False)
    op.create_table(
        "emr_patients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_code", sa.String(length=30), nullable=True),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("insurance_card_number", sa.String(length=20), nullable=True),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "encounters",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("admission_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("room_code", sa.String(length=20), nullable=True),
        sa.Column("ward_code", sa.String(length=20), nullable=True),
        sa.Column("bed_code", sa.String(length=30), nullable=True),
        sa.Column("ticket_number", sa.Integer(), nullable=True),
        sa.Column("visit_code", sa.String(length=30), nullable=True),
        sa.Column("insurance_card_number", sa.String(length=20), nullable=True),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("opened_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("attending_doctor", sa.String(length=100), nullable=True),
        sa.Column("main_diagnosis_code", sa.String(length=10), nullable=True),
        sa.Column("discharge_type", sa.String(length=30), nullable=True),
        sa.Column("source_event_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("visit_id", "admission_id", name="uq_encounters_visit_admission"),
    )
    op.create_index("ix_encounters_admission", "encounters", ["admission_id"], unique=False)
    op.create_index(
        "ix_encounters_department", "encounters", ["department_code", "status", "service_date"], unique=False
    )
    op.create_index("ix_encounters_patient", "encounters", ["patient_id", "opened_at"], unique=False)
    op.create_index("ix_encounters_visit", "encounters", ["visit_id"], unique=False)
    op.create_table(
        "imaging_studies",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("accession_number", sa.String(length=16), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("imaging_order_id", sa.String(length=36), nullable=True),
        sa.Column("encounter_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("patient_code", sa.String(length=30), nullable=True),
        sa.Column("modalities", sa.JSON(), nullable=False),
        sa.Column("series_count", sa.Integer(), nullable=False),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("procedure_status", sa.String(length=16), nullable=False),
        sa.Column("received_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("study_instance_uid"),
    )
    op.create_index(
        op.f("ix_imaging_studies_accession_number"), "imaging_studies", ["accession_number"], unique=False
    )
    op.create_index(
        op.f("ix_imaging_studies_encounter_id"), "imaging_studies", ["encounter_id"], unique=False
    )
    op.create_index(op.f("ix_imaging_studies_order_id"), "imaging_studies", ["order_id"], unique=False)
    op.create_index(op.f("ix_imaging_studies_patient_id"), "imaging_studies", ["patient_id"], unique=False)
    op.create_table(
        "lab_results",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("lab_order_id", sa.String(length=36), nullable=True),
        sa.Column("encounter_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("test_name", sa.String(length=200), nullable=False),
        sa.Column("loinc", sa.String(length=20), nullable=True),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.Column("numeric_value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("reference_range", sa.String(length=60), nullable=False),
        sa.Column("flag", sa.String(length=4), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("previous_value", sa.String(length=100), nullable=True),
        sa.Column("observed_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("verified_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("received_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_lab_results_encounter_id"), "lab_results", ["encounter_id"], unique=False)
    op.create_index(op.f("ix_lab_results_lab_order_id"), "lab_results", ["lab_order_id"], unique=False)
    op.create_index(op.f("ix_lab_results_order_id"), "lab_results", ["order_id"], unique=False)
    op.create_index(
        "ix_lab_results_trend", "lab_results", ["patient_id", "test_code", "observed_at"], unique=False
    )
    op.create_table(
        "order_commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("done_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_order_commands_due", "order_commands", ["status", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_order_commands_order_id"), "order_commands", ["order_id"], unique=False)
    op.create_table(
        "prescriptions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=14), nullable=False),
        sa.Column("type", sa.String(length=1), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("diagnoses", sa.JSON(), nullable=False),
        sa.Column("advice", sa.Text(), nullable=False),
        sa.Column("revisit_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=True),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("national_status", sa.String(length=10), nullable=False),
        sa.Column("national_error", sa.Text(), nullable=True),
        sa.Column("national_attempts", sa.Integer(), nullable=False),
        sa.Column("national_next_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("national_sent_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("prescriber", sa.String(length=100), nullable=False),
        sa.Column("prescriber_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("signed_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(op.f("ix_prescriptions_encounter_id"), "prescriptions", ["encounter_id"], unique=False)
    op.create_index(
        "ix_prescriptions_national", "prescriptions", ["national_status", "national_next_at"], unique=False
    )
    op.create_index(op.f("ix_prescriptions_patient_id"), "prescriptions", ["patient_id"], unique=False)
    op.create_table(
        "problems",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("icd10_code", sa.String(length=10), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("onset_date", sa.String(length=10), nullable=True),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_problems_patient_id"), "problems", ["patient_id"], unique=False)
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index(op.f("ix_signing_keys_subject"), "signing_keys", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_signing_keys_subject"), table_name="signing_keys")
    op.drop_table("signing_keys")
    op.drop_index(op.f("ix_problems_patient_id"), table_name="problems")
    op.drop_table("problems")
    op.drop_index(op.f("ix_prescriptions_patient_id"), table_name="prescriptions")
    op.drop_index("ix_prescriptions_national", table_name="prescriptions")
    op.drop_index(op.f("ix_prescriptions_encounter_id"), table_name="prescriptions")
    op.drop_table("prescriptions")
    op.drop_index(op.f("ix_order_commands_order_id"), table_name="order_commands")
    op.drop_index("ix_order_commands_due", table_name="order_commands")
    op.drop_table("order_commands")
    op.drop_index("ix_lab_results_trend", table_name="lab_results")
    op.drop_index(op.f("ix_lab_results_order_id"), table_name="lab_results")
    op.drop_index(op.f("ix_lab_results_lab_order_id"), table_name="lab_results")
    op.drop_index(op.f("ix_lab_results_encounter_id"), table_name="lab_results")
    op.drop_table("lab_results")
    op.drop_index(op.f("ix_imaging_studies_patient_id"), table_name="imaging_studies")
    op.drop_index(op.f("ix_imaging_studies_order_id"), table_name="imaging_studies")
    op.drop_index(op.f("ix_imaging_studies_encounter_id"), table_name="imaging_studies")
    op.drop_index(op.f("ix_imaging_studies_accession_number"), table_name="imaging_studies")
    op.drop_table("imaging_studies")
    op.drop_index("ix_encounters_visit", table_name="encounters")
    op.drop_index("ix_encounters_patient", table_name="encounters")
    op.drop_index("ix_encounters_department", table_name="encounters")
    op.drop_index("ix_encounters_admission", table_name="encounters")
    op.drop_table("encounters")
    op.drop_table("emr_patients")
    op.drop_index(op.f("ix_drugs_atc_code"), table_name="drugs")
    op.drop_table("drugs")
    op.drop_index(op.f("ix_documents_study_instance_uid"), table_name="documents")
    op.drop_index(op.f("ix_documents_patient_id"), table_name="documents")
    op.drop_index(op.f("ix_documents_encounter_id"), table_name="documents")
    op.drop_table("documents")
    op.drop_index(op.f("ix_diagnoses_patient_id"), table_name="diagnoses")
    op.drop_index(op.f("ix_diagnoses_encounter_id"), table_name="diagnoses")
    op.drop_table("diagnoses")
    op.drop_index(op.f("ix_critical_alerts_patient_id"), table_name="critical_alerts")
    op.drop_index("ix_critical_alerts_open", table_name="critical_alerts")
    op.drop_table("critical_alerts")
    op.drop_index(op.f("ix_consultations_patient_id"), table_name="consultations")
    op.drop_table("consultations")
    op.drop_index(op.f("ix_clinical_orders_patient_id"), table_name="clinical_orders")
    op.drop_index(op.f("ix_clinical_orders_encounter_id"), table_name="clinical_orders")
    op.drop_index(op.f("ix_clinical_orders_downstream_id"), table_name="clinical_orders")
    op.drop_index(op.f("ix_clinical_orders_accession_number"), table_name="clinical_orders")
    op.drop_table("clinical_orders")
    op.drop_index(op.f("ix_chart_access_subject"), table_name="chart_access")
    op.drop_index(op.f("ix_chart_access_patient_id"), table_name="chart_access")
    op.drop_table("chart_access")
    op.drop_index(op.f("ix_allergies_patient_id"), table_name="allergies")
    op.drop_table("allergies")
    drop_chassis_tables(op)
