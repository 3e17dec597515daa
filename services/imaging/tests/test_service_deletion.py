"""Deleting a study or a series (ADR 0312): administrators only, with a reason; the index forgets it at once
(findscu, QIDO-RS, WADO-RS), the objects leave the real SeaweedFS, the deletion is audited and published,
and a job interrupted by an object-store outage and a restart completes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select

from hospital.chassis.storage import ObjectStore
from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.testing.servers import S3Server
from hospital.testing.services import http_client
from hospital.testing.waits import equals as _eq

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, published, run_tool, wait_for

REASON = "Ảnh chụp nhầm bệnh nhân, đã chụp lại"


def _key(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"


async def _store(svc, directory: Path) -> None:
    res = await run_tool(
        "storescu",
        "-aet",
        "CT_HUE",
        "-aec",
        "HOSPITAL_PACS",
        "+sd",
        "127.0.0.1",
        svc.settings.dicom_port,
        directory,
    )
    assert res.returncode == 0, res.stderr


async def _findscu(svc, out: Path, study_uid: str) -> list[pydicom.Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    res = await run_tool(
        "findscu", "-S", "-aet", "VIEWER", "-aec", "HOSPITAL_PACS", "-X", "-od", out,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}", "-k", "PatientID",
        "127.0.0.1", svc.settings.dicom_port,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


async def _job(client, job_id: str) -> dict:
    r = await client.get(f"/api/v1/deletions/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def _done(client, job_id: str) -> dict | None:
    job = await _job(client, job_id)
    return job if job["status"] == "done" else None


async def _all_absent(svc, keys: list[str]) -> bool:
    return not any([await svc.rt.store.exists("dicom", k) for k in keys])


async def test_delete_study(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=4, size=16)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    sop = str(pydicom.dcmread(files[0]).SOPInstanceUID)
    await _store(imaging, tmp_path / "ct")
    await wait_for(lambda: _eq(indexed(imaging, study), 4))
    keys = [_key(f) for f in files]
    assert all([await imaging.rt.store.exists("dicom", k) for k in keys])
    assert len(await _findscu(imaging, tmp_path / "find", study)) == 1

    async with http_client(imaging, role="radiologist") as c:
        r = await c.request("DELETE", f"/api/v1/studies/{study}", json={"reason": REASON})
        assert r.status_code == 403, r.text  # administrators only
    async with http_client(imaging, role="admin") as admin:
        for body in (None, {}, {"reason": "   "}, {"reason": "x"}):
            r = await admin.request("DELETE", f"/api/v1/studies/{study}", json=body)
            assert r.status_code == 422, (body, r.text)  # a reason is required
        assert await indexed(imaging, study) == 4  # nothing was deleted by a refused request

        r = await admin.request("DELETE", f"/api/v1/studies/{study}", json={"reason": f"  {REASON} "})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["level"] == "study" and job["study_instance_uid"] == study
        assert job["reason"] == REASON and job["objects_total"] == 4 and job["instance_count"] == 4

        # Gone from every query at once, whatever the worker has done yet.
        async with http_client(imaging, role="radiologist") as c:
            assert (await c.get("/dicomweb/studies", params={"StudyInstanceUID": study})).status_code == 204
            assert (await c.get(f"/dicomweb/studies/{study}")).status_code == 404
            assert (
                await c.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}")
            ).status_code == 404
            assert (await c.get(f"/api/v1/studies/{study}")).status_code == 404
        assert await _findscu(imaging, tmp_path / "find", study) == []

        done = await wait_for(lambda: _done(admin, job["id"]), timeout=30)
        assert done["objects_left"] == 0 and done["completed_at"] and done["last_error"] is None
        assert await _all_absent(imaging, keys)  # removed from SeaweedFS
        r = await admin.request("DELETE", f"/api/v1/studies/{study}", json={"reason": REASON})
        assert r.status_code == 404 and r.json()["code"] == "study.not_found", r.text
        listed = (await admin.get("/api/v1/deletions", params={"status": "done"})).json()["items"]
        assert job["id"] in [j["id"] for j in listed]

    events = await wait_for(lambda: published(imaging, "imaging.study.deleted"))
    msgs = [ev.StudyDeleted.FromString(e.payload) for e in events]
    msg = next(m for m in msgs if m.study_instance_uid == study)
    assert msg.reason == REASON and msg.instance_count == 4 and msg.series_count == 1
    assert msg.deletion_id == job["id"] and "admin" in msg.by.roles and msg.patient_code

    from hospital.chassis.db import audit_log_table as a

    async with imaging.rt.db.session() as s:
        rows = (await s.execute(select(a).where(a.c.action == "imaging_study.delete"))).all()
    mine = [r for r in rows if r.resource_id == study]
    assert len(mine) == 1
    detail = mine[0].detail if isinstance(mine[0].detail, dict) else json.loads(mine[0].detail)
    assert detail["reason"] == REASON and detail["deletion_id"] == job["id"] and mine[0].patient_id


async def test_delete_one_series(imaging, make_ct_series, tmp_path: Path) -> None:
    kept = make_ct_series(tmp_path / "a", count=3, size=16)
    study = str(pydicom.dcmread(kept[0]).StudyInstanceUID)
    gone_uid = generate_uid()
    gone = []
    for i, f in enumerate(make_ct_series(tmp_path / "b-src", count=2, size=16)):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, gone_uid, "OT"
        (tmp_path / "b").mkdir(exist_ok=True)
        ds.save_as(tmp_path / "b" / f"OT{i}.dcm", enforce_file_format=True)
        gone.append(tmp_path / "b" / f"OT{i}.dcm")
    await _store(imaging, tmp_path / "a")
    await _store(imaging, tmp_path / "b")
    await wait_for(lambda: _eq(indexed(imaging, study), 5))

    async with http_client(imaging, role="admin") as admin:
        r = await admin.request(
            "DELETE", f"/api/v1/studies/{generate_uid()}/series/{gone_uid}", json={"reason": REASON}
        )
        assert r.status_code == 404 and r.json()["code"] == "series.not_found", r.text
        r = await admin.request(
            "DELETE", f"/api/v1/studies/{study}/series/{gone_uid}", json={"reason": REASON}
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["level"] == "series" and job["objects_total"] == 2
        async with http_client(imaging, role="radiologist") as c:
            st = (await c.get(f"/api/v1/studies/{study}")).json()
            assert st["series_count"] == 1 and st["instance_count"] == 3 and st["modalities"] == ["CT"]
            r = await c.get(f"/dicomweb/studies/{study}/series")
            assert [s["0020000E"]["Value"][0] for s in r.json()] == [
                str(pydicom.dcmread(kept[0]).SeriesInstanceUID)
            ]
            assert (await c.get(f"/dicomweb/studies/{study}/series/{gone_uid}")).status_code == 404
        await wait_for(lambda: _done(admin, job["id"]), timeout=30)
    assert await _all_absent(imaging, [_key(f) for f in gone])
    assert all([await imaging.rt.store.exists("dicom", _key(f)) for f in kept])  # the other series stays

    events = await wait_for(lambda: published(imaging, "imaging.series.deleted"))
    msg = next(
        m
        for m in (ev.SeriesDeleted.FromString(e.payload) for e in events)
        if m.series_instance_uid == gone_uid
    )
    assert msg.study_instance_uid == study and msg.instance_count == 2 and not msg.study_removed
    assert msg.modality == "OT" and msg.reason == REASON


async def test_deletion_survives_object_store_outage_and_restart(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    fast = {"deletion_poll_seconds": 0.2, "deletion_retry_seconds": 0.3, "deletion_max_retry_seconds": 1.0}
    s3 = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    try:
        files = make_ct_series(tmp_path / "ct", count=5, size=16)
        study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        keys = sorted(_key(f) for f in files)
        async with imaging_factory(s3=s3, **fast) as svc:
            await _store(svc, tmp_path / "ct")
            await wait_for(lambda: _eq(indexed(svc, study), 5))
            await asyncio.to_thread(s3.stop)  # the object store fails under the deletion worker
            async with http_client(svc, role="admin") as admin:
                r = await admin.request("DELETE", f"/api/v1/studies/{study}", json={"reason": REASON})
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                async with http_client(svc, role="radiologist") as c:  # already out of the index
                    r = await c.get("/dicomweb/studies", params={"StudyInstanceUID": study})
                    assert r.status_code == 204
                failed = await wait_for(lambda: _failed(admin, job_id), timeout=60)
                assert failed["status"] == "pending" and failed["objects_left"] == 5
        # The service stops with the job unfinished. A pass that removed the first objects and died before
        # recording it is what the next pass finds: those objects are gone, their rows still listed.
        await asyncio.to_thread(s3.start)
        store = ObjectStore(s3.endpoint, s3.access_key, s3.secret_key)
        for k in keys[:2]:
            await store.delete("dicom", k)
        assert await store.exists("dicom", keys[2])
        async with imaging_factory(s3=s3, **fast) as svc:  # restarted: the job resumes and completes
            async with http_client(svc, role="admin") as admin:
                done = await wait_for(lambda: _done(admin, job_id), timeout=30)
                assert done["objects_left"] == 0 and done["attempts"] >= 1
            assert await _all_absent(svc, keys)
            assert await indexed(svc, study) == 0
    finally:
        await asyncio.to_thread(s3.stop)


async def _failed(client, job_id: str) -> dict | None:
    job = await _job(client, job_id)
    return job if job["last_error"] else None
