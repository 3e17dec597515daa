"""Card-less reception: ``insurance_checks``, every look-up of a patient's BHYT card on the insurance
agency's portal with its answer and check time. Frozen history in explicit DDL.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insurance_checks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("patient_id", sa.String(36), sa.ForeignKey("patients.id"), nullable=True),
        sa.Column("visit_id", sa.String(36), sa.ForeignKey("visits.id"), nullable=True),
        sa.Column("identifier_kind", sa.String(30), nullable=False),
        sa.Column("identifier", sa.String(12), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result_code", sa.String(10), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("card_number", sa.String(15), nullable=True),
        sa.Column("benefit_level", sa.Integer(), nullable=True),
        sa.Column("registered_facility", sa.String(20), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("five_year_date", sa.Date(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_insurance_checks_patient_id", "insurance_checks", ["patient_id"])
    op.create_index("ix_insurance_checks_visit_id", "insurance_checks", ["visit_id"])


def downgrade() -> None:
    op.drop_index("ix_insurance_checks_visit_id", "insurance_checks")
    op.drop_index("ix_insurance_checks_patient_id", "insurance_checks")
    op.drop_table("insurance_checks")
