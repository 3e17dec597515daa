"""Refund work items: a confirmed payment the bill no longer needs (a second transaction for a paid
invoice, a payment for a void or unknown invoice, the part of a transfer above the balance) is kept as an
item for a cashier to give back (docs/billing.md, "Over-payments").

Frozen history in explicit DDL.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_items",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("provider", sa.String(10), nullable=False),
        sa.Column("provider_txn_id", sa.String(100), nullable=False),
        sa.Column("callback_id", sa.String(36), nullable=True),
        sa.Column("invoice_id", sa.String(36), nullable=True),
        sa.Column("invoice_number", sa.String(30), nullable=True),
        sa.Column("payment_id", sa.String(36), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("on_invoice", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("refund_reference", sa.String(100), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.UniqueConstraint("provider", "provider_txn_id", name="uq_refund_item_provider_txn"),
    )
    op.create_index("ix_refund_items_status", "refund_items", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("refund_items")
