"""``orders.visit_ref``: the admissions visit an imaging order was made in (optional), so that billing
charges the procedure on that visit instead of guessing the patient's open visit.

Frozen history in explicit DDL.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("visit_ref", sa.String(length=36), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "visit_ref")
