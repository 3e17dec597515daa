"""Reports for the hospital's quality and data-protection officers: break-the-glass chart accesses (who,
which patient, why, when) and time to acknowledge critical values per department."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime

from hospital.chassis.caller import Caller
from hospital.emr.adapters.store import ChartAccess, critical_alerts_since
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context


class ReportService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def break_glass(self, caller: Caller, since: datetime | None, limit: int) -> sc.BreakGlassReport:
        async with self.ctx.uow() as uow:
            rows = await ChartAccess(uow.session).report(since, limit)
            uow.audit(
                caller.audit(
                    "report.break_glass",
                    "ChartAccess",
                    None,
                    None,
                    count=len(rows),
                    since=since.isoformat() if since else None,
                )
            )
            await uow.commit()
        items = [
            sc.BreakGlassAccess.model_validate({k: v for k, v in r.items() if v is not None}) for r in rows
        ]
        return sc.BreakGlassReport(since=since, items=items)

    async def criticals(self, caller: Caller, since: datetime | None) -> sc.CriticalReport:
        async with self.ctx.uow() as uow:
            rows = await critical_alerts_since(uow.session, since)
            uow.audit(caller.audit("report.critical", "CriticalAlert", None, None, count=len(rows)))
            await uow.commit()
        by_dept: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_dept[r["department_code"]].append(r)
        out = []
        for dept, items in sorted(by_dept.items()):
            times = sorted(
                r["seconds_to_acknowledge"] for r in items if r["seconds_to_acknowledge"] is not None
            )
            p90 = times[min(len(times) - 1, int(0.9 * len(times)))] if times else None
            out.append(
                sc.CriticalDepartmentStats(
                    department_code=dept,
                    raised=len(items),
                    acknowledged=len(times),
                    open=sum(1 for r in items if r["status"] == "open"),
                    escalated=sum(1 for r in items if r["escalated_at"] is not None),
                    median_seconds_to_acknowledge=statistics.median(times) if times else None,
                    p90_seconds_to_acknowledge=p90,
                    max_seconds_to_acknowledge=times[-1] if times else None,
                )
            )
        return sc.CriticalReport(since=since, departments=out)
