"""Initial schema: chassis tables (outbox, inbox, audit), patients, cards, visits, queues, beds, stays.

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
    "departments",
    "idempotency_keys",
    "patients",
    "clinic_rooms",
    "insurance_cards",
    "wards",
    "beds",
    "visits",
    "inpatient_stays",
)


def upgrade() -> None:
    create_chassis_tables(op)
    op.create_table(
        "departments",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_code", sa.String(length=20), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column(
            "name_folded",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("birth_year", sa.Integer(), nullable=False),
        sa.Column("birth_month", sa.Integer(), nullable=True),
        sa.Column("birth_day", sa.Integer(), nullable=True),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("cccd", sa.String(length=12), nullable=True),
        sa.Column("old_id_number", sa.String(length=12), nullable=True),
        sa.Column("phone", sa.String(length=15), nullable=True),
        sa.Column("address_line", sa.String(length=300), nullable=True),
        sa.Column("ward", sa.String(length=100), nullable=True),
        sa.Column("district", sa.String(length=100), nullable=True),
        sa.Column("province_code", sa.String(length=2), nullable=True),
        sa.Column("ethnicity", sa.String(length=50), nullable=True),
        sa.Column("occupation", sa.String(length=100), nullable=True),
        sa.Column("guardian_name", sa.String(length=200), nullable=True),
        sa.Column("guardian_phone", sa.String(length=15), nullable=True),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_code"),
    )
    op.create_index("ix_patients_birth_year", "patients", ["birth_year"], unique=False)
    op.create_index(
        "ix_patients_cccd",
        "patients",
        ["cccd"],
        unique=True,
        postgresql_where=sa.text("cccd IS NOT NULL AND merged_into IS NULL"),
        sqlite_where=sa.text("cccd IS NOT NULL AND merged_into IS NULL"),
    )
    op.create_index("ix_patients_name_prefix", "patients", ["name_folded"], unique=False)
    op.create_index("ix_patients_phone", "patients", ["phone"], unique=False)
    op.create_table(
        "clinic_rooms",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["departments.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "insurance_cards",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=15), nullable=False),
        sa.Column("benefit_level", sa.Integer(), nullable=False),
        sa.Column("benefit_rate", sa.Integer(), nullable=False),
        sa.Column("province_code", sa.String(length=2), nullable=False),
        sa.Column("registered_facility", sa.String(length=20), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("five_year_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "number", "valid_from", name="uq_card_period"),
    )
    op.create_index(("ix_insurance_cards_number"), "insurance_cards", ["number"], unique=False)
    op.create_index(("ix_insurance_cards_patient_id"), "insurance_cards", ["patient_id"], unique=False)
    op.create_table(
        "wards",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["departments.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "beds",
        sa.Column("code", sa.String(length=30), nullable=False),
        sa.Column("ward_code", sa.String(length=20), nullable=False),
        sa.Column("room", sa.String(length=30), nullable=False),
        sa.Column("admission_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["ward_code"],
            ["wards.code"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(("ix_beds_ward_code"), "beds", ["ward_code"], unique=False)
    op.create_table(
        "visits",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_code", sa.String(length=30), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("room_code", sa.String(length=20), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("ticket_number", sa.Integer(), nullable=False),
        sa.Column("queue_status", sa.String(length=20), nullable=False),
        sa.Column("call_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("insurance_card_number", sa.String(length=15), nullable=True),
        sa.Column("referral_code", sa.String(length=50), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["room_code"],
            ["clinic_rooms.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("room_code", "service_date", "ticket_number", name="uq_ticket"),
        sa.UniqueConstraint("visit_code"),
    )
    op.create_index(("ix_visits_patient_id"), "visits", ["patient_id"], unique=False)
    op.create_index(
        "ix_visits_queue",
        "visits",
        ["room_code", "service_date", "queue_status", "ticket_number"],
        unique=False,
    )
    op.create_table(
        "inpatient_stays",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("ward_code", sa.String(length=20), nullable=False),
        sa.Column("bed_code", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("discharge_type", sa.String(length=30), nullable=True),
        sa.ForeignKeyConstraint(
            ["bed_code"],
            ["beds.code"],
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.ForeignKeyConstraint(
            ["ward_code"],
            ["wards.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_inpatient_stays_patient_id"), "inpatient_stays", ["patient_id"], unique=False)
    op.create_index(
        "ix_stay_active_bed",
        "inpatient_stays",
        ["bed_code"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_stay_active_patient",
        "inpatient_stays",
        ["patient_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_patients_name_trgm ON patients USING gin (name_folded gin_trgm_ops)")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    drop_chassis_tables(op)
