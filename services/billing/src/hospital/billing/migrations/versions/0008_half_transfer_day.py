"""A day on which a patient moved between departments is billed 0.5 at the dearest and 0.5 at the
cheapest bed class of that day: ``stays.day_low_class`` keeps the cheapest next to ``day_class``.

A stay transferred before this revision keeps its whole transfer day at ``day_class``. Frozen history in
explicit DDL.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stays", sa.Column("day_low_class", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stays") as batch:
        batch.drop_column("day_low_class")
