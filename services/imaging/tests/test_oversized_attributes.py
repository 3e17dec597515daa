"""Oversized DICOM attributes cannot stall ingest or swell events (storescu through the running service):
an identifying attribute too long to be a key is refused with a reason; descriptive ones are held to the
index's widths, so the index transaction commits (also on PostgreSQL) and `imaging.study.received` stays
small, while the stored file keeps every byte as sent."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom

from hospital.testing.services import http_client

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import dataset_bytes, indexed, published, run_tool, wait_for

from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.imaging.app.ingest import instance_key
from hospital.testing.waits import equals as _eq


async def test_oversized_attributes_are_refused_or_bounded(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=16)
    port = imaging.settings.dicom_port

    refused = pydicom.dcmread(files[0])
    refused.PatientID = "BN-" + "9" * 97  # 100 characters: LO allows 64
    refused.save_as(tmp_path / "long_id.dcm", enforce_file_format=True)
    res = await run_tool(
        "storescu",
        "-d",
        "-aet",
        "CT_HUE",
        "-aec",
        "HOSPITAL_PACS",
        "127.0.0.1",
        port,
        tmp_path / "long_id.dcm",
    )
    out = res.stdout + res.stderr
    assert "0xc000: Error: Cannot understand" in out and "PatientID longer than 64 characters" in out, out

    big = pydicom.dcmread(files[1])
    big.Modality = "CT" * 600_000  # 1.2 MB in a CS (16 at most), copied into the study's event
    big.StudyDescription = "Chụp cắt lớp " * 20_000  # LO: 64 characters at most
    big.ReferringPhysicianName = "Nguyễn^Thị Lan" * 100
    big.SeriesNumber = "99999999999"  # IS fits 12 characters, not int32
    big.save_as(tmp_path / "big.dcm", enforce_file_format=True)
    study = str(big.StudyInstanceUID)
    res = await run_tool(
        "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, tmp_path / "big.dcm"
    )
    assert res.returncode == 0, res.stderr
    await wait_for(lambda: _eq(indexed(imaging, study), 1), timeout=30)

    # The event is small and carries the bounded values.
    async def announced():
        return [
            e
            for e in await published(imaging, "imaging.study.received")
            if ev.StudyReceived.FromString(e.payload).study_instance_uid == study
        ]

    (event,) = await wait_for(announced, timeout=30)
    msg = ev.StudyReceived.FromString(event.payload)
    assert len(event.payload) < 2048
    assert list(msg.modalities) == ["CT" * 8]
    async with http_client(imaging, "radiologist") as c:
        r = await c.get(
            "/dicomweb/studies", params={"StudyInstanceUID": study, "includefield": "StudyDescription"}
        )
        assert r.status_code == 200
        (row,) = r.json()
        assert row["00081030"]["Value"][0] == ("Chụp cắt lớp " * 20_000)[:200]
    # The stored object is byte for byte what was sent.
    key = instance_key(study, str(big.SeriesInstanceUID), str(big.SOPInstanceUID))
    (tmp_path / "obj.dcm").write_bytes(await imaging.rt.store.get_bytes("dicom", key))
    assert dataset_bytes(tmp_path / "obj.dcm") == dataset_bytes(tmp_path / "big.dcm")
