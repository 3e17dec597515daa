"""``mpps.attention``: why an MPPS needs review ("no_order", "order_cancelled"), so that an MPPS naming a
cancelled order is listed with the unmatched ones (``GET /api/v1/mpps?unmatched=true``) while its order
stays cancelled (ADR 0306).

MPPS recorded before 0005 with no order get "no_order". Frozen history in explicit DDL.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mpps", sa.Column("attention", sa.String(length=20), nullable=True))
    op.execute("UPDATE mpps SET attention = 'no_order' WHERE order_id IS NULL")
    op.create_index("ix_mpps_attention", "mpps", ["attention", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mpps_attention", table_name="mpps")
    op.drop_column("mpps", "attention")
