"""The imaging service end to end with dcmtk peers: storescu -> spool -> S3 -> index, then findscu at each
level (Patient Root and Study Root), movescu and getscu retrieving byte-identical files. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import dataset_bytes, indexed, published, run_tool, wait_for

from hospital.imaging.app.ingest import instance_key
from hospital.testing.servers import free_port
from hospital.testing.waits import equals as _eq

PATIENT_ID = "BN-2025-000123"


def _responses(directory: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(directory.glob("rsp*.dcm"))]


async def _find(port: int, out: Path, model: str, *keys: str) -> list[pydicom.Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args: list[str] = []
    for k in keys:
        args += ["-k", k]
    res = await run_tool(
        "findscu",
        model,
        "-aet",
        "VIEWER",
        "-aec",
        "HOSPITAL_PACS",
        "-X",
        "-od",
        out,
        *args,
        "127.0.0.1",
        port,
    )
    assert res.returncode == 0, res.stderr
    return _responses(out)


async def test_store_then_find_at_every_level(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=6, size=32)
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    port = imaging.settings.dicom_port
    res = await run_tool(
        "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
    )
    assert res.returncode == 0, res.stderr
    await wait_for(lambda: _eq(indexed(imaging, study_uid), 6))
    await wait_for(lambda: _empty_spool(imaging))  # the spool copy goes once stored and indexed, just after
    # byte for byte in object storage: our meta header + the data set exactly as received
    first = pydicom.dcmread(files[0])
    key = instance_key(study_uid, str(first.SeriesInstanceUID), str(first.SOPInstanceUID))
    blob = await imaging.rt.store.get_bytes("dicom", key)
    (tmp_path / "obj.dcm").write_bytes(blob)
    assert dataset_bytes(tmp_path / "obj.dcm") == dataset_bytes(files[0])

    out = tmp_path / "find"
    patients = await _find(
        port, out, "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={PATIENT_ID}", "PatientName"
    )
    assert [str(p.PatientName) for p in patients] == ["Phạm^Minh Tuấn"]
    # wildcard on the name without diacritics, Patient Root study level
    studies = await _find(
        port,
        out,
        "-P",
        "QueryRetrieveLevel=STUDY",
        "PatientName=pham*",
        f"PatientID={PATIENT_ID}",
        "StudyInstanceUID",
        "AccessionNumber",
        "NumberOfStudyRelatedInstances",
        "ModalitiesInStudy",
    )
    assert len(studies) == 1 and studies[0].StudyInstanceUID == study_uid
    assert studies[0].NumberOfStudyRelatedInstances == 6 and studies[0].ModalitiesInStudy == "CT"
    studies = await _find(
        port,
        out,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "StudyDate=20250301-20250331",
        "ModalitiesInStudy=CT",
        "StudyInstanceUID",
        "StudyDescription",
    )
    assert study_uid in {s.StudyInstanceUID for s in studies}
    assert any(s.StudyDescription == "CT sọ não không tiêm thuốc" for s in studies)
    assert (
        await _find(
            port, out, "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240101-20240131", "StudyInstanceUID"
        )
        == []
    )
    series = await _find(
        port,
        out,
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study_uid}",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
    )
    assert len(series) == 1 and series[0].Modality == "CT" and series[0].NumberOfSeriesRelatedInstances == 6
    images = await _find(
        port,
        out,
        "-S",
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study_uid}",
        f"SeriesInstanceUID={series[0].SeriesInstanceUID}",
        "SOPInstanceUID",
        "InstanceNumber",
    )
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2, 3, 4, 5, 6]
    # Study Root has no PATIENT level: refused with a failure status, not an empty success
    res = await run_tool(
        "findscu",
        "-v",
        "-S",
        "-aec",
        "HOSPITAL_PACS",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID",
        "127.0.0.1",
        port,
    )
    assert "DataSetDoesNotMatchSOPClass" in res.stderr + res.stdout, res.stderr + res.stdout

    # the same instances again: idempotent (no new rows); then the quiet period announces the study once
    res = await run_tool(
        "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
    )
    assert res.returncode == 0, res.stderr
    await wait_for(lambda: _empty_spool(imaging))
    assert await indexed(imaging, study_uid) == 6
    events = await wait_for(lambda: published(imaging, "imaging.study.received"))
    from hospital.contracts.imaging.v1 import events_pb2

    msg = events_pb2.StudyReceived.FromString(events[0].payload)
    assert msg.study_instance_uid == study_uid and msg.instance_count == 6 and msg.key_prefix.endswith("/")


async def test_move_and_get_return_identical_bytes(imaging_factory, make_ct_series, tmp_path: Path) -> None:
    dest_port = free_port()
    async with imaging_factory(known_aes=f"DEST=127.0.0.1:{dest_port}") as svc:
        files = make_ct_series(tmp_path / "ct", count=4, size=32)
        study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        port = svc.settings.dicom_port
        res = await run_tool("storescu", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct")
        assert res.returncode == 0, res.stderr
        await wait_for(lambda: _eq(indexed(svc, study_uid), 4))
        originals = {str(pydicom.dcmread(f).SOPInstanceUID): dataset_bytes(f) for f in files}

        moved = tmp_path / "moved"
        moved.mkdir()
        scp = await asyncio.create_subprocess_exec(
            "storescp", "-aet", "DEST", "-od", str(moved), "+B", str(dest_port)
        )
        try:
            await wait_for(lambda: _listening(dest_port))  # storescp is up
            res = await run_tool(
                "movescu",
                "-S",
                "-aet",
                "VIEWER",
                "-aec",
                "HOSPITAL_PACS",
                "-aem",
                "DEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "127.0.0.1",
                port,
            )
            assert res.returncode == 0, res.stderr
            await wait_for(lambda: _count(moved, 4))
        finally:
            scp.terminate()
            await scp.wait()
        got = {str(pydicom.dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in moved.iterdir()}
        assert got == originals

        # unknown destination: C-MOVE fails with "move destination unknown"
        res = await run_tool(
            "movescu",
            "-v",
            "-S",
            "-aec",
            "HOSPITAL_PACS",
            "-aem",
            "NOWHERE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "127.0.0.1",
            port,
        )
        assert "MoveDestinationUnknown" in res.stderr + res.stdout, res.stderr + res.stdout

        fetched = tmp_path / "got"
        fetched.mkdir()
        series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
        res = await run_tool(
            "getscu",
            "-S",
            "-aec",
            "HOSPITAL_PACS",
            "-od",
            fetched,
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "-k",
            f"SeriesInstanceUID={series_uid}",
            "127.0.0.1",
            port,
        )
        assert res.returncode == 0, res.stderr
        got = {str(pydicom.dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in fetched.iterdir()}
        assert got == originals


async def _empty_spool(svc) -> bool:
    return not svc.rt.imaging.spool.pending()


async def _count(directory: Path, n: int) -> bool:
    return len(list(directory.iterdir())) >= n


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True
