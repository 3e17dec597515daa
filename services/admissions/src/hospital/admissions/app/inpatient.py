"""Inpatient admit / transfer / discharge and the bed board.

A bed is taken by a guarded ``UPDATE beds SET admission_id = :id WHERE code = :bed AND admission_id IS
NULL``: of concurrent requests for one bed exactly one updates a row; the others see zero rows and get
409. A partial unique index on active stays per bed backs this up at the database level.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hospital.admissions.adapters.tables import beds, inpatient_stays, visits, wards
from hospital.admissions.app.mapping import stay_dict, stay_proto
from hospital.admissions.app.patients import Caller, PatientService
from hospital.admissions.config import AdmissionsSettings
from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.admissions.v1 import events_pb2

DISCHARGE_TYPES = (
    "recovered",
    "improved",
    "unchanged",
    "worse",
    "transferred_out",
    "against_advice",
    "deceased",
)


class InpatientService:
    def __init__(self, rt: Runtime[AdmissionsSettings], patients_svc: PatientService) -> None:
        self.rt = rt
        self.patients = patients_svc

    async def _take_bed(self, s: Any, bed: str, stay_id: str) -> Any:
        row = (await s.execute(select(beds).where(beds.c.code == bed))).mappings().first()
        if row is None:
            raise Invalid("bed.unknown", f"no bed {bed!r}", field="bed")
        res = await s.execute(
            update(beds).where(beds.c.code == bed, beds.c.admission_id.is_(None)).values(admission_id=stay_id)
        )
        if res.rowcount != 1:
            raise Conflict("bed.occupied", f"bed {bed} is occupied", field="bed")
        return row

    async def admit(
        self, patient_id: str, bed: str, caller: Caller, visit_id: str | None = None
    ) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            patient = await self.patients._load(s, patient_id)
            if patient["merged_into"]:
                raise Conflict("patient.merged", "patient was merged", field="patient_id")
            if (
                visit_id
                and (await s.execute(select(visits.c.id).where(visits.c.id == visit_id))).first() is None
            ):
                raise Invalid("visit.not_found", f"no visit {visit_id}", field="visit_id")
            active = (
                await s.execute(
                    select(inpatient_stays.c.bed_code).where(
                        inpatient_stays.c.patient_id == patient_id, inpatient_stays.c.status == "active"
                    )
                )
            ).first()
            if active:
                raise Conflict("admission.active", f"patient is already admitted (bed {active.bed_code})")
            stay_id = new_id()
            bed_row = await self._take_bed(s, bed, stay_id)
            values = dict(
                id=stay_id,
                patient_id=patient_id,
                visit_id=visit_id,
                ward_code=bed_row["ward_code"],
                bed_code=bed,
                status="active",
                admitted_at=utcnow(),
                discharged_at=None,
                discharge_type=None,
            )
            await s.execute(inpatient_stays.insert().values(**values))
            uow.publish(
                "admissions.inpatient.admitted", events_pb2.InpatientAdmitted(admission=stay_proto(values))
            )
            uow.audit(caller.audit("inpatient.admit", "Admission", stay_id, patient_id, bed=bed))
            await uow.commit()
        return stay_dict(values)

    async def _active(self, s: Any, stay_id: str) -> Any:
        row = (
            (await s.execute(select(inpatient_stays).where(inpatient_stays.c.id == stay_id)))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound("admission.not_found", f"no admission {stay_id}")
        if row["status"] != "active":
            raise Conflict("admission.closed", "the patient has been discharged")
        return row

    async def transfer(self, stay_id: str, bed: str, caller: Caller) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            row = await self._active(s, stay_id)
            if row["bed_code"] == bed:
                raise Invalid("bed.same", "the patient is already in that bed", field="bed")
            bed_row = await self._take_bed(s, bed, stay_id)
            await s.execute(update(beds).where(beds.c.code == row["bed_code"]).values(admission_id=None))
            await s.execute(
                update(inpatient_stays)
                .where(inpatient_stays.c.id == stay_id)
                .values(bed_code=bed, ward_code=bed_row["ward_code"])
            )
            new = dict(row, bed_code=bed, ward_code=bed_row["ward_code"])
            uow.publish(
                "admissions.inpatient.transferred",
                events_pb2.InpatientTransferred(
                    admission=stay_proto(new), from_ward_code=row["ward_code"], from_bed_code=row["bed_code"]
                ),
            )
            uow.audit(
                caller.audit(
                    "inpatient.transfer",
                    "Admission",
                    stay_id,
                    row["patient_id"],
                    from_bed=row["bed_code"],
                    to_bed=bed,
                )
            )
            await uow.commit()
        return stay_dict(new)

    async def discharge(self, stay_id: str, discharge_type: str, caller: Caller) -> dict[str, Any]:
        if discharge_type not in DISCHARGE_TYPES:
            raise Invalid(
                "discharge.type",
                f"discharge_type must be one of {', '.join(DISCHARGE_TYPES)}",
                field="discharge_type",
            )
        async with self.rt.uow() as uow:
            s = uow.session
            row = await self._active(s, stay_id)
            now = utcnow()
            await s.execute(
                update(inpatient_stays)
                .where(inpatient_stays.c.id == stay_id)
                .values(status="discharged", discharged_at=now, discharge_type=discharge_type)
            )
            await s.execute(update(beds).where(beds.c.code == row["bed_code"]).values(admission_id=None))
            new = dict(row, status="discharged", discharged_at=now, discharge_type=discharge_type)
            msg = events_pb2.InpatientDischarged(admission=stay_proto(new), discharge_type=discharge_type)
            msg.discharged_at.FromDatetime(now)
            uow.publish("admissions.inpatient.discharged", msg)
            uow.audit(
                caller.audit(
                    "inpatient.discharge",
                    "Admission",
                    stay_id,
                    row["patient_id"],
                    discharge_type=discharge_type,
                )
            )
            await uow.commit()
        return stay_dict(new)

    async def bed_board(self, ward: str | None, caller: Caller) -> list[dict[str, Any]]:
        """Beds and who lies in them (patient ids): audited with the patients shown."""
        items = await self._bed_board(ward)
        shown = [b["patient_id"] for b in items if b["patient_id"]]
        async with self.rt.uow() as uow:
            uow.audit(caller.audit("beds.read", "Bed", ward, None, ward=ward, shown=shown))
            await uow.commit()
        return items

    async def _bed_board(self, ward: str | None) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            stmt = (
                select(
                    beds.c.code,
                    beds.c.ward_code,
                    beds.c.room,
                    wards.c.name.label("ward_name"),
                    inpatient_stays.c.patient_id,
                    inpatient_stays.c.id.label("admission_id"),
                )
                .join(wards, wards.c.code == beds.c.ward_code)
                .outerjoin(inpatient_stays, inpatient_stays.c.id == beds.c.admission_id)
                .order_by(beds.c.code)
            )
            if ward:
                stmt = stmt.where(beds.c.ward_code == ward)
            rows = (await s.execute(stmt)).all()
        return [
            {
                "code": r.code,
                "ward": r.ward_code,
                "ward_name": r.ward_name,
                "room": r.room,
                "occupied": r.admission_id is not None,
                "admission_id": r.admission_id,
                "patient_id": r.patient_id,
            }
            for r in rows
        ]

    async def active(self, ward: str | None, caller: Caller) -> list[dict[str, Any]]:
        """The stays in progress (audited with the patients shown)."""
        async with self.rt.db.session() as s:
            stmt = select(inpatient_stays).where(inpatient_stays.c.status == "active")
            if ward:
                stmt = stmt.where(inpatient_stays.c.ward_code == ward)
            rows = [dict(r) for r in (await s.execute(stmt)).mappings().all()]
        async with self.rt.uow() as uow:
            shown = [r["patient_id"] for r in rows]
            uow.audit(caller.audit("admissions.list", "InpatientStay", ward, None, ward=ward, shown=shown))
            await uow.commit()
        return rows
