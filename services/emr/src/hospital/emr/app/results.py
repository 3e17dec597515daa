"""Results in the chart: lab results (lab.result.verified|amended|critical) and imaging studies
(imaging.study.received, imaging.procedure.completed) attached to the EMR order and encounter that asked for
them; trends per analyte; critical values that stay open until a clinician acknowledges them with the
read-back text, escalated to the department's doctors when unacknowledged for too long."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.bus import Event
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.security import PermissionDenied
from hospital.contracts.emr.v1 import emr_pb2, events_pb2
from hospital.contracts.imaging.v1 import events_pb2 as img_events
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2
from hospital.emr.adapters.store import Criticals, Encounters, Orders, Patients, Results, Studies
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, authorize_read, ts
from hospital.emr.app.notifications import notify
from hospital.emr.app.orders import order_model
from hospital.emr.domain.order_status import imaging_status, lab_status

log = logging.getLogger(__name__)


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", "."))
    except ValueError:
        return None


def result_model(row: dict[str, Any]) -> sc.LabResult:
    return sc.LabResult.model_validate({k: v for k, v in row.items() if v is not None})


def alert_model(row: dict[str, Any]) -> sc.CriticalAlert:
    data = {k: v for k, v in row.items() if v is not None}
    data["escalated"] = row["escalated_at"] is not None
    return sc.CriticalAlert.model_validate(data)


class ResultService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def study_model(self, row: dict[str, Any]) -> sc.ImagingStudy:
        data = {k: v for k, v in row.items() if v is not None}
        data["viewer_url"] = self.ctx.settings.viewer_url_template.format(
            study_uid=row["study_instance_uid"], accession=row["accession_number"] or ""
        )
        return sc.ImagingStudy.model_validate(data)

    # --- LAB stream ---------------------------------------------------------------------------------
    async def _store_result(
        self, session: AsyncSession, r: lab_pb2.Result, *, previous: str | None, status: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        order = await Orders(session).by_downstream("lab", r.order_id) if r.order_id else None
        stored = await Results(session).get(r.id)
        if stored is not None and stored["revision"] > r.revision:
            return stored, order  # an older revision arriving late changes nothing
        row = {
            "id": r.id,
            "revision": r.revision,
            "order_id": order["id"] if order else None,
            "lab_order_id": r.order_id or None,
            "encounter_id": order["encounter_id"] if order else None,
            "patient_id": order["patient_id"] if order else r.patient_id,
            "test_code": r.test_code,
            "test_name": r.test_name,
            "loinc": r.loinc or None,
            "value": r.value,
            "numeric_value": _number(r.value),
            "unit": r.unit,
            "reference_range": r.reference_range,
            "flag": r.flag,
            "critical": r.critical,
            "status": status or r.status or "verified",
            "previous_value": previous if previous is not None else (stored or {}).get("previous_value"),
            "observed_at": ts(r.observed_at),
            "verified_at": ts(r.verified_at),
            "received_at": utcnow(),
        }
        await Results(session).save(row)
        if order is not None:
            await self._advance_lab_order(session, order["id"])
        return row, order

    async def _advance_lab_order(self, session: AsyncSession, order_id: str) -> None:
        """partial / resulted from the order's results stored so far (see domain.order_status)."""
        orders = Orders(session)
        current = await orders.lock(order_id)
        if current is None:
            return
        tests = (current["details"] or {}).get("lab_tests") or current["codes"]
        status = lab_status(current["status"], tests, await Results(session).of_order(order_id))
        if status != current["status"]:
            await orders.update(order_id, status=status, updated_at=utcnow())

    async def on_result_verified(self, session: AsyncSession, event: Event) -> None:
        msg: lab_events.ResultVerified = event.message()
        row, order = await self._store_result(session, msg.result, previous=None)
        await self._notify_result(session, row, order, "Kết quả xét nghiệm")

    async def on_result_amended(self, session: AsyncSession, event: Event) -> None:
        msg: lab_events.ResultAmended = event.message()
        row, order = await self._store_result(
            session, msg.result, previous=msg.previous_value, status="amended"
        )
        await self._notify_result(session, row, order, "Kết quả xét nghiệm được sửa")

    async def _notify_result(
        self, session: AsyncSession, row: dict[str, Any], order: dict[str, Any] | None, what: str
    ) -> None:
        if order is None:
            return
        await notify(
            session,
            [order["ordered_by"]],
            "result",
            f"{what}: {row['test_name']} {row['value']} {row['unit']}".strip(),
            patient_id=row["patient_id"],
            encounter_id=row["encounter_id"],
            result=result_model(row),
        )

    async def on_result_critical(self, session: AsyncSession, event: Event) -> None:
        msg: lab_events.ResultCritical = event.message()
        r = msg.result
        row, order = await self._store_result(session, r, previous=None)
        doctor = order["ordered_by"] if order else msg.ordering_doctor
        enc = await Encounters(session).get(order["encounter_id"]) if order else None
        if enc is None and msg.visit_id:
            enc = await Encounters(session).find(msg.visit_id, None)
        department = (order or {}).get("department_code") or (enc or {}).get("department_code") or ""
        patient = await Patients(session).get(row["patient_id"]) or {}
        alert = {
            "id": new_id(),
            "result_id": r.id,
            "patient_id": row["patient_id"],
            "patient_name": msg.patient_name or patient.get("full_name") or "",
            "encounter_id": (enc or {}).get("id"),
            "order_id": (order or {}).get("id"),
            "ordering_doctor": doctor or "",
            "department_code": department,
            "test_code": r.test_code,
            "test_name": r.test_name,
            "value": r.value,
            "unit": r.unit,
            "flag": r.flag,
            "status": "open",
            "raised_at": utcnow(),
            "escalated_at": None,
            "acknowledged_at": None,
            "acknowledged_by": None,
            "read_back": None,
            "seconds_to_acknowledge": None,
        }
        if not await Criticals(session).add_once(alert):
            return  # the same result raised once
        await notify(
            session,
            [doctor or f"dept:{department}"],
            "critical",
            f"GIÁ TRỊ NGUY HIỂM: {r.test_name} {r.value} {r.unit} - {alert['patient_name']}",
            patient_id=row["patient_id"],
            encounter_id=alert["encounter_id"],
            critical=alert_model(alert),
        )

    # --- IMAGING stream -------------------------------------------------------------------------------
    async def on_study_received(self, session: AsyncSession, event: Event) -> None:
        msg: img_events.StudyReceived = event.message()
        orders = Orders(session)
        order = await orders.by_downstream("imaging", msg.order_id) if msg.order_id else None
        if order is None and msg.accession_number:
            order = await orders.by_accession(msg.accession_number)
        stored = await Studies(session).get(msg.study_instance_uid) or {}
        row = {
            "study_instance_uid": msg.study_instance_uid,
            "accession_number": msg.accession_number or None,
            "order_id": (order or {}).get("id"),
            "imaging_order_id": msg.order_id or None,
            "encounter_id": (order or {}).get("encounter_id"),
            "patient_id": (order or {}).get("patient_id") or stored.get("patient_id"),
            "patient_code": msg.patient_code or None,
            "modalities": list(msg.modalities),
            "series_count": msg.series_count,
            "instance_count": msg.instance_count,
            "description": (order or {}).get("description") or stored.get("description") or "",
            "procedure_status": stored.get("procedure_status") or "received",
            "received_at": ts(msg.last_received_at) or utcnow(),
        }
        await Studies(session).save(row)
        if order is not None:
            current = await orders.lock(order["id"]) or order
            status = imaging_status(current["status"], study_arrived=True)
            if status != current["status"]:
                await orders.update(order["id"], status=status, updated_at=utcnow())
            await notify(
                session,
                [order["ordered_by"]],
                "study",
                f"Đã có hình ảnh: {row['description']} ({msg.instance_count} ảnh)",
                patient_id=order["patient_id"],
                encounter_id=order["encounter_id"],
                study=self.study_model(row),
            )

    async def on_procedure_completed(self, session: AsyncSession, event: Event) -> None:
        msg: img_events.ProcedureCompleted = event.message()
        order = await Orders(session).by_downstream("imaging", msg.order_id) if msg.order_id else None
        status = "completed" if msg.status == "COMPLETED" else "discontinued"
        await Studies(session).update_by_order(msg.order_id, procedure_status=status)
        if order is not None and order["status"] == "placed":
            await Orders(session).update(
                order["id"], status="completed" if status == "completed" else "placed", updated_at=utcnow()
            )
            current = await Orders(session).get(order["id"])
            await notify(
                session,
                [order["ordered_by"]],
                "order",
                f"{order['description']}: {status}",
                patient_id=order["patient_id"],
                encounter_id=order["encounter_id"],
                order=order_model(current or order),
            )

    # --- reads ---------------------------------------------------------------------------------------
    async def list(
        self, caller: Caller, patient_id: str | None, encounter_id: str | None, limit: int = 200
    ) -> sc.ResultsPage:
        async with self.ctx.uow() as uow:
            s = uow.session
            if encounter_id and not patient_id:
                enc = await Encounters(s).get(encounter_id)
                if enc is None:
                    raise NotFound(
                        "encounter.not_found", f"no encounter {encounter_id}", field="encounter_id"
                    )
                patient_id = enc["patient_id"]
            if not patient_id:
                raise NotFound("patient.not_found", "give patient_id or encounter_id", field="patient_id")
            await authorize_read(self.ctx, uow, caller, patient_id, encounter_id, None, "result.list")
            out = await self.read(s, patient_id, encounter_id, limit)
            await uow.commit()
        return out

    async def read(
        self, s: AsyncSession, patient_id: str, encounter_id: str | None, limit: int = 200
    ) -> sc.ResultsPage:
        limit = max(1, min(limit or 200, 1000))
        return sc.ResultsPage(
            results=[result_model(r) for r in await Results(s).of_patient(patient_id, encounter_id, limit)],
            studies=[self.study_model(r) for r in await Studies(s).of_patient(patient_id, encounter_id)],
        )

    async def trend(self, caller: Caller, patient_id: str, test_code: str, limit: int = 100) -> sc.Trend:
        async with self.ctx.uow() as uow:
            await authorize_read(self.ctx, uow, caller, patient_id, None, None, "result.trend")
            rows = await Results(uow.session).trend(
                patient_id,
                test_code.strip().upper() if test_code.isalpha() else test_code.strip(),
                max(1, min(limit or 100, 1000)),
            )
            await uow.commit()
        last = rows[-1] if rows else {}
        return sc.Trend(
            test_code=test_code,
            test_name=last.get("test_name", ""),
            unit=last.get("unit", ""),
            reference_range=last.get("reference_range", ""),
            points=[
                sc.TrendPoint(
                    value=r["value"],
                    numeric_value=r["numeric_value"] or 0.0,
                    numeric=r["numeric_value"] is not None,
                    flag=r["flag"],
                    observed_at=r["observed_at"],
                    result_id=r["id"],
                )
                for r in rows
            ],
        )

    async def criticals(
        self, caller: Caller, patient_id: str | None, include_acknowledged: bool
    ) -> sc.CriticalPage:
        async with self.ctx.uow() as uow:
            if patient_id:
                await authorize_read(self.ctx, uow, caller, patient_id, None, None, "critical.list")
            rows = await Criticals(uow.session).visible(
                caller.subject, sorted(self.ctx.departments(caller)), patient_id, include_acknowledged
            )
            uow.audit(caller.audit("critical.list", "CriticalAlert", None, patient_id, count=len(rows)))
            await uow.commit()
        return sc.CriticalPage(items=[alert_model(r) for r in rows])

    async def acknowledge(self, caller: Caller, alert_id: str, read_back: str) -> sc.CriticalAlert:
        read_back = read_back.strip()
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Criticals(s)
            alert = await repo.get(alert_id)
            if alert is None:
                raise NotFound("critical.not_found", f"no critical alert {alert_id}", field="alert_id")
            mine = alert["ordering_doctor"] == caller.subject
            department = alert["department_code"] in self.ctx.departments(caller)
            if not caller.principal.is_service and not (mine or department):
                raise PermissionDenied("chỉ bác sĩ chỉ định hoặc bác sĩ/điều dưỡng của khoa được xác nhận")
            if alert["status"] != "open":
                raise Conflict(
                    "critical.already_acknowledged",
                    f"đã được {alert['acknowledged_by']} xác nhận lúc {alert['acknowledged_at']}",
                    field="alert_id",
                )
            now = utcnow()
            seconds = int((now - alert["raised_at"]).total_seconds())
            if not await repo.acknowledge(
                alert_id,
                status="acknowledged",
                acknowledged_at=now,
                acknowledged_by=caller.subject,
                read_back=read_back,
                seconds_to_acknowledge=seconds,
            ):
                raise Conflict(
                    "critical.already_acknowledged", "vừa được người khác xác nhận", field="alert_id"
                )
            row = await repo.get(alert_id)
            assert row is not None
            model = alert_model(row)
            uow.publish(
                "emr.critical.acknowledged",
                events_pb2.CriticalAcknowledged(
                    alert=sc.to_proto(model, emr_pb2.CriticalAlert), by=caller.actor()
                ),
            )
            uow.audit(
                caller.audit(
                    "critical.acknowledge",
                    "CriticalAlert",
                    alert_id,
                    row["patient_id"],
                    read_back=read_back,
                    seconds_to_acknowledge=seconds,
                )
            )
            recipients = [row["ordering_doctor"]] + (
                [f"dept:{row['department_code']}"] if row["escalated_at"] else []
            )
            await notify(
                s,
                recipients,
                "critical_acknowledged",
                f"Đã xác nhận: {row['test_name']} {row['value']}",
                patient_id=row["patient_id"],
                encounter_id=row["encounter_id"],
                critical=model,
            )
            await uow.commit()
        return model

    # --- escalation (worker task) ---------------------------------------------------------------------
    async def escalate_due(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        after = self.ctx.settings.critical_escalation_seconds
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Criticals(s)
            due = await repo.due_for_escalation(now - timedelta(seconds=after))
            count = 0
            for alert in due:
                if not await repo.mark_escalated(alert["id"], now):
                    continue
                count += 1
                row = await repo.get(alert["id"])
                assert row is not None
                model = alert_model(row)
                uow.publish(
                    "emr.critical.escalated",
                    events_pb2.CriticalEscalated(
                        alert=sc.to_proto(model, emr_pb2.CriticalAlert), after_seconds=int(after)
                    ),
                )
                await notify(
                    s,
                    [f"dept:{row['department_code']}", row["ordering_doctor"]],
                    "critical_escalated",
                    f"CHƯA XÁC NHẬN sau {int(after // 60)} phút: {row['test_name']} {row['value']} "
                    f"{row['unit']} - {row['patient_name']}",
                    patient_id=row["patient_id"],
                    encounter_id=row["encounter_id"],
                    critical=model,
                )
            await uow.commit()
        return count

    async def run_escalation(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.escalate_due()
            except Exception:
                log.exception("critical escalation round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.ctx.settings.critical_check_seconds)
            except TimeoutError:
                pass


class ChartExtras:
    """Fills the chart's documents, orders, prescriptions, results, studies and open critical values."""

    def __init__(self, results: ResultService) -> None:
        self.results = results

    async def fill(
        self, s: AsyncSession, chart: sc.Chart, patient_id: str, encounter: dict[str, Any] | None
    ) -> None:
        from hospital.emr.adapters.store import Documents, Papers, Prescriptions
        from hospital.emr.app.documents import document_model
        from hospital.emr.app.papers import paper_model
        from hospital.emr.app.prescriptions import prescription_model

        eid = encounter["id"] if encounter else None
        page = await self.results.read(s, patient_id, None)
        chart.results, chart.studies = page.results, page.studies
        if eid:
            chart.orders = [order_model(r) for r in await Orders(s).of_encounter(eid)]
            chart.prescriptions = [prescription_model(r) for r in await Prescriptions(s).of_encounter(eid)]
            chart.papers = [paper_model(r, encounter) for r in await Papers(s).of_encounter(eid)]
            # the encounter's notes and signed documents (the signature, not the canonical bytes)
            chart.documents = [document_model(r) for r in await Documents(s).of_encounter(eid)]
        chart.critical_alerts = [
            alert_model(r) for r in await Criticals(s).visible("", [], patient_id, False)
        ]
