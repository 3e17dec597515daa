"""CPOE: lab, imaging and medication orders of an encounter.

A lab or imaging order is stored as ``pending`` together with a ``place`` command in ``order_commands``,
in one transaction; the dispatcher (a worker task) sends each command to the lab / imaging service over
gRPC with the EMR's service identity, retrying transient failures with a growing delay. The downstream
answer settles the order: ``placed`` (with the lab order id or the imaging accession number),
``refused`` with the service's reason, or for a cancellation ``cancelled`` (or back to ``placed`` with the
reason the cancellation was refused). Nothing is lost: a command stays pending until a definite answer.
Medication orders are checked like prescriptions (allergies, duplicates; overrides with a reason) and
become ``active`` at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.aio import wait_any
from hospital.chassis.caller import Caller
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.imaging.v1 import imaging_pb2
from hospital.contracts.lab.v1 import lab_pb2
from hospital.emr.adapters.downstream import Downstream, Refused, Transient
from hospital.emr.adapters.store import OrderCommands, Orders, Patients
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, authorize_read, load_encounter, local_date
from hospital.emr.app.prescriptions import AlertsNotOverridden, alerts_for, complete, load_drugs
from hospital.emr.domain import access

log = logging.getLogger(__name__)

#: A sent command's result: the command, its order, what the downstream answered, done/refused/retry.
Outcome = tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]
LAB_SEX = {"male": lab_pb2.SEX_MALE, "female": lab_pb2.SEX_FEMALE}
DICOM_SEX = {"male": "M", "female": "F"}


def order_model(row: dict[str, Any]) -> sc.ClinicalOrder:
    data = {k: v for k, v in row.items() if v is not None}
    return sc.ClinicalOrder.model_validate(data)


class OrderService:
    def __init__(self, ctx: Context, wake: asyncio.Event) -> None:
        self.ctx = ctx
        self.wake = wake

    async def place(self, caller: Caller, encounter_id: str, req: sc.PlaceOrders) -> sc.PlacedOrders:
        if not (req.lab or req.imaging or req.medication):
            raise Invalid("orders.empty", "no order given", field="lab")
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id, for_update=True)
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            if enc["status"] != "open":
                raise Conflict(
                    "encounter.closed", "lượt khám đã kết thúc: không chỉ định thêm", field="encounter_id"
                )
            repo = Orders(s)
            keys = [
                f"{req.request_id}#{n}" for n in range(len(req.lab) + len(req.imaging) + len(req.medication))
            ]
            if req.request_id:
                done = await repo.by_request(req.request_id)
                if done:
                    return sc.PlacedOrders(orders=[order_model(r) for r in done])
            patient = await Patients(s).get(enc["patient_id"]) or {}
            for n, lab in enumerate(req.lab):
                if not all(t.strip() for t in lab.tests):
                    raise Invalid("order.tests", "empty test code", field=f"lab.{n}.tests")
            if req.imaging and not patient.get("patient_code"):
                raise Invalid(
                    "order.patient_code", "the patient has no patient code yet (admissions)", field="imaging"
                )
            meds: list[dict[str, Any]] = []
            if req.medication:
                items = [m.item for m in req.medication]
                found = await load_drugs(s, items, "medication")
                _, left = await alerts_for(
                    s, enc["patient_id"], encounter_id, [found[i.drug_code] for i in items], req.overrides
                )
                if left:
                    raise AlertsNotOverridden(left)
                meds = [complete(i, found[i.drug_code]).model_dump() for i in items]
            now = utcnow()
            day = local_date(now).strftime("%y%m%d")
            ids: list[str] = []
            base = {
                "encounter_id": encounter_id,
                "patient_id": enc["patient_id"],
                "visit_id": enc["visit_id"],
                "refusal_reason": None,
                "cancel_reason": None,
                "attempts": 0,
                "last_error": None,
                "ordered_by": caller.subject,
                "ordered_by_name": caller.principal.name,
                "department_code": enc["department_code"],
                "ordered_at": now,
                "updated_at": now,
                "overrides": [o.model_dump() for o in req.overrides],
                "downstream_id": None,
            }
            k = 0
            for lab in req.lab:
                oid = new_id()
                number = f"YL{day}{await next_value(s, f'placer:{day}'):05d}"
                tests = [t.strip().upper() for t in lab.tests]
                await repo.add(
                    {
                        **base,
                        "id": oid,
                        "kind": "lab",
                        "status": "pending",
                        "codes": tests,
                        "description": ", ".join(tests),
                        "stat": lab.stat,
                        "placer_order_number": number,
                        "accession_number": None,
                        "details": {},
                        "medication": None,
                        "clinical_note": lab.clinical_note,
                        "request_key": keys[k] if req.request_id else None,
                    }
                )
                await self._command(s, oid, "place", now)
                ids.append(oid)
                k += 1
            for img in req.imaging:
                oid = new_id()
                number = f"YL{day}{await next_value(s, f'placer:{day}'):05d}"
                accession = f"CD{day}{await next_value(s, f'accession:{day}'):04d}"
                start = img.scheduled_start or now
                await repo.add(
                    {
                        **base,
                        "id": oid,
                        "kind": "imaging",
                        "status": "pending",
                        "codes": [img.procedure_code],
                        "description": img.description,
                        "stat": False,
                        "placer_order_number": number,
                        "accession_number": accession,
                        "details": {
                            "modality": img.modality.upper(),
                            "station_ae_title": img.station_ae_title,
                            "scheduled_start": start.isoformat(),
                        },
                        "medication": None,
                        "clinical_note": img.clinical_note,
                        "request_key": keys[k] if req.request_id else None,
                    }
                )
                await self._command(s, oid, "place", now)
                ids.append(oid)
                k += 1
            for med, item in zip(req.medication, meds, strict=True):
                oid = new_id()
                number = f"YL{day}{await next_value(s, f'placer:{day}'):05d}"
                await repo.add(
                    {
                        **base,
                        "id": oid,
                        "kind": "medication",
                        "status": "active",
                        "codes": [item["drug_code"]],
                        "description": f"{item['drug_name']} {item['dose']}",
                        "stat": False,
                        "placer_order_number": number,
                        "accession_number": None,
                        "details": {"start_date": med.start_date.isoformat() if med.start_date else None},
                        "medication": item,
                        "clinical_note": med.note,
                        "request_key": keys[k] if req.request_id else None,
                    }
                )
                ids.append(oid)
                k += 1
            uow.audit(
                caller.audit(
                    "order.place",
                    "Encounter",
                    encounter_id,
                    enc["patient_id"],
                    orders=ids,
                    overrides=[f"{o.drug_code}:{o.kind}" for o in req.overrides],
                )
            )
            out = [order_model(await repo.get(i) or {}) for i in ids]
            await uow.commit()
        self.wake.set()
        return sc.PlacedOrders(orders=out)

    async def _command(self, s: AsyncSession, order_id: str, action: str, now: datetime) -> None:
        await OrderCommands(s).add(
            {
                "id": new_id(),
                "order_id": order_id,
                "action": action,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "created_at": now,
                "done_at": None,
            }
        )

    async def cancel(self, caller: Caller, order_id: str, reason: str) -> sc.ClinicalOrder:
        reason = reason.strip()
        if not reason:
            raise Invalid("order.cancel_reason", "cần lý do hủy chỉ định", field="reason")
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Orders(s)
            order = await repo.get(order_id)
            if order is None:
                raise NotFound("order.not_found", f"no order {order_id}", field="order_id")
            enc = await load_encounter(s, order["encounter_id"])
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            now = utcnow()
            if order["status"] in ("cancelled", "cancel_pending"):
                return order_model(order)
            if order["status"] in ("refused", "completed"):
                raise Conflict(
                    "order.not_cancellable", f"chỉ định đang ở trạng thái {order['status']}", field="order_id"
                )
            if order["kind"] == "medication":
                await repo.update(order_id, status="cancelled", cancel_reason=reason, updated_at=now)
            else:
                await repo.update(order_id, status="cancel_pending", cancel_reason=reason, updated_at=now)
                await self._command(s, order_id, "cancel", now)
            uow.audit(caller.audit("order.cancel", "Order", order_id, order["patient_id"], reason=reason))
            out = order_model(await repo.get(order_id) or {})
            await uow.commit()
        self.wake.set()
        return out

    async def stop(self, caller: Caller, order_id: str, reason: str) -> sc.ClinicalOrder:
        """Stop (discontinue) an active medication order: no more doses from now on (the medication
        administration record refuses them); the doses given stay. The reason is kept in ``cancel_reason``."""
        reason = reason.strip()
        if not reason:
            raise Invalid("order.stop_reason", "cần lý do ngừng thuốc", field="reason")
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Orders(s)
            order = await repo.lock(order_id)
            if order is None:
                raise NotFound("order.not_found", f"no order {order_id}", field="order_id")
            enc = await load_encounter(s, order["encounter_id"])
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            if order["kind"] != "medication":
                raise Conflict(
                    "order.not_stoppable",
                    "chỉ y lệnh thuốc mới ngừng được; chỉ định khác thì hủy",
                    field="order_id",
                )
            if order["status"] == "stopped":
                return order_model(order)
            if order["status"] != "active":
                raise Conflict(
                    "order.not_stoppable", f"y lệnh đang ở trạng thái {order['status']}", field="order_id"
                )
            await repo.update(order_id, status="stopped", cancel_reason=reason, updated_at=utcnow())
            uow.audit(caller.audit("order.stop", "Order", order_id, order["patient_id"], reason=reason))
            out = order_model(await repo.get(order_id) or {})
            await uow.commit()
        return out

    async def list(self, caller: Caller, encounter_id: str | None, patient_id: str | None) -> sc.OrderPage:
        async with self.ctx.uow() as uow:
            s = uow.session
            if encounter_id:
                enc = await load_encounter(s, encounter_id)
                await authorize_read(
                    self.ctx, uow, caller, enc["patient_id"], encounter_id, None, "order.list"
                )
                rows = await Orders(s).of_encounter(encounter_id)
            elif patient_id:
                await authorize_read(self.ctx, uow, caller, patient_id, None, None, "order.list")
                rows = await Orders(s).of_patient(patient_id)
            else:
                raise Invalid(
                    "orders.filter_required", "give encounter_id or patient_id", field="encounter_id"
                )
            await uow.commit()
        return sc.OrderPage(items=[order_model(r) for r in rows])


class Dispatcher:
    """Sends pending order commands to lab and imaging (a worker task)."""

    def __init__(self, ctx: Context, downstream: Downstream, wake: asyncio.Event) -> None:
        self.ctx, self.downstream, self.wake = ctx, downstream, wake
        self.lease = timedelta(seconds=max(30.0, ctx.settings.order_send_timeout_seconds * 3))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("order dispatcher round failed")
                busy = False
            if busy:
                continue
            self.wake.clear()
            await wait_any(self.wake, stop, timeout=self.ctx.settings.order_poll_seconds)

    async def run_once(self) -> bool:
        """Send every due command once: the first pending command of each order (one at a time per order,
        in order), oldest first, up to ``order_send_concurrency`` in flight so that one slow downstream
        does not hold back the other's orders; the round's outcomes are settled in one transaction. True if
        any was sent."""
        now = utcnow()
        claimed: list[dict[str, Any]] = []
        async with self.ctx.rt.db.session() as s:
            repo = OrderCommands(s)
            for cmd in await repo.due(now, 100):
                if await repo.claim(cmd["id"], cmd["next_attempt_at"], now + self.lease):
                    claimed.append(cmd)
            await s.commit()
        if not claimed:
            return False
        sends: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        async with self.ctx.rt.db.session() as s:
            for cmd in claimed:
                order = await Orders(s).get(cmd["order_id"])
                assert order is not None
                patient = await Patients(s).get(order["patient_id"]) or {"id": order["patient_id"]}
                sends.append((cmd, order, patient))
        slots = asyncio.Semaphore(max(1, self.ctx.settings.order_send_concurrency))

        async def send(cmd: dict[str, Any], order: dict[str, Any], patient: dict[str, Any]) -> Outcome:
            async with slots:
                return await self._send(cmd, order, patient)

        outcomes = await asyncio.gather(*(send(*x) for x in sends))
        try:
            async with self.ctx.uow() as uow:
                for outcome in outcomes:
                    await self._apply(uow, *outcome)
                await uow.commit()
        except Exception:
            # one outcome that cannot be written must not hold back the others: settle each on its own
            log.exception(
                "settling %d order commands together failed; settling them one by one", len(outcomes)
            )
            for outcome in outcomes:
                try:
                    async with self.ctx.uow() as uow:
                        await self._apply(uow, *outcome)
                        await uow.commit()
                except Exception:
                    log.exception(
                        "settling order command %s failed (retried after its lease)", outcome[0]["id"]
                    )
        return True

    async def _send(self, cmd: dict[str, Any], order: dict[str, Any], patient: dict[str, Any]) -> Outcome:
        outcome: dict[str, Any]
        try:
            if cmd["action"] == "place":
                outcome = await self._place(order, patient)
            else:
                outcome = await self._cancel(order)
            result = "done"
        except Refused as exc:
            outcome, result = {"refused": exc.reason}, "refused"
        except Transient as exc:
            outcome, result = {"error": str(exc)}, "retry"
        except Exception as exc:
            log.exception("sending order %s failed", order["id"])
            outcome, result = {"error": f"{type(exc).__name__}: {exc}"}, "retry"
        return cmd, order, outcome, result

    async def _place(self, order: dict[str, Any], patient: dict[str, Any]) -> dict[str, Any]:
        if order["kind"] == "lab":
            req = lab_pb2.PlaceOrderRequest(
                patient=lab_pb2.PatientRef(
                    id=patient["id"],
                    patient_code=patient.get("patient_code") or "",
                    full_name=patient.get("full_name") or "",
                    sex=LAB_SEX.get(patient.get("sex") or "", lab_pb2.SEX_UNSPECIFIED),
                    birth_date=patient.get("birth_date") or "",
                ),
                tests=order["codes"],
                priority=lab_pb2.PRIORITY_STAT if order["stat"] else lab_pb2.PRIORITY_ROUTINE,
                visit_id=order["visit_id"] or "",
                ordering_doctor=order["ordered_by"],
                placer_order_number=order["placer_order_number"],
                request_id=f"emr:{order['id']}",
                clinical_note=order["clinical_note"],
            )
            placed = await self.downstream.lab_place(req)
            # the lab's order lines (panels expanded) are the tests the order is resulted against
            lines = [i.test_code for i in placed.items if i.status != "cancelled"]
            return {"downstream_id": placed.id, "details": {**order["details"], "lab_tests": lines}}
        d = order["details"]
        req = imaging_pb2.ScheduleOrderRequest(
            accession_number=order["accession_number"],
            requested_procedure_id=order["codes"][0],
            requested_procedure_description=order["description"],
            modality=d["modality"],
            station_ae_title=d.get("station_ae_title") or "",
            patient=imaging_pb2.OrderPatient(
                patient_ref=patient["id"],
                patient_code=patient.get("patient_code") or "",
                full_name=patient.get("full_name") or "",
                birth_date=patient.get("birth_date") or "",
                sex=DICOM_SEX.get(patient.get("sex") or "", ""),
            ),
            referring_physician=order["ordered_by_name"],
            order_ref=order["id"],
            request_id=f"emr:{order['id']}",
            visit_ref=order["visit_id"] or "",
        )
        req.scheduled_start.FromDatetime(datetime.fromisoformat(d["scheduled_start"]))
        scheduled = await self.downstream.imaging_schedule(req)
        return {"downstream_id": scheduled.id}

    async def _cancel(self, order: dict[str, Any]) -> dict[str, Any]:
        if not order["downstream_id"]:  # never placed (refused): nothing to cancel downstream
            return {}
        if order["kind"] == "lab":
            await self.downstream.lab_cancel(order["downstream_id"], order["cancel_reason"] or "")
        else:
            await self.downstream.imaging_cancel(order["downstream_id"], order["cancel_reason"] or "")
        return {}

    async def _apply(
        self,
        uow: UnitOfWork,
        cmd: dict[str, Any],
        order: dict[str, Any],
        outcome: dict[str, Any],
        result: str,
    ) -> None:
        """Record one command's outcome (its command row, the order, the audit record) in ``uow``."""
        now = utcnow()
        s = uow.session
        commands, orders = OrderCommands(s), Orders(s)
        current = await orders.get(order["id"]) or order
        attempts = cmd["attempts"] + 1
        if result == "retry":
            delay = min(
                self.ctx.settings.order_retry_base_seconds * 2 ** (attempts - 1),
                self.ctx.settings.order_retry_max_seconds,
            )
            await commands.update(
                cmd["id"],
                attempts=attempts,
                last_error=outcome["error"],
                next_attempt_at=now + timedelta(seconds=delay),
            )
            await orders.update(
                order["id"], attempts=current["attempts"] + 1, last_error=outcome["error"], updated_at=now
            )
        else:
            await commands.update(
                cmd["id"],
                attempts=attempts,
                status=result,
                done_at=now,
                last_error=outcome.get("refused"),
            )
            values: dict[str, Any] = {
                "attempts": current["attempts"] + 1,
                "last_error": None,
                "updated_at": now,
            }
            if cmd["action"] == "place":
                if result == "refused":
                    values.update(status="refused", refusal_reason=outcome["refused"])
                else:
                    later = await commands.pending_of(order["id"])
                    if "details" in outcome:
                        values["details"] = outcome["details"]
                    values.update(
                        downstream_id=outcome["downstream_id"],
                        status="cancel_pending" if later else "placed",
                    )
            elif result == "refused":
                values.update(status="placed", refusal_reason=f"hủy bị từ chối: {outcome['refused']}")
            else:
                values.update(status="cancelled" if current["status"] != "refused" else "refused")
            await orders.update(order["id"], **values)
            uow.audit(
                Caller_service().audit(
                    f"order.{cmd['action']}.{result}",
                    "Order",
                    order["id"],
                    order["patient_id"],
                    reason=outcome.get("refused"),
                )
            )


def Caller_service() -> Caller:  # noqa: N802 - the EMR itself, for audit entries of the dispatcher
    from hospital.chassis.security import Principal

    return Caller(
        principal=Principal(subject="service:emr", name="emr", roles=frozenset({"service"})),
        source="emr-dispatcher",
    )
