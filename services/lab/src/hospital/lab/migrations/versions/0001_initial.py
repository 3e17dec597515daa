"""Initial schema: chassis tables (outbox, inbox, counters, audit) and the lab tables.

Revision ID: 0001
"""

from alembic import op

from hospital.chassis.migrations import create_chassis_tables
from hospital.lab.adapters.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_chassis_tables(op)
    metadata.create_all(op.get_bind())
