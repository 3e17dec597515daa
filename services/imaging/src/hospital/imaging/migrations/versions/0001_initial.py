"""Initial schema: chassis tables, the study index, orders, reconciliation queue, routing rules and queue.

Revision ID: 0001
"""

from alembic import op

from hospital.chassis.migrations import create_chassis_tables
from hospital.imaging.adapters.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_chassis_tables(op)
    metadata.create_all(op.get_bind())
