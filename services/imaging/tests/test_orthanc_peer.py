"""Orthanc (the OS package) as a real third-party peer: a routing rule forwards a received study to
Orthanc over C-STORE, and movescu asks the gateway to C-MOVE a study to Orthanc's AE. Orthanc runs in its
own network namespace joined to the host by a veth pair (imaging_orthanc.py); what it received is read
back through its REST API. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from hospital.testing.services import http_client

sys.path.insert(0, str(Path(__file__).parent))
import imaging_orthanc
from imaging_helpers import dataset_bytes, indexed, run_tool, wait_for


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[imaging_orthanc.OrthancPeer]:
    # Orthanc is a peer the tests require (deploy/local/bootstrap.sh installs it): missing is a
    # broken set-up, not a reason to pass quietly. Started here, on the main thread (see its clean-up).
    reason = imaging_orthanc.available()
    if reason:
        pytest.fail(f"Orthanc peer unavailable: {reason}")
    peer = imaging_orthanc.OrthancPeer(tmp_path_factory.mktemp("orthanc")).start()
    try:
        yield peer
    finally:
        peer.stop()


async def _in_orthanc(
    orthanc: imaging_orthanc.OrthancPeer, study_uid: str, n: int
) -> dict[str, bytes] | None:
    """{SOP Instance UID: data set bytes} of the study in Orthanc once it holds `n` instances."""
    ids = await asyncio.to_thread(orthanc.find_instances, study_uid)
    if len(ids) < n:
        return None
    out = {}
    for orthanc_id in ids:
        blob = await asyncio.to_thread(orthanc.instance_file, orthanc_id)
        ds = pydicom.dcmread(BytesIO(blob), stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = blob[128 + 4 + 12 + ds.file_meta.FileMetaInformationGroupLength :]
    return out


async def _store(svc, directory: Path, study_uid: str, count: int) -> None:
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

    async def all_indexed() -> bool:
        return await indexed(svc, study_uid) == count

    await wait_for(all_indexed)


async def test_routing_rule_forwards_a_study_to_orthanc(
    imaging_factory, orthanc, make_ct_series, tmp_path: Path
) -> None:
    async with imaging_factory(known_aes=orthanc.known_ae) as svc:
        async with http_client(svc, "admin") as c:
            for rule in (
                {
                    "name": "CT to Orthanc",
                    "destination_ae": "ORTHANC",
                    "modality": "CT",
                    "attributes": {"BodyPartExamined": "HEAD"},
                },
                {"name": "MR to Orthanc", "destination_ae": "ORTHANC", "modality": "MR"},
            ):
                r = await c.post("/api/v1/routing/rules", json=rule)
                assert r.status_code == 201, r.text
        files = make_ct_series(tmp_path / "ct", count=5, size=64)
        study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        await _store(svc, tmp_path / "ct", study_uid, 5)

        got = await wait_for(lambda: _in_orthanc(orthanc, study_uid, 5), timeout=30)
        originals = {str(pydicom.dcmread(f).SOPInstanceUID): dataset_bytes(f) for f in files}
        assert got == originals  # every instance, data set byte for byte

        async def all_sent() -> dict | None:  # Orthanc stores before answering; the router records after
            async with http_client(svc, "radiographer") as c:
                q = (await c.get("/api/v1/routing/queue")).json()
            return q if q["waiting"] == [] and q["destinations"] else None

        queue = await wait_for(all_sent, timeout=10)
        # one job per instance: only the CT rule matched (the MR rule must not add copies)
        assert queue["destinations"] == {"ORTHANC": {"sent": 5}}


async def test_move_a_study_to_orthanc(imaging_factory, orthanc, make_ct_series, tmp_path: Path) -> None:
    async with imaging_factory(known_aes=orthanc.known_ae) as svc:
        files = make_ct_series(tmp_path / "ct", count=4, size=64)
        study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        other = make_ct_series(tmp_path / "other", count=2, size=32)  # another study: must not be moved
        other_uid = str(pydicom.dcmread(other[0]).StudyInstanceUID)
        await _store(svc, tmp_path / "ct", study_uid, 4)
        await _store(svc, tmp_path / "other", other_uid, 2)
        assert await asyncio.to_thread(orthanc.find_instances, study_uid) == []

        res = await run_tool(
            "movescu",
            "-v",
            "-S",
            "-aet",
            "VIEWER",
            "-aec",
            "HOSPITAL_PACS",
            "-aem",
            "ORTHANC",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "127.0.0.1",
            svc.settings.dicom_port,
        )
        assert res.returncode == 0, res.stderr
        # one pending response per sub-operation, then Success: no sub-operation failed (a failed or
        # refused C-STORE to Orthanc makes the final status 0xB000 or a failure)
        assert res.stderr.count("(Pending)") == 4, res.stderr
        assert "Received Final Move Response (Success)" in res.stderr, res.stderr

        got = await _in_orthanc(orthanc, study_uid, 4)
        assert got == {str(pydicom.dcmread(f).SOPInstanceUID): dataset_bytes(f) for f in files}
        assert await asyncio.to_thread(orthanc.find_instances, other_uid) == []


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_peer_cleans_up_when_orthanc_cannot_start(tmp_path: Path) -> None:
    reason = imaging_orthanc.available()
    if reason:
        pytest.fail(f"Orthanc peer unavailable: {reason}")
    # storage Orthanc cannot create: it exits at start-up, start() raises, nothing is left behind
    (tmp_path / "file").write_text("not a directory")
    peer = imaging_orthanc.OrthancPeer(
        tmp_path, config={"StorageDirectory": str(tmp_path / "file" / "storage")}
    )
    with pytest.raises(RuntimeError, match="Orthanc"):
        peer.start(timeout=20)
    assert peer.namespace not in _namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert peer._host_if not in links
    assert peer.proc is None


def test_namespaces_of_dead_test_processes_are_swept() -> None:
    reason = imaging_orthanc.available()
    if reason:
        pytest.fail(f"Orthanc peer unavailable: {reason}")
    dead = 2**22 + 12345  # above the largest possible pid (2^22): no such process
    assert not Path(f"/proc/{dead}").exists()
    stale, live = (
        f"{imaging_orthanc.NS_PREFIX}{dead}-abc123",
        f"{imaging_orthanc.NS_PREFIX}{os.getpid()}-abc123",
    )
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert stale in imaging_orthanc.sweep_stale_namespaces()
        assert stale not in _namespaces() and live in _namespaces()  # a live process's namespace stays
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
