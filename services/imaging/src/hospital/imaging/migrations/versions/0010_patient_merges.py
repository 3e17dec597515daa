"""``patient_merges``: a patient record merged into another in admissions (admissions.patient.merged): its
patient code names the same person as the survivor's when studies are matched to orders (ADR 0317).

Frozen history in explicit DDL.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_merges",
        sa.Column("merged_code", sa.String(64), primary_key=True),
        sa.Column("survivor_code", sa.String(64), nullable=False),
        sa.Column("merged_ref", sa.String(36), nullable=False),
        sa.Column("survivor_ref", sa.String(36), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_patient_merges_survivor_code", "patient_merges", ["survivor_code"])


def downgrade() -> None:
    op.drop_index("ix_patient_merges_survivor_code", "patient_merges")
    op.drop_table("patient_merges")
