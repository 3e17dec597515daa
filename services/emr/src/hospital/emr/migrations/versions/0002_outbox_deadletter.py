"""The outbox dead-letter table: outbox rows the relay can never publish (larger than the NATS server's
max_payload, refused for good by their stream) are set aside there with the reason, so the events behind
them keep flowing; `python -m hospital.emr outbox-deadletters list|replay` (ADR 0007).

Revision ID: 0002
"""

from alembic import op

from hospital.chassis.migrations import create_outbox_deadletter

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_deadletter(op)


def downgrade() -> None:
    op.drop_table("outbox_deadletter")
