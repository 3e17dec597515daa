"""Initial schema: chassis tables (outbox, inbox, counters, audit) and the lab tables.

Frozen history: the schema as this revision created it, in explicit DDL; later revisions state their own
changes. Never edit a released revision: add one.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.migrations import create_chassis_tables, drop_chassis_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "lab_instruments",
    "lab_orders",
    "lab_panels",
    "lab_qc_status",
    "lab_raw_messages",
    "lab_settings",
    "lab_tests",
    "lab_analyzer_mappings",
    "lab_panel_members",
    "lab_qc_lots",
    "lab_reference_ranges",
    "lab_specimens",
    "lab_order_items",
    "lab_qc_results",
    "lab_results",
    "lab_critical_calls",
    "lab_result_history",
)


def upgrade() -> None:
    create_chassis_tables(op)
    op.create_table(
        "lab_instruments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sender_pattern", sa.String(length=200), nullable=False),
        sa.Column("protocol", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "lab_orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_number", sa.String(length=20), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("patient_code", sa.String(length=30), nullable=True),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("patient_sex", sa.String(length=10), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("birth_date_text", sa.String(length=10), nullable=True),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("ordering_doctor", sa.String(length=200), nullable=True),
        sa.Column("placer_order_number", sa.String(length=60), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("clinical_note", sa.Text(), nullable=True),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_number"),
        sa.UniqueConstraint("placer_order_number"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(("ix_lab_orders_patient_id"), "lab_orders", ["patient_id"], unique=False)
    op.create_table(
        "lab_panels",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name_vi", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("loinc", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(("ix_lab_panels_loinc"), "lab_panels", ["loinc"], unique=False)
    op.create_table(
        "lab_qc_status",
        sa.Column("instrument_id", sa.String(length=40), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lot_id", sa.String(length=36), nullable=False),
        sa.Column("violations", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("instrument_id", "test_code"),
    )
    op.create_table(
        "lab_raw_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("endpoint", sa.String(length=60), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("peer", sa.String(length=100), nullable=False),
        sa.Column("control_id", sa.String(length=100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("content_hash"),
    )
    op.create_table(
        "lab_settings",
        sa.Column("key", sa.String(length=60), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "lab_tests",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name_vi", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("loinc", sa.String(length=20), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("value_type", sa.String(length=4), nullable=False),
        sa.Column("specimen_type", sa.String(length=40), nullable=False),
        sa.Column("tube", sa.String(length=60), nullable=False),
        sa.Column("molar_factor", sa.Float(), nullable=True),
        sa.Column("critical_low", sa.Float(), nullable=True),
        sa.Column("critical_high", sa.Float(), nullable=True),
        sa.Column("delta_abs", sa.Float(), nullable=True),
        sa.Column("delta_pct", sa.Float(), nullable=True),
        sa.Column("delta_window_hours", sa.Integer(), nullable=True),
        sa.Column("normal_text", sa.String(length=40), nullable=True),
        sa.Column("sort", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(("ix_lab_tests_loinc"), "lab_tests", ["loinc"], unique=False)
    op.create_table(
        "lab_analyzer_mappings",
        sa.Column("instrument_id", sa.String(length=40), nullable=False),
        sa.Column("analyzer_code", sa.String(length=200), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("analyzer_unit", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["lab_instruments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["test_code"],
            ["lab_tests.code"],
        ),
        sa.PrimaryKeyConstraint("instrument_id", "analyzer_code"),
    )
    op.create_table(
        "lab_panel_members",
        sa.Column("panel_code", sa.String(length=20), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["panel_code"],
            ["lab_panels.code"],
        ),
        sa.ForeignKeyConstraint(
            ["test_code"],
            ["lab_tests.code"],
        ),
        sa.PrimaryKeyConstraint("panel_code", "test_code"),
    )
    op.create_table(
        "lab_qc_lots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("instrument_id", sa.String(length=40), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("lot_number", sa.String(length=60), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("material", sa.String(length=200), nullable=False),
        sa.Column("sample_id", sa.String(length=60), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("sd", sa.Float(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_code"],
            ["lab_tests.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instrument_id", "test_code", "sample_id", name="uq_qc_lot_sample"),
    )
    op.create_table(
        "lab_reference_ranges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("age_min_days", sa.Integer(), nullable=False),
        sa.Column("age_max_days", sa.Integer(), nullable=False),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["test_code"],
            ["lab_tests.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        ("ix_lab_reference_ranges_test_code"), "lab_reference_ranges", ["test_code"], unique=False
    )
    op.create_table(
        "lab_specimens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("barcode", sa.String(length=40), nullable=False),
        sa.Column("specimen_type", sa.String(length=40), nullable=False),
        sa.Column("tube", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collected_by", sa.String(length=100), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["lab_orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("barcode"),
    )
    op.create_index(("ix_lab_specimens_order_id"), "lab_specimens", ["order_id"], unique=False)
    op.create_table(
        "lab_order_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("specimen_id", sa.String(length=36), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["lab_orders.id"],
        ),
        sa.ForeignKeyConstraint(
            ["specimen_id"],
            ["lab_specimens.id"],
        ),
        sa.ForeignKeyConstraint(
            ["test_code"],
            ["lab_tests.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_lab_order_items_order_id"), "lab_order_items", ["order_id"], unique=False)
    op.create_index(("ix_lab_order_items_specimen_id"), "lab_order_items", ["specimen_id"], unique=False)
    op.create_table(
        "lab_qc_results",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lot_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("z", sa.Float(), nullable=False),
        sa.Column("violations", sa.String(length=100), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("raw_message_id", sa.String(length=36), nullable=True),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["lab_qc_lots.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_qc_results_lot", "lab_qc_results", ["lot_id", "measured_at"], unique=False)
    op.create_table(
        "lab_results",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("raw_message_id", sa.String(length=36), nullable=False),
        sa.Column("instrument", sa.String(length=40), nullable=False),
        sa.Column("barcode_received", sa.String(length=60), nullable=False),
        sa.Column("specimen_id", sa.String(length=36), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("order_item_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("test_code", sa.String(length=20), nullable=True),
        sa.Column("analyzer_code", sa.String(length=200), nullable=False),
        sa.Column("analyzer_value", sa.Text(), nullable=False),
        sa.Column("analyzer_unit", sa.String(length=40), nullable=False),
        sa.Column("analyzer_flags", sa.String(length=40), nullable=False),
        sa.Column("analyzer_status", sa.String(length=4), nullable=False),
        sa.Column("analyzer_range", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("reference_range", sa.String(length=60), nullable=False),
        sa.Column("flag", sa.String(length=4), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("delta_failed", sa.Boolean(), nullable=False),
        sa.Column("delta_previous", sa.String(length=60), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by", sa.String(length=100), nullable=True),
        sa.Column("autoverify_rule", sa.String(length=200), nullable=True),
        sa.Column("hold_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["lab_orders.id"],
        ),
        sa.ForeignKeyConstraint(
            ["raw_message_id"],
            ["lab_raw_messages.id"],
        ),
        sa.ForeignKeyConstraint(
            ["specimen_id"],
            ["lab_specimens.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index(("ix_lab_results_order_id"), "lab_results", ["order_id"], unique=False)
    op.create_index(("ix_lab_results_raw_message_id"), "lab_results", ["raw_message_id"], unique=False)
    op.create_index(("ix_lab_results_specimen_id"), "lab_results", ["specimen_id"], unique=False)
    op.create_index(
        "ix_results_patient_test", "lab_results", ["patient_id", "test_code", "observed_at"], unique=False
    )
    op.create_index("ix_results_status", "lab_results", ["status", "received_at"], unique=False)
    op.create_index("ix_results_unmatched", "lab_results", ["instrument", "barcode_received"], unique=False)
    op.create_table(
        "lab_critical_calls",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("result_id", sa.String(length=36), nullable=False),
        sa.Column("notified_person", sa.String(length=200), nullable=False),
        sa.Column("notified_role", sa.String(length=60), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_back_confirmed", sa.Boolean(), nullable=False),
        sa.Column("called_by", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["lab_results.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_lab_critical_calls_result_id"), "lab_critical_calls", ["result_id"], unique=False)
    op.create_table(
        "lab_result_history",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("result_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("flag", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("verified_by", sa.String(length=100), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["lab_results.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_lab_result_history_result_id"), "lab_result_history", ["result_id"], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    drop_chassis_tables(op)
