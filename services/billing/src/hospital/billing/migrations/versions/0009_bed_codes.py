"""MA_GIUONG: the decision's 4-character bed codes for the hospital's beds (``bed_codes``), seeded for the
demo hospital's bed layout (admissions 0002): every bed is a planned bed, numbered H001, H002... within its
department in ward and room order. A hospital loads its own mapping (extra beds T, beds of choice C,
stretchers K). Frozen history in explicit DDL.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# ward, department, first room number, rooms, beds per room (admissions 0002)
WARD_LAYOUT = [
    ("NOI", "NTH", 101, 16, 6),
    ("CC", "CC", 120, 4, 8),
    ("TNH", "TN", 130, 8, 5),
    ("HSTC", "HSTC", 201, 3, 10),
    ("TIM", "NTM", 210, 10, 6),
    ("TKI", "NTK", 230, 8, 6),
    ("NTI", "NTT", 301, 6, 6),
    ("NGO", "NGTH", 310, 14, 6),
    ("CTC", "CTCH", 401, 10, 6),
    ("NGK", "NGTK", 420, 6, 6),
    ("HSM", "PTGM", 501, 2, 9),
    ("SAN", "SAN", 510, 12, 6),
    ("NHI", "NHI", 601, 10, 6),
    ("SSI", "NHI", 620, 3, 8),
    ("UBU", "UB", 701, 8, 6),
    ("YHC", "YHCT", 710, 7, 6),
    ("PHC", "PHCN", 720, 5, 6),
    ("TMH", "TMH", 801, 4, 6),
    ("RHM", "RHM", 810, 3, 6),
    ("MAT", "MAT", 820, 4, 6),
    ("DLI", "DL", 830, 3, 6),
]


def _rows() -> list[dict[str, str]]:
    rows, numbers = [], {}
    for ward, department, first, rooms, per_room in WARD_LAYOUT:
        for room in range(first, first + rooms):
            for bed in range(1, per_room + 1):
                numbers[department] = numbers.get(department, 0) + 1
                rows.append(
                    {
                        "bed_code": f"{ward}-{room}-{bed:02d}",
                        "department_code": department,
                        "claim_code": f"H{numbers[department]:03d}",
                    }
                )
    return rows


def upgrade() -> None:
    table = op.create_table(
        "bed_codes",
        sa.Column("bed_code", sa.String(30), primary_key=True),
        sa.Column("department_code", sa.String(20), nullable=False),
        sa.Column("claim_code", sa.String(4), nullable=False),
    )
    op.bulk_insert(table, _rows())


def downgrade() -> None:
    op.drop_table("bed_codes")
