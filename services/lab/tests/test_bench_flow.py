"""Validation, verification and QC at the bench, with results sent by an analyzer over ASTM."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import nats
from sqlalchemy import select

from hospital.chassis.db import Database, audit_log_table
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client

from .test_service import NAM, place


def message(barcode: str, values: dict[str, tuple[str, str]], stamp: str = "20250706081500") -> bytes:
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|BN1||",
        f"O|1|{barcode}||^^^ALL|R||||||N||||||||||||||F",
    ]
    for n, (code, (value, unit)) in enumerate(values.items(), start=1):
        records.append(f"R|{n}|^^^{code}|{value}|{unit}||N||F||SIM|{stamp}|{stamp}|SIM")
    records.append("L|1|N")
    return ("\r".join(records) + "\r").encode()


async def send(svc, barcode: str, values: dict[str, tuple[str, str]], stamp: str = "20250706081500") -> None:
    stats = await send_astm("127.0.0.1", svc.settings.astm_port, [message(barcode, values, stamp)])
    assert stats.messages_failed == 0


async def results_of(c, order) -> dict[str, dict]:
    r = await c.get(f"/api/v1/orders/{order['id']}/results")
    assert r.status_code == 200, r.text
    return {x["test_code"]: x for x in r.json()["results"]}


def barcode(order, test: str) -> str:
    return next(s["barcode"] for s in order["specimens"] if test in s["tests"])


async def test_validation_autoverification_critical_calls_qc_and_corrections(lab, nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    seen: list[tuple[str, bytes]] = []

    async def on_msg(m) -> None:  # type: ignore[no-untyped-def]
        seen.append((m.subject, m.data))

    sub = await nc.subscribe("lab.>", cb=on_msg)
    tech = http_client(lab, "lab_technician")
    doctor = http_client(lab, "doctor")
    try:
        # QC: a GLU control on the simulator, accepted
        r = await tech.post(
            "/api/v1/qc/lots",
            json={
                "instrument_id": "simulator",
                "test_code": "GLU",
                "lot_number": "BR-2025-07",
                "level": "1",
                "material": "Bio-Rad Multiqual 1",
                "sample_id": "QC-GLU-1",
                "mean": 5.0,
                "sd": 0.2,
            },
        )
        assert r.status_code == 201, r.text
        lot = r.json()
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        await send(lab, "QC-GLU-1", {"GLU": ("5.1", "mmol/L")}, now)  # QC from the analyzer
        assert (await tech.put("/api/v1/settings/autoverify", json={"enabled": True})).json() == {
            "enabled": True
        }
        # in range, QC accepted → auto-verified, recording the rule
        o1 = await place(lab, ["GLU"])
        await send(lab, barcode(o1, "GLU"), {"GLU": ("90", "mg/dL")})
        glu = (await results_of(doctor, o1))["GLU"]
        assert (glu["value"], glu["unit"], glu["flag"], glu["status"]) == ("5.0", "mmol/L", "N", "verified")
        assert glu["autoverify_rule"].startswith("AV1") and glu["verified_by"] == "autoverify"
        # critical potassium: held, published at once, critical call documented, verified in a batch
        o2 = await place(lab, ["ELEC"], patient=NAM, ordering_doctor="BS. Phạm Minh Tuấn")
        await send(
            lab, barcode(o2, "K"), {"NA": ("139", "mmol/L"), "K": ("7.1", "mmol/L"), "CL": ("101", "mmol/L")}
        )
        res = await results_of(tech, o2)
        assert (res["K"]["flag"], res["K"]["critical"], res["K"]["status"]) == ("HH", True, "preliminary")
        assert res["NA"]["status"] == "preliminary" and "QC" in res["NA"]["hold_reason"]
        crit = (await tech.get("/api/v1/critical", params={"pending_only": True})).json()["items"]
        assert [c["id"] for c in crit] == [res["K"]["id"]] and crit[0][
            "ordering_doctor"
        ] == "BS. Phạm Minh Tuấn"
        r = await tech.post(
            f"/api/v1/results/{res['K']['id']}/critical-calls",
            json={
                "notified_person": "BS. Phạm Minh Tuấn",
                "notified_role": "bác sĩ điều trị",
                "read_back_confirmed": True,
            },
        )
        assert r.status_code == 201 and r.json()["read_back_confirmed"] is True
        r = await tech.post(
            f"/api/v1/results/{res['NA']['id']}/critical-calls",
            json={"notified_person": "X", "notified_role": "Y", "read_back_confirmed": True},
        )
        assert r.status_code == 409 and r.json()["code"] == "result.not_critical"
        assert (await tech.get("/api/v1/critical", params={"pending_only": True})).json()["items"] == []
        work = (await tech.get("/api/v1/worklist")).json()["items"]
        assert work[0]["id"] == res["K"]["id"]  # critical first
        assert (
            await doctor.post("/api/v1/results/verify", json={"result_ids": [res["K"]["id"]]})
        ).status_code == 403
        r = await tech.post("/api/v1/results/verify", json={"result_ids": [x["id"] for x in res.values()]})
        assert r.status_code == 200 and {x["status"] for x in r.json()["items"]} == {"verified"}
        r = await tech.post("/api/v1/results/verify", json={"result_ids": [res["K"]["id"]]})
        assert r.status_code == 409 and r.json()["code"] == "result.not_preliminary"
        assert (await doctor.get(f"/api/v1/orders/{o2['id']}")).json()["status"] == "completed"
        # QC rejection (1-3s) blocks auto-verification of GLU on this analyzer
        r = await tech.post(f"/api/v1/qc/lots/{lot['id']}/results", json={"value": 5.8})
        assert r.json()["accepted"] is False and r.json()["violations"] == [
            {"rule": "1-3s", "rejection": True}
        ]
        o3 = await place(lab, ["GLU"])
        await send(lab, barcode(o3, "GLU"), {"GLU": ("5.2", "mmol/L")})
        glu3 = (await results_of(tech, o3))["GLU"]
        assert glu3["status"] == "preliminary" and "QC" in glu3["hold_reason"]
        lj = (await tech.get(f"/api/v1/qc/lots/{lot['id']}/levey-jennings")).json()
        assert [p["violations"] for p in lj["points"]] == [[], ["1-3s"]] and lj["limits"]["+3sd"] == 5.6
        assert [p["source"] for p in lj["points"]] == ["analyzer", "manual"]
        # QC back in control, but auto-verification switched off → held
        await tech.post(f"/api/v1/qc/lots/{lot['id']}/results", json={"value": 5.0})
        await tech.put("/api/v1/settings/autoverify", json={"enabled": False})
        o4 = await place(lab, ["GLU"])
        await send(lab, barcode(o4, "GLU"), {"GLU": ("5.3", "mmol/L")})
        assert (await results_of(tech, o4))["GLU"]["hold_reason"] == "auto-verification is off"
        # delta check against the patient's previous result (Hb 128 → 95 g/L in a day)
        o5 = await place(lab, ["HGB"], patient=NAM)
        await send(lab, barcode(o5, "HGB"), {"HGB": ("12.8", "g/dL")}, "20250705081500")
        o6 = await place(lab, ["HGB"], patient=NAM)
        await send(lab, barcode(o6, "HGB"), {"HGB": ("9.5", "g/dL")}, "20250706081500")
        hgb = (await results_of(tech, o6))["HGB"]
        assert (hgb["value"], hgb["flag"], hgb["delta_failed"], hgb["delta_previous"]) == (
            "95",
            "L",
            True,
            "128",
        )
        # a correction keeps history and publishes lab.result.amended
        r = await tech.post(
            f"/api/v1/results/{glu['id']}/amend", json={"value": "5.4", "reason": "Nhập nhầm"}
        )
        assert r.status_code == 200 and (r.json()["value"], r.json()["revision"]) == ("5.4", 2)
        full = (await doctor.get(f"/api/v1/results/{glu['id']}")).json()
        assert [(h["revision"], h["value"], h["verified_by"]) for h in full["history"]] == [
            (1, "5.0", "autoverify")
        ]
        r = await tech.post(f"/api/v1/results/{glu['id']}/amend", json={"value": "abc", "reason": "x"})
        assert r.status_code == 422 and r.json()["code"] == "amend.value"
        for value in ("Infinity", "NaN", "-inf"):  # never a non-finite number in a result or its audit
            r = await tech.post(f"/api/v1/results/{glu['id']}/amend", json={"value": value, "reason": "x"})
            assert r.status_code == 422 and r.json()["code"] == "amend.value", r.text
        for _ in range(100):
            if {"lab.result.amended", "lab.qc.failed", "lab.result.critical"} <= {s for s, _ in seen}:
                break
            await asyncio.sleep(0.05)
        subjects = [s for s, _ in seen]
        crit_ev = events_pb2.ResultCritical.FromString(next(d for s, d in seen if s == "lab.result.critical"))
        assert crit_ev.result.test_code == "K" and crit_ev.ordering_doctor == "BS. Phạm Minh Tuấn"
        assert crit_ev.patient_name == "Trần Văn Nam"
        assert {"lab.result.verified", "lab.result.amended", "lab.qc.failed"} <= set(subjects)
    finally:
        await tech.aclose()
        await doctor.aclose()
        await sub.unsubscribe()
        await nc.close()
    db = Database(lab.settings.database_url)
    try:
        async with db.session() as s:
            actions = set((await s.execute(select(audit_log_table.c.action))).scalars())
    finally:
        await db.dispose()
    assert {"results.read", "worklist.read", "result.verify", "result.amend", "critical.call"} <= actions
