"""Faults with real peers: object storage stopped during ingest, a routing destination down then up,
duplicate and conflicting instances, an unknown calling AE in strict mode."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pydicom
from sqlalchemy import select

from hospital.imaging.adapters import tables as t
from hospital.testing.servers import S3Server, free_port
from hospital.testing.services import http_client
from hospital.testing.waits import equals as _eq

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, run_tool, wait_for


async def _error(svc) -> str | None:
    return svc.rt.imaging.pipeline.last_error


async def test_object_storage_down_during_ingest(imaging_factory, make_ct_series, tmp_path: Path) -> None:
    s3 = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    try:
        async with imaging_factory(s3=s3) as svc:
            files = make_ct_series(tmp_path / "ct", count=5, size=32)
            study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
            await asyncio.to_thread(s3.stop)
            res = await run_tool(
                "storescu",
                "-aec",
                "HOSPITAL_PACS",
                "+sd",
                "127.0.0.1",
                svc.settings.dicom_port,
                tmp_path / "ct",
            )
            assert res.returncode == 0, res.stderr  # acknowledged: every instance is fsync'd in the spool
            spool = svc.rt.imaging.spool
            await wait_for(lambda: _error(svc), timeout=30)  # the upload failed...
            assert len(spool.pending()) == 5 and await indexed(svc, study) == 0  # ...and nothing was lost
            await asyncio.to_thread(s3.start)  # same ports, same data
            await wait_for(lambda: _eq(indexed(svc, study), 5), timeout=40)
            assert spool.pending() == []
            for f in files:
                ds = pydicom.dcmread(f)
                key = f"studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"
                assert await svc.rt.store.exists("dicom", key)
    finally:
        await asyncio.to_thread(s3.stop)


async def test_spool_survives_restart_and_duplicates_conflicts(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=16)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    async with imaging_factory(run_worker_in_serve=False) as svc:  # no pipeline: instances stay spooled
        res = await run_tool(
            "storescu", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", svc.settings.dicom_port, tmp_path / "ct"
        )
        assert res.returncode == 0, res.stderr
        # stored in the spool before storescu got its C-STORE responses
        assert len(svc.rt.imaging.spool.pending()) == 3
    async with imaging_factory() as svc:  # restart: the spool is drained
        await wait_for(lambda: _eq(indexed(svc, study), 3))
        # the same instance again: idempotent; same UID with other content: kept aside and flagged
        changed = pydicom.dcmread(files[0])
        changed.StudyDescription = "CT sọ não có tiêm thuốc"
        changed.save_as(tmp_path / "changed.dcm", enforce_file_format=True)
        for f in (files[0], tmp_path / "changed.dcm"):
            res = await run_tool("storescu", "-aec", "HOSPITAL_PACS", "127.0.0.1", svc.settings.dicom_port, f)
            assert res.returncode == 0, res.stderr
        await wait_for(lambda: _spool_empty(svc))
        assert await indexed(svc, study) == 3
        async with svc.rt.db.session() as s:
            conflicts = (await s.execute(select(t.instance_conflicts))).all()
        assert [(c.sop_instance_uid, c.status) for c in conflicts] == [(str(changed.SOPInstanceUID), "open")]
        assert await svc.rt.store.exists("dicom", conflicts[0].object_key)


async def _spool_empty(svc) -> bool:
    return not svc.rt.imaging.spool.pending()


async def test_routing_to_a_destination_down_then_up(imaging_factory, make_ct_series, tmp_path: Path) -> None:
    dest_port = free_port()
    async with imaging_factory(known_aes=f"ARCHIVE=127.0.0.1:{dest_port}") as svc:
        async with http_client(svc, "admin") as c:
            r = await c.post(
                "/api/v1/routing/rules",
                json={
                    "name": "CT to archive",
                    "destination_ae": "ARCHIVE",
                    "modality": "CT",
                    "attributes": {"BodyPartExamined": "HEAD"},
                },
            )
            assert r.status_code == 201, r.text
            r = await c.post("/api/v1/routing/rules", json={"destination_ae": "UNKNOWN"})
            assert r.status_code == 422 and r.json()["code"] == "routing.unknown_destination"
            r = await c.post(
                "/api/v1/routing/rules", json={"destination_ae": "ARCHIVE", "attributes": {"Foo": "1"}}
            )
            assert r.status_code == 422
        files = make_ct_series(tmp_path / "ct", count=3, size=16)
        res = await run_tool(
            "storescu", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", svc.settings.dicom_port, tmp_path / "ct"
        )
        assert res.returncode == 0, res.stderr

        async def waiting() -> list:
            async with http_client(svc, "radiographer") as c:
                q = (await c.get("/api/v1/routing/queue")).json()
            return [w for w in q["waiting"] if w["attempts"] >= 1 and w["last_error"]]

        failing = await wait_for(lambda: _at_least(waiting(), 3))
        assert all(w["status"] == "pending" and "association" in w["last_error"] for w in failing)
        out = tmp_path / "archive"
        out.mkdir()
        scp = await asyncio.create_subprocess_exec(
            "storescp", "-aet", "ARCHIVE", "-od", str(out), str(dest_port)
        )
        try:
            await wait_for(lambda: _files(out, 3), timeout=30)

            async def all_sent() -> bool:  # storescp writes the files before the router records "sent"
                async with http_client(svc, "radiographer") as c:
                    q = (await c.get("/api/v1/routing/queue")).json()
                return q["destinations"]["ARCHIVE"] == {"sent": 3} and q["waiting"] == []

            await wait_for(all_sent, timeout=10)
        finally:
            scp.terminate()
            await scp.wait()
        received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir()}
        assert received == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}


async def _at_least(coro, n: int):
    rows = await coro
    return rows if len(rows) >= n else None


async def _files(directory: Path, n: int) -> bool:
    return len(list(directory.iterdir())) >= n


async def test_strict_mode_rejects_unknown_calling_ae(imaging_factory) -> None:
    async with imaging_factory(strict_ae=True, known_aes="CT_HUE=127.0.0.1:4006") as svc:
        port = svc.settings.dicom_port
        ok = await run_tool("echoscu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port)
        assert ok.returncode == 0, ok.stderr
        bad = await run_tool("echoscu", "-aet", "STRANGER", "-aec", "HOSPITAL_PACS", "127.0.0.1", port)
        assert bad.returncode != 0 and "Calling AE Title Not Recognized" in bad.stderr, bad.stderr
