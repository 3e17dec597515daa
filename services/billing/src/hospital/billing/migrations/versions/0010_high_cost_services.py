"""High-cost technical services (DVKT cao chi phí): ``price_items.high_cost`` flags them,
``charges.high_cost`` keeps the flag a charge was posted with; for cards of levels 2-4 the fund pays
one use on at most 40 months of the base salary. The demo price list flags none. Frozen history in
explicit DDL.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "price_items", sa.Column("high_cost", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("charges", sa.Column("high_cost", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("charges") as batch:
        batch.drop_column("high_cost")
    with op.batch_alter_table("price_items") as batch:
        batch.drop_column("high_cost")
