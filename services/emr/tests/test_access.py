"""Who may read and write a chart: a doctor of another department writes nothing and reads only with a
stated reason (break-the-glass), which is recorded and audited; a receptionist reads no chart; every chart
read and write lands in the audit chain."""

from __future__ import annotations

from emr_testkit import Admissions, client, wait_encounter
from sqlalchemy import select

from hospital.chassis.db import Database, audit_log_table
from hospital.emr.adapters.tables import chart_access
from hospital.testing.services import http_client


async def test_break_the_glass_is_required_recorded_and_audited(emr, admissions: Admissions) -> None:
    _, patient = await admissions.open_visit(department="KKB")
    enc = (await wait_encounter(emr, patient.id))[0]
    outsider = {"subject": "user:bs.san.lan", "name": "BS. Phạm Thị Lan", "departments": ["SAN"]}
    async with client(emr, **outsider) as other:
        write = await other.put(f"/api/v1/encounters/{enc['id']}/consultation", json={"chief_complaint": "x"})
        blocked = await other.get(f"/api/v1/patients/{patient.id}/chart")
        short = await other.get(f"/api/v1/patients/{patient.id}/chart", params={"break_glass_reason": "xem"})
        chart = await other.get(
            f"/api/v1/patients/{patient.id}/chart",
            params={"break_glass_reason": "Hội chẩn sản khoa khẩn cấp"},
        )
    async with http_client(emr, "receptionist") as desk:
        denied = await desk.get(f"/api/v1/patients/{patient.id}/chart")
    async with client(emr) as own:  # the patient's own department: no reason needed
        mine = await own.get(f"/api/v1/patients/{patient.id}/chart")
    assert write.status_code == 403
    assert blocked.status_code == 403 and blocked.json()["code"] == "chart.break_glass_required"
    assert short.status_code == 403
    assert chart.status_code == 200 and chart.json()["break_glass"] is True
    assert denied.status_code == 403
    assert mine.status_code == 200 and mine.json()["break_glass"] is False

    db = Database(emr.settings.database_url)
    try:
        async with db.session() as s:
            access = (
                (await s.execute(select(chart_access).where(chart_access.c.patient_id == patient.id)))
                .mappings()
                .all()
            )
            audit = (
                await s.execute(
                    select(audit_log_table.c.actor, audit_log_table.c.action).where(
                        audit_log_table.c.patient_id == patient.id
                    )
                )
            ).all()
    finally:
        await db.dispose()
    assert [(a["subject"], a["reason"], a["department_code"]) for a in access] == [
        ("user:bs.san.lan", "Hội chẩn sản khoa khẩn cấp", "KKB")
    ]
    assert ("user:bs.san.lan", "chart.break_glass") in audit
    assert audit.count(("user:bs.san.lan", "chart.read")) == 1  # the refused reads read nothing
    assert ("user:bs.minh", "chart.read") in audit


async def test_break_the_glass_report_for_auditors(emr_sqlite, admissions: Admissions) -> None:
    emr = emr_sqlite
    _, patient = await admissions.open_visit(department="KKB")
    await wait_encounter(emr, patient.id)
    outsider = {"subject": "user:bs.noi.tam", "name": "BS. Lý Minh Tâm", "departments": ["NTM"]}
    async with client(emr, **outsider) as other:
        r = await other.get(
            f"/api/v1/patients/{patient.id}/chart",
            params={"break_glass_reason": "Bệnh nhân chuyển đến cấp cứu tim mạch"},
        )
        assert r.status_code == 200
        forbidden = await other.get("/api/v1/reports/break-glass")
    async with http_client(emr, "auditor") as auditor:
        report = (await auditor.get("/api/v1/reports/break-glass")).json()
        criticals = await auditor.get("/api/v1/reports/critical-values")
    assert forbidden.status_code == 403
    mine = [i for i in report["items"] if i["patient_id"] == patient.id]
    assert [(i["subject"], i["reason"], i["department_code"]) for i in mine] == [
        ("user:bs.noi.tam", "Bệnh nhân chuyển đến cấp cứu tim mạch", "KKB")
    ]
    assert criticals.status_code == 200 and "departments" in criticals.json()
