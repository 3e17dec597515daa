"""Every access to images is audited, through the public doors: C-STORE (storescu), C-FIND (findscu, study
root and worklist), C-MOVE (movescu), C-GET (getscu), and DICOMweb QIDO-RS, WADO-RS (instances, metadata,
rendered) and STOW-RS. Each record names who (token subject, or ``ae:<calling AE>``), from where, and
which patients and studies were shown."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pydicom
from sqlalchemy import select

from hospital.chassis.rpc import call_metadata
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import equals as _eq

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, run_tool, wait_for

PATIENT_ID = "BN-2025-000123"


async def _audit(svc, action: str) -> list[Any]:
    """The audit records of `action`, oldest first, with ``detail`` and ``actor_roles`` decoded."""
    from hospital.chassis.db import audit_log_table as a

    async with svc.rt.db.session() as s:
        rows = (await s.execute(select(a).where(a.c.action == action).order_by(a.c.at))).all()

    def decoded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return [
        SimpleNamespace(
            **{**r._mapping, "detail": decoded(r.detail), "actor_roles": r.actor_roles.split(",")}
        )
        for r in rows
    ]


async def test_dicom_and_dicomweb_access_is_audited(imaging_factory, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=16)
    first = pydicom.dcmread(files[0])
    study, series, sop = str(first.StudyInstanceUID), str(first.SeriesInstanceUID), str(first.SOPInstanceUID)
    dest_port = free_port()
    async with imaging_factory(known_aes=f"DEST=127.0.0.1:{dest_port}") as svc:
        port = svc.settings.dicom_port
        res = await run_tool(
            "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
        )
        assert res.returncode == 0, res.stderr
        await wait_for(lambda: _eq(indexed(svc, study), 2))
        stored = await _audit(svc, "imaging_instance.store")
        assert [(r.actor, r.patient_id, r.resource_id, r.detail["count"]) for r in stored] == [
            ("ae:CT_HUE", PATIENT_ID, study, 2)
        ]

        out = tmp_path / "find"
        out.mkdir()
        res = await run_tool(
            "findscu",
            "-S",
            "-aet",
            "VIEWER",
            "-aec",
            "HOSPITAL_PACS",
            "-X",
            "-od",
            out,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=pham*",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            port,
        )
        assert res.returncode == 0, res.stderr
        (found,) = await _audit(svc, "imaging_study.find")
        assert found.actor == "ae:VIEWER" and found.source.startswith("127.0.0.1:")
        assert found.patient_id == PATIENT_ID and found.detail["studies"] == [study]
        assert found.detail["query"]["PatientName"] == "pham*" and found.detail["count"] == 1

        res = await run_tool(
            "findscu", "-W", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "-k", "PatientID", "127.0.0.1", port
        )
        assert res.returncode == 0, res.stderr
        (worklist,) = await _audit(svc, "imaging_worklist.find")
        assert worklist.actor == "ae:CT_HUE" and worklist.detail["count"] == 0

        got = tmp_path / "get"
        got.mkdir()
        res = await run_tool(
            "getscu",
            "-S",
            "-aet",
            "VIEWER",
            "-aec",
            "HOSPITAL_PACS",
            "-od",
            got,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
            "127.0.0.1",
            port,
        )
        assert res.returncode == 0, res.stderr
        (get,) = await _audit(svc, "imaging_study.get")
        assert (get.actor, get.patient_id, get.resource_id, get.detail["count"]) == (
            "ae:VIEWER",
            PATIENT_ID,
            study,
            2,
        )

        moved = tmp_path / "moved"
        moved.mkdir()
        scp = await asyncio.create_subprocess_exec(
            "storescp", "-aet", "DEST", "-od", str(moved), str(dest_port)
        )
        try:
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
                "QueryRetrieveLevel=SERIES",
                "-k",
                f"StudyInstanceUID={study}",
                "-k",
                f"SeriesInstanceUID={series}",
                "127.0.0.1",
                port,
            )
            assert res.returncode == 0, res.stderr
        finally:
            scp.terminate()
            await scp.wait()
        (move,) = await _audit(svc, "imaging_study.move")
        assert (move.actor, move.patient_id, move.detail["destination"], move.detail["count"]) == (
            "ae:VIEWER",
            PATIENT_ID,
            "DEST",
            2,
        )

        async with http_client(svc, "radiologist") as c:
            r = await c.get("/dicomweb/studies", params={"PatientID": PATIENT_ID})
            assert r.status_code == 200
            r = await c.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}")
            assert r.status_code == 200
            r = await c.get(f"/dicomweb/studies/{study}/metadata")
            assert r.status_code == 200
            r = await c.get(f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered")
            assert r.status_code == 200
            # Nothing found is audited too (the query was made).
            r = await c.get("/dicomweb/studies", params={"PatientID": "BN-0000-000000"})
            assert r.status_code == 204
        searches = await _audit(svc, "imaging_study.search")
        assert [(s.detail["count"], s.patient_id, s.detail["query"]["PatientID"]) for s in searches] == [
            (1, PATIENT_ID, PATIENT_ID),
            (0, None, "BN-0000-000000"),
        ]
        assert all(list(s.actor_roles) == ["radiologist"] for s in searches)
        retrieves = await _audit(svc, "imaging_study.retrieve")
        assert [(x.detail["what"], x.detail["count"], x.patient_id, x.resource_id) for x in retrieves] == [
            ("instances", 1, PATIENT_ID, study),
            ("metadata", 2, PATIENT_ID, study),
            ("rendered", 1, PATIENT_ID, study),
        ]

        other = make_ct_series(tmp_path / "stow", count=1, size=16)
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + other[0].read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        async with http_client(svc, "radiographer") as c:
            r = await c.post(
                "/dicomweb/studies",
                content=body,
                headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
            )
            assert r.status_code == 200, r.text
        (stow,) = await _audit(svc, "imaging_instance.stow")
        assert (stow.patient_id, stow.detail["stored"], stow.detail["refused"]) == (PATIENT_ID, 1, 0)
        assert stow.detail["studies"] == [str(pydicom.dcmread(other[0]).StudyInstanceUID)]
        # The STOW-RS instance is not recorded a second time by the pipeline as a C-STORE.
        await wait_for(lambda: _eq(indexed(svc, str(pydicom.dcmread(other[0]).StudyInstanceUID)), 1))
        assert len(await _audit(svc, "imaging_instance.store")) == 1


async def test_study_and_order_reads_over_the_api_are_audited(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=1, size=16)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    res = await run_tool(
        "storescu",
        "-aet",
        "CT_HUE",
        "-aec",
        "HOSPITAL_PACS",
        "127.0.0.1",
        imaging.settings.dicom_port,
        *files,
    )
    assert res.returncode == 0, res.stderr
    await wait_for(lambda: _eq(indexed(imaging, study), 1))
    async with http_client(imaging, "radiologist") as c:
        r = await c.get(f"/api/v1/studies/{study}")
        assert r.status_code == 200 and r.json()["patient_code"] == PATIENT_ID
        assert (await c.get("/api/v1/studies/1.2.3.4")).status_code == 404  # nothing shown, nothing read
        assert (await c.get("/api/v1/orders")).status_code == 200
    read = (await _audit(imaging, "imaging_study.read"))[0]
    assert (read.patient_id, read.resource_id, read.actor_roles) == (PATIENT_ID, study, ["radiologist"])
    assert read.detail["studies"] == [study] and read.detail["patient_ids"] == [PATIENT_ID]
    assert read.actor.startswith("user:") and read.source.startswith("127.0.0.1")
    md = call_metadata(issuer_for(imaging).mint_for_role("doctor"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{imaging.settings.grpc_port}") as ch:
        stub = pb_grpc.ImagingServiceStub(ch)
        got = await stub.GetStudy(pb.GetStudyRequest(study_instance_uid=study), metadata=md)
        found = await stub.ListStudies(pb.ListStudiesRequest(patient_code=PATIENT_ID), metadata=md)
    assert got.patient_code == PATIENT_ID and [x.study_instance_uid for x in found.items] == [study]
    reads = await _audit(imaging, "imaging_study.read")
    assert [(r.patient_id, r.actor_roles, r.source.startswith("ipv4:127.0.0.1")) for r in reads[1:]] == [
        (PATIENT_ID, ["doctor"], True)
    ]
    (search,) = await _audit(imaging, "imaging_study.search")
    assert search.patient_id == PATIENT_ID and search.detail["query"]["PatientID"] == PATIENT_ID
    (listed,) = await _audit(imaging, "imaging_order.list")
    assert listed.resource_type == "ImagingOrder" and listed.detail["count"] == 0
    # The review lists name patients too: each listing is audited with what it showed.
    async with http_client(imaging, "radiographer") as c:

        async def waiting() -> list[dict[str, Any]]:
            return (await c.get("/api/v1/reconciliation")).json()["items"]

        rec = await wait_for(waiting)  # no order names the study: once received, it waits for one
        mpps = (await c.get("/api/v1/mpps")).json()["items"]
        conflicts = (await c.get("/api/v1/conflicts")).json()["items"]
    assert [r["study_instance_uid"] for r in rec] == [study]
    rec_audits = await _audit(imaging, "imaging_reconciliation.list")
    assert all(a.actor_roles == ["radiographer"] for a in rec_audits)  # every listing, empty ones too
    assert (rec_audits[-1].patient_id, rec_audits[-1].detail["studies"]) == (PATIENT_ID, [study])
    (mpps_audit,) = await _audit(imaging, "imaging_mpps.list")
    assert mpps_audit.resource_type == "ImagingMpps" and mpps_audit.detail["count"] == len(mpps)
    (conflict_audit,) = await _audit(imaging, "imaging_conflict.list")
    assert conflict_audit.detail["count"] == len(conflicts)
