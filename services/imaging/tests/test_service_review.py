"""Review queues: flagged conflicts (same SOP Instance UID, other bytes) resolved keep-existing or
take-new over HTTP; MPPS that match no order kept and listed, their N-SET accepted, then resolved by staff."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]
from sqlalchemy import select

from hospital.imaging.adapters import tables as t
from hospital.imaging.app.ingest import instance_key
from hospital.testing.services import http_client
from hospital.testing.waits import equals as _eq

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import dataset_bytes, indexed, run_tool, wait_for


async def _open_conflicts(client) -> list[dict]:
    r = await client.get("/api/v1/conflicts")
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_conflicts_listed_and_resolved(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=16)
    first, second = (pydicom.dcmread(f) for f in files)
    study = str(first.StudyInstanceUID)
    port = imaging.settings.dicom_port
    res = await run_tool(
        "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
    )
    assert res.returncode == 0, res.stderr
    await wait_for(lambda: _eq(indexed(imaging, study), 2))
    changed = []
    for n, ds in enumerate((first, second)):
        ds.StudyDescription = f"Chụp lại lần {n + 1}"
        ds.save_as(tmp_path / f"changed{n}.dcm", enforce_file_format=True)
        changed.append(tmp_path / f"changed{n}.dcm")
        res = await run_tool(
            "storescu", "-aet", "CT_LAI", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, changed[-1]
        )
        assert res.returncode == 0, res.stderr

    async with http_client(imaging, role="radiologist") as client:
        items = await wait_for(lambda: _n_items(client, 2))
        by_uid = {i["sop_instance_uid"]: i for i in items}
        assert set(by_uid) == {str(first.SOPInstanceUID), str(second.SOPInstanceUID)}
        assert all(
            i["status"] == "open"
            and i["source_ae"] == "CT_LAI"
            and i["existing_source_ae"] == "CT_HUE"
            and i["digest"] != i["existing_digest"]
            and i["study_instance_uid"] == study
            for i in items
        )
        keep, take = by_uid[str(first.SOPInstanceUID)], by_uid[str(second.SOPInstanceUID)]

        r = await client.post(f"/api/v1/conflicts/{keep['id']}/resolve", json={"action": "keep_existing"})
        assert r.status_code == 200, r.text
        r = await client.post(f"/api/v1/conflicts/{take['id']}/resolve", json={"action": "take_new"})
        assert r.status_code == 200, r.text
        superseded = r.json()["superseded_copy"]
        # resolving twice, or with a made-up action, is refused
        assert (
            await client.post(f"/api/v1/conflicts/{take['id']}/resolve", json={"action": "keep_existing"})
        ).status_code == 409
        assert (
            await client.post(f"/api/v1/conflicts/{keep['id']}/resolve", json={"action": "merge"})
        ).status_code == 422
        assert await _open_conflicts(client) == []
        resolved = (await client.get("/api/v1/conflicts", params={"status": "resolved"})).json()["items"]
        assert {(i["sop_instance_uid"], i["resolution"], i["resolved_by"] is not None) for i in resolved} == {
            (str(first.SOPInstanceUID), "keep_existing", True),
            (str(second.SOPInstanceUID), "take_new", True),
        }
    async with http_client(imaging, role="doctor") as client:
        assert (await client.get("/api/v1/conflicts")).status_code == 403

    store = imaging.rt.store
    series = str(first.SeriesInstanceUID)
    kept = await store.get_bytes("dicom", instance_key(study, series, str(first.SOPInstanceUID)))
    (tmp_path / "kept.dcm").write_bytes(kept)
    assert dataset_bytes(tmp_path / "kept.dcm") == dataset_bytes(files[0])  # keep_existing: untouched
    taken = await store.get_bytes("dicom", instance_key(study, series, str(second.SOPInstanceUID)))
    (tmp_path / "taken.dcm").write_bytes(taken)
    assert dataset_bytes(tmp_path / "taken.dcm") == dataset_bytes(changed[1])  # take_new: the new bytes
    old = await store.get_bytes("dicom", superseded)
    (tmp_path / "old.dcm").write_bytes(old)
    assert dataset_bytes(tmp_path / "old.dcm") == dataset_bytes(files[1])  # the replaced copy is kept
    async with imaging.rt.db.session() as s:
        row = (
            await s.execute(
                select(t.instances).where(t.instances.c.sop_instance_uid == str(second.SOPInstanceUID))
            )
        ).one()
    assert row.digest == take["digest"] and row.size == len(taken) and row.source_ae == "CT_LAI"


async def _n_items(client, n: int) -> list[dict] | None:
    items = await _open_conflicts(client)
    return items if len(items) >= n else None


def _mpps(port: int, accession: str) -> tuple[str, int, int]:
    ae = AE(ae_title="US_KHOA_SAN")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="HOSPITAL_PACS")
    assert assoc.is_established
    uid = generate_uid()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ssa = Dataset()
    ssa.AccessionNumber = accession
    ssa.StudyInstanceUID = generate_uid()
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = "Lê^Thị Hồng Nhung"
    ds.PatientID = "BN-2025-000999"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "US"
    try:
        created, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        mod = Dataset()
        mod.PerformedProcedureStepStatus = "COMPLETED"
        updated, _ = assoc.send_n_set(mod, ModalityPerformedProcedureStep, uid)
        unknown, _ = assoc.send_n_set(mod, ModalityPerformedProcedureStep, generate_uid())
        assert unknown.Status == 0x0112  # an MPPS never created is still refused
        return uid, created.Status, updated.Status
    finally:
        assoc.release()


async def test_unmatched_mpps_is_kept_and_listed(imaging) -> None:
    import asyncio

    uid, created, updated = await asyncio.to_thread(_mpps, imaging.settings.dicom_port, "US-KHONG-CO")
    assert (created, updated) == (0x0000, 0x0000)
    async with http_client(imaging, role="radiographer") as client:
        r = await client.get("/api/v1/mpps", params={"unmatched": "true"})
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
    assert item["mpps_instance_uid"] == uid and item["order_id"] is None and item["attention"] == "no_order"
    assert item["accession_number"] == "US-KHONG-CO" and item["status"] == "COMPLETED"
    assert item["patient_name"] == "Lê^Thị Hồng Nhung" and item["calling_ae"] == "US_KHOA_SAN"


async def test_flagged_mpps_resolved_by_staff(imaging) -> None:
    """``POST /api/v1/mpps/{uid}/resolve``: the flagged MPPS leaves the review list with who, when and the
    note recorded and audited; again (any note) it is returned unchanged; an unknown UID is 404, an MPPS
    applied normally 409, an empty note 422, a doctor 403. No order changes."""
    import asyncio
    import json
    from datetime import UTC, datetime

    import grpc

    from hospital.chassis.db import audit_log_table
    from hospital.chassis.rpc import call_metadata
    from hospital.contracts.imaging.v1 import imaging_pb2 as pb
    from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
    from hospital.testing.services import issuer_for

    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    req = pb.ScheduleOrderRequest(
        accession_number="US250316001",
        requested_procedure_id="US-BUNG",
        modality="US",
        station_ae_title="US_KHOA_SAN",
        requested_procedure_description="Siêu âm ổ bụng",
        patient=pb.OrderPatient(
            patient_ref="0190a1b2-0000-7000-8000-000000000009",
            patient_code="BN-2025-000999",
            full_name="Lê Thị Hồng Nhung",
            birth_date="1990-07-21",
            sex="F",
        ),
        request_id="req-US250316001",
    )
    req.scheduled_start.FromDatetime(datetime(2025, 3, 16, 2, 0, tzinfo=UTC))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as channel:
        order = await pb_grpc.ImagingServiceStub(channel).ScheduleOrder(req, metadata=md)
    port = imaging.settings.dicom_port
    flagged, *_ = await asyncio.to_thread(_mpps, port, "US-KHONG-CO")
    other, *_ = await asyncio.to_thread(_mpps, port, "US-KHONG-CO-2")
    applied, *_ = await asyncio.to_thread(_mpps, port, order.accession_number)  # completes the order

    async with http_client(imaging, role="radiologist") as c:
        review = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        assert {m["mpps_instance_uid"] for m in review} == {flagged, other}
        assert all(
            (m["resolved_by"], m["resolved_at"], m["resolution_note"]) == (None, None, None) for m in review
        )

        r = await c.post(
            f"/api/v1/mpps/{flagged}/resolve", json={"note": "  Đã tạo lại chỉ định US250316002  "}
        )
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["mpps_instance_uid"] == flagged and done["attention"] == "no_order"
        assert (
            done["resolved_by"]
            and done["resolved_at"]
            and done["resolution_note"] == "Đã tạo lại chỉ định US250316002"
        )
        review = (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"]
        assert [m["mpps_instance_uid"] for m in review] == [other]
        every = {m["mpps_instance_uid"]: m for m in (await c.get("/api/v1/mpps")).json()["items"]}
        assert every[flagged] == done  # still listed among all MPPS, with its resolution

        again = await c.post(f"/api/v1/mpps/{flagged}/resolve", json={"note": "ghi chú khác"})
        assert again.status_code == 200 and again.json() == done

        r = await c.post(f"/api/v1/mpps/{generate_uid()}/resolve", json={"note": "x"})
        assert r.status_code == 404 and "mpps.not_found" in r.text
        r = await c.post(f"/api/v1/mpps/{applied}/resolve", json={"note": "không cần"})
        assert r.status_code == 409 and "mpps.nothing_to_resolve" in r.text
        for bad in ({"note": "   "}, {"note": ""}, {}, {"note": "x" * 501}):
            assert (await c.post(f"/api/v1/mpps/{other}/resolve", json=bad)).status_code == 422, bad
        orders = (await c.get("/api/v1/orders")).json()["items"]
        assert [(o["id"], o["status"], o["mpps_instance_uid"]) for o in orders] == [
            (order.id, "completed", applied)
        ]
    async with http_client(imaging, role="doctor") as c:
        assert (await c.post(f"/api/v1/mpps/{other}/resolve", json={"note": "x"})).status_code == 403
    async with http_client(imaging, role="admin") as c:
        r = await c.post(f"/api/v1/mpps/{other}/resolve", json={"note": "Máy siêu âm gửi thử"})
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/mpps", params={"unmatched": "true"})).json()["items"] == []

    async with imaging.rt.db.session() as s:
        audited = (
            await s.execute(
                select(audit_log_table.c.action, audit_log_table.c.actor, audit_log_table.c.detail).where(
                    audit_log_table.c.resource_id == flagged,
                    audit_log_table.c.action == "imaging_mpps.resolved",
                )
            )
        ).all()
    assert len(audited) == 1  # the repeated call records nothing
    assert audited[0].actor == done["resolved_by"]
    detail = json.loads(audited[0].detail) if isinstance(audited[0].detail, str) else audited[0].detail
    assert (detail["note"], detail["attention"]) == ("Đã tạo lại chỉ định US250316002", "no_order")
