"""``mpps.resolved_by``, ``resolved_at``, ``resolution_note``: staff mark an MPPS flagged for review
(``attention``) as handled with ``POST /api/v1/mpps/{uid}/resolve``; it then leaves
``GET /api/v1/mpps?unmatched=true``.

MPPS recorded before 0006 are all unresolved (NULL). Frozen history in explicit DDL.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("resolved_by", sa.String(length=200)),
    ("resolved_at", sa.DateTime(timezone=True)),
    ("resolution_note", sa.String(length=500)),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("mpps", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(_COLUMNS):
        op.drop_column("mpps", name)
