"""Duplicate candidates and merge.

Merge keeps the survivor's record, moves every identifier and all history (cards, visits, stays) of the
merged record to it, marks the merged record ``merged_into`` (never deleted, so old references resolve),
publishes ``admissions.patient.merged`` so other services re-point their records, and audits it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select, update

from hospital.admissions.adapters.tables import inpatient_stays, insurance_cards, patients, visits
from hospital.admissions.app.patients import Caller, PatientService
from hospital.admissions.config import AdmissionsSettings
from hospital.admissions.domain.identity import PartialDate
from hospital.admissions.domain.names import PersonFacts, looks_like_duplicate
from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid
from hospital.contracts.admissions.v1 import events_pb2


def _facts(p: dict[str, Any]) -> PersonFacts:
    y, *rest = p["birth_date"].split("-")
    birth = PartialDate(int(y), int(rest[0]) if rest else None, int(rest[1]) if len(rest) > 1 else None)
    return PersonFacts(
        full_name=p["full_name"],
        birth_date=birth,
        sex=p["sex"],
        phone=p["phone"],
        cccd=p["cccd"],
        bhyt_number=p["bhyt_number"],
    )


class MergeService:
    def __init__(self, rt: Runtime[AdmissionsSettings], patients_svc: PatientService) -> None:
        self.rt = rt
        self.patients = patients_svc

    async def candidates(self, patient_id: str, caller: Caller, limit: int = 10) -> list[dict[str, Any]]:
        """Records that may be the same person: same folded name and birth year, or same phone."""
        async with self.rt.uow() as uow:
            s = uow.session
            me = await self.patients._load(s, patient_id)
            row = (
                await s.execute(
                    select(patients.c.name_folded, patients.c.birth_year).where(patients.c.id == patient_id)
                )
            ).one()
            conds = [and_(patients.c.name_folded == row.name_folded, patients.c.birth_year == row.birth_year)]
            if me["phone"]:
                conds.append(patients.c.phone == me["phone"])
            rows = (
                await s.execute(
                    select(patients)
                    .where(or_(*conds), patients.c.id != patient_id, patients.c.merged_into.is_(None))
                    .limit(50)
                )
            ).mappings()
            out = []
            for r in rows:
                other = await self.patients._load(s, r["id"])
                verdict = looks_like_duplicate(_facts(me), _facts(other))
                if verdict.score > 0:
                    out.append(
                        {"patient": other, "score": round(verdict.score, 3), "reasons": list(verdict.reasons)}
                    )
            uow.audit(caller.audit("patient.duplicates", "Patient", patient_id, patient_id, found=len(out)))
            await uow.commit()
        out.sort(key=lambda c: -c["score"])
        return out[:limit]

    async def merge(self, survivor_id: str, merged_id: str, caller: Caller) -> dict[str, Any]:
        if survivor_id == merged_id:
            raise Invalid("merge.same", "a patient cannot be merged into itself", field="merged_id")
        async with self.rt.uow() as uow:
            s = uow.session
            # lock both rows in a fixed order so two clerks merging crosswise cannot deadlock
            rows = {
                r["id"]: r
                for r in (
                    await s.execute(
                        select(patients)
                        .where(patients.c.id.in_(sorted([survivor_id, merged_id])))
                        .order_by(patients.c.id)
                        .with_for_update()
                    )
                )
                .mappings()
                .all()
            }
            if survivor_id not in rows or merged_id not in rows:
                raise Invalid("merge.unknown", "both patients must exist", field="merged_id")
            for pid in (survivor_id, merged_id):
                if rows[pid]["merged_into"]:
                    raise Conflict(
                        "merge.already_merged", f"patient {rows[pid]['patient_code']} was already merged"
                    )
            active = (
                await s.execute(
                    select(inpatient_stays.c.id).where(
                        inpatient_stays.c.patient_id.in_([survivor_id, merged_id]),
                        inpatient_stays.c.status == "active",
                    )
                )
            ).all()
            if len(active) > 1:
                raise Conflict("merge.two_active_stays", "both records have an active inpatient stay")
            survivor, gone = rows[survivor_id], rows[merged_id]
            mine = (
                await s.execute(
                    select(insurance_cards.c.number, insurance_cards.c.valid_from).where(
                        insurance_cards.c.patient_id == survivor_id
                    )
                )
            ).all()
            for number, valid_from in mine:  # the same card on both records: keep the survivor's copy
                await s.execute(
                    insurance_cards.delete().where(
                        insurance_cards.c.patient_id == merged_id,
                        insurance_cards.c.number == number,
                        insurance_cards.c.valid_from.is_(None)
                        if valid_from is None
                        else insurance_cards.c.valid_from == valid_from,
                    )
                )
            moved = {}
            for table in (insurance_cards, visits, inpatient_stays):
                res = await s.execute(
                    update(table).where(table.c.patient_id == merged_id).values(patient_id=survivor_id)
                )
                moved[table.name] = res.rowcount
            fill = {
                k: gone[k]
                for k in (
                    "cccd",
                    "old_id_number",
                    "phone",
                    "address_line",
                    "ward",
                    "district",
                    "province_code",
                    "ethnicity",
                    "occupation",
                    "guardian_name",
                    "guardian_phone",
                )
                if not survivor[k] and gone[k]
            }
            now = utcnow()
            cccd = fill.pop("cccd", None)
            await s.execute(
                update(patients)
                .where(patients.c.id == merged_id)
                .values(merged_into=survivor_id, updated_at=now)
            )
            if cccd:  # after the merged record stopped holding it (unique among live records)
                fill["cccd"] = cccd
            await s.execute(
                update(patients).where(patients.c.id == survivor_id).values(updated_at=now, **fill)
            )
            msg = events_pb2.PatientMerged(survivor_id=survivor_id, merged_id=merged_id, by=caller.actor())
            msg.merged_at.FromDatetime(now)
            uow.publish("admissions.patient.merged", msg)
            uow.audit(
                caller.audit(
                    "patient.merge",
                    "Patient",
                    survivor_id,
                    survivor_id,
                    merged_id=merged_id,
                    merged_code=gone["patient_code"],
                    moved=moved,
                )
            )
            uow.audit(
                caller.audit("patient.merged_away", "Patient", merged_id, merged_id, survivor_id=survivor_id)
            )
            await uow.commit()
            return await self.patients._load(s, survivor_id)
