"""Initial schema: chassis tables, the study index, orders, reconciliation queue, routing rules and queue.

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
    "instance_conflicts",
    "instances",
    "orders",
    "patients",
    "reconciliation",
    "routing_queue",
    "routing_rules",
    "series",
    "studies",
)


def upgrade() -> None:
    create_chassis_tables(op)
    op.create_table(
        "instance_conflicts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("source_ae", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conflict_unique", "instance_conflicts", ["sop_instance_uid", "digest"], unique=True)
    op.create_index(
        ("ix_instance_conflicts_sop_instance_uid"), "instance_conflicts", ["sop_instance_uid"], unique=False
    )
    op.create_table(
        "instances",
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=False),
        sa.Column("source_ae", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid"),
    )
    op.create_index(("ix_instances_series_instance_uid"), "instances", ["series_instance_uid"], unique=False)
    op.create_index(("ix_instances_study_instance_uid"), "instances", ["study_instance_uid"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("accession_number", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("order_ref", sa.String(length=100), nullable=True),
        sa.Column("requested_procedure_id", sa.String(length=16), nullable=False),
        sa.Column("requested_procedure_description", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("station_ae_title", sa.String(length=16), nullable=True),
        sa.Column("scheduled_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled_date", sa.String(length=8), nullable=False),
        sa.Column("patient_ref", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("patient_birth_date", sa.String(length=8), nullable=True),
        sa.Column("patient_sex", sa.String(length=1), nullable=True),
        sa.Column("referring_physician", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("mpps_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("accession_number"),
        sa.UniqueConstraint("mpps_instance_uid"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index("ix_orders_patient", "orders", ["patient_id"], unique=False)
    op.create_index("ix_orders_worklist", "orders", ["status", "modality", "scheduled_date"], unique=False)
    op.create_table(
        "patients",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=True),
        sa.Column("name_folded", sa.String(length=200), nullable=True),
        sa.Column("birth_date", sa.String(length=8), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_index("ix_img_patients_name", "patients", ["name_folded"], unique=False)
    op.create_table(
        "reconciliation",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("candidate_order_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolved_order_id", sa.String(length=36), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_instance_uid"),
    )
    op.create_index("ix_reconciliation_status", "reconciliation", ["status", "created_at"], unique=False)
    op.create_table(
        "routing_queue",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("destination_ae", sa.String(length=16), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_routing_due", "routing_queue", ["status", "next_attempt_at"], unique=False)
    op.create_index(
        "ix_routing_unique", "routing_queue", ["destination_ae", "sop_instance_uid", "rule_id"], unique=True
    )
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("destination_ae", sa.String(length=16), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("source_ae", sa.String(length=16), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "series",
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=200), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("instance_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("source_ae", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("series_instance_uid"),
    )
    op.create_index("ix_series_modality", "series", ["modality"], unique=False)
    op.create_index(("ix_series_study_instance_uid"), "series", ["study_instance_uid"], unique=False)
    op.create_table(
        "studies",
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=True),
        sa.Column("name_folded", sa.String(length=200), nullable=True),
        sa.Column("patient_birth_date", sa.String(length=8), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("study_date", sa.String(length=8), nullable=True),
        sa.Column("study_time", sa.String(length=16), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_description", sa.String(length=200), nullable=True),
        sa.Column("referring_physician", sa.String(length=200), nullable=True),
        sa.Column("modalities", sa.String(length=100), server_default="", nullable=False),
        sa.Column("series_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("instance_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("source_ae", sa.String(length=16), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("reconciliation", sa.String(length=20), server_default="new", nullable=False),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("study_instance_uid"),
    )
    op.create_index("ix_studies_accession", "studies", ["accession_number"], unique=False)
    op.create_index("ix_studies_date", "studies", ["study_date"], unique=False)
    op.create_index("ix_studies_name", "studies", ["name_folded"], unique=False)
    op.create_index("ix_studies_patient", "studies", ["patient_id"], unique=False)
    op.create_index("ix_studies_unannounced", "studies", ["last_received_at"], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    drop_chassis_tables(op)
