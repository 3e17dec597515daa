"""Conflict review (resolution columns on instance_conflicts) and the MPPS log (unmatched MPPS kept).

Frozen history in explicit DDL.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("resolution", sa.String(length=20)),
    ("resolved_by", sa.String(length=200)),
    ("resolved_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("instance_conflicts", sa.Column(name, kind, nullable=True))
    op.create_table(
        "mpps",
        sa.Column("mpps_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("patient_name", sa.String(length=200), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mpps_instance_uid"),
    )
    op.create_index("ix_mpps_unmatched", "mpps", ["order_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("mpps")
    for name, _ in reversed(_COLUMNS):
        op.drop_column("instance_conflicts", name)
