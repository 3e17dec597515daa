"""Results and critical values: lab results from the LAB stream land in the chart with trends; a critical
value is pushed live to the ordering doctor (SSE), stays open until acknowledged with the read-back text
(time-to-acknowledge recorded, emr.critical.acknowledged published), and one left unacknowledged is
escalated: emr.critical.escalated, visible and pushed to the department's other doctors."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from emr_testkit import Admissions, Grpc, client, eventually, token, wait_encounter

from conftest import durables
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import events_pb2
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2
from hospital.emr.service import DEFINITION
from hospital.testing.services import http_client, running_service


def result(
    patient_id: str,
    code: str,
    name: str,
    value: str,
    unit: str,
    flag: str,
    *,
    critical: bool = False,
    at: datetime | None = None,
    rid: str | None = None,
) -> lab_pb2.Result:
    r = lab_pb2.Result(
        id=rid or str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        patient_id=patient_id,
        test_code=code,
        test_name=name,
        value=value,
        unit=unit,
        reference_range="3.5-5.1",
        flag=flag,
        critical=critical,
        status="verified",
        revision=1,
    )
    r.observed_at.FromDatetime(at or datetime.now(UTC))
    return r


class Sse:
    """An SSE client collecting events in the background."""

    def __init__(self, svc: Any, tok: str) -> None:
        self.svc, self.tok, self.events = svc, tok, []
        self.connected = asyncio.Event()

    async def run(self) -> None:
        from hospital.testing.services import http_client

        async with (
            http_client(self.svc, token=self.tok) as c,
            c.stream("GET", "/api/v1/notifications/stream", timeout=None) as r,
        ):
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            event: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith(("id:", "event:", "data:")):
                    k, _, v = line.partition(":")
                    event[k] = v.strip()
                elif not line and event:
                    self.events.append({**event, "data": json.loads(event["data"])})
                    event = {}

    async def wait(self, kind: str) -> dict:
        async def found() -> Any:
            return next((e for e in self.events if e["event"] == kind), None)

        return await eventually(found, timeout=10)


async def test_results_trend_and_a_critical_value_pushed_and_acknowledged(
    emr, admissions: Admissions, nats_server
) -> None:
    visit_id, patient = await admissions.open_visit()
    enc = (await wait_encounter(emr, patient.id))[0]
    sse = Sse(emr, token(emr))
    task = asyncio.create_task(sse.run())
    nc = await nats.connect(nats_server.url)
    try:
        await asyncio.wait_for(sse.connected.wait(), 10)
        js = nc.jetstream()
        acked = await js.subscribe("emr.critical.acknowledged", ordered_consumer=True)
        earlier = datetime.now(UTC) - timedelta(days=2)
        for r in (
            result(patient.id, "K", "Kali", "4.1", "mmol/L", "N", at=earlier),
            result(patient.id, "K", "Kali", "5.6", "mmol/L", "H"),
        ):
            await admissions.publish("lab.result.verified", lab_events.ResultVerified(result=r))
        crit = result(patient.id, "K", "Kali", "6.9", "mmol/L", "HH", critical=True)
        await admissions.publish(
            "lab.result.critical",
            lab_events.ResultCritical(
                result=crit, ordering_doctor="user:bs.minh", patient_name=patient.full_name, visit_id=visit_id
            ),
        )
        pushed = await sse.wait("critical")
        assert pushed["data"]["critical"]["value"] == "6.9" and pushed["data"]["patient_id"] == patient.id
        assert "GIÁ TRỊ NGUY HIỂM" in pushed["data"]["title"]

        async with client(emr) as doctor:
            open_ = (await doctor.get("/api/v1/critical-alerts")).json()["items"]
            alert = next(a for a in open_ if a["result_id"] == crit.id)
            assert alert["status"] == "open" and alert["department_code"] == "KKB"
            assert alert["encounter_id"] == enc["id"] and alert["patient_name"] == "Nguyễn Thị Hồng Nhung"
            chart = (await doctor.get(f"/api/v1/patients/{patient.id}/chart")).json()
            assert [a["id"] for a in chart["critical_alerts"]] == [alert["id"]]
            trend = (await doctor.get(f"/api/v1/patients/{patient.id}/trends/K")).json()
            assert [p["value"] for p in trend["points"]] == ["4.1", "5.6", "6.9"]
            assert trend["points"][0]["numeric"] and trend["points"][2]["flag"] == "HH"

            short = await doctor.post(
                f"/api/v1/critical-alerts/{alert['id']}/acknowledge", json={"read_back": ""}
            )
            assert short.status_code == 422
            r = await doctor.post(
                f"/api/v1/critical-alerts/{alert['id']}/acknowledge",
                json={"read_back": "Kali 6,9 mmol/L, đã nhắc lại"},
            )
            assert r.status_code == 200, r.text
            done = r.json()
            twice = await doctor.post(
                f"/api/v1/critical-alerts/{alert['id']}/acknowledge", json={"read_back": "Kali 6,9"}
            )
            left = (await doctor.get("/api/v1/critical-alerts", params={"patient_id": patient.id})).json()[
                "items"
            ]
        assert done["status"] == "acknowledged" and done["read_back"] == "Kali 6,9 mmol/L, đã nhắc lại"
        assert done["acknowledged_by"] == "user:bs.minh" and done["seconds_to_acknowledge"] >= 0
        assert twice.status_code == 409 and left == []
        await sse.wait("critical_acknowledged")
        while True:
            ev = events_pb2.CriticalAcknowledged.FromString((await acked.next_msg(timeout=10)).data)
            if ev.alert.id == alert["id"]:
                break
        assert ev.alert.read_back.startswith("Kali 6,9") and ev.by.subject == "user:bs.minh"
    finally:
        task.cancel()
        await nc.close()


@pytest.fixture
async def emr_fast_escalation(nats_server, tmp_path):
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/e.db",
        nats_url=nats_server.url,
        shutdown_grace_seconds=2,
        critical_escalation_seconds=1.0,
        critical_check_seconds=0.2,
        **durables(),
    ) as svc:
        yield svc


async def test_unacknowledged_critical_value_is_escalated_to_the_department(
    emr_fast_escalation, admissions, nats_server
) -> None:
    emr = emr_fast_escalation
    visit_id, patient = await admissions.open_visit()
    await wait_encounter(emr, patient.id)
    colleague = {"subject": "user:bs.khanh", "name": "BS. Trần Minh Khánh", "departments": ["KKB"]}
    sse = Sse(emr, token(emr, **colleague))
    task = asyncio.create_task(sse.run())
    nc = await nats.connect(nats_server.url)
    try:
        escalated_sub = await nc.jetstream().subscribe("emr.critical.escalated", ordered_consumer=True)
        await asyncio.wait_for(sse.connected.wait(), 10)
        crit = result(patient.id, "GLU", "Glucose", "1.9", "mmol/L", "LL", critical=True)
        await admissions.publish(
            "lab.result.critical",
            lab_events.ResultCritical(
                result=crit, ordering_doctor="user:bs.minh", patient_name=patient.full_name, visit_id=visit_id
            ),
        )
        pushed = await sse.wait("critical_escalated")  # the colleague was not told before the escalation
        assert [e["event"] for e in sse.events if e["event"].startswith("critical")] == ["critical_escalated"]
        assert pushed["data"]["critical"]["escalated"] is True and "CHƯA XÁC NHẬN" in pushed["data"]["title"]
        while True:
            ev = events_pb2.CriticalEscalated.FromString((await escalated_sub.next_msg(timeout=10)).data)
            if ev.alert.result_id == crit.id:
                break
        assert ev.after_seconds == 1 and ev.alert.department_code == "KKB"
        async with Grpc(emr, token(emr, **colleague)) as g:
            seen = await g.stub.ListCriticalAlerts(pb.ListCriticalAlertsRequest(), metadata=g.md)
            alert = next(a for a in seen.items if a.result_id == crit.id)
            done = await g.stub.AcknowledgeCritical(
                pb.AcknowledgeCriticalRequest(alert_id=alert.id, read_back="Glucose 1,9 mmol/L"),
                metadata=g.md,
            )
        assert alert.escalated and done.status == "acknowledged" and done.acknowledged_by == "user:bs.khanh"
        assert done.seconds_to_acknowledge >= 1
        async with http_client(emr, "auditor") as auditor:
            report = (await auditor.get("/api/v1/reports/critical-values")).json()["departments"]
        kkb = next(d for d in report if d["department_code"] == "KKB")
        assert (kkb["raised"], kkb["acknowledged"], kkb["open"], kkb["escalated"]) == (1, 1, 0, 1)
        assert (
            kkb["median_seconds_to_acknowledge"]
            == kkb["max_seconds_to_acknowledge"]
            == done.seconds_to_acknowledge
        )
    finally:
        task.cancel()
        await nc.close()


async def test_grpc_notification_stream_carries_a_critical_value(emr_sqlite, admissions: Admissions) -> None:
    emr = emr_sqlite
    visit_id, patient = await admissions.open_visit()
    await wait_encounter(emr, patient.id)
    async with Grpc(emr, token(emr)) as g:
        call = g.stub.StreamNotifications(pb.StreamNotificationsRequest(), metadata=g.md)
        await asyncio.wait_for(call.initial_metadata(), 10)  # the server has registered the stream
        crit = result(patient.id, "NA", "Natri", "118", "mmol/L", "LL", critical=True)
        await admissions.publish(
            "lab.result.critical",
            lab_events.ResultCritical(
                result=crit, ordering_doctor="user:bs.minh", patient_name=patient.full_name, visit_id=visit_id
            ),
        )

        async def first_critical() -> pb.Notification:
            async for note in call:
                if note.kind == "critical" and note.critical.result_id == crit.id:
                    return note
            raise AssertionError("stream ended")

        note = await asyncio.wait_for(first_critical(), 10)
        call.cancel()
    assert note.patient_id == patient.id and note.critical.value == "118" and note.critical.status == "open"
    assert "GIÁ TRỊ NGUY HIỂM" in note.title


async def test_a_doctor_leaving_the_stream_closes_it_cleanly(emr_sqlite, caplog) -> None:
    """A client that disconnects while its stream waits for the next notification: the stream ends
    without an error and its subscription to the hub is removed."""
    hub = emr_sqlite.rt.extras["services"].hub
    for _ in range(3):
        sse = Sse(emr_sqlite, token(emr_sqlite))
        task = asyncio.create_task(sse.run())
        await asyncio.wait_for(sse.connected.wait(), 10)
        assert await eventually(lambda: _async(len(hub._clients) == 1))
        task.cancel()  # the doctor closes the screen: the connection drops mid-wait
        await asyncio.gather(task, return_exceptions=True)
        assert await eventually(lambda: _async(not hub._clients))
    await asyncio.sleep(0)  # let the server finish the responses it was writing
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not errors, [r.getMessage() for r in errors] + [str(r.exc_info) for r in errors]


async def _async(value: bool) -> bool:
    return value
