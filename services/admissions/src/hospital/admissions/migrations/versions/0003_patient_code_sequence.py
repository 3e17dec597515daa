"""Patient codes from a sequence (no lock shared by concurrent registrations), continuing after the
highest code already issued (codes are BN + 2-digit year + 7-digit number).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import sequence_name
from hospital.chassis.migrations import create_sequence, drop_sequence

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    highest = (
        bind.execute(sa.text("SELECT max(CAST(substr(patient_code, 5) AS INTEGER)) FROM patients")).scalar()
        or 0
    )
    if bind.dialect.name == "postgresql":
        create_sequence(op, "patient_code")
        if highest:
            op.execute(f"SELECT setval('{sequence_name('patient_code')}', {int(highest)})")
    elif highest:
        counters = sa.table("counters", sa.column("scope"), sa.column("value"))
        bind.execute(counters.insert().values(scope="seq:patient_code", value=int(highest)))


def downgrade() -> None:
    # SQLite's counter row stays: upgrading again starts after the highest code issued either way.
    drop_sequence(op, "patient_code")
