"""Nursing records of ward encounters: ``vital_observations`` (a nurse's vital signs, several a day, with
their flags) and ``medication_administrations`` (the medication administration record: each dose of a
medication order given, held, refused or missed).

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vital_observations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("systolic_bp", sa.Integer(), nullable=True),
        sa.Column("diastolic_bp", sa.Integer(), nullable=True),
        sa.Column("pulse", sa.Integer(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("spo2", sa.Integer(), nullable=True),
        sa.Column("respiratory_rate", sa.Integer(), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("measured_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("recorded_by_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(
        "ix_vital_observations_encounter", "vital_observations", ["encounter_id", "measured_at"], unique=False
    )
    op.create_table(
        "medication_administrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("administered_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("dose_given", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("recorded_by_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("recorded_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(
        "ix_medication_administrations_encounter",
        "medication_administrations",
        ["encounter_id", "administered_at"],
        unique=False,
    )
    op.create_index(
        "ix_medication_administrations_order_id", "medication_administrations", ["order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_medication_administrations_order_id", table_name="medication_administrations")
    op.drop_index("ix_medication_administrations_encounter", table_name="medication_administrations")
    op.drop_table("medication_administrations")
    op.drop_index("ix_vital_observations_encounter", table_name="vital_observations")
    op.drop_table("vital_observations")
