"""Reference data read models: departments, clinic rooms, wards (seeded by migration 0002), provinces."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from hospital.admissions.adapters.tables import clinic_rooms, departments, wards
from hospital.admissions.config import AdmissionsSettings
from hospital.admissions.domain import reference
from hospital.chassis.app import Runtime

ROOM_CODES_TTL = 60.0  # seconds: a room added or closed is seen by the displays' checks within this


class ReferenceService:
    def __init__(self, rt: Runtime[AdmissionsSettings]) -> None:
        self.rt = rt
        self._room_codes: frozenset[str] = frozenset()
        self._room_codes_at = float("-inf")

    async def room_known(self, code: str) -> bool:
        """Whether ``code`` is an active clinic room. The codes are read at most once a minute, so asking
        about invented names costs no database read each."""
        if time.monotonic() - self._room_codes_at > ROOM_CODES_TTL:
            async with self.rt.db.session() as s:
                rows = (
                    await s.execute(select(clinic_rooms.c.code).where(clinic_rooms.c.active.is_(True)))
                ).all()
            self._room_codes, self._room_codes_at = frozenset(r.code for r in rows), time.monotonic()
        return code in self._room_codes

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
