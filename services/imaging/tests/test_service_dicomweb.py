"""DICOMweb round trip: STOW-RS, then QIDO-RS, WADO-RS (instances, series, study, metadata), rendered and
thumbnail PNGs, and role checks."""

from __future__ import annotations

import re
import sys
import uuid
from io import BytesIO
from pathlib import Path

import pydicom
from PIL import Image

from hospital.testing.services import http_client
from hospital.testing.waits import equals as _eq

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import dataset_bytes, indexed, wait_for


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _parts(response) -> list[bytes]:
    boundary = re.search(r"boundary=([^;]+)", response.headers["content-type"]).group(1).strip('"').encode()
    out = []
    for chunk in response.content.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(chunk.partition(b"\r\n\r\n")[2][:-2])
    return out


async def test_stow_qido_wado_round_trip(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=64)
    first = pydicom.dcmread(files[0])
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    broken = pydicom.dcmread(files[2])
    del broken.SeriesInstanceUID
    buf = BytesIO()
    broken.save_as(buf, enforce_file_format=True)
    body, ctype = _multipart([files[0].read_bytes(), files[1].read_bytes(), buf.getvalue(), b"not dicom"])
    async with http_client(imaging, "radiographer") as c:
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 202, r.text  # some stored, some failed
        res = r.json()
        assert len(res["00081199"]["Value"]) == 2  # ReferencedSOPSequence
        failed = res["00081198"]["Value"]  # FailedSOPSequence with FailureReason
        assert sorted(f["00081197"]["Value"][0] for f in failed) == [0xA900, 0xC000]
        r = await c.post("/dicomweb/studies", content=b"x", headers={"Content-Type": "application/dicom"})
        assert r.status_code == 422 and r.json()["code"] == "stow.content_type"
    await wait_for(lambda: _eq(indexed(imaging, study), 2))

    async with http_client(imaging, "doctor") as c:
        r = await c.get(
            "/dicomweb/studies", params={"PatientID": "BN-2025-000123", "StudyInstanceUID": study}
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom+json")
        (found,) = r.json()
        assert found["00100010"]["Value"][0]["Alphabetic"] == "Phạm^Minh Tuấn"
        assert found["00201208"]["Value"] == [2] and found["00080061"]["Value"] == ["CT"]
        r = await c.get(
            "/dicomweb/studies", params={"00100010": "pham*", "StudyDate": "20250301-20250331", "limit": "5"}
        )
        assert study in {s["0020000D"]["Value"][0] for s in r.json()}
        assert (await c.get("/dicomweb/studies", params={"StudyInstanceUID": "1.2.3.4"})).status_code == 204
        assert (await c.get("/dicomweb/studies", params={"Bogus": "x"})).status_code == 422
        r = await c.get(f"/dicomweb/studies/{study}/series")
        assert [s["0020000E"]["Value"][0] for s in r.json()] == [series]
        r = await c.get(f"/dicomweb/studies/{study}/series/{series}/instances")
        sops = sorted(i["00080018"]["Value"][0] for i in r.json())
        assert sops == sorted([str(first.SOPInstanceUID), str(pydicom.dcmread(files[1]).SOPInstanceUID)])

        r = await c.get(f"/dicomweb/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}")
        assert r.status_code == 200 and "multipart/related" in r.headers["content-type"]
        (part,) = _parts(r)
        (tmp_path / "w.dcm").write_bytes(part)
        assert dataset_bytes(tmp_path / "w.dcm") == dataset_bytes(files[0])
        assert len(_parts(await c.get(f"/dicomweb/studies/{study}"))) == 2
        assert len(_parts(await c.get(f"/dicomweb/studies/{study}/series/{series}"))) == 2
        meta = (await c.get(f"/dicomweb/studies/{study}/metadata")).json()
        assert len(meta) == 2 and meta[0]["00080060"]["Value"] == ["CT"]
        assert set(meta[0]["7FE00010"]) == {"vr", "BulkDataURI"}  # pixel data by reference, never inline

        r = await c.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}/rendered",
            headers={"Accept": "image/png"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(BytesIO(r.content)).size == (64, 64)
        r = await c.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}/thumbnail",
            params={"viewport": "32,32"},
        )
        assert Image.open(BytesIO(r.content)).size == (32, 32)
        assert (await c.get(f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3")).status_code == 404
        # a doctor reads but may not store
        assert (
            await c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        ).status_code == 403
    async with http_client(imaging, "cashier") as c:
        assert (await c.get("/dicomweb/studies")).status_code == 403
    async with http_client(imaging) as c:
        assert (await c.get("/dicomweb/studies")).status_code == 401
