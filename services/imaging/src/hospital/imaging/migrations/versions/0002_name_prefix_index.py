"""Name-prefix C-FIND / QIDO: pattern-ops btree indexes on the folded patient names (PostgreSQL).

The btree indexes of 0001 use the database collation, which PostgreSQL cannot use for
``LIKE 'NGUYEN^VAN AN 5432%'`` unless the collation is C: with 100,000 studies a name-prefix query
scanned the table (~0.8 s). ``text_pattern_ops`` indexes compare byte-wise and serve prefix LIKE;
the folded names are upper-case ASCII, so byte order is the right order. SQLite: nothing to do (its
LIKE is case-insensitive and does not use indexes by default; SQLite is for development).

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXES = (("ix_studies_name_prefix", "studies"), ("ix_img_patients_name_prefix", "patients"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in _INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} (name_folded text_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _table in _INDEXES:
        op.execute(f"DROP INDEX {name}")
