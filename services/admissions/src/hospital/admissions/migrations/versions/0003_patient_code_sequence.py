"""Patient codes from a sequence (no lock shared by concurrent registrations).

Revision ID: 0003
"""
from alembic import op

from hospital.chassis.migrations import create_sequence

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_sequence(op, "patient_code")
