"""Charge capture from lab and imaging orders: ``charges.order_ref``, the ``clinical_orders``,
``code_map`` and ``held_charges`` tables, the price items the lab catalogue and the imaging
procedures need, and the seeded code → price mapping; ``stays.day_class`` for the one-bed-day-per-day
rule.

Frozen history in explicit DDL; the seed data is written out literally (not imported from the domain) so
that this revision keeps meaning what it meant.

Prices are illustrative for the demo hospital (structure of Circular 39/2018/TT-BYT as amended by
Circular 22/2023/TT-BYT), like the list of 0002.

Revision ID: 0003
"""

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FROM = date(2024, 7, 1)
# code, name, category, unit, hospital price, insurance price, BHYT service code, MA_NHOM
PRICES = [
    ("XN-URE", "Định lượng Urê [Máu]", "lab", "Lần", 21_500, 21_500, "23.0166.1494", 1),
    ("XN-ALB", "Định lượng Albumin [Máu]", "lab", "Lần", 21_500, 21_500, "23.0007.1494", 1),
    ("XN-CHOL", "Định lượng Cholesterol toàn phần [Máu]", "lab", "Lần", 26_900, 26_900, "23.0041.1506", 1),
    ("XN-TG", "Định lượng Triglycerid [Máu]", "lab", "Lần", 26_900, 26_900, "23.0158.1506", 1),
    (
        "XN-HDL",
        "Định lượng HDL-C (High density lipoprotein Cholesterol) [Máu]",
        "lab",
        "Lần",
        26_900,
        26_900,
        "23.0084.1506",
        1,
    ),
    (
        "XN-LDL",
        "Định lượng LDL-C (Low density lipoprotein Cholesterol) [Máu]",
        "lab",
        "Lần",
        26_900,
        26_900,
        "23.0112.1506",
        1,
    ),
    (
        "XN-TSH",
        "Định lượng TSH (Thyroid Stimulating Hormone) [Máu]",
        "lab",
        "Lần",
        58_900,
        58_900,
        "23.0155.1536",
        1,
    ),
    ("XN-FT4", "Định lượng FT4 (Free Thyroxine) [Máu]", "lab", "Lần", 64_600, 64_600, "23.0077.1537", 1),
    (
        "XN-FT3",
        "Định lượng FT3 (Free Triiodothyronine) [Máu]",
        "lab",
        "Lần",
        64_600,
        64_600,
        "23.0076.1537",
        1,
    ),
    ("XN-FER", "Định lượng Ferritin [Máu]", "lab", "Lần", 80_800, 80_800, "23.0073.1523", 1),
    (
        "XN-XPERT",
        "Vi khuẩn lao (MTB) và kháng Rifampicin Xpert MTB/RIF",
        "lab",
        "Lần",
        1_003_000,
        1_003_000,
        "24.0120.1685",
        1,
    ),
    (
        "CDHA-XQCSTL",
        "Chụp X-quang cột sống thắt lưng thẳng nghiêng",
        "imaging",
        "Lần",
        97_200,
        97_200,
        "18.0081.0028",
        2,
    ),
    ("CDHA-SATG", "Siêu âm tuyến giáp", "imaging", "Lần", 43_900, 43_900, "18.0003.0001", 2),
    (
        "CDHA-CTBUNG",
        "Chụp CT ổ bụng không tiêm thuốc cản quang",
        "imaging",
        "Lần",
        522_000,
        522_000,
        "18.0117.0001",
        2,
    ),
    (
        "CDHA-MRICSTL",
        "Chụp cộng hưởng từ cột sống thắt lưng",
        "imaging",
        "Lần",
        1_311_000,
        1_311_000,
        "18.0210.0055",
        2,
    ),
]

