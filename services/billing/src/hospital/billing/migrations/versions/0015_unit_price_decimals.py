"""Unit prices with the decision's 3 decimals: ``price_items.hospital_price`` / ``insurance_price`` and
``charges.hospital_unit_price`` / ``insurance_unit_price`` from BIGINT (whole VND) to NUMERIC(18, 3);
existing whole prices keep their value. The downgrade rounds to whole VND (half away from zero).
Frozen history in explicit DDL.

Revision ID: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = {
    "price_items": ("hospital_price", "insurance_price"),
    "charges": ("hospital_unit_price", "insurance_unit_price"),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column, type_=sa.Numeric(18, 3), existing_type=sa.BigInteger(), existing_nullable=False
                )


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(f"UPDATE {table} SET {column} = ROUND({column})")
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column,
                    type_=sa.BigInteger(),
                    existing_type=sa.Numeric(18, 3),
                    existing_nullable=False,
                    postgresql_using=f"{column}::bigint",
                )
