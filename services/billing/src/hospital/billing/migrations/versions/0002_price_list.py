"""Seed the demo hospital's price list (examination, lab, imaging, procedures, bed-days by ward class,
supplies, drugs; hospital and insurance prices with effective dates).

Revision ID: 0002
"""

from alembic import op

from hospital.billing.adapters.tables import price_items
from hospital.billing.domain.pricing import PRICE_LIST

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.bulk_insert(
        price_items,
        [
            {
                "code": p.code,
                "effective_from": p.effective_from,
                "effective_to": p.effective_to,
                "name": p.name,
                "category": p.category,
                "unit": p.unit,
                "hospital_price": p.hospital,
                "insurance_price": p.insurance,
                "covered": p.covered,
                "payment_ratio": p.payment_ratio,
                "bhyt_code": p.bhyt_code,
                "xml_group": p.group,
            }
            for p in PRICE_LIST
        ],
    )
