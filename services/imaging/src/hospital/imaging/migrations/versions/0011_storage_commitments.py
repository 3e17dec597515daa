"""``storage_commitments``: Storage Commitment requests and the state of their N-EVENT-REPORT, written
before the N-ACTION is answered so that they survive a restart (ADR 0318).

Frozen history in explicit DDL.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_commitments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("transaction_uid", sa.String(64), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("refs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("wait_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_storage_commitments_due", "storage_commitments", ["status", "next_attempt_at"])
    op.create_index("ix_storage_commitments_transaction", "storage_commitments", ["transaction_uid"])


def downgrade() -> None:
    op.drop_index("ix_storage_commitments_transaction", "storage_commitments")
    op.drop_index("ix_storage_commitments_due", "storage_commitments")
    op.drop_table("storage_commitments")
