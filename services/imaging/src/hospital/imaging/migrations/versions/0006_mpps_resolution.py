"""``mpps.resolved_by``, ``resolved_at``, ``resolution_note``: staff mark an MPPS flagged for review
(``attention``) as handled with ``POST /api/v1/mpps/{uid}/resolve``; it then leaves
``GET /api/v1/mpps?unmatched=true``.

0001 creates the tables from the current metadata, so on a fresh database the columns already exist:
they are added only when missing. MPPS recorded before 0006 are all unresolved (NULL).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("resolved_by", sa.String(200)),
    ("resolved_at", UtcDateTime()),
    ("resolution_note", sa.String(500)),
)


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("mpps")}
    for name, kind in _COLUMNS:
        if name not in have:
            op.add_column("mpps", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(_COLUMNS):
        op.drop_column("mpps", name)
