"""Deletion of studies and series: the deletions job and the objects it still has to remove (ADR 0312).

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deletions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("objects_total", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_deletions_study_instance_uid", "deletions", ["study_instance_uid"])
    op.create_index("ix_deletions_due", "deletions", ["status", "next_attempt_at"])
    op.create_table(
        "deletion_objects",
        sa.Column("deletion_id", sa.String(36), primary_key=True),
        sa.Column("object_key", sa.String(300), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("deletion_objects")
    op.drop_index("ix_deletions_due", "deletions")
    op.drop_index("ix_deletions_study_instance_uid", "deletions")
    op.drop_table("deletions")
