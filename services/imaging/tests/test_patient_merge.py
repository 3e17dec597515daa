"""admissions.patient.merged, from the real admissions service over NATS (ADR 0317): the event carries
admissions ids, so imaging reads both records' codes from admissions (gRPC, with its service identity).
The merged record's order then names the survivor (id, code, name), the study linked to it stays linked
(re-evaluated: same person), a study queued because its patient code differed from its order's is linked
now that both codes are one patient (imaging.study.reconciled, resolved by the merge), and a study sent
later with the old code matches an order of the survivor at once."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pydicom
from sqlalchemy import select

from hospital.admissions.service import DEFINITION as ADMISSIONS
from hospital.chassis.db import audit_log_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.imaging.v1 import events_pb2
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for, running_service

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import published, run_tool, wait_for


def _order(accession: str, patient_ref: str, code: str, name: str) -> pb.ScheduleOrderRequest:
    req = pb.ScheduleOrderRequest(
        accession_number=accession,
        requested_procedure_id="CT-NGUC",
        modality="CT",
        station_ae_title="CT_HUE",
        requested_procedure_description="CT ngực không tiêm thuốc",
        patient=pb.OrderPatient(
            patient_ref=patient_ref, patient_code=code, full_name=name, birth_date="1975-05-12", sex="F"
        ),
        request_id=f"req-{accession}",
    )
    req.scheduled_start.FromDatetime(datetime(2025, 3, 20, 1, 30, tzinfo=UTC))
    return req


async def _store(imaging, make_ct_series, directory: Path, accession: str, patient_code: str) -> str:
    files = make_ct_series(directory, count=2, size=16)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.AccessionNumber, ds.PatientID, ds.PatientName = accession, patient_code, "Nguyễn^Thị Hoà"
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


async def test_a_patient_merge_repoints_orders_and_reevaluates_studies(
    imaging_factory, nats_server, make_ct_series, tmp_path: Path
) -> None:
    async with running_service(
        ADMISSIONS,
        data_dir=tmp_path / "svc",  # the same development keys: admissions accepts imaging's identity
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'admissions.db'}",
        nats_url=nats_server.url,
        shutdown_grace_seconds=2,
    ) as adm:
        async with http_client(adm, "receptionist") as c:
            survivor = (
                await c.post(
                    "/api/v1/patients",
                    json={"full_name": "Nguyễn Thị Hoa", "birth_date": "1975-05-12", "sex": "female"},
                )
            ).json()
            duplicate = (
                await c.post(
                    "/api/v1/patients",
                    json={"full_name": "Nguyễn Thị Hoà", "birth_date": "1975-05", "sex": "female"},
                )
            ).json()
        a_code, b_code = survivor["patient_code"], duplicate["patient_code"]
        assert a_code != b_code

        async with imaging_factory(
            admissions_grpc=f"127.0.0.1:{adm.settings.grpc_port}",
            admissions_durable=f"imaging-admissions-{uuid.uuid4().hex[:8]}",
        ) as imaging:
            md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
                stub = pb_grpc.ImagingServiceStub(channel)
                on_duplicate = await stub.ScheduleOrder(
                    _order("CT250320601", duplicate["id"], b_code, "Nguyễn Thị Hoà"), metadata=md
                )
                on_survivor = await stub.ScheduleOrder(
                    _order("CT250320602", survivor["id"], a_code, "Nguyễn Thị Hoa"), metadata=md
                )
                linked = await _store(imaging, make_ct_series, tmp_path / "s1", "CT250320601", b_code)
                queued = await _store(imaging, make_ct_series, tmp_path / "s2", "CT250320602", b_code)

                async def received(n: int):
                    rows = await published(imaging, "imaging.study.received")
                    return rows if len(rows) >= n else None

                await wait_for(lambda: received(2))
                async with http_client(imaging, "radiologist") as c:
                    (item,) = (await c.get("/api/v1/reconciliation")).json()["items"]
                    assert (item["study_instance_uid"], item["reason"]) == (queued, "patient_mismatch")
                    assert (await c.get(f"/api/v1/studies/{linked}")).json()["order_id"] == on_duplicate.id

                # the clerk merges the duplicate into the survivor in admissions
                async with http_client(adm, "receptionist") as c:
                    r = await c.post(
                        f"/api/v1/patients/{survivor['id']}/merge", json={"merged_id": duplicate["id"]}
                    )
                    assert r.status_code == 200, r.text

                async with http_client(imaging, "radiologist") as c:

                    async def repointed():
                        orders = {o["id"]: o for o in (await c.get("/api/v1/orders")).json()["items"]}
                        moved = orders[on_duplicate.id]
                        return orders if moved["patient_ref"] == survivor["id"] else None

                    orders = await wait_for(repointed, timeout=30)
                    moved = orders[on_duplicate.id]
                    assert (moved["patient_id"], moved["patient_name"], moved["patient_birth_date"]) == (
                        a_code,
                        "Nguyễn^Thị Hoa",
                        "19750512",
                    )
                    assert (await c.get(f"/api/v1/studies/{linked}")).json()["order_id"] == on_duplicate.id
                    now_linked = (await c.get(f"/api/v1/studies/{queued}")).json()
                    assert (now_linked["order_id"], now_linked["reconciliation"]) == (
                        on_survivor.id,
                        "resolved",
                    )
                    assert (await c.get("/api/v1/reconciliation")).json()["items"] == []
                    done = (await c.get("/api/v1/reconciliation", params={"status": "resolved"})).json()[
                        "items"
                    ]
                    assert [(d["id"], d["resolved_by"], d["resolved_order_id"]) for d in done] == [
                        (item["id"], "admissions.patient.merged", on_survivor.id)
                    ]
                (rec,) = await published(imaging, "imaging.study.reconciled")
                msg = events_pb2.StudyReconciled.FromString(rec.payload)
                assert (msg.study_instance_uid, msg.order_id, msg.reason, msg.resolved_by) == (
                    queued,
                    on_survivor.id,
                    "patient_mismatch",
                    "admissions.patient.merged",
                )
                async with imaging.rt.db.session() as s:
                    rows = (
                        await s.execute(
                            select(audit_log_table.c.resource_id, audit_log_table.c.detail).where(
                                audit_log_table.c.action == "imaging_study.reevaluated"
                            )
                        )
                    ).all()
                outcomes = {
                    r.resource_id: (r.detail if isinstance(r.detail, dict) else json.loads(r.detail))[
                        "outcome"
                    ]
                    for r in rows
                }
                assert outcomes == {linked: "kept_after_merge", queued: "linked_after_merge"}

                # later images with the old code match an order of the survivor at once
                later = await stub.ScheduleOrder(
                    _order("CT250320603", survivor["id"], a_code, "Nguyễn Thị Hoa"), metadata=md
                )
                third = await _store(imaging, make_ct_series, tmp_path / "s3", "CT250320603", b_code)
                rows = await wait_for(lambda: received(3))
                by_study = {
                    m.study_instance_uid: m
                    for m in (events_pb2.StudyReceived.FromString(r.payload) for r in rows)
                }
                assert by_study[third].order_id == later.id
