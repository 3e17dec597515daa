"""Orders record whether admissions knows their patient (``lab_orders.patient_check``: verified,
unverified, unknown; ADR 0103). Orders placed before are ``unverified`` and checked by the service.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "lab_orders", sa.Column("patient_check", sa.String(12), nullable=False, server_default="unverified")
    )
    op.create_index("ix_orders_patient_check", "lab_orders", ["patient_check"])


def downgrade() -> None:
    op.drop_index("ix_orders_patient_check", table_name="lab_orders")
    op.drop_column("lab_orders", "patient_check")
