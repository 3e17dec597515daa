"""One hash per file: the digest is the SHA-256 of the stored object and signs its upload; copies that
differ only in the meta header (another sending AE, rows indexed under the older data-set-only digest)
are still duplicates, not conflicts. Real SeaweedFS; SQLite and PostgreSQL for the service test."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select, update

from hospital.chassis.storage import ObjectStore
from hospital.imaging.adapters import tables as t
from hospital.imaging.adapters.s3put import PutError, SignedPut
from hospital.imaging.domain.part10 import dataset_digest

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, run_tool, wait_for


async def test_signed_put_stores_the_bytes_and_reports_refusals(s3_server) -> None:
    store = ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    await store.ensure_bucket("dicom")
    put = SignedPut(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    data = b"DICM" + bytes(range(256)) * 2000
    digest = hashlib.sha256(data).hexdigest()
    key = "studies/1.2/series/3/instances/4.dcm"
    await asyncio.to_thread(put.put, "dicom", key, data, digest, "application/dicom")
    assert await store.get_bytes("dicom", key) == data
    # refused (bad credentials): an error naming the status, nothing stored
    intruder = SignedPut(s3_server.endpoint, s3_server.access_key, "not-the-secret")
    with pytest.raises(PutError, match="HTTP 403"):
        await asyncio.to_thread(intruder.put, "dicom", "studies/1.2/series/3/instances/5.dcm", data, digest)
    assert not await store.exists("dicom", "studies/1.2/series/3/instances/5.dcm")
    # a second PUT on the kept-alive connection
    await asyncio.to_thread(
        put.put,
        "dicom",
        "studies/1.2/series/3/instances/6.dcm",
        data[:1000],
        hashlib.sha256(data[:1000]).hexdigest(),
    )
    assert await store.get_bytes("dicom", "studies/1.2/series/3/instances/6.dcm") == data[:1000]


async def _spool_empty(svc) -> bool:
    return not svc.rt.imaging.spool.pending()


async def _rows(svc) -> tuple[list, list]:
    async with svc.rt.db.session() as s:
        instances = (await s.execute(select(t.instances))).all()
        conflicts = (await s.execute(select(t.instance_conflicts))).all()
    return instances, conflicts


async def test_digest_hashes_the_object_and_meta_only_differences_are_duplicates(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=32)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    async with imaging_factory() as svc:
        port = svc.settings.dicom_port

        async def send(ae: str) -> None:
            res = await run_tool(
                "storescu", "-aet", ae, "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
            )
            assert res.returncode == 0, res.stderr

        async def three() -> bool:
            return await indexed(svc, study) == 3

        await send("CT_HUE")
        await wait_for(three)
        instances, _ = await _rows(svc)
        for row in instances:  # the digest is the hash of exactly what is in object storage
            blob = await svc.rt.store.get_bytes("dicom", row.object_key)
            assert row.digest == hashlib.sha256(blob).hexdigest() and row.source_ae == "CT_HUE"

        # The same instances from another AE: other meta header (Source AE), same data sets: duplicates
        await send("CT_LAI")
        await wait_for(lambda: _spool_empty(svc))
        instances_after, conflicts = await _rows(svc)
        assert conflicts == [] and await indexed(svc, study) == 3
        assert {r.digest for r in instances_after} == {r.digest for r in instances}

        # A row indexed before this change carries the data-set-only digest: still recognised
        first = str(pydicom.dcmread(files[0]).SOPInstanceUID)
        async with svc.rt.db.session() as s:
            await s.execute(
                update(t.instances)
                .where(t.instances.c.sop_instance_uid == first)
                .values(digest=dataset_digest(files[0]))
            )  # SHA-256 of syntax + data set
            await s.commit()
        await send("CT_HUE")
        await wait_for(lambda: _spool_empty(svc))
        _, conflicts = await _rows(svc)
        assert conflicts == []

        # while other content under the same SOP Instance UID is still a conflict
        changed = pydicom.dcmread(files[0])
        changed.StudyDescription = "CT sọ não có tiêm thuốc"
        changed.save_as(tmp_path / "changed.dcm", enforce_file_format=True)
        res = await run_tool(
            "storescu", "-aet", "CT_LAI", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, tmp_path / "changed.dcm"
        )
        assert res.returncode == 0, res.stderr
        await wait_for(lambda: _spool_empty(svc))
        _, conflicts = await _rows(svc)
        assert [(c.sop_instance_uid, c.source_ae) for c in conflicts] == [
            (str(changed.SOPInstanceUID), "CT_LAI")
        ]
        blob = await svc.rt.store.get_bytes("dicom", conflicts[0].object_key)
        assert conflicts[0].digest == hashlib.sha256(blob).hexdigest()
