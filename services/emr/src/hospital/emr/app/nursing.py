"""Nursing records of a ward encounter (inpatient or emergency): vital signs a nurse measures several times
a day (a time series, flagged by the vitals rules) and the medication administration record (each dose of
an active medication order given, held, refused or missed; published as ``emr.medication.administered``).
Writes need the encounter's department (nurse or doctor); every read is audited like a chart read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.emr.v1 import emr_pb2, events_pb2
from hospital.emr.adapters.store import Administrations, Orders, VitalObservations
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import LOCAL_TZ, Context, authorize_read, load_encounter
from hospital.emr.domain import access, nursing
from hospital.emr.domain import vitals as vital_rules

MAX_PAGE = 1000


def _aware(at: datetime | None, now: datetime) -> datetime:
    """A time from the ward (a naive one is Vietnam time), in UTC; none: now."""
    if at is None:
        return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=LOCAL_TZ)
    return at.astimezone(now.tzinfo)


def vital_model(row: dict[str, Any]) -> sc.VitalObservation:
    data = {k: v for k, v in row.items() if v is not None and k != "request_id"}
    return sc.VitalObservation.model_validate(data)


def administration_model(row: dict[str, Any], order: dict[str, Any] | None) -> sc.MedicationAdministration:
    data = {k: v for k, v in row.items() if v is not None and k != "request_id"}
    med = (order or {}).get("medication") or {}
    data["drug_code"] = med.get("drug_code") or ""
    data["drug_name"] = med.get("drug_name") or ""
    return sc.MedicationAdministration.model_validate(data)


class NursingService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def record_vitals(
        self, caller: Caller, encounter_id: str, req: sc.RecordVitals
    ) -> sc.VitalObservation:
        values = {f: getattr(req, f) for f in nursing.VITAL_FIELDS}
        if all(v is None for v in values.values()):
            raise Invalid("vitals.empty", "ghi ít nhất một chỉ số sinh hiệu", field="pulse")
        _, flags = vital_rules.check(values)
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id, for_update=True)
            access.check_write(
                caller.principal, self.ctx.departments(caller), enc["department_code"], nursing.RECORDERS
            )
            repo = VitalObservations(s)
            if req.request_id:
                done = await repo.by_request(req.request_id)
                if done is not None:
                    if done["encounter_id"] != encounter_id:
                        raise Invalid(
                            "request_id.reused", "request_id đã dùng cho lượt khác", field="request_id"
                        )
                    return vital_model(done)
            nursing.check_ward_encounter(enc["kind"], enc["status"])
            now = utcnow()
            measured_at = _aware(req.measured_at, now)
            nursing.check_time(measured_at, now, enc["opened_at"], "measured_at")
            oid = new_id()
            await repo.add(
                {
                    "id": oid,
                    "encounter_id": encounter_id,
                    "patient_id": enc["patient_id"],
                    **values,
                    "flags": [{"field": f.field, "flag": f.flag, "message": f.message} for f in flags],
                    "note": req.note,
                    "measured_at": measured_at,
                    "recorded_by": caller.subject,
                    "recorded_by_name": caller.principal.name,
                    "request_id": req.request_id or None,
                    "recorded_at": now,
                }
            )
            uow.audit(
                caller.audit(
                    "vitals.record",
                    "Observation",
                    oid,
                    enc["patient_id"],
                    encounter_id=encounter_id,
                    flags=[f"{f.field}:{f.flag}" for f in flags],
                )
            )
            out = vital_model(await repo.get(oid) or {})
            await uow.commit()
        return out

    async def list_vitals(
        self, caller: Caller, encounter_id: str, reason: str | None, limit: int = 200
    ) -> sc.VitalObservationPage:
        async with self.ctx.uow() as uow:
            enc = await load_encounter(uow.session, encounter_id)
            await authorize_read(
                self.ctx, uow, caller, enc["patient_id"], encounter_id, reason, "vitals.list"
            )
            rows = await VitalObservations(uow.session).of_encounter(
                encounter_id, min(max(limit, 1), MAX_PAGE)
            )
            await uow.commit()
        return sc.VitalObservationPage(items=[vital_model(r) for r in rows])

    async def record_administration(
        self, caller: Caller, order_id: str, req: sc.RecordAdministration
    ) -> sc.MedicationAdministration:
        nursing.check_administration(req.status, req.dose_given, req.note)
        async with self.ctx.uow() as uow:
            s = uow.session
            order = await Orders(s).lock(order_id)
            if order is None:
                raise NotFound("order.not_found", f"no order {order_id}", field="order_id")
            enc = await load_encounter(s, order["encounter_id"])
            access.check_write(
                caller.principal, self.ctx.departments(caller), enc["department_code"], nursing.RECORDERS
            )
            repo = Administrations(s)
            if req.request_id:
                done = await repo.by_request(req.request_id)
                if done is not None:
                    if done["order_id"] != order_id:
                        raise Invalid(
                            "request_id.reused", "request_id đã dùng cho y lệnh khác", field="request_id"
                        )
                    return administration_model(done, order)
            nursing.check_order_administrable(order["kind"], order["status"])
            nursing.check_ward_encounter(enc["kind"], enc["status"])
            now = utcnow()
            at = _aware(req.administered_at, now)
            nursing.check_time(at, now, enc["opened_at"], "administered_at")
            aid = new_id()
            await repo.add(
                {
                    "id": aid,
                    "order_id": order_id,
                    "encounter_id": enc["id"],
                    "patient_id": enc["patient_id"],
                    "status": req.status,
                    "administered_at": at,
                    "dose_given": req.dose_given,
                    "note": req.note,
                    "recorded_by": caller.subject,
                    "recorded_by_name": caller.principal.name,
                    "request_id": req.request_id or None,
                    "recorded_at": now,
                }
            )
            out = administration_model(await repo.get(aid) or {}, order)
            uow.audit(
                caller.audit(
                    "medication.administer",
                    "MedicationAdministration",
                    aid,
                    enc["patient_id"],
                    order_id=order_id,
                    status=req.status,
                )
            )
            uow.publish(
                "emr.medication.administered",
                events_pb2.MedicationAdministered(
                    administration=sc.to_proto(out, emr_pb2.MedicationAdministration),
                    visit_id=enc["visit_id"] or "",
                    admission_id=enc["admission_id"] or "",
                    department_code=enc["department_code"],
                    by=caller.actor(),
                ),
            )
            await uow.commit()
        return out

    async def list_administrations(
        self, caller: Caller, encounter_id: str, order_id: str | None, reason: str | None, limit: int = 200
    ) -> sc.MedicationAdministrationPage:
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id)
            await authorize_read(
                self.ctx, uow, caller, enc["patient_id"], encounter_id, reason, "medication.administrations"
            )
            rows = await Administrations(s).of_encounter(encounter_id, order_id, min(max(limit, 1), MAX_PAGE))
            orders = {
                o["id"]: o for o in await Orders(s).of_encounter(encounter_id) if o["kind"] == "medication"
            }
            await uow.commit()
        return sc.MedicationAdministrationPage(
            items=[administration_model(r, orders.get(r["order_id"])) for r in rows]
        )
