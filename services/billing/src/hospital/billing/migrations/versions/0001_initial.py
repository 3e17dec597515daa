"""Initial schema: chassis tables (outbox, inbox, counters, audit), price list, visits, stays, invoices,
charges, cashier shifts, payments, provider callbacks, claims, reconciliations.

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
    "cashier_shifts",
    "price_items",
    "provider_callbacks",
    "reconciliations",
    "rejected_callbacks",
    "visits",
    "claims",
    "invoices",
    "stays",
    "charges",
    "payments",
)


def upgrade() -> None:
    create_chassis_tables(op)
    op.create_table(
        "cashier_shifts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("cashier", sa.String(length=200), nullable=False),
        sa.Column("cashier_name", sa.String(length=200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opening_float", sa.BigInteger(), nullable=False),
        sa.Column("counted_cash", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_shift_open_cashier",
        "cashier_shifts",
        ["cashier"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        sqlite_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "price_items",
        sa.Column("code", sa.String(length=30), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("unit", sa.String(length=30), nullable=False),
        sa.Column("hospital_price", sa.BigInteger(), nullable=False),
        sa.Column("insurance_price", sa.BigInteger(), nullable=False),
        sa.Column("covered", sa.Boolean(), nullable=False),
        sa.Column("payment_ratio", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column("bhyt_code", sa.String(length=50), nullable=False),
        sa.Column("xml_group", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", "effective_from"),
    )
    op.create_table(
        "provider_callbacks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=False),
        sa.Column("provider_txn_id", sa.String(length=100), nullable=False),
        sa.Column("invoice_number", sa.String(length=30), nullable=True),
        sa.Column("invoice_id", sa.String(length=36), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reply_code", sa.String(length=4), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("bank_reference", sa.String(length=100), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_txn_id", name="uq_callback_provider_txn"),
    )
    op.create_index("ix_callbacks_outcome", "provider_callbacks", ["outcome"], unique=False)
    op.create_table(
        "reconciliations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("statement_sha256", sa.String(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "rejected_callbacks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_code", sa.String(length=30), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("patient_code", sa.String(length=20), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("birth_year", sa.Integer(), nullable=True),
        sa.Column("birth_month", sa.Integer(), nullable=True),
        sa.Column("birth_day", sa.Integer(), nullable=True),
        sa.Column("sex", sa.Integer(), nullable=False),
        sa.Column("cccd", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("card_number", sa.String(length=15), nullable=True),
        sa.Column("card_valid_from", sa.Date(), nullable=True),
        sa.Column("card_valid_to", sa.Date(), nullable=True),
        sa.Column("card_facility", sa.String(length=20), nullable=True),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("inpatient", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("discharge_type", sa.String(length=30), nullable=True),
        sa.Column("diagnosis_code", sa.String(length=10), nullable=True),
        sa.Column("diagnosis_text", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_visits_patient_id"), "visits", ["patient_id"], unique=False)
    op.create_table(
        "claims",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("ma_lk", sa.String(length=50), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("exported_by", sa.String(length=200), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_claims_visit_id"), "claims", ["visit_id"], unique=False)
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=12), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("insurance_amount", sa.BigInteger(), nullable=False),
        sa.Column("patient_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("visit_id"),
    )
    op.create_index(("ix_invoices_patient_id"), "invoices", ["patient_id"], unique=False)
    op.create_index("ix_invoices_status", "invoices", ["status"], unique=False)
    op.create_table(
        "stays",
        sa.Column("admission_id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("ward_code", sa.String(length=20), nullable=False),
        sa.Column("bed_code", sa.String(length=30), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("segment_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.PrimaryKeyConstraint("admission_id"),
    )
    op.create_table(
        "charges",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("price_code", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("unit", sa.String(length=30), nullable=False),
        sa.Column("qty_milli", sa.BigInteger(), nullable=False),
        sa.Column("hospital_unit_price", sa.BigInteger(), nullable=False),
        sa.Column("insurance_unit_price", sa.BigInteger(), nullable=False),
        sa.Column("covered", sa.Boolean(), nullable=False),
        sa.Column("payment_ratio", sa.Integer(), nullable=False),
        sa.Column("service_ratio", sa.Integer(), nullable=False),
        sa.Column("bhyt_code", sa.String(length=50), nullable=False),
        sa.Column("xml_group", sa.Integer(), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=False),
        sa.Column("bed_code", sa.String(length=30), nullable=True),
        sa.Column("ordered_by", sa.String(length=50), nullable=True),
        sa.Column("service_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=60), nullable=False),
        sa.Column("source_key", sa.String(length=150), nullable=False),
        sa.Column("source_event_id", sa.String(length=100), nullable=True),
        sa.Column("reverses_charge_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("posted_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reverses_charge_id"],
            ["charges.id"],
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reverses_charge_id"),
        sa.UniqueConstraint("source_key"),
    )
    op.create_index(("ix_charges_invoice_id"), "charges", ["invoice_id"], unique=False)
    op.create_index(("ix_charges_visit_id"), "charges", ["visit_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("invoice_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=True),
        sa.Column("provider_txn_id", sa.String(length=100), nullable=True),
        sa.Column("bank_reference", sa.String(length=100), nullable=True),
        sa.Column("shift_id", sa.String(length=36), nullable=True),
        sa.Column("refund_of", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("received_by", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["shift_id"],
            ["cashier_shifts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_txn_id", name="uq_payment_provider_txn"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index(("ix_payments_invoice_id"), "payments", ["invoice_id"], unique=False)
    op.create_index("ix_payments_received_at", "payments", ["received_at"], unique=False)
    op.create_index(("ix_payments_shift_id"), "payments", ["shift_id"], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    drop_chassis_tables(op)
