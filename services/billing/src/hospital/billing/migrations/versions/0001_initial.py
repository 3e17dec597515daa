"""Initial schema: chassis tables (outbox, inbox, counters, audit), price list, visits, stays, invoices,
charges, cashier shifts, payments, provider callbacks, claims, reconciliations.

Revision ID: 0001
"""

from alembic import op

from hospital.billing.adapters.tables import metadata
from hospital.chassis.migrations import create_chassis_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_chassis_tables(op)
    metadata.create_all(op.get_bind())
