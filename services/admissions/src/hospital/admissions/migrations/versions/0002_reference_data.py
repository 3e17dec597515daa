"""Reference data of the demo provincial general hospital: departments, clinic rooms, wards, beds.

Revision ID: 0002
"""

from alembic import op

from hospital.admissions.adapters.tables import beds, clinic_rooms, departments, wards
from hospital.admissions.domain import reference

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.bulk_insert(departments, [{"code": d.code, "name": d.name} for d in reference.departments()])
    op.bulk_insert(
        clinic_rooms,
        [
            {"code": r.code, "name": r.name, "department_code": r.department_code, "active": True}
            for r in reference.clinic_rooms()
        ],
    )
    op.bulk_insert(
        wards,
        [{"code": w.code, "name": w.name, "department_code": w.department_code} for w in reference.wards()],
    )
    op.bulk_insert(
        beds,
        [
            {"code": b.code, "ward_code": b.ward_code, "room": b.room_code, "admission_id": None}
            for b in reference.beds()
        ],
    )
