"""Every DICOMweb endpoint the gateway serves, through dicomweb-client (the library behind Slim and highdicom)
and through raw HTTP, on one CT series: QIDO-RS (studies, series, instances at every level), WADO-RS
(study, series, instance, metadata, frames, rendered, thumbnail, bulk data) and STOW-RS; both clients get
the same answers. The metadata's BulkDataURIs (pixel data, a large overlay, the icon's pixel data inside a
sequence) resolve through dicomweb-client to the stored values, so a client rebuilds the instance from the
metadata alone."""

from __future__ import annotations

import asyncio
import re
import uuid
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset

from hospital.testing.services import http_client, issuer_for

PATIENT_ID = "BN-2025-000123"
JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def _client(svc, role: str) -> DICOMwebClient:
    token = issuer_for(svc).mint_for_role(role)
    return DICOMwebClient(
        url=f"http://127.0.0.1:{svc.settings.http_port}/dicomweb",
        headers={"Authorization": f"Bearer {token}"},
    )


def _parts(response) -> list[bytes]:
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    boundary = re.search(r"boundary=([^;]+)", ctype).group(1).strip('"').encode()
    out = []
    for chunk in response.content.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(chunk.partition(b"\r\n\r\n")[2][:-2])
    return out


def _with_bulk_attributes(path: Path) -> Dataset:
    """A CT slice with a 128x128 overlay (2 KiB of OverlayData) and an icon (40x40, 1600 bytes of pixel
    data inside IconImageSequence): binary values over the 1 KiB bulk data threshold."""
    ds = pydicom.dcmread(path)
    ds.add_new(0x60000010, "US", 128)  # OverlayRows
    ds.add_new(0x60000011, "US", 128)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    ds.add_new(0x60003000, "OW", np.arange(1024, dtype=np.uint16).tobytes())  # OverlayData, 2048 bytes
    icon = Dataset()
    icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
    icon.Rows = icon.Columns = 40
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PixelData = (np.arange(1600) % 251).astype(np.uint8).tobytes()
    ds.IconImageSequence = [icon]
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


