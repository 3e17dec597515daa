"""National e-prescription queue: one row per final prescription, written in the same transaction, sent by
the worker with retries (status queued / sent / failed, attempts, last error, the national system's answer).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eprescription_queue",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("prescription_id", sa.String(length=36), nullable=False),
        sa.Column("code", sa.String(length=14), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.UniqueConstraint("prescription_id"),
    )
    op.create_index(
        "ix_eprescription_queue_due", "eprescription_queue", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_eprescription_queue_due", table_name="eprescription_queue")
    op.drop_table("eprescription_queue")
