"""Hand-made Part 10 framing: pydicom must read it like any other DICOM file."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from hospital.imaging.domain.part10 import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    Part10Error,
    build_file_header,
    dataset_digest,
    read_framing,
    same_dataset,
)


def _reframe(
    source: Path, target: Path, read_dataset_bytes: Callable[[Path], bytes], ae: str = "CT_HUE"
) -> bytes:
    original = pydicom.dcmread(source, stop_before_pixels=True)
    header = build_file_header(
        sop_class_uid=original.SOPClassUID,
        sop_instance_uid=original.SOPInstanceUID,
        transfer_syntax_uid=original.file_meta.TransferSyntaxUID,
        source_ae_title=ae,
    )
    target.write_bytes(header + read_dataset_bytes(source))
    return header


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"]
)
def test_pydicom_reads_hand_made_file_as_original(
    name: str, tmp_path: Path, read_dataset_bytes: Callable[[Path], bytes], sample_file: Callable[[str], Path]
) -> None:
    source = sample_file(name)
    target = tmp_path / "framed.dcm"
    _reframe(source, target, read_dataset_bytes)

    original, framed = pydicom.dcmread(source), pydicom.dcmread(target)
    assert framed == original
    meta = framed.file_meta
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert meta.SourceApplicationEntityTitle == "CT_HUE"
    assert read_dataset_bytes(target) == read_dataset_bytes(source)


def test_header_padding_and_group_length(tmp_path: Path) -> None:
    """Odd-length UIDs are NUL padded, odd-length AE titles space padded, group length exact."""
    header = build_file_header(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",  # 25 chars: odd
        sop_instance_uid="1.2.3.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        source_ae_title="ODD",
    )
    assert header[:128] == b"\x00" * 128 and header[128:132] == b"DICM"
    (tmp_path / "meta.dcm").write_bytes(header)
    meta = pydicom.filereader.read_file_meta_info(tmp_path / "meta.dcm")
    assert meta.FileMetaInformationGroupLength == len(header) - 128 - 4 - 12
    assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert meta.SourceApplicationEntityTitle == "ODD"
    assert b"1.2.840.10008.5.1.4.1.1.2\x00" in header and b"ODD " in header


def test_read_framing_finds_dataset(
    tmp_path: Path, read_dataset_bytes: Callable[[Path], bytes], sample_file: Callable[[str], Path]
) -> None:
    source = sample_file("MR_small_RLE.dcm")
    target = tmp_path / "framed.dcm"
    header = _reframe(source, target, read_dataset_bytes)
    with target.open("rb") as fp:
        assert read_framing(fp) == ("1.2.840.10008.1.2.5", len(header))
        assert fp.read() == read_dataset_bytes(source)


def test_read_framing_rejects_non_part10() -> None:
    with pytest.raises(Part10Error):
        read_framing(BytesIO(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 192" + b"\x00" * 200))


def test_same_dataset_ignores_meta_but_not_content(
    tmp_path: Path, read_dataset_bytes: Callable[[Path], bytes], sample_file: Callable[[str], Path]
) -> None:
    source = sample_file("CT_small.dcm")
    a, b, c = tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "c.dcm"
    _reframe(source, a, read_dataset_bytes, ae="CT_HUE")
    _reframe(source, b, read_dataset_bytes, ae="WORKSTATION_2")
    content = a.read_bytes()
    c.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    assert same_dataset(a, b)
    assert dataset_digest(a) == dataset_digest(b)
    assert not same_dataset(a, c)
    assert dataset_digest(a) != dataset_digest(c)
