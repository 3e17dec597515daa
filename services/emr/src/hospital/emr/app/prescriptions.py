"""Outpatient prescriptions from the drug catalogue, checked against the patient's allergies, the active
medication orders of the encounter and each other; every alert is overridden with a reason or the
prescription is refused. A saved prescription is a draft until its author signs it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.caller import Caller
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.emr.adapters.store import Consultations, Documents, Drugs, Orders, PatientLists, Prescriptions
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, load_encounter
from hospital.emr.domain import access, prescribing
from hospital.emr.domain.text import fold


class AlertsNotOverridden(DomainError):
    """Alerts the prescriber has not overridden with a reason (HTTP 422 with the alerts listed)."""

    status = 422

    def __init__(self, alerts: list[sc.DrugAlert]) -> None:
        names = "; ".join(a.message for a in alerts)
        super().__init__(
            "prescription.alerts_not_overridden",
            f"cảnh báo chưa được xử lý (cần lý do bỏ qua): {names}",
            field="overrides",
        )
        self.alerts = alerts


def _facts(row: dict[str, Any]) -> prescribing.DrugFacts:
    return prescribing.DrugFacts(
        code=row["code"],
        name=row["name"],
        ingredient_codes=tuple(row["ingredient_codes"]),
        atc_code=row["atc_code"],
        atc_class=row["atc_class"],
    )


def drug_model(row: dict[str, Any]) -> sc.Drug:
    return sc.Drug.model_validate({k: v for k, v in row.items() if v is not None})


async def load_drugs(
    session: AsyncSession, items: list[sc.PrescriptionItem], field: str
) -> dict[str, dict[str, Any]]:
    found = await Drugs(session).get_many([i.drug_code for i in items])
    for n, item in enumerate(items):
        if item.drug_code not in found:
            raise Invalid(
                "drug.unknown",
                f"thuốc {item.drug_code!r} không có trong danh mục",
                field=f"{field}.{n}.drug_code",
            )
    return found


def complete(item: sc.PrescriptionItem, drug: dict[str, Any]) -> sc.PrescriptionItem:
    """The item with the catalogue's name, ingredient, strength, unit and default route."""
    return item.model_copy(
        update={
            "drug_name": drug["name"],
            "active_ingredient": drug["active_ingredient"],
            "strength": drug["strength"],
            "unit": drug["unit"],
            "route": item.route or drug["route"],
        }
    )


async def alerts_for(
    session: AsyncSession,
    patient_id: str,
    encounter_id: str,
    drugs: list[dict[str, Any]],
    overrides: list[sc.AlertOverride],
) -> tuple[list[sc.DrugAlert], list[sc.DrugAlert]]:
    allergies = [
        prescribing.AllergyFacts(a["substance"], a["ingredient_code"] or "")
        for a in await PatientLists(session).allergies(patient_id, active_only=True)
        if a["category"] in ("drug", "other")
    ]
    current_codes = [o["codes"][0] for o in await Orders(session).active_medication(encounter_id)]
    current = [_facts(d) for d in (await Drugs(session).get_many(current_codes)).values()]
    found = prescribing.check([_facts(d) for d in drugs], current, allergies)
    left = prescribing.unresolved(found, [(o.drug_code, o.kind, o.reason) for o in overrides])

    def model(a: prescribing.Alert) -> sc.DrugAlert:
        return sc.DrugAlert(
            kind=a.kind, severity=a.severity, drug_code=a.drug_code, message=a.message, related=a.related
        )

    return [model(a) for a in found], [model(a) for a in left]


def prescription_model(row: dict[str, Any]) -> sc.Prescription:
    return sc.Prescription.model_validate({k: v for k, v in row.items() if v is not None})


