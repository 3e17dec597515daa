"""A corrupt image is refused before it is acknowledged (Pixel Data shorter than Rows x Columns x frames x
samples x bits, broken or missing fragments, a file cut short): storescu gets a failure status with an
error comment, STOW-RS a FailedSOPSequence with FailureReason 0xC000; nothing reaches the spool or the index.
The intact images of the same sends are stored."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from hospital.testing.services import http_client

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, run_tool, wait_for

from hospital.imaging.domain.pixel_checks import check_pixel_data
from hospital.testing.waits import equals as _eq


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts
    )
    return (
        body + f"--{boundary}--\r\n".encode(),
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def _short_pixels(path: Path, out: Path) -> Path:
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.PixelData = ds.PixelData[:100]  # 100 of 8,192 bytes (64 x 64 x 16 bits)
    ds.save_as(out, enforce_file_format=True)
    return out


def _jpeg(path: Path, out: Path, fragments: list[bytes], frames: int) -> Path:
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.NumberOfFrames = 8, 8, 7, frames
    ds.PixelData = (
        encapsulate(fragments)
        if fragments
        else b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    ds["PixelData"].VR = "OB"
    ds.save_as(out, enforce_file_format=True)
    return out


async def test_c_store_refuses_short_pixel_data_and_missing_fragments(
    imaging, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=64)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    port = imaging.settings.dicom_port
    short = _short_pixels(files[1], tmp_path / "short.dcm")
    res = await run_tool(
        "storescu", "-d", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, short
    )
    out = res.stdout + res.stderr
    assert "0xc000: Error: Cannot understand" in out, out
    assert "Pixel Data 100 bytes, expected 8192" in out, out  # the Error Comment

    # Two frames announced, one fragment sent.
    one_fragment = _jpeg(files[1], tmp_path / "jpeg.dcm", [b"\xff\xd8\xff\xd9"], frames=2)
    res = await run_tool(
        "storescu", "-d", "-xy", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, one_fragment
    )
    out = res.stdout + res.stderr
    assert "0xc000: Error: Cannot understand" in out, out
    assert "1 fragment(s) for 2 frame(s)" in out, out

    ok = await run_tool("storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, files[0])
    assert ok.returncode == 0, ok.stderr
    await wait_for(lambda: _eq(indexed(imaging, study), 1))
    spooled = [p.name for p in imaging.settings.spool_path.rglob("*.dcm")]
    assert f"{pydicom.dcmread(short).SOPInstanceUID}.dcm" not in spooled


async def test_stow_refuses_a_truncated_file_with_a_reason(imaging, make_ct_series, tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=64)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    whole = files[0].read_bytes()
    truncated = files[1].read_bytes()[:-4000]  # cut inside Pixel Data
    async with http_client(imaging, "radiographer") as c:
        body, ctype = _multipart([truncated])
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 409, r.text
        failed = r.json()["00081198"]["Value"]
        assert [f["00081197"]["Value"][0] for f in failed] == [0xC000]
        assert failed[0]["00081155"]["Value"] == [str(pydicom.dcmread(files[1], force=True).SOPInstanceUID)]
        body, ctype = _multipart([whole])
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
    await wait_for(lambda: _eq(indexed(imaging, study), 1))


def test_the_check_accepts_whole_images_of_every_kind(sample_file) -> None:
    """pydicom's own sample files (native, multi-frame, RGB, JPEG, JPEG 2000, RLE) all pass."""
    names = [
        "CT_small.dcm",
        "MR_small.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "liver_1frame.dcm",
        "rtdose_rle.dcm",
        "rtdose.dcm",
        "examples_palette.dcm",
    ]
    for name in names:
        path = sample_file(name)
        meta = pydicom.filereader.read_file_meta_info(path)
        start = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
        data = path.read_bytes()[start:]
        assert check_pixel_data(str(meta.TransferSyntaxUID), data) is None, name
        # and a copy cut inside its Pixel Data is refused
        cut = data.rindex(b"\xe0\x7f\x10\x00") + 12 + 10
        assert check_pixel_data(str(meta.TransferSyntaxUID), data[:cut]) is not None, name
