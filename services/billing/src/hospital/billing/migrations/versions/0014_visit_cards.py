"""Cards recorded during a visit after the one it opened with (``visit_cards``): a card issued during a
stay. Each line is paid under the card valid on its day and the claim lists every card. Frozen history in
explicit DDL.

Revision ID: 0014
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visit_cards",
        sa.Column("visit_id", sa.String(36), sa.ForeignKey("visits.id"), primary_key=True),
        sa.Column("card_number", sa.String(15), primary_key=True),
        sa.Column("valid_from", sa.Date(), primary_key=True),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("registered_facility", sa.String(5), nullable=False),
        sa.Column("five_year_date", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("visit_cards")
