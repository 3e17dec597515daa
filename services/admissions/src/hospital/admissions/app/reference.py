"""Reference data read models: departments, clinic rooms, wards (seeded by migration 0002), provinces."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hospital.admissions.adapters.tables import clinic_rooms, departments, wards
from hospital.admissions.domain import reference
from hospital.chassis.app import Runtime


class ReferenceService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def rooms(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (
                await s.execute(
                    select(
                        clinic_rooms.c.code,
                        clinic_rooms.c.name,
                        departments.c.code.label("dept_code"),
                        departments.c.name.label("dept_name"),
                    )
                    .join(departments, departments.c.code == clinic_rooms.c.department_code)
                    .where(clinic_rooms.c.active.is_(True))
                    .order_by(clinic_rooms.c.code)
                )
            ).all()
        return [
            {"code": r.code, "name": r.name, "department": r.dept_name, "department_code": r.dept_code}
            for r in rows
        ]

    async def departments(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (await s.execute(select(departments).order_by(departments.c.code))).all()
        return [{"code": r.code, "name": r.name} for r in rows]

    async def wards(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (await s.execute(select(wards).order_by(wards.c.code))).all()
        return [{"code": r.code, "name": r.name, "department_code": r.department_code} for r in rows]

    @staticmethod
    def provinces() -> list[dict[str, Any]]:
        return [{"code": p.code, "name": p.name} for p in reference.provinces()]
