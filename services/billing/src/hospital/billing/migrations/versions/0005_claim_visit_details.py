"""What the QĐ130 claim needs beyond 0001: of a visit, the patient's address and province code, phone,
the card's 5-year date (NAM_NAM_LIEN_TUC) and the referral paper the patient came with
(GIAY_CHUYEN_TUYEN), copied from ``admissions.visit.opened``; of a drug in the price list, its strength,
dosage form, route code, registration number and tender (XML2). The demo drugs get their strength and
dosage form; the registration number, tender and national route code come from the hospital's tender
results and are entered by its pharmacy.

Frozen history in explicit DDL.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PRICE_COLUMNS = [
    ("strength", sa.String(200)),
    ("dosage_form", sa.String(200)),
    ("route_code", sa.String(4)),
    ("registration_number", sa.String(100)),
    ("tender", sa.String(50)),
]
# price code -> (strength, dosage form)
DRUGS = {
    "T-PARA500": ("500mg", "Viên nén"),
    "T-AMOX500": ("500mg", "Viên nang cứng"),
    "T-NACL09": ("0,9% 500ml", "Dung dịch tiêm truyền"),
    "T-OME20": ("20mg", "Viên nang cứng"),
    "T-CEFTRI1G": ("1g", "Bột pha tiêm"),
    "T-ALBUMIN": ("20% 50ml", "Dung dịch tiêm truyền"),
}
COLUMNS = [
    ("address", sa.String(500)),
    ("province_code", sa.String(3)),
    ("phone", sa.String(20)),
    ("card_five_year_date", sa.Date()),
    ("referral_code", sa.String(50)),
]


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("visits", sa.Column(name, type_, nullable=True))
    for name, type_ in PRICE_COLUMNS:
        op.add_column("price_items", sa.Column(name, type_, nullable=True))
    items = sa.table("price_items", sa.column("code"), sa.column("strength"), sa.column("dosage_form"))
    for code, (strength, form) in DRUGS.items():
        op.execute(items.update().where(items.c.code == code).values(strength=strength, dosage_form=form))


def downgrade() -> None:
    with op.batch_alter_table("price_items") as batch:
        for name, _ in reversed(PRICE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("visits") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
