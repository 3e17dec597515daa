"""STOW-RS as real clients use it (dicomweb-client, the library behind Slim and highdicom, and raw HTTP):
a 200 means the instances are queryable and retrievable at once, and the response carries the study's and
each instance's Retrieve URL, which resolve."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient

from hospital.testing.services import http_client, issuer_for


def _client(svc, role: str) -> DICOMwebClient:
    token = issuer_for(svc).mint_for_role(role)
    return DICOMwebClient(
        url=f"http://127.0.0.1:{svc.settings.http_port}/dicomweb",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_stored_instances_are_at_once_queryable_and_retrievable(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=32)
    datasets = [pydicom.dcmread(f) for f in files]
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    base = f"http://127.0.0.1:{imaging.settings.http_port}/dicomweb"
    writer, reader = _client(imaging, "radiographer"), _client(imaging, "radiologist")

    response = await asyncio.to_thread(writer.store_instances, datasets[:2])
    assert response.RetrieveURL == f"{base}/studies/{study}"
    assert [item.RetrieveURL for item in response.ReferencedSOPSequence] == [
        f"{base}/studies/{study}/series/{series}/instances/{ds.SOPInstanceUID}" for ds in datasets[:2]
    ]
    # No waiting: the 200 means indexed.
    found = await asyncio.to_thread(reader.search_for_instances, study)
    assert sorted(f["00080018"]["Value"][0] for f in found) == sorted(
        str(d.SOPInstanceUID) for d in datasets[:2]
    )
    got = await asyncio.to_thread(reader.retrieve_instance, study, series, str(datasets[1].SOPInstanceUID))
    assert got.SOPInstanceUID == datasets[1].SOPInstanceUID and got.PixelData == datasets[1].PixelData

    # Raw HTTP, to a study's URL; then every Retrieve URL of the answer resolves.
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + files[2].read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    async with http_client(imaging, "radiographer") as c:
        r = await c.post(
            f"/dicomweb/studies/{study}",
            content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
        )
        assert r.status_code == 200, r.text
        answer = r.json()
    instance_url = answer["00081199"]["Value"][0]["00081190"]["Value"][0]
    assert answer["00081190"]["Value"] == [f"{base}/studies/{study}"]
    async with http_client(imaging, "radiologist") as c:
        r = await c.get(instance_url.removeprefix(f"http://127.0.0.1:{imaging.settings.http_port}"))
        assert r.status_code == 200
        r = await c.get(f"/dicomweb/studies/{study}/instances")
        assert r.status_code == 200 and len(r.json()) == 3
    whole = await asyncio.to_thread(reader.retrieve_study, study)
    assert len(whole) == 3
    assert sorted(str(d.SOPInstanceUID) for d in whole) == sorted(str(d.SOPInstanceUID) for d in datasets)
