"""MA_KHOA: the national department codes (QĐ 5937/QĐ-BYT Phụ lục 5) of the hospital's departments and
wards (``department_codes``), seeded for the demo hospital's departments and wards (admissions 0002);
a hospital loads its own mapping. The visit's MA_DANTOC and MA_NGHE_NGHIEP from what reception recorded
(``visits.ethnicity_code``, ``visits.occupation_code``). Frozen history in explicit DDL.

Revision ID: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# the demo hospital's departments (admissions 0002) and wards (bed-day lines carry the ward)
MAPPING = [
    ("KKB", "K01"),  # Khoa Khám bệnh
    ("CC", "K02"),  # Cấp cứu (department and ward)
    ("HSTC", "K02"),  # Hồi sức tích cực - Chống độc (department and ward): Hồi sức cấp cứu
    ("NTH", "K03"),
    ("NOI", "K03"),  # ward of Nội tổng hợp
    ("NTM", "K04"),
    ("TIM", "K04"),
    ("NTK", "K14"),  # Nội thần kinh: Thần kinh
    ("TKI", "K14"),
    ("NTT", "K08"),
    ("NTI", "K08"),
    ("TN", "K11"),
    ("TNH", "K11"),
    ("NGTH", "K19"),
    ("NGO", "K19"),
    ("CTCH", "K24"),
    ("CTC", "K24"),
    ("NGTK", "K20"),
    ("NGK", "K20"),
    ("PTGM", "K26"),
    ("HSM", "K26"),
    ("SAN", "K27"),  # Khoa Sản (department and ward): Phụ sản
    ("NHI", "K18"),  # department and ward
    ("SSI", "K18"),  # newborn ward of Khoa Nhi
    ("UB", "K33"),
    ("UBU", "K33"),
    ("YHCT", "K16"),
    ("YHC", "K16"),
    ("PHCN", "K31"),
    ("PHC", "K31"),
    ("TMH", "K28"),  # department and ward
    ("RHM", "K29"),  # department and ward
    ("MAT", "K30"),  # department and ward
    ("DL", "K13"),
    ("DLI", "K13"),
    ("XN", "K47"),
    ("CDHA", "K39"),
    ("TDCN", "K40"),
    ("GPB", "K42"),
    ("DUOC", "K44"),
    ("KSNK", "K43"),
    ("DD", "K45"),
]


def upgrade() -> None:
    table = op.create_table(
        "department_codes",
        sa.Column("department_code", sa.String(20), primary_key=True),
        sa.Column("claim_code", sa.String(3), nullable=False),
    )
    op.bulk_insert(table, [{"department_code": d, "claim_code": k} for d, k in MAPPING])
    op.add_column("visits", sa.Column("ethnicity_code", sa.String(2), nullable=True))
    op.add_column("visits", sa.Column("occupation_code", sa.String(5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.drop_column("occupation_code")
        batch.drop_column("ethnicity_code")
    op.drop_table("department_codes")