async def test_every_dicomweb_endpoint_through_dicomweb_client_and_raw_http(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=3, size=48)
    datasets = [_with_bulk_attributes(f) for f in files]
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    by_sop = dict(zip(sops, datasets, strict=True))
    writer, reader = _client(imaging, "radiographer"), _client(imaging, "radiologist")
    base = f"http://127.0.0.1:{imaging.settings.http_port}/dicomweb"
    inst = f"/dicomweb/studies/{study}/series/{series}/instances/{sops[0]}"

    # STOW-RS: two instances through dicomweb-client, the third as raw HTTP to the study's URL.
    stored = await asyncio.to_thread(writer.store_instances, datasets[:2])
    assert [i.ReferencedSOPInstanceUID for i in stored.ReferencedSOPSequence] == sops[:2]
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
        assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [sops[2]]

    async with http_client(imaging, "radiologist") as c:
        # QIDO-RS: the same answers from both clients, at every level and scope.
        searches = [
            ("/studies", reader.search_for_studies, {"search_filters": {"PatientID": PATIENT_ID}}),
            ("/series", reader.search_for_series, {"search_filters": {"StudyInstanceUID": study}}),
            (f"/studies/{study}/series", reader.search_for_series, {"study_instance_uid": study}),
            ("/instances", reader.search_for_instances, {"search_filters": {"StudyInstanceUID": study}}),
            (f"/studies/{study}/instances", reader.search_for_instances, {"study_instance_uid": study}),
            (
                f"/studies/{study}/series/{series}/instances",
                reader.search_for_instances,
                {"study_instance_uid": study, "series_instance_uid": series},
            ),
        ]
        for path, method, kwargs in searches:
            via_client = await asyncio.to_thread(method, **kwargs)
            params = dict(kwargs.get("search_filters", {}))
            raw = await c.get(f"/dicomweb{path}", params=params, headers={"Accept": "application/dicom+json"})
            assert raw.status_code == 200, (path, raw.text)
            assert via_client == raw.json(), path
            found = {d["0020000D"]["Value"][0] for d in via_client}
            assert found == {study}, path
            if "instances" in path:
                assert sorted(d["00080018"]["Value"][0] for d in via_client) == sorted(sops), path
        none = await asyncio.to_thread(reader.search_for_studies, search_filters={"PatientID": "BN-KHONG-CO"})
        assert none == []
        assert (await c.get("/dicomweb/studies", params={"PatientID": "BN-KHONG-CO"})).status_code == 204

        # WADO-RS instances: study, series, instance, each data set as stored.
        for got in (
            await asyncio.to_thread(reader.retrieve_study, study),
            await asyncio.to_thread(reader.retrieve_series, study, series),
            [await asyncio.to_thread(reader.retrieve_instance, study, series, sops[0])],
        ):
            assert got and all(d.PixelData == by_sop[str(d.SOPInstanceUID)].PixelData for d in got)
        assert len(await asyncio.to_thread(reader.retrieve_study, study)) == 3
        for path, count in (
            (f"/dicomweb/studies/{study}", 3),
            (f"/dicomweb/studies/{study}/series/{series}", 3),
            (inst, 1),
        ):
            r = await c.get(path, headers={"Accept": 'multipart/related; type="application/dicom"'})
            assert r.status_code == 200 and len(_parts(r)) == count, path
            for part in _parts(r):
                ds = pydicom.dcmread(BytesIO(part))  # the data set as sent (the meta header is the gateway's)
                assert ds == by_sop[str(ds.SOPInstanceUID)]

        # Metadata at three levels; bulk data by reference, and the references resolve.
        metadata = {
            "study": await asyncio.to_thread(reader.retrieve_study_metadata, study),
            "series": await asyncio.to_thread(reader.retrieve_series_metadata, study, series),
            "instance": await asyncio.to_thread(reader.retrieve_instance_metadata, study, series, sops[0]),
        }
        assert len(metadata["study"]) == len(metadata["series"]) == 3
        raw_meta = (await c.get(f"{inst}/metadata")).json()
        assert raw_meta == [metadata["instance"]]
        one = metadata["instance"]
        assert one["7FE00010"] == {
            "vr": "OW",
            "BulkDataURI": f"{base}/studies/{study}/series/{series}/instances/{sops[0]}/bulkdata/7FE00010",
        }
        assert one["60003000"]["BulkDataURI"].endswith(f"/instances/{sops[0]}/bulkdata/60003000")
        icon_pixels = one["00880200"]["Value"][0]["7FE00010"]
        assert icon_pixels["BulkDataURI"].endswith(f"/instances/{sops[0]}/bulkdata/00880200/0/7FE00010")
        for item in metadata["study"]:
            sop = item["00080018"]["Value"][0]
            original = by_sop[sop]
            pixels = await asyncio.to_thread(reader.retrieve_bulkdata, item["7FE00010"]["BulkDataURI"])
            assert pixels == [original.PixelData]
            overlay = await asyncio.to_thread(reader.retrieve_bulkdata, item["60003000"]["BulkDataURI"])
            assert overlay == [original[0x60003000].value]

        def rebuild(item: dict) -> Dataset:
            # dicomweb-client's parts are bytearrays; pydicom takes bytes as one binary value
            return Dataset.from_json(
                item, bulk_data_uri_handler=lambda uri: bytes(reader.retrieve_bulkdata(uri)[0])
            )

        rebuilt = await asyncio.to_thread(rebuild, one)
        original = by_sop[sops[0]]
        assert rebuilt.PixelData == original.PixelData
        assert rebuilt[0x60003000].value == original[0x60003000].value
        assert rebuilt.IconImageSequence[0].PixelData == original.IconImageSequence[0].PixelData
        assert rebuilt.PatientName == original.PatientName and rebuilt.Rows == original.Rows
        r = await c.get(f"{inst}/bulkdata/00880200/0/7FE00010")
        assert r.status_code == 200 and _parts(r) == [original.IconImageSequence[0].PixelData]
        for bad in ("00100010", "7FE00011", "00880200/3/7FE00010", "zz"):
            r = await c.get(f"{inst}/bulkdata/{bad}")
            assert r.status_code == 404 and r.json()["code"] == "dicomweb.bulkdata_not_found", (bad, r.text)

        # Frames: native little-endian pixels.
        frames = await asyncio.to_thread(reader.retrieve_instance_frames, study, series, sops[0], [1])
        assert frames == [original.PixelData]
        r = await c.get(
            f"{inst}/frames/1", headers={"Accept": 'multipart/related; type="application/octet-stream"'}
        )
        assert r.status_code == 200 and _parts(r) == [original.PixelData]

        # Rendered: instance, frame, series; JPEG and PNG, with window and viewport.
        params = {"window": "40,400", "viewport": "24,24"}
        rendered = {
            "instance": await asyncio.to_thread(
                reader.retrieve_instance_rendered, study, series, sops[0], ("image/jpeg",), params
            ),
            "frame": await asyncio.to_thread(
                reader.retrieve_instance_frames_rendered, study, series, sops[0], [1], ("image/png",), params
            ),
            "series": await asyncio.to_thread(
                reader.retrieve_series_rendered, study, series, ("image/jpeg",), params
            ),
        }
        assert rendered["instance"].startswith(JPEG) and rendered["series"].startswith(JPEG)
        assert rendered["frame"].startswith(PNG)
        assert Image.open(BytesIO(rendered["frame"])).size == (24, 24)
        for path, accept, magic in (
            (f"{inst}/rendered", "image/jpeg", JPEG),
            (f"{inst}/frames/1/rendered", "image/png", PNG),
            (f"/dicomweb/studies/{study}/series/{series}/rendered", "image/jpeg", JPEG),
        ):
            r = await c.get(path, params=params, headers={"Accept": accept})
            assert r.status_code == 200 and r.content.startswith(magic), path
        raw_png = await c.get(f"{inst}/frames/1/rendered", params=params, headers={"Accept": "image/png"})
        assert raw_png.content == rendered["frame"]  # PNG is lossless and deterministic

        # Thumbnails (dicomweb-client has no thumbnail method: its HTTP session, as a viewer built on it).
        for path in (
            f"{inst}/thumbnail",
            f"{inst}/frames/1/thumbnail",
            f"/dicomweb/studies/{study}/series/{series}/thumbnail",
        ):
            via_client = await asyncio.to_thread(
                reader._http_get,
                f"http://127.0.0.1:{imaging.settings.http_port}{path}",
                None,
                {"Accept": "image/png"},
            )
            raw = await c.get(path, headers={"Accept": "image/png"})
            assert via_client.status_code == raw.status_code == 200, path
            assert via_client.content == raw.content and raw.content.startswith(PNG), path
            assert max(Image.open(BytesIO(raw.content)).size) <= 128
