"""The lab bench: worklist, verification (one, batch), corrections with history, the unmatched queue
and manual assignment, critical-value calls, the auto-verification switch, results for the chart."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update

from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.fields import clean_text
from hospital.chassis.ids import new_id
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.adapters.tables import (
    critical_calls,
    lab_settings,
    order_items,
    orders,
    result_history,
    results,
    specimens,
)
from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.common import Caller, iso, result_dict, result_proto
from hospital.lab.app.ingest import _names, attach, autoverify_enabled, is_correction
from hospital.lab.app.orders import OrderService
from hospital.lab.config import LabSettings
from hospital.lab.domain.validation import age_in_days, flag_for, pick_range

MAX_BATCH = 500


class ResultService:
    def __init__(self, rt: Runtime[LabSettings], catalogue: Catalogue, orders_svc: OrderService) -> None:
        self.rt = rt
        self.cat = catalogue
        self.orders = orders_svc

    def _dict(self, r: Any, barcode: str = "") -> dict[str, Any]:
        return result_dict(r, *_names(self.cat, r["test_code"]), barcode=barcode)

    async def _row(self, s: Any, result_id: str) -> Any:
        r = (await s.execute(select(results).where(results.c.id == result_id))).mappings().first()
        if r is None:
            raise NotFound("result.not_found", f"no result {result_id}")
        return r

    # --- reading --------------------------------------------------------------------------------------
    async def worklist(
        self, caller: Caller, status: str = "preliminary", instrument: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        if status not in ("preliminary", "verified", "info", "superseded"):
            raise Invalid(
                "worklist.status", "status must be preliminary, verified, info or superseded", field="status"
            )
        async with self.rt.uow() as uow:
            stmt = (
                select(results, orders.c.patient_name, orders.c.order_number, specimens.c.barcode)
                .join(orders, orders.c.id == results.c.order_id)
                .join(specimens, specimens.c.id == results.c.specimen_id)
                .where(results.c.status == status)
                .order_by(results.c.critical.desc(), results.c.received_at)
                .limit(limit)
            )
            if instrument:
                stmt = stmt.where(results.c.instrument == instrument)
            rows = (await uow.session.execute(stmt)).mappings().all()
            items = [
                {
                    **self._dict(r, r["barcode"]),
                    "patient_name": r["patient_name"],
                    "order_number": r["order_number"],
                }
                for r in rows
            ]
            uow.audit(
                caller.audit(
                    "worklist.read",
                    "LabResult",
                    None,
                    None,
                    status=status,
                    count=len(items),
                    patient_ids=sorted({i["patient_id"] for i in items}),
                )
            )
            await uow.commit()
        return items

    async def for_order(
        self,
        caller: Caller,
        order_id: str | None = None,
        barcode: str | None = None,
        verified_only: bool = False,
        include_info: bool = False,
    ) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            if not order_id:
                if not barcode:
                    raise Invalid("results.query", "give an order id or a barcode", field="order_id")
                order_id = await self.orders.order_id_for_barcode(s, barcode)
            order = (await s.execute(select(orders).where(orders.c.id == order_id))).mappings().first()
            if order is None:
                raise NotFound("order.not_found", f"no lab order {order_id}")
            wanted = (
                ("verified",)
                if verified_only
                else ("preliminary", "verified") + (("info",) if include_info else ())
            )
            rows = (
                (
                    await s.execute(
                        select(results, specimens.c.barcode)
                        .join(specimens, specimens.c.id == results.c.specimen_id)
                        .where(results.c.order_id == order_id, results.c.status.in_(wanted))
                        .order_by(results.c.received_at)
                    )
                )
                .mappings()
                .all()
            )
            uow.audit(
                caller.audit("results.read", "LabOrder", order_id, order["patient_id"], count=len(rows))
            )
            await uow.commit()
        items = [self._dict(r, r["barcode"]) for r in rows]
        items.sort(
            key=lambda i: self.cat.tests[i["test_code"]].sort if i["test_code"] in self.cat.tests else 999
        )
        return {
            "order_id": order_id,
            "patient_id": order["patient_id"],
            "patient_name": order["patient_name"],
            "results": items,
        }

    async def get(self, result_id: str, caller: Caller) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            r = await self._row(uow.session, result_id)
            history = (
                (
                    await uow.session.execute(
                        select(result_history)
                        .where(result_history.c.result_id == result_id)
                        .order_by(result_history.c.revision)
                    )
                )
                .mappings()
                .all()
            )
            calls = (
                (
                    await uow.session.execute(
                        select(critical_calls).where(critical_calls.c.result_id == result_id)
                    )
                )
                .mappings()
                .all()
            )
            uow.audit(caller.audit("result.read", "LabResult", result_id, r["patient_id"]))
            await uow.commit()
        return {
            **self._dict(r),
            "history": [
                {**dict(h), "verified_at": iso(h["verified_at"]), "replaced_at": iso(h["replaced_at"])}
                for h in history
            ],
            "critical_calls": [_call_dict(c) for c in calls],
        }

    # --- verification ---------------------------------------------------------------------------------
    async def verify(self, ids: list[str], caller: Caller) -> list[dict[str, Any]]:
        if not ids:
            raise Invalid("verify.ids", "give at least one result id", field="result_ids")
        if len(ids) > MAX_BATCH:
            raise Invalid("verify.ids", f"at most {MAX_BATCH} results per batch", field="result_ids")
        async with self.rt.uow() as uow:
            s = uow.session
            rows = {
                r["id"]: r for r in (await s.execute(select(results).where(results.c.id.in_(ids)))).mappings()
            }
            missing = [i for i in ids if i not in rows]
            if missing:
                raise NotFound("result.not_found", f"no result {missing[0]}")
            bad = [r for r in rows.values() if r["status"] != "preliminary"]
            if bad:
                raise Conflict(
                    "result.not_preliminary",
                    f"result {bad[0]['id']} is {bad[0]['status']}; only preliminary results are verified",
                )
            now = utcnow()
            out = []
            for rid in ids:
                r = rows[rid]
                # a repeat of an already verified result replaces it: that is a correction
                prior = (
                    (
                        await s.execute(
                            select(results).where(
                                results.c.specimen_id == r["specimen_id"],
                                results.c.test_code == r["test_code"],
                                results.c.status == "verified",
                                results.c.id != rid,
                            )
                        )
                    )
                    .mappings()
                    .first()
                )
                await s.execute(
                    update(results)
                    .where(results.c.id == rid)
                    .values(
                        status="verified",
                        verified_at=now,
                        verified_by=caller.subject,
                        hold_reason=None,
                        revision=(prior["revision"] + 1) if prior else r["revision"],
                    )
                )
                if r["order_item_id"]:
                    await s.execute(
                        update(order_items)
                        .where(order_items.c.id == r["order_item_id"])
                        .values(status="verified")
                    )
                new = self._dict(await self._row(s, rid), r["barcode_received"])
                if prior is not None:
                    correction = is_correction(r["analyzer_status"])
                    # the verified result's revisions become the history of the result that replaces it
                    await s.execute(
                        update(result_history)
                        .where(result_history.c.result_id == prior["id"])
                        .values(result_id=rid)
                    )
                    await self._history(
                        s,
                        prior,
                        caller,
                        now,
                        "replaced by the analyzer's correction (status C)"
                        if correction
                        else "replaced by a repeat measurement",
                        result_id=rid,
                    )
                    await s.execute(
                        update(results).where(results.c.id == prior["id"]).values(status="superseded")
                    )
                    uow.publish(
                        "lab.result.amended",
                        events_pb2.ResultAmended(
                            result=result_proto(new),
                            previous_value=prior["value"],
                            reason="analyzer correction verified"
                            if correction
                            else "repeat measurement verified",
                            by=caller.actor(),
                        ),
                    )
                else:
                    uow.publish(
                        "lab.result.verified",
                        events_pb2.ResultVerified(result=result_proto(new), by=caller.actor()),
                    )
                uow.audit(
                    caller.audit("result.verify", "LabResult", rid, r["patient_id"], test=r["test_code"])
                )
                out.append(new)
            await self._complete_orders(s, {r["order_id"] for r in rows.values() if r["order_id"]})
            await uow.commit()
        return out

    async def _complete_orders(self, s: Any, order_ids: set[str]) -> None:
        for oid in order_ids:
            open_items = (
                await s.execute(
                    select(func.count())
                    .select_from(order_items)
                    .where(order_items.c.order_id == oid, order_items.c.status.in_(("ordered", "resulted")))
                )
            ).scalar_one()
            if not open_items:
                await s.execute(
                    update(orders)
                    .where(orders.c.id == oid, orders.c.status == "active")
                    .values(status="completed")
                )

    async def _history(
        self, s: Any, r: Any, caller: Caller, now: datetime, reason: str, result_id: str | None = None
    ) -> None:
        await s.execute(
            result_history.insert().values(
                id=new_id(),
                result_id=result_id or r["id"],
                revision=r["revision"],
                value=r["value"],
                unit=r["unit"],
                flag=r["flag"],
                status=r["status"],
                verified_by=r["verified_by"],
                verified_at=r["verified_at"],
                replaced_at=now,
                replaced_by=caller.subject,
                reason=reason,
            )
        )

    async def amend(self, result_id: str, value: str, reason: str, caller: Caller) -> dict[str, Any]:
        if not reason or not reason.strip():
            raise Invalid("amend.reason", "a correction needs a reason", field="reason")
        value = (value or "").strip()
        if not value:
            raise Invalid("amend.value", "the corrected value is required", field="value")
        async with self.rt.uow() as uow:
            s = uow.session
            r = await self._row(s, result_id)
            if r["status"] != "verified":
                raise Conflict(
                    "result.not_verified",
                    "only a verified result is corrected; edit before verifying by re-running the test",
                )
            test = self.cat.tests.get(r["test_code"] or "")
            if test is None:
                raise Conflict("result.unmapped", "the result has no catalogue test")
            order = (await s.execute(select(orders).where(orders.c.id == r["order_id"]))).mappings().one()
            num, flag, critical = None, "", False
            if test.value_type == "NM":
                try:
                    d = Decimal(value)
                except ArithmeticError:
                    raise Invalid("amend.value", f"{test.code} needs a number", field="value") from None
                if not d.is_finite():
                    raise Invalid("amend.value", f"{test.code} needs a finite number", field="value")
                ref = pick_range(
                    test.ranges, order["patient_sex"], age_in_days(order["birth_date"], utcnow())
                )
                flag, critical = flag_for(d, ref, test.critical)
                num = float(d)
            elif test.normal_text:
                flag = "N" if value.upper() == test.normal_text.upper() else "A"
            now = utcnow()
            await self._history(s, r, caller, now, reason.strip())
            await s.execute(
                update(results)
                .where(results.c.id == result_id)
                .values(
                    value=value,
                    value_num=num,
                    flag=flag,
                    critical=critical,
                    revision=r["revision"] + 1,
                    verified_at=now,
                    verified_by=caller.subject,
                    autoverify_rule=None,
                    note=reason.strip(),
                )
            )
            new = self._dict(await self._row(s, result_id))
            uow.publish(
                "lab.result.amended",
                events_pb2.ResultAmended(
                    result=result_proto(new),
                    previous_value=r["value"],
                    reason=reason.strip(),
                    by=caller.actor(),
                ),
            )
            if critical:
                uow.publish(
                    "lab.result.critical",
                    events_pb2.ResultCritical(
                        result=result_proto(new),
                        ordering_doctor=order["ordering_doctor"] or "",
                        patient_name=order["patient_name"],
                        visit_id=order["visit_id"] or "",
                    ),
                )
            uow.audit(
                caller.audit(
                    "result.amend",
                    "LabResult",
                    result_id,
                    r["patient_id"],
                    previous=r["value"],
                    value=value,
                    reason=reason,
                )
            )
            await uow.commit()
        return new

    # --- unmatched queue ------------------------------------------------------------------------------
    async def unmatched(self, caller: Caller) -> list[dict[str, Any]]:
        """Results no specimen claimed yet, grouped by analyzer and barcode; the read is audited (they are
        someone's results, whose identity is not yet known)."""
        groups = await self._unmatched()
        async with self.rt.uow() as uow:
            uow.audit(
                caller.audit(
                    "results.unmatched.read",
                    "LabResult",
                    None,
                    None,
                    groups=len(groups),
                    results=sum(len(g["results"]) for g in groups),
                    barcodes=[g["barcode_received"] for g in groups],
                )
            )
            await uow.commit()
        return groups

    async def _unmatched(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (
                (
                    await s.execute(
                        select(results).where(results.c.status == "unmatched").order_by(results.c.received_at)
                    )
                )
                .mappings()
                .all()
            )
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(
                (r["instrument"], r["barcode_received"]),
                {
                    "instrument": r["instrument"],
                    "barcode_received": r["barcode_received"],
                    "first_received_at": iso(r["received_at"]),
                    "results": [],
                },
            )
            g["results"].append(self._dict(r))
        return list(groups.values())

    async def assign(
        self, instrument: str, barcode_received: str, barcode: str, caller: Caller
    ) -> list[dict[str, Any]]:
        async with self.rt.uow() as uow:
            s = uow.session
            rows = [
                dict(r)
                for r in (
                    await s.execute(
                        select(results).where(
                            results.c.status == "unmatched",
                            results.c.instrument == instrument,
                            results.c.barcode_received == barcode_received,
                        )
                    )
                ).mappings()
            ]
            if not rows:
                raise NotFound(
                    "unmatched.not_found", f"no unmatched results from {instrument} for {barcode_received!r}"
                )
            spec = (
                (
                    await s.execute(
                        select(
                            specimens.c.id,
                            specimens.c.order_id,
                            specimens.c.status,
                            orders.c.patient_id,
                            orders.c.patient_sex,
                            orders.c.birth_date,
                            orders.c.patient_name,
                            orders.c.ordering_doctor,
                            orders.c.visit_id,
                        )
                        .join(orders, orders.c.id == specimens.c.order_id)
                        .where(specimens.c.barcode == barcode)
                    )
                )
                .mappings()
                .first()
            )
            if spec is None:
                raise NotFound("specimen.not_found", f"no specimen with barcode {barcode}", field="barcode")
            if spec["status"] == "cancelled":
                raise Conflict("specimen.cancelled", f"specimen {barcode} is cancelled", field="barcode")
            for r in rows:
                r["mapped_unit"] = None
            av = await autoverify_enabled(s, self.rt.settings.autoverify_default)
            out = await attach(
                uow,
                self.cat,
                self.rt.settings,
                dict(spec),
                rows,
                utcnow(),
                av,
                insert=False,
                allow_autoverify=False,
                hold=f"assigned by hand from {barcode_received!r}",
            )
            uow.audit(
                caller.audit(
                    "unmatched.assign",
                    "Specimen",
                    spec["id"],
                    spec["patient_id"],
                    instrument=instrument,
                    barcode_received=barcode_received,
                    count=len(out),
                )
            )
            await uow.commit()
        return [self._dict(x, barcode) for x in out]

    # --- critical calls -------------------------------------------------------------------------------
    async def criticals(self, caller: Caller, pending_only: bool = False) -> list[dict[str, Any]]:
        async with self.rt.uow() as uow:
            s = uow.session
            rows = (
                (
                    await s.execute(
                        select(results, orders.c.patient_name, orders.c.ordering_doctor)
                        .join(orders, orders.c.id == results.c.order_id)
                        .where(
                            results.c.critical.is_(True), results.c.status.in_(("preliminary", "verified"))
                        )
                        .order_by(results.c.received_at)
                    )
                )
                .mappings()
                .all()
            )
            calls: dict[str, list[dict[str, Any]]] = {}
            if rows:
                for c in (
                    await s.execute(
                        select(critical_calls).where(critical_calls.c.result_id.in_([r["id"] for r in rows]))
                    )
                ).mappings():
                    calls.setdefault(c["result_id"], []).append(_call_dict(c))
            items = [
                {
                    **self._dict(r),
                    "patient_name": r["patient_name"],
                    "ordering_doctor": r["ordering_doctor"],
                    "calls": calls.get(r["id"], []),
                }
                for r in rows
            ]
            if pending_only:
                items = [i for i in items if not any(c["read_back_confirmed"] for c in i["calls"])]
            uow.audit(
                caller.audit(
                    "critical.list",
                    "LabResult",
                    None,
                    None,
                    patient_ids=sorted({i["patient_id"] for i in items}),
                )
            )
            await uow.commit()
        return items

    async def record_call(self, result_id: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        for field, limit, multiline in (
            ("notified_person", 200, False),
            ("notified_role", 60, False),
            ("note", 1000, True),
        ):
            if body.get(field):
                clean_text(
                    body[field],
                    field=field,
                    max_length=limit,
                    error_code=f"critical_call.{field}",
                    multiline=multiline,
                )
        person = (body.get("notified_person") or "").strip()
        if not person:
            raise Invalid(
                "critical_call.notified_person", "who was told is required", field="notified_person"
            )
        role = (body.get("notified_role") or "").strip()
        if not role:
            raise Invalid(
                "critical_call.notified_role",
                "the role of the person told is required",
                field="notified_role",
            )
        when = body.get("notified_at") or utcnow()
        if when > utcnow():
            raise Invalid("critical_call.notified_at", "notified_at is in the future", field="notified_at")
        async with self.rt.uow() as uow:
            s = uow.session
            r = await self._row(s, result_id)
            if not r["critical"]:
                raise Conflict("result.not_critical", "the result is not a critical value")
            cid = new_id()
            values = {
                "id": cid,
                "result_id": result_id,
                "notified_person": person,
                "notified_role": role,
                "notified_at": when,
                "read_back_confirmed": bool(body.get("read_back_confirmed")),
                "called_by": caller.subject,
                "note": body.get("note"),
                "recorded_at": utcnow(),
            }
            await s.execute(critical_calls.insert().values(**values))
            uow.audit(
                caller.audit(
                    "critical.call",
                    "LabResult",
                    result_id,
                    r["patient_id"],
                    notified=person,
                    read_back=values["read_back_confirmed"],
                )
            )
            await uow.commit()
        return _call_dict(values)

    # --- settings -------------------------------------------------------------------------------------
    async def autoverify(self) -> bool:
        async with self.rt.db.session() as s:
            return await autoverify_enabled(s, self.rt.settings.autoverify_default)

    async def set_autoverify(self, on: bool, caller: Caller) -> bool:
        async with self.rt.uow() as uow:
            s = uow.session
            values = {"value": "on" if on else "off", "updated_at": utcnow(), "updated_by": caller.subject}
            if not (
                await s.execute(
                    update(lab_settings).where(lab_settings.c.key == "autoverify").values(**values)
                )
            ).rowcount:
                await s.execute(lab_settings.insert().values(key="autoverify", **values))
            uow.audit(caller.audit("settings.autoverify", "LabSettings", "autoverify", None, on=on))
            await uow.commit()
        return on


def _call_dict(c: Any) -> dict[str, Any]:
    return {
        "id": c["id"],
        "result_id": c["result_id"],
        "notified_person": c["notified_person"],
        "notified_role": c["notified_role"],
        "notified_at": iso(c["notified_at"]),
        "read_back_confirmed": c["read_back_confirmed"],
        "called_by": c["called_by"],
        "note": c["note"],
    }


__all__ = ["ResultService", "and_"]
