"""Keyed audit trail: audit_log.key_id and purpose, audit_head.head_mac (docs/adr/0004-security-and-audit.md).

Records written before stay scheme 1 and still verify; the service's next start seals the chain heads.

Revision ID: 0003
"""

from alembic import op

from hospital.chassis.migrations import add_audit_keying

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_audit_keying(op)


def downgrade() -> None:
    pass  # the columns stay with the chassis's audit tables (keyed records need them to verify)