class PrescriptionService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def search_drugs(self, query: str, limit: int) -> sc.DrugPage:
        terms = fold(query).split()
        if not terms:
            return sc.DrugPage(items=[])
        async with self.ctx.rt.db.session() as s:
            rows = await Drugs(s).search(terms, max(1, min(limit or 20, 100)))
        return sc.DrugPage(items=[drug_model(r) for r in rows])

    async def check(self, caller: Caller, encounter_id: str, req: sc.SavePrescription) -> sc.CheckResult:
        async with self.ctx.uow() as uow:
            enc = await load_encounter(uow.session, encounter_id)
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            found = await load_drugs(uow.session, req.items, "items")
            alerts, left = await alerts_for(
                uow.session,
                enc["patient_id"],
                encounter_id,
                [found[i.drug_code] for i in req.items],
                req.overrides,
            )
        return sc.CheckResult(alerts=alerts, unresolved=left)

    async def save(self, caller: Caller, encounter_id: str, req: sc.SavePrescription) -> sc.Prescription:
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id, for_update=True)
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            repo = Prescriptions(s)
            if req.request_id and not req.prescription_id:
                done = await repo.by_request(req.request_id)
                if done is not None:
                    return prescription_model(done)
            found = await load_drugs(s, req.items, "items")
            _, left = await alerts_for(
                s, enc["patient_id"], encounter_id, [found[i.drug_code] for i in req.items], req.overrides
            )
            if left:
                raise AlertsNotOverridden(left)
            types = {found[i.drug_code]["prescription_type"] for i in req.items}
            if req.type == "c" and types & {"n", "h"}:
                raise Invalid(
                    "prescription.type",
                    "thuốc gây nghiện/hướng thần phải kê đơn riêng (loại n/h)",
                    field="type",
                )
            dx = [
                {"icd10_code": d["icd10_code"], "name": d["name"], "main": d["main"], "note": d["note"]}
                for d in await Consultations(s).diagnoses(encounter_id)
            ]
            if not dx:
                raise Invalid(
                    "prescription.no_diagnosis",
                    "cần chẩn đoán (ICD-10) trước khi kê đơn",
                    field="encounter_id",
                )
            items = [complete(i, found[i.drug_code]).model_dump() for i in req.items]
            now = utcnow()
            values = {
                "type": req.type,
                "items": items,
                "diagnoses": dx,
                "advice": req.advice,
                "revisit_date": req.revisit_date,
                "overrides": [o.model_dump() for o in req.overrides],
            }
            if req.prescription_id:
                row = await repo.get(req.prescription_id)
                if row is None or row["encounter_id"] != encounter_id:
                    raise NotFound(
                        "prescription.not_found",
                        f"no prescription {req.prescription_id}",
                        field="prescription_id",
                    )
                if row["status"] != "draft":
                    raise Conflict(
                        "prescription.signed", "đơn đã ký: không sửa được", field="prescription_id"
                    )
                await repo.update(req.prescription_id, **values)
                pid = req.prescription_id
            else:
                pid = new_id()
                n = await next_value(s, "prescription")
                code = f"{self.ctx.settings.facility_code[:5]}{n:07d}-{req.type}"
                document_id = new_id()
                await Documents(s).add(
                    {
                        "id": document_id,
                        "encounter_id": encounter_id,
                        "patient_id": enc["patient_id"],
                        "kind": "prescription",
                        "template_code": None,
                        "title": f"Đơn thuốc {code}",
                        "sections": [],
                        "status": "draft",
                        "version": 1,
                        "amends_document_id": None,
                        "amended_by_document_id": None,
                        "amendment_reason": None,
                        "study_instance_uid": None,
                        "order_id": None,
                        "author": caller.subject,
                        "author_name": caller.principal.name,
                        "request_id": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                await repo.add(
                    {
                        "id": pid,
                        "encounter_id": encounter_id,
                        "patient_id": enc["patient_id"],
                        "code": code,
                        "status": "draft",
                        "document_id": document_id,
                        "national_status": "not_sent",
                        "national_error": None,
                        "national_attempts": 0,
                        "national_next_at": None,
                        "national_sent_at": None,
                        "prescriber": caller.subject,
                        "prescriber_name": caller.principal.name,
                        "request_id": req.request_id or None,
                        "created_at": now,
                        "signed_at": None,
                        **values,
                    }
                )
            uow.audit(
                caller.audit(
                    "prescription.save",
                    "Prescription",
                    pid,
                    enc["patient_id"],
                    drugs=[i.drug_code for i in req.items],
                    overrides=[f"{o.drug_code}:{o.kind}" for o in req.overrides],
                )
            )
            out = prescription_model(await repo.get(pid) or {})
            await uow.commit()
        return out
