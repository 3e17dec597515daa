"""Orders over gRPC -> modality worklist (findscu -W) -> MPPS -> study matching and reconciliation."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from hospital.chassis.rpc import call_metadata
from hospital.contracts.imaging.v1 import events_pb2
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, published, run_tool, wait_for

PATIENT_ID = "BN-2025-000123"


def _order(
    accession: str, patient_code: str = PATIENT_ID, name: str = "Phạm Minh Tuấn"
) -> pb.ScheduleOrderRequest:
    req = pb.ScheduleOrderRequest(
        accession_number=accession,
        requested_procedure_id="CT-SN",
        modality="CT",
        station_ae_title="CT_HUE",
        requested_procedure_description="CT sọ não không tiêm thuốc",
        referring_physician="Nguyễn Thị Lan",
        patient=pb.OrderPatient(
            patient_ref="0190a1b2-0000-7000-8000-000000000001",
            patient_code=patient_code,
            full_name=name,
            birth_date="1968-02-03",
            sex="M",
        ),
        request_id=f"req-{accession}",
    )
    req.scheduled_start.FromDatetime(datetime(2025, 3, 14, 1, 30, tzinfo=UTC))  # 08:30 in Huế
    return req


def _mpps(port: int, order: pb.Order, status_after: str) -> tuple[int, int]:
    ae = AE(ae_title="CT_HUE")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
    assert assoc.is_established
    uid = generate_uid()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ssa = Dataset()
    ssa.AccessionNumber = order.accession_number
    ssa.StudyInstanceUID = order.study_instance_uid
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = "Phạm^Minh Tuấn"
    ds.PatientID = order.patient.patient_code
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT_HUE"
    ds.PerformedProcedureStepStartDate = "20250314"
    ds.PerformedProcedureStepStartTime = "083500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    try:
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        created = status.Status
        mod = Dataset()
        mod.PerformedProcedureStepStatus = status_after
        mod.PerformedProcedureStepEndDate = "20250314"
        mod.PerformedProcedureStepEndTime = "084500"
        status, _ = assoc.send_n_set(mod, ModalityPerformedProcedureStep, uid)
        return created, status.Status
    finally:
        assoc.release()


def _set_accession(files: list[Path], accession: str) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        ds.AccessionNumber = accession
        ds.save_as(f, enforce_file_format=True)


async def test_order_worklist_mpps_and_reconciliation(imaging, make_ct_series, tmp_path: Path) -> None:
    token = issuer_for(imaging).mint_for_role("doctor")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        md = call_metadata(token)
        order = await stub.ScheduleOrder(_order("CT250314001"), metadata=md)
        again = await stub.ScheduleOrder(_order("CT250314001"), metadata=md)  # same request id: same order
        assert again.id == order.id and order.status == pb.ORDER_STATUS_SCHEDULED
        other = await stub.ScheduleOrder(_order("CT250314002"), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # accession numbers are unique
            dup = _order("CT250314002")
            dup.request_id = "another"
            await stub.ScheduleOrder(dup, metadata=md)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ScheduleOrder(_order("THIS-IS-FAR-TOO-LONG-FOR-SH"), metadata=md)
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "accession_number" in err.value.details()
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ScheduleOrder(
                _order("CT1"), metadata=call_metadata(issuer_for(imaging).mint_for_role("cashier"))
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    scheduled = await published(imaging, "imaging.order.scheduled")
    assert len(scheduled) == 2
    assert events_pb2.OrderScheduled.FromString(scheduled[0].payload).order.accession_number == "CT250314001"

    # the modality's worklist query (dcmtk findscu -W), filtered on modality, station and date
    port = imaging.settings.dicom_port
    out = tmp_path / "wl"
    out.mkdir()
    res = await run_tool(
        "findscu",
        "-W",
        "-aet",
        "CT_HUE",
        "-aec",
        "HOSPITAL_PACS",
        "-X",
        "-od",
        out,
        "-k",
        "ScheduledProcedureStepSequence[0].Modality=CT",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT_HUE",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20250314",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        "-k",
        "PatientName",
        "-k",
        "PatientID",
        "-k",
        "AccessionNumber",
        "-k",
        "StudyInstanceUID",
        "-k",
        "RequestedProcedureDescription",
        "127.0.0.1",
        port,
    )
    assert res.returncode == 0, res.stderr
    items = sorted((pydicom.dcmread(p) for p in out.glob("rsp*.dcm")), key=lambda d: d.AccessionNumber)
    assert [i.AccessionNumber for i in items] == ["CT250314001", "CT250314002"]
    assert str(items[0].PatientName) == "Phạm^Minh Tuấn" and items[0].SpecificCharacterSet == "ISO_IR 192"
    assert items[0].RequestedProcedureDescription == "CT sọ não không tiêm thuốc"
    assert items[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "083000"
    assert items[0].StudyInstanceUID == order.study_instance_uid
    for old in out.iterdir():
        old.unlink()
    res = await run_tool(
        "findscu",
        "-W",
        "-aec",
        "HOSPITAL_PACS",
        "-X",
        "-od",
        out,
        "-k",
        "ScheduledProcedureStepSequence[0].Modality=MR",
        "-k",
        "AccessionNumber",
        "127.0.0.1",
        port,
    )
    assert res.returncode == 0 and not list(out.iterdir())

    # MPPS: IN PROGRESS then COMPLETED -> order completed, imaging.procedure.completed
    created, completed = await asyncio.to_thread(_mpps, port, order, "COMPLETED")
    assert (created, completed) == (0, 0)
    done = await published(imaging, "imaging.procedure.completed")
    assert len(done) == 1
    msg = events_pb2.ProcedureCompleted.FromString(done[0].payload)
    assert msg.accession_number == "CT250314001" and msg.status == "COMPLETED"
    async with http_client(imaging, "radiographer") as c:
        orders = {o["accession_number"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
    assert orders["CT250314001"]["status"] == "completed" and orders["CT250314002"]["status"] == "scheduled"

    # a study with the ordered accession and patient is matched; one with an unknown accession is queued
    matched = make_ct_series(tmp_path / "a", count=2, size=16)
    stray = make_ct_series(tmp_path / "b", count=2, size=16)
    _set_accession(stray, "XQ-UNKNOWN")
    for d in ("a", "b"):
        res = await run_tool(
            "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / d
        )
        assert res.returncode == 0, res.stderr
    received = await wait_for(lambda: _n(published(imaging, "imaging.study.received"), 2))
    by_study = {
        m.study_instance_uid: m for m in (events_pb2.StudyReceived.FromString(r.payload) for r in received)
    }
    matched_uid = str(pydicom.dcmread(matched[0]).StudyInstanceUID)
    stray_uid = str(pydicom.dcmread(stray[0]).StudyInstanceUID)
    assert by_study[matched_uid].order_id == order.id and by_study[stray_uid].order_id == ""

    async with http_client(imaging, "radiologist") as c:
        queue = (await c.get("/api/v1/reconciliation")).json()["items"]
        assert [(q["study_instance_uid"], q["reason"]) for q in queue] == [(stray_uid, "unknown_accession")]
        r = await c.post(f"/api/v1/reconciliation/{queue[0]['id']}/resolve", json={"order_id": "nope"})
        assert r.status_code == 404 and r.json()["code"] == "order.not_found"
        r = await c.post(f"/api/v1/reconciliation/{queue[0]['id']}/resolve", json={"order_id": other.id})
        assert r.status_code == 200, r.text
        r = await c.post(f"/api/v1/reconciliation/{queue[0]['id']}/resolve", json={"order_id": other.id})
        assert r.status_code == 409
        assert (await c.get("/api/v1/reconciliation")).json()["items"] == []
        study = (await c.get(f"/api/v1/studies/{stray_uid}")).json()
        assert study["order_id"] == other.id and study["reconciliation"] == "resolved"
    async with http_client(imaging, "cashier") as c:
        assert (await c.get("/api/v1/reconciliation")).status_code == 403
    rec = await published(imaging, "imaging.study.reconciled")
    msg = events_pb2.StudyReconciled.FromString(rec[0].payload)
    assert (
        msg.order_id == other.id
        and msg.reason == "unknown_accession"
        and msg.accession_number == "CT250314002"
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        study = await stub.GetStudy(
            pb.GetStudyRequest(study_instance_uid=matched_uid), metadata=call_metadata(token)
        )
        assert study.instance_count == 2 and study.series[0].modality == "CT" and study.order_id == order.id
    assert await indexed(imaging, matched_uid) == 2


async def _n(coro, n: int):
    rows = await coro
    return rows if len(rows) >= n else None


VISIT_REF = "0190a1b2-0000-7000-8000-00000000a001"


async def test_visit_ref_round_trips_and_cancellation_publishes_once(imaging) -> None:
    """visit_ref is stored and returned (gRPC, HTTP, imaging.order.scheduled); CancelOrder publishes one
    imaging.order.cancelled with the order's refs, a repeated cancel returns the order and publishes
    nothing, and an order the modality has started cannot be cancelled."""
    issuer = issuer_for(imaging)
    md = call_metadata(issuer.mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        req = _order("MR250314001", name="Trần Thị Hương")
        req.visit_ref, req.order_ref = VISIT_REF.upper(), "emr-order-7781"  # stored in canonical form
        order = await stub.ScheduleOrder(req, metadata=md)
        assert order.visit_ref == VISIT_REF and order.order_ref == "emr-order-7781"
        got = await stub.GetOrder(pb.GetOrderRequest(id=order.id), metadata=md)
        assert got.visit_ref == VISIT_REF and got.patient.full_name == "Trần^Thị Hương"
        plain = await stub.ScheduleOrder(_order("MR250314002", name="Lê Văn Dũng"), metadata=md)
        assert plain.visit_ref == ""
        bad = _order("MR250314003")
        bad.visit_ref = "phòng khám 3"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ScheduleOrder(bad, metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "visit_ref" in err.value.details()

        with pytest.raises(grpc.aio.AioRpcError) as err:  # cancelling is the orderer's
            await stub.CancelOrder(
                pb.CancelOrderRequest(id=order.id),
                metadata=call_metadata(issuer.mint_for_role("radiographer")),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        cancelled = await stub.CancelOrder(
            pb.CancelOrderRequest(id=order.id, reason="Bệnh nhân đổi lịch khám"), metadata=md
        )
        assert cancelled.status == pb.ORDER_STATUS_CANCELLED and cancelled.visit_ref == VISIT_REF
        again = await stub.CancelOrder(pb.CancelOrderRequest(id=order.id, reason="bấm lại"), metadata=md)
        assert again.status == pb.ORDER_STATUS_CANCELLED and again.id == order.id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CancelOrder(
                pb.CancelOrderRequest(id="0190a1b2-0000-7000-8000-0000000000ff"), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        # the modality starts the other order (MPPS IN PROGRESS, then COMPLETED): it cannot be cancelled
        created, completed = await asyncio.to_thread(_mpps, imaging.settings.dicom_port, plain, "COMPLETED")
        assert (created, completed) == (0, 0)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CancelOrder(pb.CancelOrderRequest(id=plain.id, reason="nhầm"), metadata=md)
        assert (
            err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            and "order.not_cancellable" in err.value.details()
        )
        assert (
            await stub.GetOrder(pb.GetOrderRequest(id=plain.id), metadata=md)
        ).status == pb.ORDER_STATUS_COMPLETED

    scheduled = {
        m.order.accession_number: m.order
        for m in (
            events_pb2.OrderScheduled.FromString(r.payload)
            for r in await published(imaging, "imaging.order.scheduled")
        )
    }
    assert scheduled["MR250314001"].visit_ref == VISIT_REF and scheduled["MR250314002"].visit_ref == ""
    found = await published(imaging, "imaging.order.cancelled")
    assert len(found) == 1, [r.subject for r in found]
    msg = events_pb2.OrderCancelled.FromString(found[0].payload)
    assert found[0].headers["Hospital-Event-Type"] == "hospital.imaging.v1.OrderCancelled"
    assert (msg.order.id, msg.order.accession_number, msg.order.status) == (
        order.id,
        "MR250314001",
        pb.ORDER_STATUS_CANCELLED,
    )
    assert (msg.order.patient.patient_ref, msg.order.order_ref, msg.order.visit_ref) == (
        "0190a1b2-0000-7000-8000-000000000001",
        "emr-order-7781",
        VISIT_REF,
    )
    assert (
        msg.reason == "Bệnh nhân đổi lịch khám"
        and msg.by.roles == ["doctor"]
        and msg.cancelled_at.seconds > 0
    )
    async with http_client(imaging, "radiographer") as c:
        orders = {o["accession_number"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
    assert orders["MR250314001"]["visit_ref"] == VISIT_REF and orders["MR250314001"]["status"] == "cancelled"
    assert orders["MR250314002"]["visit_ref"] is None


async def test_mpps_for_a_cancelled_order_is_flagged_not_applied(imaging, caplog) -> None:
    """An MPPS (pynetdicom SCU: N-CREATE IN PROGRESS, N-SET COMPLETED) naming an order that was cancelled:
    the modality gets success both times, the order stays cancelled (and still cannot be revived by a
    repeated cancel), no imaging.procedure.completed is published (billing has reversed the charge), and
    the MPPS is recorded with the order's id, listed among those needing review with attention
    "order_cancelled", audited and logged with the reason."""
    import json
    import logging

    from sqlalchemy import select

    from hospital.chassis.db import audit_log_table

    caplog.set_level(logging.INFO, logger="hospital.imaging.api.dicom.qr")
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        order = await stub.ScheduleOrder(_order("CT250314101", name="Võ Thị Ngọc Ánh"), metadata=md)
        live = await stub.ScheduleOrder(_order("CT250314102", name="Đặng Quốc Bảo"), metadata=md)
        await stub.CancelOrder(pb.CancelOrderRequest(id=order.id, reason="Bệnh nhân không đến"), metadata=md)

        port = imaging.settings.dicom_port
        assert await asyncio.to_thread(_mpps, port, order, "COMPLETED") == (0x0000, 0x0000)
        assert await asyncio.to_thread(_mpps, port, live, "COMPLETED") == (0x0000, 0x0000)  # unaffected

        got = await stub.GetOrder(pb.GetOrderRequest(id=order.id), metadata=md)
        assert got.status == pb.ORDER_STATUS_CANCELLED and got.mpps_instance_uid == ""
        again = await stub.CancelOrder(pb.CancelOrderRequest(id=order.id), metadata=md)
        assert again.status == pb.ORDER_STATUS_CANCELLED
        assert (
            await stub.GetOrder(pb.GetOrderRequest(id=live.id), metadata=md)
        ).status == pb.ORDER_STATUS_COMPLETED

    done = [
        events_pb2.ProcedureCompleted.FromString(r.payload)
        for r in await published(imaging, "imaging.procedure.completed")
    ]
    assert [m.order_id for m in done] == [live.id]
    assert len(await published(imaging, "imaging.order.cancelled")) == 1

    async with http_client(imaging, "radiographer") as c:
        review = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        every = {m["order_id"]: m for m in (await c.get("/api/v1/mpps")).json()["items"]}
        orders = {o["accession_number"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
    (item,) = review
    assert (item["order_id"], item["accession_number"], item["attention"], item["status"]) == (
        order.id,
        "CT250314101",
        "order_cancelled",
        "COMPLETED",
    )
    assert item["calling_ae"] == "CT_HUE" and item["patient_id"] == PATIENT_ID
    assert every[live.id]["attention"] is None and every[live.id]["status"] == "COMPLETED"
    assert (orders["CT250314101"]["status"], orders["CT250314101"]["mpps_instance_uid"]) == (
        "cancelled",
        None,
    )

    async with imaging.rt.db.session() as s:  # by time: seq counts per audit chain
        audited = (
            await s.execute(
                select(audit_log_table.c.action, audit_log_table.c.detail)
                .where(audit_log_table.c.resource_id == item["mpps_instance_uid"])
                .order_by(audit_log_table.c.at, audit_log_table.c.seq)
            )
        ).all()
    details = [json.loads(a.detail) if isinstance(a.detail, str) else a.detail for a in audited]
    assert [(a.action, d["status"], d["order_id"]) for a, d in zip(audited, details, strict=True)] == [
        ("imaging_mpps.order_cancelled", "IN PROGRESS", order.id),
        ("imaging_mpps.order_cancelled", "COMPLETED", order.id),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        item["mpps_instance_uid"] in w and "was cancelled" in w and "stays cancelled" in w for w in warnings
    ), warnings


async def test_study_for_a_cancelled_order_is_queued_not_linked(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    """Images (dcmtk storescu) whose accession names a cancelled order: the study is not linked to it and
    imaging.study.received carries no order; it is queued for reconciliation with reason order_cancelled
    and the order as candidate. Staff may still link it: imaging.study.reconciled says order_cancelled,
    and the order stays cancelled. A study for a live order in the same run is matched as before."""
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        order = await stub.ScheduleOrder(_order("CT250314201", name="Hoàng Thị Thu Trang"), metadata=md)
        live = await stub.ScheduleOrder(_order("CT250314202", name="Bùi Văn Khải"), metadata=md)
        await stub.CancelOrder(pb.CancelOrderRequest(id=order.id, reason="Chỉ định nhầm"), metadata=md)

    cancelled_files = make_ct_series(tmp_path / "c", count=2, size=16)
    _set_accession(cancelled_files, "CT250314201")
    live_files = make_ct_series(tmp_path / "l", count=2, size=16)
    _set_accession(live_files, "CT250314202")
    port = imaging.settings.dicom_port
    for d in ("c", "l"):
        res = await run_tool(
            "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / d
        )
        assert res.returncode == 0, res.stderr
    received = await wait_for(lambda: _n(published(imaging, "imaging.study.received"), 2))
    by_study = {
        m.study_instance_uid: m for m in (events_pb2.StudyReceived.FromString(r.payload) for r in received)
    }
    cancelled_uid = str(pydicom.dcmread(cancelled_files[0]).StudyInstanceUID)
    live_uid = str(pydicom.dcmread(live_files[0]).StudyInstanceUID)
    assert (
        by_study[cancelled_uid].order_id == "" and by_study[cancelled_uid].accession_number == "CT250314201"
    )
    assert by_study[live_uid].order_id == live.id

    async with http_client(imaging, "radiologist") as c:
        (item,) = (await c.get("/api/v1/reconciliation")).json()["items"]
        assert (item["study_instance_uid"], item["reason"], item["candidate_order_id"]) == (
            cancelled_uid,
            "order_cancelled",
            order.id,
        )
        assert "CT250314201 was cancelled" in item["detail"]
        study = (await c.get(f"/api/v1/studies/{cancelled_uid}")).json()
        assert study.get("order_id", "") == "" and study["reconciliation"] == "pending"
        orders = {o["accession_number"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
        assert orders["CT250314201"]["status"] == "cancelled"
        assert orders["CT250314201"]["study_instance_uid"] == order.study_instance_uid  # not re-pointed
        # staff decide to link it anyway: the order stays cancelled, the event says why it was queued
        r = await c.post(f"/api/v1/reconciliation/{item['id']}/resolve", json={"order_id": order.id})
        assert r.status_code == 200, r.text
        assert (await c.get(f"/api/v1/studies/{cancelled_uid}")).json()["order_id"] == order.id
        orders = {o["accession_number"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
        assert orders["CT250314201"]["status"] == "cancelled"
    (rec,) = await published(imaging, "imaging.study.reconciled")
    msg = events_pb2.StudyReconciled.FromString(rec.payload)
    assert (msg.order_id, msg.reason, msg.study_instance_uid) == (order.id, "order_cancelled", cancelled_uid)


def _mpps_steps(port: int, order: pb.Order, steps: list[tuple[str, str]]) -> list[int]:
    """Send MPPS messages on one association: ("create", uid) is an N-CREATE IN PROGRESS for `order`,
    (status, uid) an N-SET to that status. Returns the DIMSE status of each."""
    ae = AE(ae_title="CT_HUE")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
    assert assoc.is_established
    out = []
    try:
        for what, uid in steps:
            ds = Dataset()
            if what == "create":
                ds.SpecificCharacterSet = "ISO_IR 192"
                ssa = Dataset()
                ssa.AccessionNumber = order.accession_number
                ssa.StudyInstanceUID = order.study_instance_uid
                ds.ScheduledStepAttributesSequence = [ssa]
                ds.PatientName = "Phạm^Minh Tuấn"
                ds.PatientID = order.patient.patient_code
                ds.PerformedProcedureStepID = uid[-16:]
                ds.PerformedProcedureStepStatus = "IN PROGRESS"
                ds.Modality = "CT"
                status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
            else:
                ds.PerformedProcedureStepStatus = what
                status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
            out.append(status.Status)
        return out
    finally:
        assoc.release()


async def test_a_second_mpps_for_an_order(imaging, caplog) -> None:
    """A new MPPS (pynetdicom SCU) for an order the modality already started or ended, the modality always
    answered with success:
    * after DISCONTINUED it is a real redo: the order goes back in progress, its COMPLETED publishes
      imaging.procedure.completed (after the DISCONTINUED one, with the new MPPS uid), and the MPPS is
      flagged redo_discontinued (billing reversed the charge on the DISCONTINUED);
    * after COMPLETED it is not applied: the order stays completed with its MPPS, nothing more is published,
      the MPPS is flagged already_completed;
    * while another is in progress it takes the order over; the older one's COMPLETED is recorded, not
      applied, and flagged superseded; a repeated N-CREATE of the current MPPS changes nothing."""
    import logging

    caplog.set_level(logging.INFO, logger="hospital.imaging.api.dicom.qr")
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        redo = await stub.ScheduleOrder(_order("CT250314301", name="Trịnh Văn Hải"), metadata=md)
        done = await stub.ScheduleOrder(_order("CT250314302", name="Lý Thị Mai"), metadata=md)
        twice = await stub.ScheduleOrder(_order("CT250314303", name="Đỗ Minh Châu"), metadata=md)
        port = imaging.settings.dicom_port
        r1, r2, d1, d2, t1, t2 = (generate_uid() for _ in range(6))
        assert await asyncio.to_thread(
            _mpps_steps, port, redo, [("create", r1), ("DISCONTINUED", r1), ("create", r2), ("COMPLETED", r2)]
        ) == [0, 0, 0, 0]
        assert await asyncio.to_thread(
            _mpps_steps, port, done, [("create", d1), ("COMPLETED", d1), ("create", d2), ("COMPLETED", d2)]
        ) == [0, 0, 0, 0]
        assert await asyncio.to_thread(
            _mpps_steps, port, twice, [("create", t1), ("create", t2), ("create", t2)]
        ) == [0, 0, 0]
        got = await stub.GetOrder(pb.GetOrderRequest(id=twice.id), metadata=md)
        assert (got.status, got.mpps_instance_uid) == (pb.ORDER_STATUS_IN_PROGRESS, t2)
        assert await asyncio.to_thread(_mpps_steps, port, twice, [("COMPLETED", t2), ("COMPLETED", t1)]) == [
            0,
            0,
        ]

        for order, mpps in ((redo, r2), (done, d1), (twice, t2)):
            got = await stub.GetOrder(pb.GetOrderRequest(id=order.id), metadata=md)
            assert (got.accession_number, got.status, got.mpps_instance_uid) == (
                order.accession_number,
                pb.ORDER_STATUS_COMPLETED,
                mpps,
            )

    ended = [
        events_pb2.ProcedureCompleted.FromString(r.payload)
        for r in await published(imaging, "imaging.procedure.completed")
    ]
    assert [(m.order_id, m.mpps_instance_uid, m.status) for m in ended] == [
        (redo.id, r1, "DISCONTINUED"),
        (redo.id, r2, "COMPLETED"),
        (done.id, d1, "COMPLETED"),
        (twice.id, t2, "COMPLETED"),
    ]

    async with http_client(imaging, "radiographer") as c:
        review = {
            m["mpps_instance_uid"]: m
            for m in (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        }
    assert {uid: (m["order_id"], m["attention"], m["status"]) for uid, m in review.items()} == {
        r2: (redo.id, "redo_discontinued", "COMPLETED"),
        d2: (done.id, "already_completed", "COMPLETED"),
        t1: (twice.id, "superseded", "COMPLETED"),
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(d2 in w and "already completed" in w for w in warnings), warnings
    assert any(r2 in w and "was discontinued" in w for w in warnings), warnings
    assert any(t1 in w and "newer MPPS" in w for w in warnings), warnings


async def _store_with_accession(
    imaging, make_ct_series, directory: Path, accession: str, **attrs: str
) -> str:
    files = make_ct_series(directory, count=2, size=16)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.AccessionNumber = accession
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f, enforce_file_format=True)
    res = await run_tool(
        "storescu",
        "-aet",
        "CT_HUE",
        "-aec",
        "HOSPITAL_PACS",
        "+sd",
        "127.0.0.1",
        imaging.settings.dicom_port,
        directory,
    )
    assert res.returncode == 0, res.stderr
    return str(pydicom.dcmread(files[0]).StudyInstanceUID)


async def _audited_actions(imaging, resource_id: str) -> list[str]:
    from sqlalchemy import select

    from hospital.chassis.db import audit_log_table

    async with imaging.rt.db.session() as s:
        rows = await s.execute(
            select(audit_log_table.c.action).where(audit_log_table.c.resource_id == resource_id)
        )
        return [r[0] for r in rows.all()]


async def test_cancelling_an_order_requeues_the_study_linked_to_it(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    """A modality that sends no MPPS: the images (dcmtk storescu) match the still-scheduled order by its
    accession and are linked to it. Cancelling the order then re-evaluates the study (ADR 0317): the
    cancellation is published once, the study is unlinked and queued for reconciliation with reason
    order_cancelled and the order as candidate, audited; staff may still link it to the cancelled order.
    An order that has started (MPPS in progress) still cannot be cancelled."""
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        imaged = await stub.ScheduleOrder(_order("CT250315301", name="Phan Thị Kim Oanh"), metadata=md)
        started = await stub.ScheduleOrder(_order("CT250315302", name="Vũ Đình Trọng"), metadata=md)
        study = await _store_with_accession(imaging, make_ct_series, tmp_path / "i", "CT250315301")
        (received,) = await wait_for(lambda: _n(published(imaging, "imaging.study.received"), 1))
        assert events_pb2.StudyReceived.FromString(received.payload).order_id == imaged.id
        async with http_client(imaging, "radiologist") as c:
            assert (await c.get(f"/api/v1/studies/{study}")).json()["order_id"] == imaged.id
            assert (await c.get("/api/v1/reconciliation")).json()["items"] == []

        cancelled = await stub.CancelOrder(
            pb.CancelOrderRequest(id=imaged.id, reason="Chỉ định nhầm bệnh nhân"), metadata=md
        )
        assert cancelled.status == pb.ORDER_STATUS_CANCELLED
        again = await stub.CancelOrder(pb.CancelOrderRequest(id=imaged.id), metadata=md)
        assert again.status == pb.ORDER_STATUS_CANCELLED

        created, _ = await asyncio.to_thread(_mpps, imaging.settings.dicom_port, started, "IN PROGRESS")
        assert created == 0
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CancelOrder(pb.CancelOrderRequest(id=started.id), metadata=md)
        assert "only scheduled orders can be cancelled" in (refused.value.details() or "")

    events = [
        events_pb2.OrderCancelled.FromString(r.payload)
        for r in await published(imaging, "imaging.order.cancelled")
    ]
    assert [(e.order.id, e.reason) for e in events] == [(imaged.id, "Chỉ định nhầm bệnh nhân")]
    async with http_client(imaging, "radiologist") as c:
        (item,) = (await c.get("/api/v1/reconciliation")).json()["items"]
        assert (item["study_instance_uid"], item["reason"], item["candidate_order_id"]) == (
            study,
            "order_cancelled",
            imaged.id,
        )
        assert "CT250315301 was cancelled after its images were linked" in item["detail"]
        assert "Chỉ định nhầm bệnh nhân" in item["detail"]
        got = (await c.get(f"/api/v1/studies/{study}")).json()
        assert got.get("order_id", "") == "" and got["reconciliation"] == "pending"
        r = await c.post(f"/api/v1/reconciliation/{item['id']}/resolve", json={"order_id": imaged.id})
        assert r.status_code == 200, r.text
        orders = {o["id"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
        assert orders[imaged.id]["status"] == "cancelled"
    assert "imaging_study.reevaluated" in await _audited_actions(imaging, study)
    (rec,) = await published(imaging, "imaging.study.reconciled")
    assert events_pb2.StudyReconciled.FromString(rec.payload).reason == "order_cancelled"


async def test_rescheduling_an_order_requeues_its_study_and_gives_a_new_worklist_uid(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    """Images sent under another patient code were queued (patient_mismatch) and linked to the order by
    staff. Rescheduling the order (RescheduleOrder) re-evaluates that study: the same queue item is opened
    again with reason order_rescheduled and the order as candidate, the study is unlinked, and the order
    gets a new time, station and worklist Study Instance UID (imaging.order.rescheduled names the study).
    The same time again changes nothing; an order in progress cannot be rescheduled; no time is 422."""
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        stub = pb_grpc.ImagingServiceStub(channel)
        order = await stub.ScheduleOrder(_order("CT250316401", name="Đặng Thị Mỹ Duyên"), metadata=md)
        other = await stub.ScheduleOrder(_order("CT250316402", name="Lý Văn Tài"), metadata=md)
        study = await _store_with_accession(
            imaging, make_ct_series, tmp_path / "r", "CT250316401", PatientID="BN-2025-000777"
        )
        async with http_client(imaging, "radiologist") as c:

            async def queued():
                items = (await c.get("/api/v1/reconciliation")).json()["items"]
                return items or None

            (item,) = await wait_for(queued)
            assert (item["reason"], item["candidate_order_id"]) == ("patient_mismatch", order.id)
            r = await c.post(f"/api/v1/reconciliation/{item['id']}/resolve", json={"order_id": order.id})
            assert r.status_code == 200, r.text
            assert (await c.get(f"/api/v1/studies/{study}")).json()["order_id"] == order.id

        later = pb.RescheduleOrderRequest(id=order.id, station_ae_title="CT_HUE_2", reason="Máy CT bảo trì")
        later.scheduled_start.FromDatetime(datetime(2025, 3, 17, 2, 0, tzinfo=UTC))  # 09:00 in Huế
        moved = await stub.RescheduleOrder(later, metadata=md)
        assert moved.status == pb.ORDER_STATUS_SCHEDULED and moved.station_ae_title == "CT_HUE_2"
        assert moved.scheduled_start.ToDatetime(tzinfo=UTC) == datetime(2025, 3, 17, 2, 0, tzinfo=UTC)
        assert moved.study_instance_uid not in (study, order.study_instance_uid)
        same = await stub.RescheduleOrder(later, metadata=md)
        assert same.study_instance_uid == moved.study_instance_uid

        created, _ = await asyncio.to_thread(_mpps, imaging.settings.dicom_port, other, "IN PROGRESS")
        assert created == 0
        busy = pb.RescheduleOrderRequest(id=other.id)
        busy.scheduled_start.FromDatetime(datetime(2025, 3, 18, 2, 0, tzinfo=UTC))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RescheduleOrder(busy, metadata=md)
        assert "only scheduled orders can be rescheduled" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.RescheduleOrder(pb.RescheduleOrderRequest(id=order.id), metadata=md)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    (event,) = await published(imaging, "imaging.order.rescheduled")
    msg = events_pb2.OrderRescheduled.FromString(event.payload)
    assert (msg.order.id, msg.reason, list(msg.studies_requeued)) == (order.id, "Máy CT bảo trì", [study])
    async with http_client(imaging, "radiologist") as c:
        (again,) = (await c.get("/api/v1/reconciliation")).json()["items"]
        assert (again["id"], again["reason"], again["candidate_order_id"], again["resolved_by"]) == (
            item["id"],
            "order_rescheduled",
            order.id,
            None,
        )
        assert "Máy CT bảo trì" in again["detail"]
        got = (await c.get(f"/api/v1/studies/{study}")).json()
        assert got.get("order_id", "") == "" and got["reconciliation"] == "pending"
        orders = {o["id"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
        assert orders[order.id]["scheduled_date"] == "20250317"
        assert orders[order.id]["study_instance_uid"] == moved.study_instance_uid
    assert "imaging_study.reevaluated" in await _audited_actions(imaging, study)
    assert "imaging_order.reschedule" in await _audited_actions(imaging, order.id)
    # the worklist shows the new appointment at the new station, with the new Study Instance UID
    out = tmp_path / "wl"
    out.mkdir()
    res = await run_tool(
        "findscu",
        "-W",
        "-aet",
        "CT_HUE_2",
        "-aec",
        "HOSPITAL_PACS",
        "-X",
        "-od",
        out,
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT_HUE_2",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
        "-k",
        "AccessionNumber",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        imaging.settings.dicom_port,
    )
    assert res.returncode == 0, res.stderr
    (wl,) = [pydicom.dcmread(p) for p in out.glob("rsp*.dcm")]
    assert (wl.AccessionNumber, wl.StudyInstanceUID) == ("CT250316401", moved.study_instance_uid)
    assert wl.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20250317"


async def test_a_resolved_mpps_flagged_again_reappears_for_review(imaging) -> None:
    """An MPPS redoing a discontinued order is flagged redo_discontinued; staff resolve it and it leaves
    the review list. A newer MPPS then takes the order over and the resolved one ends: it is flagged again
    (superseded), its resolution is cleared, and it is listed for review again."""
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        order = await pb_grpc.ImagingServiceStub(channel).ScheduleOrder(
            _order("CT250317501", name="Tô Thị Ngọc Hân"), metadata=md
        )
    port = imaging.settings.dicom_port
    first, redo, newest = generate_uid(), generate_uid(), generate_uid()
    assert await asyncio.to_thread(
        _mpps_steps, port, order, [("create", first), ("DISCONTINUED", first)]
    ) == [0, 0]
    assert await asyncio.to_thread(_mpps_steps, port, order, [("create", redo)]) == [0]
    async with http_client(imaging, "radiographer") as c:
        review = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        assert [(m["mpps_instance_uid"], m["attention"]) for m in review] == [(redo, "redo_discontinued")]
        r = await c.post(f"/api/v1/mpps/{redo}/resolve", json={"note": "Đã kiểm tra phí chụp lại"})
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"] == []

    # a newer MPPS takes the order over; the resolved one then ends: a new reason to look at it
    assert await asyncio.to_thread(
        _mpps_steps, port, order, [("create", newest), ("COMPLETED", redo), ("COMPLETED", newest)]
    ) == [0, 0, 0]
    async with http_client(imaging, "radiographer") as c:
        review = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        assert [
            (m["mpps_instance_uid"], m["attention"], m["resolved_by"], m["resolved_at"], m["resolution_note"])
            for m in review
        ] == [(redo, "superseded", None, None, None)]
        orders = {o["id"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
        assert (orders[order.id]["status"], orders[order.id]["mpps_instance_uid"]) == ("completed", newest)
        r = await c.post(f"/api/v1/mpps/{redo}/resolve", json={"note": "Bước cũ bị thay thế, không thu phí"})
        assert r.status_code == 200 and r.json()["resolution_note"] == "Bước cũ bị thay thế, không thu phí"
    actions = await _audited_actions(imaging, redo)
    assert actions.count("imaging_mpps.resolved") == 2 and "imaging_mpps.superseded" in actions
