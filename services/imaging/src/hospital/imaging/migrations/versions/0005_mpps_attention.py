"""``mpps.attention``: why an MPPS needs review ("no_order", "order_cancelled"), so that an MPPS naming a
cancelled order is listed with the unmatched ones (``GET /api/v1/mpps?unmatched=true``) while its order
stays cancelled (ADR 0306).

0001 creates the tables from the current metadata, so on a fresh database the column and its index
already exist: they are added only when missing. MPPS recorded before 0005 with no order get "no_order".

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

from hospital.imaging.adapters.tables import mpps

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("mpps")}
    if "attention" not in have:
        op.add_column("mpps", sa.Column("attention", sa.String(20), nullable=True))
        op.execute("UPDATE mpps SET attention = 'no_order' WHERE order_id IS NULL")
    have_indexes = {i["name"] for i in sa.inspect(bind).get_indexes("mpps")}
    for index in mpps.indexes:
        if index.name not in have_indexes:
            index.create(bind)


def downgrade() -> None:
    op.drop_index("ix_mpps_attention", table_name="mpps")
    op.drop_column("mpps", "attention")
