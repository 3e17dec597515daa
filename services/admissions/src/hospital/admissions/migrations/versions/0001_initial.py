"""Initial schema: chassis tables (outbox, inbox, audit), patients, cards, visits, queues, beds, stays.

Revision ID: 0001
"""

from alembic import op

from hospital.admissions.adapters.tables import metadata
from hospital.chassis.migrations import create_chassis_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_chassis_tables(op)
    bind = op.get_bind()
    metadata.create_all(bind)
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_patients_name_trgm ON patients USING gin (name_folded gin_trgm_ops)")
