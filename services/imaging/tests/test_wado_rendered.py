"""WADO-RS rendered, thumbnail and frames over images as modalities send them (stored by STOW-RS): JPEG
baseline (YBR), JPEG-LS, JPEG 2000 and RLE multi-frame decoded with pydicom's pixel-data plugins; window,
viewport and quality parameters; MONOCHROME1; raw frames; clear errors for a missing or undecodable frame."""

from __future__ import annotations

import uuid
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from hospital.testing.services import http_client

SAMPLES = ["SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_2frame.dcm"]


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts
    )
    return (
        body + f"--{boundary}--\r\n".encode(),
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _url(ds: pydicom.Dataset) -> str:
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )


async def test_rendered_thumbnail_and_frames_of_compressed_images(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    samples = [pydicom.dcmread(get_testdata_file(name)) for name in SAMPLES]
    ct = pydicom.dcmread(make_ct_series(tmp_path / "ct", count=1, size=64)[0])
    mono1 = pydicom.dcmread(make_ct_series(tmp_path / "ct1", count=1, size=64)[0])
    mono1.PhotometricInterpretation = "MONOCHROME1"
    mono1.PixelData = ct.PixelData
    del mono1.RescaleIntercept, mono1.RescaleSlope
    del ct.RescaleIntercept, ct.RescaleSlope
    broken = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    broken.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    broken.PixelData = encapsulate(
        [b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9"]
    )  # fragments fine, bitstream not
    body, ctype = _multipart([_bytes(d) for d in [*samples, ct, mono1, broken]])
    async with http_client(imaging, "radiographer") as c:
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text

    async with http_client(imaging, "radiologist") as c:
        for ds in samples:
            r = await c.get(f"{_url(ds)}/rendered")
            assert r.status_code == 200, (ds.file_meta.TransferSyntaxUID.name, r.text)
            assert r.headers["content-type"] == "image/jpeg"
            image = Image.open(BytesIO(r.content))
            assert image.size == (ds.Columns, ds.Rows)
            if ds.SamplesPerPixel == 3:  # the colours survive decoding and YBR -> RGB
                expected = pixel_array(ds, index=0).astype(np.float64)
                if ds.BitsAllocated > 8:
                    expected = expected / (2**ds.BitsStored - 1) * 255
                got = np.asarray(image.convert("RGB"), dtype=np.float64)
                assert np.abs(got.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 6, ds.SOPInstanceUID

        rle = samples[3]
        r = await c.get(f"{_url(rle)}/frames/2")
        assert r.status_code == 200 and "application/octet-stream" in r.headers["content-type"]
        boundary = r.headers["content-type"].split("boundary=")[1].strip('"').encode()
        part = r.content.split(b"--" + boundary)[1].partition(b"\r\n\r\n")[2][:-2]
        assert (
            part
            == pixel_array(rle, index=1, raw=True)
            .astype("<u2" if rle.BitsAllocated == 16 else "u1")
            .tobytes()
        )
        r = await c.get(f"{_url(rle)}/frames/2/rendered", headers={"Accept": "image/png"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        r = await c.get(f"{_url(rle)}/frames/3/rendered")
        assert r.status_code == 404 and r.json()["code"] == "dicomweb.frame_not_found"

        # Window, MONOCHROME1, viewport, quality.
        narrow = await c.get(
            f"{_url(ct)}/rendered", params={"window": "100,50"}, headers={"Accept": "image/png"}
        )
        wide = await c.get(
            f"{_url(ct)}/rendered", params={"window": "2048,4096"}, headers={"Accept": "image/png"}
        )
        a = np.asarray(Image.open(BytesIO(narrow.content)), dtype=np.int16)
        b = np.asarray(Image.open(BytesIO(wide.content)), dtype=np.int16)
        assert (a == 255).mean() > 0.9 and 0.2 < (b / 255).mean() < 0.8  # most pixels above a narrow window
        inverted = await c.get(
            f"{_url(mono1)}/rendered", params={"window": "2048,4096"}, headers={"Accept": "image/png"}
        )
        m1 = np.asarray(Image.open(BytesIO(inverted.content)), dtype=np.int16)
        assert np.abs((255 - m1) - b).max() <= 1
        thumb = await c.get(f"{_url(samples[1])}/thumbnail", params={"viewport": "64,64"})
        assert max(Image.open(BytesIO(thumb.content)).size) == 64
        series = await c.get(
            f"/dicomweb/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/thumbnail"
        )
        assert series.status_code == 200 and max(Image.open(BytesIO(series.content)).size) <= 128
        low = await c.get(f"{_url(samples[0])}/rendered", params={"quality": "5"})
        high = await c.get(f"{_url(samples[0])}/rendered", params={"quality": "95"})
        assert len(low.content) < len(high.content)
        bad = await c.get(f"{_url(ct)}/rendered", params={"window": "40,-5"})
        assert bad.status_code == 422 and bad.json()["code"] == "dicomweb.render_parameters"

        # A frame that cannot be decoded: a clear error, not a 500.
        r = await c.get(f"{_url(broken)}/rendered")
        assert r.status_code == 422 and r.json()["code"] == "dicomweb.not_renderable", r.text
        assert "cannot be decoded" in r.json()["detail"]
        r = await c.get(f"{_url(broken)}/frames/1")
        assert r.status_code == 422, r.text


def test_rendered_cache_keeps_the_most_recently_used_within_its_bytes() -> None:
    """ADR 0319: least recently used out first, bounded by bytes; an image over a quarter of the limit is
    not kept; a limit of 0 keeps nothing."""
    from hospital.imaging.api.dicomweb import RenderedCache

    cache = RenderedCache(400)
    for key in ("a", "b", "c"):
        cache.put(key, key.encode() * 100)
    assert cache.get("a") == b"a" * 100  # a is now the most recently used
    cache.put("d", b"d" * 100)
    cache.put("e", b"e" * 100)  # over 400 bytes: b, the least recently used, goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.size == 400
    cache.put("big", b"x" * 101)
    assert cache.get("big") is None
    off = RenderedCache(0)
    off.put("a", b"a")
    assert off.get("a") is None
