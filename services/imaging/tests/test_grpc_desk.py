"""The imaging desk over gRPC (what the web's imaging screen calls): the worklist, a study matching no
order resolved to an order, an MPPS flagged for review resolved with a note, and routing status with a
forward to a destination that is down, retried. Role checks and audit as for the HTTP review API."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pydicom
import pytest
from sqlalchemy import select

from hospital.chassis.db import audit_log_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, issuer_for

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import run_tool, wait_for
from test_service_review import _mpps


def _order(accession: str, patient_code: str, name: str) -> pb.ScheduleOrderRequest:
    req = pb.ScheduleOrderRequest(
        accession_number=accession,
        requested_procedure_id="CT-SONAO",
        modality="CT",
        station_ae_title="CT_HUE",
        requested_procedure_description="CT sọ não không tiêm thuốc",
        patient=pb.OrderPatient(
            patient_ref="0190a1b2-0000-7000-8000-000000000123",
            patient_code=patient_code,
            full_name=name,
            birth_date="1968-02-03",
            sex="M",
        ),
        request_id=f"req-{accession}",
    )
    req.scheduled_start.FromDatetime(datetime(2025, 3, 14, 1, 30, tzinfo=UTC))
    return req


async def test_worklist_reconciliation_mpps_and_routing_over_grpc(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    down = free_port()  # nothing listens there: forwards wait with the error
    async with imaging_factory(known_aes=f"PACS_KHO=127.0.0.1:{down}") as svc:
        issuer = issuer_for(svc)
        doctor = call_metadata(issuer.mint_for_role("doctor"))
        tech = call_metadata(issuer.mint_for_role("radiographer"))
        async with http_client(svc, role="admin") as admin:
            r = await admin.post(
                "/api/v1/routing/rules",
                json={"name": "Lưu trữ", "destination_ae": "PACS_KHO", "modality": "CT"},
            )
            assert r.status_code == 201, r.text
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
            stub = pb_grpc.ImagingServiceStub(ch)
            # the order the study should have named (its accession differs from the study's)
            order = await stub.ScheduleOrder(
                _order("CT250314099", "BN-2025-000123", "Phạm Minh Tuấn"), metadata=doctor
            )
            worklist = await stub.ListOrders(pb.ListOrdersRequest(modality="CT"), metadata=tech)
            assert [o.accession_number for o in worklist.items] == ["CT250314099"]
            assert worklist.items[0].status == pb.ORDER_STATUS_SCHEDULED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListOrders(pb.ListOrdersRequest(statuses=["lost"]), metadata=tech)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            files = make_ct_series(tmp_path / "ct", count=2, size=16)
            study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
            res = await run_tool(
                "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1",
                svc.settings.dicom_port, tmp_path / "ct",
            )  # fmt: skip
            assert res.returncode == 0, res.stderr

            async def queued() -> list[pb.ReconciliationItem] | None:
                items = (await stub.ListReconciliation(pb.ListReconciliationRequest(), metadata=tech)).items
                return list(items) or None

            (item,) = await wait_for(queued)
            assert (item.study_instance_uid, item.reason, item.patient_code, item.accession_number) == (
                study,
                "unknown_accession",
                "BN-2025-000123",
                "CT250314001",
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:  # the queue is the imaging staff's
                await stub.ListReconciliation(pb.ListReconciliationRequest(), metadata=doctor)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            done = await stub.ResolveReconciliation(
                pb.ResolveReconciliationRequest(item_id=item.id, order_id=order.id), metadata=tech
            )
            assert (done.status, done.resolved_order_id) == ("resolved", order.id)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ResolveReconciliation(
                    pb.ResolveReconciliationRequest(item_id=item.id, order_id=order.id), metadata=tech
                )
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "reconciliation.resolved" in err.value.details()
            assert (await stub.ListReconciliation(pb.ListReconciliationRequest(), metadata=tech)).items == []
            linked = await stub.GetOrder(pb.GetOrderRequest(id=order.id), metadata=tech)
            assert linked.study_instance_uid == study

            uid, *_ = await asyncio.to_thread(_mpps, svc.settings.dicom_port, "US-KHONG-CO")
            flagged = (await stub.ListMpps(pb.ListMppsRequest(unmatched=True), metadata=tech)).items
            assert [(m.mpps_instance_uid, m.attention) for m in flagged] == [(uid, "no_order")]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ResolveMpps(pb.ResolveMppsRequest(mpps_instance_uid=uid, note="  "), metadata=tech)
            assert (
                err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "(field note)" in err.value.details()
            )
            m = await stub.ResolveMpps(
                pb.ResolveMppsRequest(mpps_instance_uid=uid, note="Siêu âm làm nhầm máy; đã tạo lại phiếu"),
                metadata=tech,
            )
            assert (m.resolved_by, m.resolution_note) == (
                "user:ktv.cdha.hung",
                "Siêu âm làm nhầm máy; đã tạo lại phiếu",
            )
            assert (await stub.ListMpps(pb.ListMppsRequest(unmatched=True), metadata=tech)).items == []

            async def waiting() -> pb.RoutingStatus | None:
                st = await stub.GetRoutingStatus(pb.GetRoutingStatusRequest(), metadata=tech)
                jobs = [j for j in st.waiting if j.destination_ae == "PACS_KHO" and j.last_error]
                return st if len(jobs) == 2 else None

            status = await wait_for(waiting)
            (dest,) = status.destinations
            assert (dest.ae_title, dest.known, dest.pending, dest.sent) == ("PACS_KHO", True, 2, 0)
            assert [r.destination_ae for r in status.rules] == ["PACS_KHO"]
            assert all("association" in j.last_error and j.attempts >= 1 for j in status.waiting)
            retried = await stub.RetryRouting(
                pb.RetryRoutingRequest(destination_ae="PACS_KHO"), metadata=tech
            )
            assert retried.rescheduled == 2
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RetryRouting(pb.RetryRoutingRequest(), metadata=doctor)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        async with svc.rt.db.session() as s:
            actions = set(
                (
                    await s.execute(
                        select(audit_log_table.c.action).where(
                            audit_log_table.c.action.in_(
                                (
                                    "imaging_order.list",
                                    "imaging_reconciliation.list",
                                    "imaging_study.reconcile",
                                    "imaging_mpps.list",
                                    "imaging_mpps.resolved",
                                    "imaging_routing.retry",
                                )
                            )
                        )
                    )
                ).scalars()
            )
        assert len(actions) == 6, actions