CBC = (
    "WBC",
    "RBC",
    "HGB",
    "HCT",
    "MCV",
    "MCH",
    "MCHC",
    "PLT",
    "NEU%",
    "LYM%",
    "MON%",
    "EOS%",
    "BAS%",
    "NEU#",
    "LYM#",
    "MON#",
    "EOS#",
    "BAS#",
    "RDW-CV",
    "RDW-SD",
    "MPV",
)
URINALYSIS = ("U-PH", "U-SG", "U-PRO", "U-GLU", "U-KET", "U-BLD", "U-LEU", "U-NIT")
# Lab catalogue test code → price item. A blood count, an electrolyte panel and a urinalysis are billed
# as one service each (one machine run), however many of their parameters were ordered.
LAB = {
    **dict.fromkeys(CBC, "XN-CTM"),
    **dict.fromkeys(URINALYSIS, "XN-NTIEU"),
    **dict.fromkeys(("NA", "K", "CL"), "XN-DGD"),
    "GLU": "XN-GLU",
    "URE": "XN-URE",
    "CRE": "XN-CRE",
    "AST": "XN-AST",
    "ALT": "XN-ALT",
    "ALB": "XN-ALB",
    "CHOL": "XN-CHOL",
    "TG": "XN-TG",
    "HDL": "XN-HDL",
    "LDL": "XN-LDL",
    "HBA1C": "XN-HBA1C",
    "TSH": "XN-TSH",
    "FT4": "XN-FT4",
    "FT3": "XN-FT3",
    "FER": "XN-FER",
    "MTB": "XN-XPERT",
}
# Imaging requested procedure id (DICOM SH, ≤ 16 characters: the EMR's short code, the price code itself
# or the BHYT service code) → price item. A modality alone does not name a price (CT of the head and of
# the abdomen differ), so nothing is mapped by modality; ``modality:<MOD>`` rows may be added by a hospital.
IMAGING_ITEMS = {
    "CDHA-XQNGUC": ("XQ-NGUC", "18.0067.0028"),
    "CDHA-XQCSTL": ("XQ-CSTL", "18.0081.0028"),
    "CDHA-SAOB": ("SA-OB", "18.0014.0001"),
    "CDHA-SATG": ("SA-TG", "18.0003.0001"),
    "CDHA-CTSN": ("CT-SN", "18.0070.0001"),
    "CDHA-CTBUNG": ("CT-BUNG", "18.0117.0001"),
    "CDHA-MRISN": ("MR-SN", "18.0188.0055"),
    "CDHA-MRICSTL": ("MR-CSTL", "18.0210.0055"),
}
IMAGING = {code: price for price, codes in IMAGING_ITEMS.items() for code in (price, *codes)}


def upgrade() -> None:
    op.add_column("charges", sa.Column("order_ref", sa.String(length=80), nullable=True))
    op.create_index("ix_charges_order_ref", "charges", ["order_ref"], unique=False)
    op.add_column("stays", sa.Column("day_class", sa.String(length=30), nullable=True))
    op.create_table(
        "clinical_orders",
        sa.Column("order_ref", sa.String(length=80), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=True),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("charged_event_id", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_ref"),
    )
    code_map = op.create_table(
        "code_map",
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("price_code", sa.String(length=30), nullable=False),
        sa.PrimaryKeyConstraint("source", "code"),
    )
    op.create_table(
        "held_charges",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=60), nullable=False),
        sa.Column("source_key", sa.String(length=150), nullable=False),
        sa.Column("source_event_id", sa.String(length=100), nullable=True),
        sa.Column("order_ref", sa.String(length=80), nullable=True),
        sa.Column("order_number", sa.String(length=40), nullable=True),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("qty_milli", sa.BigInteger(), nullable=False),
        sa.Column("ordered_by", sa.String(length=50), nullable=True),
        sa.Column("service_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("charge_id", sa.String(length=36), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key"),
    )
    op.create_index("ix_held_charges_order_ref", "held_charges", ["order_ref"], unique=False)
    op.create_index("ix_held_charges_status", "held_charges", ["status"], unique=False)
    price_items = sa.table(
        "price_items",
        *(
            sa.column(c)
            for c in (
                "code",
                "effective_from",
                "effective_to",
                "name",
                "category",
                "unit",
                "hospital_price",
                "insurance_price",
                "covered",
                "payment_ratio",
                "bhyt_code",
                "xml_group",
            )
        ),
    )
    op.bulk_insert(
        price_items,
        [
            {
                "code": c,
                "effective_from": FROM,
                "effective_to": None,
                "name": n,
                "category": cat,
                "unit": u,
                "hospital_price": h,
                "insurance_price": i,
                "covered": True,
                "payment_ratio": 100,
                "bhyt_code": b,
                "xml_group": g,
            }
            for c, n, cat, u, h, i, b, g in PRICES
        ],
    )
    op.bulk_insert(
        code_map,
        [
            {"source": source, "code": code, "price_code": price}
            for source, table in (("lab", LAB), ("imaging", IMAGING))
            for code, price in table.items()
        ],
    )


def downgrade() -> None:
    for table in ("held_charges", "code_map", "clinical_orders"):
        op.drop_table(table)
    op.drop_column("stays", "day_class")
    op.drop_index("ix_charges_order_ref", table_name="charges")
    op.drop_column("charges", "order_ref")
    codes = ", ".join(f"'{p[0]}'" for p in PRICES)
    op.execute(f"DELETE FROM price_items WHERE code IN ({codes})")
