"""The chart and the consultation: what the doctor reads when opening a patient and writes during the
examination (complaint, history, examination, vitals, diagnoses, allergies, problems, plan, follow-up)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.emr.v1 import emr_pb2, events_pb2
from hospital.emr.adapters.store import Consultations, Encounters, PatientLists, Patients
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, authorize_read, encounter_model, load_encounter
from hospital.emr.domain import access, icd10, vitals


def _vitals_model(raw: dict[str, Any] | None) -> sc.Vitals:
    return sc.Vitals.model_validate(raw or {})


def _allergy(row: dict[str, Any]) -> sc.Allergy:
    return sc.Allergy.model_validate({k: v for k, v in row.items() if v is not None})


def _problem(row: dict[str, Any]) -> sc.Problem:
    return sc.Problem.model_validate({k: v for k, v in row.items() if v is not None})


async def read_consultation(session: AsyncSession, encounter: dict[str, Any]) -> sc.Consultation:
    repo, lists = Consultations(session), PatientLists(session)
    row = await repo.get(encounter["id"])
    dx = [
        sc.Diagnosis(icd10_code=d["icd10_code"], name=d["name"], main=d["main"], note=d["note"])
        for d in await repo.diagnoses(encounter["id"])
    ]
    allergies = [_allergy(r) for r in await lists.allergies(encounter["patient_id"])]
    problems = [_problem(r) for r in await lists.problems(encounter["patient_id"])]
    if row is None:
        return sc.Consultation(
            encounter_id=encounter["id"],
            patient_id=encounter["patient_id"],
            diagnoses=dx,
            allergies=allergies,
            problems=problems,
        )
    return sc.Consultation(
        encounter_id=row["encounter_id"],
        patient_id=row["patient_id"],
        version=row["version"],
        chief_complaint=row["chief_complaint"],
        history=row["history"],
        past_history=row["past_history"],
        examination=row["examination"],
        vitals=_vitals_model(row["vitals"]),
        diagnoses=dx,
        treatment_plan=row["treatment_plan"],
        follow_up_date=row["follow_up_date"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        allergies=allergies,
        problems=problems,
    )


def check_diagnoses(items: list[sc.Diagnosis]) -> list[sc.Diagnosis]:
    """Known codes, names from the list, no repeats, exactly one main diagnosis (first in the result)."""
    out: list[sc.Diagnosis] = []
    seen: set[str] = set()
    for i, d in enumerate(items):
        code = icd10.lookup(d.icd10_code)
        if code is None:
            raise Invalid(
                "diagnosis.unknown_code",
                f"mã ICD-10 {d.icd10_code!r} không có trong danh mục",
                field=f"diagnoses.{i}.icd10_code",
            )
        if code.code in seen:
            raise Invalid(
                "diagnosis.duplicate", f"chẩn đoán {code.code} bị lặp", field=f"diagnoses.{i}.icd10_code"
            )
        seen.add(code.code)
        out.append(
            sc.Diagnosis(icd10_code=code.code, name=d.name.strip() or code.name_vi, main=d.main, note=d.note)
        )
    mains = [d for d in out if d.main]
    if out and len(mains) != 1:
        raise Invalid("diagnosis.main", "cần đúng một chẩn đoán chính (bệnh chính)", field="diagnoses")
    return sorted(out, key=lambda d: not d.main)


class ChartService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def consultation(
        self, caller: Caller, encounter_id: str, reason: str | None = None
    ) -> sc.Consultation:
        async with self.ctx.uow() as uow:
            enc = await load_encounter(uow.session, encounter_id)
            await authorize_read(
                self.ctx, uow, caller, enc["patient_id"], encounter_id, reason, "consultation.read"
            )
            out = await read_consultation(uow.session, enc)
            await uow.commit()
        return out

    async def save_consultation(
        self, caller: Caller, encounter_id: str, req: sc.SaveConsultation
    ) -> sc.Consultation:
        dx = check_diagnoses(req.diagnoses)
        measured = req.vitals.model_dump(include=set(vitals.LIMITS))
        bmi, flags = vitals.check(measured)
        now = utcnow()
        vit = sc.Vitals(
            **measured,
            bmi=bmi,
            measured_at=req.vitals.measured_at or now,
            flags=[sc.VitalFlag(field=f.field, flag=f.flag, message=f.message) for f in flags],
        )
        has_vitals = any(v is not None for v in measured.values())
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id, for_update=True)
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            if enc["status"] != "open":
                raise Conflict(
                    "encounter.closed",
                    "lượt khám đã kết thúc: không sửa được phiếu khám",
                    field="encounter_id",
                )
            repo = Consultations(s)
            current = await repo.get(encounter_id)
            values = {
                "chief_complaint": req.chief_complaint.strip(),
                "history": req.history,
                "past_history": req.past_history,
                "examination": req.examination,
                "vitals": vit.model_dump(mode="json", exclude_none=True) if has_vitals else None,
                "treatment_plan": req.treatment_plan,
                "follow_up_date": req.follow_up_date,
                "updated_at": now,
                "updated_by": caller.subject,
            }
            have = current["version"] if current else 0
            if req.expected_version != have:
                raise Conflict(
                    "consultation.version_conflict",
                    f"phiếu khám đã được lưu bởi người khác (phiên bản {have}, bạn sửa bản "
                    f"{req.expected_version}): tải lại rồi lưu",
                    field="expected_version",
                )
            if current is None:
                await repo.insert(
                    {"encounter_id": encounter_id, "patient_id": enc["patient_id"], "version": 1, **values}
                )
            elif not await repo.update_if_version(encounter_id, have, {**values, "version": have + 1}):
                raise Conflict(
                    "consultation.version_conflict",
                    "phiếu khám vừa được lưu bởi người khác: tải lại",
                    field="expected_version",
                )
            before = [(d["icd10_code"], d["main"]) for d in await repo.diagnoses(encounter_id)]
            after = [(d.icd10_code, d.main) for d in dx]
            if before != after:
                await repo.replace_diagnoses(
                    encounter_id,
                    [
                        {
                            "id": new_id(),
                            "encounter_id": encounter_id,
                            "patient_id": enc["patient_id"],
                            "seq": i,
                            "icd10_code": d.icd10_code,
                            "name": d.name,
                            "main": d.main,
                            "note": d.note,
                            "recorded_at": now,
                            "recorded_by": caller.subject,
                        }
                        for i, d in enumerate(dx)
                    ],
                )
                uow.publish(
                    "emr.diagnosis.recorded",
                    events_pb2.DiagnosisRecorded(
                        encounter_id=encounter_id,
                        patient_id=enc["patient_id"],
                        visit_id=enc["visit_id"] or "",
                        diagnoses=[sc.to_proto(d, emr_pb2.Diagnosis) for d in dx],
                        by=caller.actor(),
                        recorded_at=_pb_time(now),
                    ),
                )
            await Encounters(s).update(
                encounter_id,
                attending_doctor=caller.subject,
                main_diagnosis_code=dx[0].icd10_code if dx else None,
            )
            if req.allergies_set:
                await self._reconcile_allergies(s, enc["patient_id"], req.allergies, caller, now)
            if req.problems_set:
                await self._reconcile_problems(s, enc["patient_id"], req.problems, now)
            uow.audit(
                caller.audit(
                    "consultation.save",
                    "Encounter",
                    encounter_id,
                    enc["patient_id"],
                    version=have + 1,
                    diagnoses=[d.icd10_code for d in dx],
                    vitals_flags=[f"{f.field}:{f.flag}" for f in flags],
                )
            )
            out = await read_consultation(s, enc)
            await uow.commit()
        return out

    async def _reconcile_allergies(
        self, s: AsyncSession, patient_id: str, items: list[sc.Allergy], caller: Caller, now: Any
    ) -> None:
        lists = PatientLists(s)
        stored = {r["id"]: r for r in await lists.allergies(patient_id)}
        kept: set[str] = set()
        for i, a in enumerate(items):
            values = {
                "substance": a.substance.strip(),
                "category": a.category,
                "ingredient_code": a.ingredient_code.strip().lower() or None,
                "reaction": a.reaction,
                "severity": a.severity or "moderate",
                "status": a.status,
            }
            if a.id:
                if a.id not in stored:
                    raise Invalid(
                        "allergy.unknown", f"no allergy {a.id} on this patient", field=f"allergies.{i}.id"
                    )
                kept.add(a.id)
                await lists.update_allergy(a.id, patient_id, values)
            else:
                await lists.add_allergy(
                    {
                        "id": new_id(),
                        "patient_id": patient_id,
                        "recorded_at": now,
                        "recorded_by": caller.subject,
                        **values,
                    }
                )
        for aid, row in stored.items():
            if aid not in kept and row["status"] == "active":
                await lists.update_allergy(aid, patient_id, {"status": "inactive"})

    async def _reconcile_problems(
        self, s: AsyncSession, patient_id: str, items: list[sc.Problem], now: Any
    ) -> None:
        lists = PatientLists(s)
        stored = {r["id"]: r for r in await lists.problems(patient_id)}
        kept: set[str] = set()
        for i, p in enumerate(items):
            code = ""
            if p.icd10_code:
                found = icd10.lookup(p.icd10_code)
                if found is None:
                    raise Invalid(
                        "problem.unknown_code",
                        f"mã ICD-10 {p.icd10_code!r} không có trong danh mục",
                        field=f"problems.{i}.icd10_code",
                    )
                code = found.code
            values = {
                "icd10_code": code or None,
                "description": p.description.strip(),
                "status": p.status,
                "onset_date": p.onset_date or None,
            }
            if p.id:
                if p.id not in stored:
                    raise Invalid(
                        "problem.unknown", f"no problem {p.id} on this patient", field=f"problems.{i}.id"
                    )
                kept.add(p.id)
                await lists.update_problem(p.id, patient_id, values)
            else:
                await lists.add_problem(
                    {"id": new_id(), "patient_id": patient_id, "recorded_at": now, **values}
                )
        for pid, row in stored.items():
            if pid not in kept and row["status"] == "active":
                await lists.update_problem(pid, patient_id, {"status": "resolved"})

    async def chart(
        self,
        caller: Caller,
        patient_id: str,
        encounter_id: str | None,
        reason: str | None,
        extras: Any = None,
    ) -> sc.Chart:
        async with self.ctx.uow() as uow:
            s = uow.session
            patient = await Patients(s).get(patient_id)
            if patient is None:
                raise NotFound("patient.not_found", f"no chart for patient {patient_id}", field="patient_id")
            granted = await authorize_read(
                self.ctx, uow, caller, patient_id, encounter_id or None, reason, "chart.read"
            )
            encs = await Encounters(s).of_patient(patient_id)
            selected = None
            if encounter_id:
                selected = next((e for e in encs if e["id"] == encounter_id), None)
                if selected is None:
                    raise NotFound(
                        "encounter.not_found",
                        f"no encounter {encounter_id} for this patient",
                        field="encounter_id",
                    )
            elif encs:
                selected = encs[0]
            consultation = await read_consultation(s, selected) if selected else None
            lists = PatientLists(s)
            chart = sc.Chart(
                patient=sc.PatientSummary.model_validate({k: v for k, v in patient.items() if v is not None}),
                allergies=[_allergy(r) for r in await lists.allergies(patient_id)],
                problems=[_problem(r) for r in await lists.problems(patient_id)],
                encounters=[encounter_model(e) for e in encs],
                encounter=encounter_model(selected) if selected else None,
                consultation=consultation,
                break_glass=granted.break_glass,
            )
            if extras is not None:
                await extras(s, chart, patient_id, selected)
            await uow.commit()
        return chart

    def search_icd10(self, query: str, limit: int) -> sc.Icd10Page:
        return sc.Icd10Page(
            items=[
                sc.Icd10Code(code=c.code, name_vi=c.name_vi, chapter=c.chapter, block=c.block)
                for c in icd10.search(query, limit)
            ]
        )


def _pb_time(at: Any) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(at)
    return t
