"""Quality control: control lots with target mean/SD, QC runs (from analyzers or entered), Westgard
rules, the per-instrument-and-test QC status that gates auto-verification, Levey-Jennings data."""

from __future__ import annotations

import logging
import math
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.lab.v1 import events_pb2
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.lab.adapters.tables import qc_lots, qc_results, qc_status
from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.common import Caller, iso
from hospital.lab.config import LabSettings
from hospital.lab.domain import westgard

log = logging.getLogger(__name__)
QC_VALUE_MAX = 1e12  # targets and values of a control: finite, within what any analyte reports


class QcService:
    def __init__(self, rt: Runtime[LabSettings], catalogue: Catalogue) -> None:
        self.rt = rt
        self.cat = catalogue

    async def create_lot(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        if body["test_code"] not in self.cat.tests:
            raise Invalid(
                "qc.test_code", f"no test {body['test_code']!r} in the catalogue", field="test_code"
            )
        for name in ("mean", "sd"):
            if not math.isfinite(body[name]) or abs(body[name]) > QC_VALUE_MAX:
                raise Invalid(f"qc.{name}", f"{name} must be a finite number", field=name)
        if not body["sd"] or body["sd"] <= 0:
            raise Invalid("qc.sd", "target SD must be positive", field="sd")
        for name in ("instrument_id", "lot_number", "level", "sample_id"):
            if not str(body.get(name) or "").strip():
                raise Invalid(f"qc.{name}", f"{name} is required", field=name)
        async with self.rt.uow() as uow:
            s = uow.session
            clash = (
                await s.execute(
                    select(qc_lots.c.id).where(
                        qc_lots.c.instrument_id == body["instrument_id"],
                        qc_lots.c.test_code == body["test_code"],
                        qc_lots.c.sample_id == body["sample_id"],
                    )
                )
            ).first()
            if clash:
                raise Conflict(
                    "qc.lot_exists",
                    "a lot with this sample ID exists for this instrument and test",
                    field="sample_id",
                )
            lot_id = new_id()
            await s.execute(
                qc_lots.insert().values(
                    id=lot_id,
                    instrument_id=body["instrument_id"],
                    test_code=body["test_code"],
                    lot_number=body["lot_number"],
                    level=body["level"],
                    material=body.get("material") or "",
                    sample_id=body["sample_id"],
                    mean=body["mean"],
                    sd=body["sd"],
                    expires=body.get("expires"),
                    active=True,
                )
            )
            uow.audit(caller.audit("qc.lot.create", "QcLot", lot_id, None, lot=body["lot_number"]))
            await uow.commit()
            await self.cat.reload_qc(s)
        return await self.lot(lot_id)

    async def lot(self, lot_id: str) -> dict[str, Any]:
        async with self.rt.db.session() as s:
            r = (await s.execute(select(qc_lots).where(qc_lots.c.id == lot_id))).mappings().first()
        if r is None:
            raise NotFound("qc.lot_not_found", f"no QC lot {lot_id}")
        return {k: (iso(v) if isinstance(v, (date, datetime)) else v) for k, v in dict(r).items()}

    async def lots(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (
                (
                    await s.execute(
                        select(qc_lots).order_by(
                            qc_lots.c.instrument_id, qc_lots.c.test_code, qc_lots.c.level
                        )
                    )
                )
                .mappings()
                .all()
            )
        return [
            {k: (iso(v) if isinstance(v, (date, datetime)) else v) for k, v in dict(r).items()} for r in rows
        ]

    async def record_manual(
        self, lot_id: str, value: float, measured_at: datetime | None, caller: Caller
    ) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            lot = (
                (await uow.session.execute(select(qc_lots).where(qc_lots.c.id == lot_id))).mappings().first()
            )
            if lot is None:
                raise NotFound("qc.lot_not_found", f"no QC lot {lot_id}")
            out = await self.record(
                uow, dict(lot), value, measured_at or utcnow(), "manual", None, caller.subject
            )
            uow.audit(caller.audit("qc.result", "QcLot", lot_id, None, value=value))
            await uow.commit()
        return out

    async def record(
        self,
        uow: UnitOfWork,
        lot: dict[str, Any],
        value: float,
        measured_at: datetime,
        source: str,
        raw_id: str | None,
        by: str,
    ) -> dict[str, Any]:
        s = uow.session
        history = list(
            (
                await s.execute(
                    select(qc_results.c.z)
                    .where(qc_results.c.lot_id == lot["id"])
                    .order_by(qc_results.c.measured_at.desc())
                    .limit(9)
                )
            ).scalars()
        )
        z = westgard.z_score(value, lot["mean"], lot["sd"])
        if not math.isfinite(z):  # a lot or value from before finite numbers were enforced
            raise Invalid("qc.value", f"QC value {value} against lot {lot['id']} gives no finite z-score")
        violations = westgard.evaluate([*reversed(history), z], await self._run_peers(s, lot, measured_at))
        ok = westgard.accepted(violations)
        names = ",".join(v.rule for v in violations)
        rid = new_id()
        await s.execute(
            qc_results.insert().values(
                id=rid,
                lot_id=lot["id"],
                value=value,
                z=z,
                violations=names,
                accepted=ok,
                measured_at=measured_at,
                source=source,
                raw_message_id=raw_id,
                recorded_by=by,
            )
        )
        key = (qc_status.c.instrument_id == lot["instrument_id"]) & (
            qc_status.c.test_code == lot["test_code"]
        )
        values = {"accepted": ok, "last_run_at": measured_at, "lot_id": lot["id"], "violations": names}
        if not (await s.execute(update(qc_status).where(key).values(**values))).rowcount:
            await s.execute(
                qc_status.insert().values(
                    instrument_id=lot["instrument_id"], test_code=lot["test_code"], **values
                )
            )
        if not ok:
            uow.publish(
                "lab.qc.failed",
                events_pb2.QcFailed(
                    instrument=lot["instrument_id"],
                    test_code=lot["test_code"],
                    lot_number=lot["lot_number"],
                    violations=[pb.QcViolation(rule=v.rule, rejection=v.rejection) for v in violations],
                    value=value,
                ),
            )
        return {
            "id": rid,
            "lot_id": lot["id"],
            "value": value,
            "z": round(z, 3),
            "accepted": ok,
            "violations": [{"rule": v.rule, "rejection": v.rejection} for v in violations],
            "measured_at": iso(measured_at),
        }

    async def _run_peers(self, s: Any, lot: dict[str, Any], measured_at: datetime) -> list[float]:
        """z-scores of the other control levels of this instrument and test measured in the same run
        (within ``qc_run_minutes`` of this measurement; the latest per level) — for R-4s across levels."""
        window = timedelta(minutes=self.rt.settings.qc_run_minutes)
        rows = (
            await s.execute(
                select(qc_lots.c.level, qc_results.c.z, qc_results.c.measured_at)
                .join(qc_lots, qc_lots.c.id == qc_results.c.lot_id)
                .where(
                    qc_lots.c.instrument_id == lot["instrument_id"],
                    qc_lots.c.test_code == lot["test_code"],
                    qc_lots.c.level != lot["level"],
                    qc_results.c.measured_at >= measured_at - window,
                    qc_results.c.measured_at <= measured_at + window,
                )
                .order_by(qc_results.c.measured_at.desc())
            )
        ).all()
        latest: dict[str, float] = {}
        for level, z, _ in rows:
            latest.setdefault(level, z)
        return list(latest.values())

    async def ingest(
        self, uow: UnitOfWork, instrument: str, barcode: str, group: Any, raw_id: str, now: datetime
    ) -> list[Any]:
        """QC results from an analyzer (the specimen ID is a control's sample ID). Returns the results
        that matched no lot, for the normal (unmatched) path."""
        s = uow.session
        lots = {
            r["test_code"]: dict(r)
            for r in (
                await s.execute(
                    select(qc_lots).where(
                        qc_lots.c.instrument_id == instrument,
                        qc_lots.c.sample_id == barcode,
                        qc_lots.c.active.is_(True),
                    )
                )
            ).mappings()
        }
        left = []
        for r in group.results:
            code, _ = self.cat.map_test(instrument, r.keys, r.loincs)
            lot = lots.get(code or "")
            try:
                value = float(r.value)
            except ValueError:
                value = None
            if value is not None and not (math.isfinite(value) and abs(value) <= QC_VALUE_MAX):
                log.warning("QC result %r from %s is not a finite number: not recorded", r.value, instrument)
                value = None
            if lot is None or value is None:
                left.append(r)
                continue
            await self.record(uow, lot, value, r.observed_at or now, "analyzer", raw_id, "analyzer")
        return left

    async def levey_jennings(self, lot_id: str, limit: int | None = None) -> dict[str, Any]:
        """The lot's runs, oldest first (with ``limit``: the latest ``limit`` runs)."""
        lot = await self.lot(lot_id)
        async with self.rt.db.session() as s:
            stmt = select(qc_results).where(qc_results.c.lot_id == lot_id)
            if limit:
                stmt = stmt.order_by(qc_results.c.measured_at.desc()).limit(limit)
            else:
                stmt = stmt.order_by(qc_results.c.measured_at)
            rows = list((await s.execute(stmt)).mappings().all())
            if limit:
                rows.reverse()
        m, sd = lot["mean"], lot["sd"]
        return {
            "lot": lot,
            "mean": m,
            "sd": sd,
            "limits": {f"{k:+d}sd": m + k * sd for k in (-3, -2, -1, 1, 2, 3)},
            "points": [
                {
                    "measured_at": iso(r["measured_at"]),
                    "value": r["value"],
                    "z": round(r["z"], 3),
                    "violations": [v for v in r["violations"].split(",") if v],
                    "accepted": r["accepted"],
                    "source": r["source"],
                }
                for r in rows
            ],
        }

    async def status(self) -> list[dict[str, Any]]:
        async with self.rt.db.session() as s:
            rows = (await s.execute(select(qc_status))).mappings().all()
        return [
            {
                **dict(r),
                "last_run_at": iso(r["last_run_at"]),
                "violations": [v for v in r["violations"].split(",") if v],
            }
            for r in rows
        ]
