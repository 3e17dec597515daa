"""Papers a visit produces (QĐ 130 XML7, XML11, XML13, XML14): ``encounter_papers``, one row per discharge
paper, referral paper, sick-leave certificate or re-visit appointment, with its number, its fields, the
consultation's diagnoses and the document its author signs.

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
        "encounter_papers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("encounter_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("number", sa.String(length=50), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("diagnoses", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("replaces_paper_id", sa.String(length=36), nullable=True),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("signed_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("document_id"),
        sa.UniqueConstraint("replaces_paper_id"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index("ix_encounter_papers_encounter_id", "encounter_papers", ["encounter_id"], unique=False)
    op.create_index("ix_encounter_papers_patient_id", "encounter_papers", ["patient_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_encounter_papers_patient_id", table_name="encounter_papers")
    op.drop_index("ix_encounter_papers_encounter_id", table_name="encounter_papers")
    op.drop_table("encounter_papers")
