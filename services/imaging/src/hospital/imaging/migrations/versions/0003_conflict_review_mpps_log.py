"""Conflict review (resolution columns on instance_conflicts) and the MPPS log (unmatched MPPS kept).

0001 creates the tables from the current metadata, so on a fresh database everything already exists:
only what is missing is added.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime
from hospital.imaging.adapters.tables import mpps

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (("resolution", sa.String(20)), ("resolved_by", sa.String(200)), ("resolved_at", UtcDateTime()))


def upgrade() -> None:
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("instance_conflicts")}
    for name, kind in _COLUMNS:
        if name not in have:
            op.add_column("instance_conflicts", sa.Column(name, kind, nullable=True))
    mpps.create(bind, checkfirst=True)
    have_indexes = {i["name"] for i in sa.inspect(bind).get_indexes("mpps")}
    for index in mpps.indexes:
        if index.name not in have_indexes:
            index.create(bind)


def downgrade() -> None:
    op.drop_table("mpps")
    for name, _ in _COLUMNS:
        op.drop_column("instance_conflicts", name)
