"""Reference data of the demo provincial general hospital: departments, clinic rooms, wards, beds.

Frozen history: the data is written out as this revision seeded it (not imported from the domain).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# code, name
DEPARTMENTS = [
    ("KKB", "Khoa Khám bệnh"),
    ("CC", "Khoa Cấp cứu"),
    ("HSTC", "Khoa Hồi sức tích cực - Chống độc"),
    ("NTH", "Khoa Nội tổng hợp"),
    ("NTM", "Khoa Nội tim mạch"),
    ("NTK", "Khoa Nội thần kinh"),
    ("NTT", "Khoa Nội tiết"),
    ("TN", "Khoa Truyền nhiễm"),
    ("NGTH", "Khoa Ngoại tổng hợp"),
    ("CTCH", "Khoa Chấn thương chỉnh hình"),
    ("NGTK", "Khoa Ngoại thần kinh"),
    ("PTGM", "Khoa Phẫu thuật - Gây mê hồi sức"),
    ("SAN", "Khoa Sản"),
    ("NHI", "Khoa Nhi"),
    ("UB", "Khoa Ung bướu"),
    ("YHCT", "Khoa Y học cổ truyền"),
    ("PHCN", "Khoa Phục hồi chức năng"),
    ("TMH", "Khoa Tai Mũi Họng"),
    ("RHM", "Khoa Răng Hàm Mặt"),
    ("MAT", "Khoa Mắt"),
    ("DL", "Khoa Da liễu"),
    ("XN", "Khoa Xét nghiệm"),
    ("CDHA", "Khoa Chẩn đoán hình ảnh"),
    ("TDCN", "Khoa Thăm dò chức năng"),
    ("GPB", "Khoa Giải phẫu bệnh"),
    ("DUOC", "Khoa Dược"),
    ("KSNK", "Khoa Kiểm soát nhiễm khuẩn"),
    ("DD", "Khoa Dinh dưỡng"),
]
# code, name, department running the room
CLINIC_ROOMS = [
    ("P101", "Phòng khám Nội 1", "KKB"),
    ("P102", "Phòng khám Nội 2", "KKB"),
    ("P103", "Phòng khám Nội 3", "KKB"),
    ("P104", "Phòng khám Tim mạch", "KKB"),
    ("P105", "Phòng khám Thần kinh", "KKB"),
    ("P106", "Phòng khám Nội tiết", "KKB"),
    ("P107", "Phòng khám Truyền nhiễm", "KKB"),
    ("P108", "Phòng khám Ngoại 1", "KKB"),
    ("P109", "Phòng khám Ngoại 2", "KKB"),
    ("P110", "Phòng khám Chấn thương chỉnh hình", "KKB"),
    ("P111", "Phòng khám Ngoại thần kinh", "KKB"),
    ("P112", "Phòng khám Sức khỏe", "KKB"),
    ("P201", "Phòng khám Sản phụ khoa", "KKB"),
    ("P202", "Phòng khám Nhi 1", "KKB"),
    ("P203", "Phòng khám Nhi 2", "KKB"),
    ("P204", "Phòng khám Ung bướu", "KKB"),
    ("P205", "Phòng khám Da liễu", "KKB"),
    ("P206", "Phòng khám Tai Mũi Họng", "TMH"),
    ("P207", "Phòng khám Răng Hàm Mặt", "RHM"),
    ("P208", "Phòng khám Mắt", "MAT"),
    ("P209", "Phòng khám Y học cổ truyền", "YHCT"),
    ("P210", "Phòng khám Phục hồi chức năng", "PHCN"),
]
# ward code, name, department, first room number, rooms, beds per room; bed codes are
# "<ward>-<room number>-<bed number, 2 digits>" and rooms "<ward>-<room number>" (900 beds)
WARD_LAYOUT = [
    ("NOI", "Khu điều trị Nội tổng hợp", "NTH", 101, 16, 6),
    ("CC", "Khu lưu bệnh Cấp cứu", "CC", 120, 4, 8),
    ("TNH", "Khu điều trị Truyền nhiễm", "TN", 130, 8, 5),
    ("HSTC", "Khu Hồi sức tích cực", "HSTC", 201, 3, 10),
    ("TIM", "Khu điều trị Nội tim mạch", "NTM", 210, 10, 6),
    ("TKI", "Khu điều trị Nội thần kinh", "NTK", 230, 8, 6),
    ("NTI", "Khu điều trị Nội tiết", "NTT", 301, 6, 6),
    ("NGO", "Khu điều trị Ngoại tổng hợp", "NGTH", 310, 14, 6),
    ("CTC", "Khu điều trị Chấn thương chỉnh hình", "CTCH", 401, 10, 6),
    ("NGK", "Khu điều trị Ngoại thần kinh", "NGTK", 420, 6, 6),
    ("HSM", "Khu hồi sức sau mổ", "PTGM", 501, 2, 9),
    ("SAN", "Khu điều trị Sản", "SAN", 510, 12, 6),
    ("NHI", "Khu điều trị Nhi", "NHI", 601, 10, 6),
    ("SSI", "Đơn nguyên Sơ sinh", "NHI", 620, 3, 8),
    ("UBU", "Khu điều trị Ung bướu", "UB", 701, 8, 6),
    ("YHC", "Khu điều trị Y học cổ truyền", "YHCT", 710, 7, 6),
    ("PHC", "Khu điều trị Phục hồi chức năng", "PHCN", 720, 5, 6),
    ("TMH", "Khu điều trị Tai Mũi Họng", "TMH", 801, 4, 6),
    ("RHM", "Khu điều trị Răng Hàm Mặt", "RHM", 810, 3, 6),
    ("MAT", "Khu điều trị Mắt", "MAT", 820, 4, 6),
    ("DLI", "Khu điều trị Da liễu", "DL", 830, 3, 6),
]


def _beds() -> list[dict[str, object]]:
    return [
        {
            "code": f"{ward}-{room}-{bed:02d}",
            "ward_code": ward,
            "room": f"{ward}-{room}",
            "admission_id": None,
        }
        for ward, _, _, first, rooms, per_room in WARD_LAYOUT
        for room in range(first, first + rooms)
        for bed in range(1, per_room + 1)
    ]


def upgrade() -> None:
    departments = sa.table("departments", sa.column("code"), sa.column("name"))
    clinic_rooms = sa.table(
        "clinic_rooms",
        sa.column("code"),
        sa.column("name"),
        sa.column("department_code"),
        sa.column("active"),
    )
    wards = sa.table("wards", sa.column("code"), sa.column("name"), sa.column("department_code"))
    beds = sa.table(
        "beds", sa.column("code"), sa.column("ward_code"), sa.column("room"), sa.column("admission_id")
    )
    op.bulk_insert(departments, [{"code": c, "name": n} for c, n in DEPARTMENTS])
    op.bulk_insert(
        clinic_rooms,
        [{"code": c, "name": n, "department_code": d, "active": True} for c, n, d in CLINIC_ROOMS],
    )
    op.bulk_insert(wards, [{"code": c, "name": n, "department_code": d} for c, n, d, *_ in WARD_LAYOUT])
    op.bulk_insert(beds, _beds())


def downgrade() -> None:
    for table in ("beds", "wards", "clinic_rooms", "departments"):
        op.execute(f"DELETE FROM {table}")
