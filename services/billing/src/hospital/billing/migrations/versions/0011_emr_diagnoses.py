"""The claim's diagnoses from the EMR: ``visits.diagnosis_secondary`` (MA_BENH_KT, ICD-10 codes joined
by ``;``), ``visits.diagnosis_at`` (when the diagnosis billing holds was recorded: a diagnosis older
than it does not replace it) and ``visits.diagnosis_source`` (``emr`` or ``cashier``). Frozen history
in explicit DDL.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("visits", sa.Column("diagnosis_secondary", sa.String(255), nullable=True))
    op.add_column("visits", sa.Column("diagnosis_at", UtcDateTime(), nullable=True))
    op.add_column("visits", sa.Column("diagnosis_source", sa.String(10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.drop_column("diagnosis_source")
        batch.drop_column("diagnosis_at")
        batch.drop_column("diagnosis_secondary")
