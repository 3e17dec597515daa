"""Nursing records of a ward encounter: a nurse of the ward's department records vital signs several times a
day (flagged by the vitals rules, listed newest first) and each dose of a medication order (given, held,
refused, missed; a cancelled order refuses new doses; emr.medication.administered published). Bad input is
a specific 4xx that writes nothing; a doctor of another department and a receptionist are refused; reads
are audited. Over HTTP and gRPC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import nats
import pytest
from emr_testkit import Admissions, Grpc, client, eventually, token, wait_encounter
from fhir.resources.R4B import get_fhir_model_class
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from hospital.chassis.db import Database, audit_log_table
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import events_pb2
from hospital.emr.adapters.tables import medication_administrations, vital_observations
from hospital.testing.services import http_client

NURSE = {"subject": "user:dd.thu", "name": "ĐD. Trần Thị Thu", "departments": ["NTH"]}
OUTSIDER = {"subject": "user:bs.san.lan", "name": "BS. Phạm Thị Lan", "departments": ["SAN"]}


async def _inpatient(emr, admissions: Admissions) -> dict:
    visit_id, patient = await admissions.open_visit()
    await wait_encounter(emr, patient.id)
    await admissions.admit(visit_id, patient.id, at=datetime.now(UTC) - timedelta(days=1))  # yesterday
    return (await wait_encounter(emr, patient.id, kind="inpatient"))[0]


async def _count(emr, table, encounter_id: str) -> int:
    db = Database(emr.settings.database_url)
    try:
        async with db.session() as s:
            return (
                await s.execute(
                    select(func.count()).select_from(table).where(table.c.encounter_id == encounter_id)
                )
            ).scalar_one()
    finally:
        await db.dispose()


async def _audit(emr, patient_id: str) -> list[tuple[str, str]]:
    db = Database(emr.settings.database_url)
    try:
        async with db.session() as s:
            rows = await s.execute(
                select(audit_log_table.c.actor, audit_log_table.c.action).where(
                    audit_log_table.c.patient_id == patient_id
                )
            )
            return [tuple(r) for r in rows.all()]
    finally:
        await db.dispose()


async def test_nurse_vitals_time_series_flagged_refused_and_audited(emr, admissions: Admissions) -> None:
    enc = await _inpatient(emr, admissions)
    url = f"/api/v1/encounters/{enc['id']}/vitals"
    now = datetime.now(UTC)
    async with client(emr, "nurse", **NURSE) as nurse:
        morning = await nurse.post(
            url,
            json={
                "systolic_bp": 120,
                "diastolic_bp": 75,
                "pulse": 78,
                "temperature_c": 36.8,
                "spo2": 98,
                "respiratory_rate": 16,
                "weight_kg": 54.5,
                "measured_at": (now - timedelta(hours=8)).isoformat(),
                "request_id": f"vs-{enc['id']}-1",
            },
        )
        assert morning.status_code == 201, morning.text
        assert morning.json()["flags"] == [] and morning.json()["recorded_by"] == "user:dd.thu"
        fever = await nurse.post(
            url,
            json={
                "systolic_bp": 165,
                "diastolic_bp": 95,
                "pulse": 112,
                "temperature_c": 39.4,
                "spo2": 88,
                "measured_at": (now - timedelta(hours=4)).isoformat(),
                "note": "Sốt cao, báo bác sĩ trực",
            },
        )
        assert fever.status_code == 201, fever.text
        flags = {f["field"]: f["flag"] for f in fever.json()["flags"]}
        assert flags == {
            "systolic_bp": "H",
            "diastolic_bp": "H",
            "pulse": "H",
            "temperature_c": "H",
            "spo2": "LL",
        }
        latest = await nurse.post(url, json={"temperature_c": 37.2, "pulse": 88})  # measured now
        assert latest.status_code == 201, latest.text
        # the same request again: the first observation, nothing new
        again = await nurse.post(
            url, json={"pulse": 78, "measured_at": now.isoformat(), "request_id": f"vs-{enc['id']}-1"}
        )
        assert again.status_code == 201 and again.json()["id"] == morning.json()["id"]

        bad = {
            "vitals.empty": {"note": "không đo được"},
            "vitals.implausible": {"pulse": 400},
            "vitals.bp_order": {"systolic_bp": 80, "diastolic_bp": 90},
            "nursing.time_future": {"pulse": 80, "measured_at": (now + timedelta(hours=1)).isoformat()},
            "nursing.time_before_encounter": {
                "pulse": 80,
                "measured_at": (now - timedelta(days=3)).isoformat(),
            },
        }
        for code, body in bad.items():
            r = await nurse.post(url, json=body)
            assert r.status_code == 422 and r.json()["code"] == code, (code, r.text)
        r = await nurse.post(url, json={"spo2": "cao"})
        assert r.status_code == 422

        listed = await nurse.get(url)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
    assert [i["id"] for i in items] == [latest.json()["id"], fever.json()["id"], morning.json()["id"]]
    assert items[1]["note"] == "Sốt cao, báo bác sĩ trực" and items[2]["weight_kg"] == 54.5

    # the same series as FHIR vital-signs Observations (validated), each readable by id
    async with client(emr, "nurse", **NURSE) as nurse:
        bundle = (await nurse.get("/fhir/Observation", params={"patient": enc["patient_id"]})).json()
        fid = f"{fever.json()['id']}-vs-temp"
        one = await nurse.get(f"/fhir/Observation/{fid}")
    get_fhir_model_class("Bundle").model_validate(bundle)
    obs = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert bundle["total"] == 12  # morning 6 (bp panel, hr, temp, spo2, rr, wt), fever 4, latest 2
    assert (
        obs[fid]["valueQuantity"]["value"] == 39.4
        and obs[fid]["interpretation"][0]["coding"][0]["code"] == "H"
    )
    assert obs[f"{fever.json()['id']}-vs-spo2"]["interpretation"][0]["coding"][0]["code"] == "LL"
    assert obs[fid]["encounter"]["reference"] == f"Encounter/{enc['id']}"
    assert one.status_code == 200 and one.json() == obs[fid]

    async with client(emr, **OUTSIDER) as other:
        write = await other.post(url, json={"pulse": 80})
        read = await other.get(url)
    async with http_client(emr, token=token(emr, "receptionist", subject="user:tieptan.ha")) as desk:
        desk_write = await desk.post(url, json={"pulse": 80})
        desk_read = await desk.get(url)
    assert write.status_code == 403
    assert read.status_code == 403 and read.json()["code"] == "chart.break_glass_required"
    assert desk_write.status_code == 403 and desk_read.status_code == 403
    assert await _count(emr, vital_observations, enc["id"]) == 3

    # an outpatient encounter's vitals are the doctor's consultation
    _, patient = await admissions.open_visit()
    outpatient = (await wait_encounter(emr, patient.id))[0]
    async with client(emr, "nurse", subject="user:dd.thu", departments=["KKB"]) as nurse:
        r = await nurse.post(f"/api/v1/encounters/{outpatient['id']}/vitals", json={"pulse": 80})
    assert r.status_code == 409 and r.json()["code"] == "nursing.not_inpatient"

    audit = await _audit(emr, enc["patient_id"])
    assert audit.count(("user:dd.thu", "vitals.record")) == 3
    assert ("user:dd.thu", "vitals.list") in audit
    assert ("user:bs.san.lan", "vitals.list") not in audit  # the refused read read nothing


async def _orders(emr, enc: dict) -> tuple[str, str]:
    async with client(emr) as doctor:
        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            json={
                "medication": [
                    {
                        "item": {
                            "drug_code": "PARA500",
                            "dose": "1 viên",
                            "frequency": "khi sốt",
                            "duration_days": 3,
                            "quantity": "6",
                        }
                    },
                    {
                        "item": {
                            "drug_code": "OME20",
                            "dose": "1 viên",
                            "frequency": "1 lần/ngày",
                            "duration_days": 7,
                            "quantity": "7",
                        }
                    },
                ]
            },
        )
    assert r.status_code == 201, r.text
    para, ome = (o["id"] for o in r.json()["orders"])
    return para, ome


async def test_medication_administration_record(emr, admissions: Admissions, nats_server) -> None:
    enc = await _inpatient(emr, admissions)
    para, ome = await _orders(emr, enc)
    nc = await nats.connect(nats_server.url)
    sub = await nc.jetstream().subscribe("emr.medication.administered", ordered_consumer=True)
    now = datetime.now(UTC)
    try:
        async with client(emr, "nurse", **NURSE) as nurse:
            given = await nurse.post(
                f"/api/v1/orders/{para}/administrations",
                json={
                    "status": "given",
                    "dose_given": "1 viên",
                    "administered_at": (now - timedelta(hours=2)).isoformat(),
                },
            )
            assert given.status_code == 201, given.text
            assert given.json()["drug_code"] == "PARA500" and given.json()["recorded_by"] == "user:dd.thu"
            held = await nurse.post(
                f"/api/v1/orders/{ome}/administrations",
                json={"status": "held", "note": "Người bệnh nhịn ăn chờ nội soi"},
            )
            assert held.status_code == 201, held.text

            bad = {
                "administration.dose_required": {"status": "given"},
                "administration.reason_required": {"status": "refused"},
                "nursing.time_future": {
                    "status": "given",
                    "dose_given": "1 viên",
                    "administered_at": (now + timedelta(hours=1)).isoformat(),
                },
            }
            for code, body in bad.items():
                r = await nurse.post(f"/api/v1/orders/{para}/administrations", json=body)
                assert r.status_code == 422 and r.json()["code"] == code, (code, r.text)
            r = await nurse.post(f"/api/v1/orders/{para}/administrations", json={"status": "lost"})
            assert r.status_code == 422
            r = await nurse.post(
                "/api/v1/orders/no-such-order/administrations", json={"status": "missed", "note": "x"}
            )
            assert r.status_code == 404 and r.json()["code"] == "order.not_found"

            async with client(emr) as doctor:
                r = await doctor.post(f"/api/v1/orders/{ome}/cancel", json={"reason": "Đổi sang thuốc tiêm"})
                assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
            r = await nurse.post(
                f"/api/v1/orders/{ome}/administrations", json={"status": "given", "dose_given": "1 viên"}
            )
            assert r.status_code == 409 and r.json()["code"] == "administration.order_not_active", r.text
            assert "đã hủy" in r.json()["detail"]

            async with client(emr, **OUTSIDER) as other:
                write = await other.post(
                    f"/api/v1/orders/{para}/administrations", json={"status": "given", "dose_given": "1 viên"}
                )
            async with http_client(emr, token=token(emr, "receptionist", subject="user:tieptan.ha")) as desk:
                desk_write = await desk.post(
                    f"/api/v1/orders/{para}/administrations", json={"status": "given", "dose_given": "1 viên"}
                )
                desk_read = await desk.get(f"/api/v1/encounters/{enc['id']}/administrations")
            assert write.status_code == 403 and desk_write.status_code == 403 and desk_read.status_code == 403

            listed = (await nurse.get(f"/api/v1/encounters/{enc['id']}/administrations")).json()["items"]
            only = (
                await nurse.get(f"/api/v1/encounters/{enc['id']}/administrations", params={"order_id": para})
            ).json()["items"]
        assert [(i["id"], i["status"]) for i in listed] == [
            (held.json()["id"], "held"),
            (given.json()["id"], "given"),
        ]
        assert [i["id"] for i in only] == [given.json()["id"]]
        assert await _count(emr, medication_administrations, enc["id"]) == 2

        # the doctor stops paracetamol: the dose given stays, no new dose; a nurse does not stop orders
        async with client(emr, "nurse", **NURSE) as nurse:
            r = await nurse.post(f"/api/v1/orders/{para}/stop", json={"reason": "Hết sốt"})
            assert r.status_code == 403
            async with client(emr) as doctor:
                blank = await doctor.post(f"/api/v1/orders/{para}/stop", json={"reason": "  "})
                stopped = await doctor.post(f"/api/v1/orders/{para}/stop", json={"reason": "Hết sốt 48 giờ"})
                cancelled = await doctor.post(f"/api/v1/orders/{ome}/stop", json={"reason": "Hết sốt"})
            assert blank.status_code == 422
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
            assert stopped.json()["cancel_reason"] == "Hết sốt 48 giờ"
            assert cancelled.status_code == 409 and cancelled.json()["code"] == "order.not_stoppable"
            r = await nurse.post(
                f"/api/v1/orders/{para}/administrations", json={"status": "given", "dose_given": "1 viên"}
            )
            assert r.status_code == 409 and "đã ngừng" in r.json()["detail"], r.text
            assert (
                len((await nurse.get(f"/api/v1/encounters/{enc['id']}/administrations")).json()["items"]) == 2
            )

        seen = {}

        async def published() -> bool:
            while len(seen) < 2:
                ev = events_pb2.MedicationAdministered.FromString((await sub.next_msg(timeout=10)).data)
                if ev.administration.encounter_id == enc["id"]:
                    seen[ev.administration.order_id] = ev
            return True

        await eventually(published)
        assert (
            seen[para].administration.status == "given" and seen[para].administration.dose_given == "1 viên"
        )
        assert seen[para].by.subject == "user:dd.thu" and seen[para].visit_id == enc["visit_id"]
        assert seen[ome].administration.status == "held" and seen[ome].department_code == "NTH"
    finally:
        await nc.close()
    audit = await _audit(emr, enc["patient_id"])
    assert audit.count(("user:dd.thu", "medication.administer")) == 2
    assert ("user:dd.thu", "medication.administrations") in audit


async def test_nursing_over_grpc(emr_sqlite, admissions: Admissions) -> None:
    emr = emr_sqlite
    enc = await _inpatient(emr, admissions)
    para, _ = await _orders(emr, enc)
    earlier = Timestamp()
    earlier.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    async with Grpc(emr, token(emr, "nurse", **NURSE)) as g:
        first = await g.stub.RecordVitals(
            pb.RecordVitalsRequest(
                encounter_id=enc["id"], pulse=130, temperature_c=38.2, measured_at=earlier
            ),
            metadata=g.md,
        )
        assert {(f.field, f.flag) for f in first.flags} == {("pulse", "H"), ("temperature_c", "H")}
        second = await g.stub.RecordVitals(
            pb.RecordVitalsRequest(encounter_id=enc["id"], spo2=97), metadata=g.md
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.RecordVitals(pb.RecordVitalsRequest(encounter_id=enc["id"]), metadata=g.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "vitals.empty" in err.value.details()
        page = await g.stub.ListVitals(pb.ListVitalsRequest(encounter_id=enc["id"]), metadata=g.md)
        assert [v.id for v in page.items] == [second.id, first.id]
        assert page.items[1].pulse == 130 and not page.items[0].HasField("pulse")

        dose = await g.stub.RecordAdministration(
            pb.RecordAdministrationRequest(order_id=para, status="refused", note="Người bệnh từ chối uống"),
            metadata=g.md,
        )
        assert dose.status == "refused" and dose.drug_code == "PARA500"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.RecordAdministration(
                pb.RecordAdministrationRequest(order_id=para, status="given"), metadata=g.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        page = await g.stub.ListAdministrations(
            pb.ListAdministrationsRequest(encounter_id=enc["id"]), metadata=g.md
        )
        assert [a.id for a in page.items] == [dose.id]
    async with Grpc(emr, token(emr)) as doctor:
        stopped = await doctor.stub.StopOrder(
            pb.CancelOrderRequest(order_id=para, reason="Người bệnh không dung nạp"), metadata=doctor.md
        )
        assert stopped.status == "stopped"
    async with Grpc(emr, token(emr, "nurse", **NURSE)) as g:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await g.stub.RecordAdministration(
                pb.RecordAdministrationRequest(order_id=para, status="given", dose_given="1 viên"),
                metadata=g.md,
            )
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS  # the chassis' code for a 409
        assert "administration.order_not_active" in err.value.details()
    async with Grpc(emr, token(emr, "receptionist", subject="user:tieptan.ha")) as desk:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await desk.stub.RecordVitals(
                pb.RecordVitalsRequest(encounter_id=enc["id"], pulse=80), metadata=desk.md
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # a discharged patient's chart takes no more nursing records
    await admissions.discharge(enc["admission_id"], enc["patient_id"])

    async def closed() -> bool:
        async with client(emr) as doctor:
            return (await doctor.get(f"/api/v1/encounters/{enc['id']}")).json()["status"] == "closed"

    await eventually(closed)
    async with client(emr, "nurse", **NURSE) as nurse:
        r = await nurse.post(f"/api/v1/encounters/{enc['id']}/vitals", json={"pulse": 80})
        d = await nurse.post(
            f"/api/v1/orders/{para}/administrations", json={"status": "missed", "note": "Đã ra viện"}
        )
    assert r.status_code == 409 and r.json()["code"] == "encounter.closed"
    assert d.status_code == 409, d.text
    assert await _count(emr, vital_observations, enc["id"]) == 2
