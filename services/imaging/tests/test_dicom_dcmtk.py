"""The gateway against a third-party peer: dcmtk's echoscu and storescu."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from hospital.imaging.adapters.spool import Spool, SpoolOutcome
from hospital.imaging.api.dicom import DicomConfig, DicomServer, StoredInstance, start_dicom_server
from hospital.imaging.domain.header import read_index_attributes
from hospital.imaging.domain.part10 import read_framing

Completed = subprocess.CompletedProcess[str]
DcmtkRunner = Callable[..., Completed]
ServerFactory = Callable[..., DicomServer]

# (pydicom sample, dcmconv options giving the transfer syntax to send in, storescu proposal option)
SAMPLES = [
    ("CT_small.dcm", [], []),  # Explicit VR Little Endian, storescu's default proposal
    ("CT_small.dcm", ["+ti"], ["-xi"]),  # Implicit VR Little Endian
    ("CT_small.dcm", ["+tb"], ["-xb"]),  # Explicit VR Big Endian (retired)
    ("CT_small.dcm", ["+td"], ["-xd"]),  # Deflated Explicit VR Little Endian
    ("MR_small_implicit.dcm", [], ["-xi"]),
    ("MR_small_bigendian.dcm", [], ["-xb"]),
    ("SC_rgb_jpeg_dcmtk.dcm", [], ["-xy"]),  # JPEG Baseline
    ("JPGExtended.dcm", [], ["-xx"]),  # JPEG Extended 12-bit
    ("SC_rgb_jpeg_gdcm.dcm", [], ["-xs"]),  # JPEG Lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", [], ["-xt"]),  # JPEG-LS lossless
    ("MR_small_jp2klossless.dcm", [], ["-xv"]),  # JPEG 2000 lossless
    ("JPEG2000.dcm", [], ["-xw"]),  # JPEG 2000
    ("MR_small_RLE.dcm", [], ["-xr"]),  # RLE lossless
    ("SC_rgb_rle_2frame.dcm", [], ["-xr"]),  # multi-frame RLE
    ("waveform_ecg.dcm", [], []),  # not an image
    ("test-SR.dcm", [], []),  # structured report (nested sequences)
]


def _store(
    dcmtk: DcmtkRunner, port: int, *options: str, files: list[str | Path], aet: str = "CT_HUE"
) -> Completed:
    """storescu [options] peer port files..."""
    return dcmtk("storescu", "-aet", aet, "-aec", "HOSPITAL_PACS", *options, "127.0.0.1", port, *files)


def _spooled_dataset(path: Path) -> tuple[str, bytes]:
    with path.open("rb") as fp:
        syntax, _ = read_framing(fp)
        return syntax, fp.read()


def test_echoscu(start_server: ServerFactory, dcmtk: DcmtkRunner) -> None:
    server = start_server()
    result = dcmtk("echoscu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", server.address[1])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "conversion", "proposal"),
    SAMPLES,
    ids=[f"{name}{''.join(option)}" for name, _, option in SAMPLES],
)
def test_storescu_bytes_arrive_unchanged(
    name: str,
    conversion: list[str],
    proposal: list[str],
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    start_server: ServerFactory,
    dcmtk: DcmtkRunner,
    read_dataset_bytes: Callable[[Path], bytes],
    sample_file: Callable[[str], Path],
) -> None:
    # dcmtk re-encodes what it sends (drops group lengths and trailing padding), so
    # the sample is first normalised by dcmtk itself: the file sent then goes on the
    # wire byte for byte, and must come out of the spool byte for byte.
    sent = tmp_path / "sent.dcm"
    converted = dcmtk("dcmconv", "-g", "-p", *conversion, sample_file(name), sent)
    assert converted.returncode == 0, converted.stderr
    server = start_server()

    result = _store(dcmtk, server.address[1], *proposal, files=[sent])

    assert result.returncode == 0, result.stderr
    (entry,) = spool.pending()
    original = pydicom.dcmread(sent)
    syntax, spooled = _spooled_dataset(entry.path)
    assert syntax == original.file_meta.TransferSyntaxUID
    assert spooled == read_dataset_bytes(sent)
    received = pydicom.dcmread(entry.path)
    assert received == original
    assert received.file_meta.SourceApplicationEntityTitle == "CT_HUE"

    (report,) = stored
    assert report.outcome is SpoolOutcome.STORED and report.entry == entry
    assert report.calling_ae_title == "CT_HUE"
    assert report.index == read_index_attributes(entry.path)
    assert report.index.sop_instance_uid == original.SOPInstanceUID == entry.sop_instance_uid
    assert report.index.study_instance_uid == original.StudyInstanceUID
    assert report.index.series_instance_uid == original.SeriesInstanceUID
    assert report.index.sop_class_uid == original.SOPClassUID
    assert report.index.transfer_syntax_uid == syntax
    assert report.index.size == entry.path.stat().st_size


def test_storescu_transcoded_on_the_fly(
    tmp_path: Path,
    spool: Spool,
    start_server: ServerFactory,
    dcmtk: DcmtkRunner,
    sample_file: Callable[[str], Path],
) -> None:
    """storescu converts Explicit to Implicit VR itself; we keep what it sent."""
    source = tmp_path / "explicit.dcm"
    assert dcmtk("dcmconv", "-g", "-p", sample_file("MR_small.dcm"), source).returncode == 0
    server = start_server()
    result = _store(dcmtk, server.address[1], "-xi", files=[source])
    assert result.returncode == 0, result.stderr
    (entry,) = spool.pending()
    received = pydicom.dcmread(entry.path)
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert received == pydicom.dcmread(source)


def test_storescu_series_directory(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    start_server: ServerFactory,
    dcmtk: DcmtkRunner,
    make_ct_series: Callable[..., list[Path]],
    read_dataset_bytes: Callable[[Path], bytes],
) -> None:
    files = make_ct_series(tmp_path / "series", count=20, size=64)
    server = start_server()

    result = _store(dcmtk, server.address[1], "+sd", files=[tmp_path / "series"])

    assert result.returncode == 0, result.stderr
    entries = {entry.sop_instance_uid: entry for entry in spool.pending()}
    assert len(entries) == 20 and len(stored) == 20
    for path in files:
        sent = pydicom.dcmread(path)
        entry = entries[sent.SOPInstanceUID]
        assert read_dataset_bytes(entry.path) == read_dataset_bytes(path)
    assert {report.index.patient_name for report in stored} == {"Phạm^Minh Tuấn"}
    assert sorted(report.index.instance_number or 0 for report in stored) == list(range(1, 21))
    assert len({report.index.series_instance_uid for report in stored}) == 1


def test_storescu_series_is_not_stalled_by_delayed_acks(
    tmp_path: Path,
    spool: Spool,
    dcmtk: DcmtkRunner,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    """storescu leaves Nagle on; without quick ACKs each instance would stall ~40 ms.

    50 instances on one association: ~5 ms apart when healthy, >= 40 ms apart
    when stalled, so a 1 s bound for the 49 gaps separates the two with margin.
    """
    make_ct_series(tmp_path / "series", count=50, size=64)
    arrivals: list[float] = []
    config = DicomConfig(host="127.0.0.1", port=0, strict_ae=False)
    with start_dicom_server(config, spool, on_stored=lambda _: arrivals.append(time.monotonic())) as server:
        result = _store(dcmtk, server.address[1], "+sd", files=[tmp_path / "series"])
    assert result.returncode == 0, result.stderr
    assert len(arrivals) == 50
    assert arrivals[-1] - arrivals[0] < 1.0


def test_same_file_twice_is_stored_once(
    spool: Spool,
    stored: list[StoredInstance],
    start_server: ServerFactory,
    dcmtk: DcmtkRunner,
    sample_file: Callable[[str], Path],
) -> None:
    server = start_server()
    source = sample_file("CT_small.dcm")
    for _ in range(2):
        result = _store(dcmtk, server.address[1], files=[source])
        assert result.returncode == 0, result.stderr
    assert len(spool.pending()) == 1
    assert [report.outcome for report in stored] == [SpoolOutcome.STORED, SpoolOutcome.DUPLICATE]


def test_changed_content_same_uid_is_flagged_conflict(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    start_server: ServerFactory,
    dcmtk: DcmtkRunner,
    sample_file: Callable[[str], Path],
) -> None:
    server = start_server()
    source = sample_file("CT_small.dcm")
    corrected = pydicom.dcmread(source)
    corrected.StudyDescription = "Chụp lại sau hiệu chỉnh"
    corrected.SpecificCharacterSet = "ISO_IR 192"
    corrected.save_as(tmp_path / "corrected.dcm")

    for path in (source, tmp_path / "corrected.dcm"):
        result = _store(dcmtk, server.address[1], files=[path])
        assert result.returncode == 0, result.stderr  # both acknowledged

    assert [report.outcome for report in stored] == [SpoolOutcome.STORED, SpoolOutcome.CONFLICT]
    pending = spool.pending()
    assert [entry.conflict for entry in pending] == [False, True]
    assert {entry.sop_instance_uid for entry in pending} == {corrected.SOPInstanceUID}
    assert pydicom.dcmread(pending[1].path).StudyDescription == "Chụp lại sau hiệu chỉnh"
    assert stored[1].index.study_description == "Chụp lại sau hiệu chỉnh"


def test_strict_mode_rejects_unknown_calling_ae(
    start_server: ServerFactory, dcmtk: DcmtkRunner, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(
        strict_ae=True, allowed_aes={"CT_HUE": ("127.0.0.1", 104), "MR_HUE": ("10.10.1.21", 104)}
    )
    port = server.address[1]
    with caplog.at_level(logging.WARNING, logger="hospital.imaging.api.dicom"):
        rejected = dcmtk("echoscu", "-aet", "UNKNOWN", "-aec", "HOSPITAL_PACS", "127.0.0.1", port)
        elsewhere = dcmtk("echoscu", "-aet", "MR_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port)
    accepted = dcmtk("echoscu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "127.0.0.1", port)

    assert rejected.returncode != 0
    assert "Reason: Calling AE Title Not Recognized" in rejected.stderr
    assert any("UNKNOWN" in r.getMessage() and "allow-list" in r.getMessage() for r in caplog.records)
    # A listed AE title from another host than its own (strict mode matches both).
    assert elsewhere.returncode != 0 and "Calling AE Title Not Recognized" in elsewhere.stderr
    assert any("MR_HUE" in r.getMessage() and "10.10.1.21" in r.getMessage() for r in caplog.records)
    assert accepted.returncode == 0, accepted.stderr


def test_non_strict_mode_accepts_any_calling_ae(start_server: ServerFactory, dcmtk: DcmtkRunner) -> None:
    server = start_server(strict_ae=False, allowed_aes={"CT_HUE": ("10.10.1.21", 104)})
    result = dcmtk("echoscu", "-aet", "UNKNOWN", "-aec", "HOSPITAL_PACS", "127.0.0.1", server.address[1])
    assert result.returncode == 0, result.stderr
