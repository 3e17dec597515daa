"""Refused instances: the client sees a failure status and nothing is left in the spool.

dcmtk's storescu will not send such broken files, so pynetdicom is the SCU
here, in its chunked mode: it then sends the data set bytes of the file as they
are, announcing the SOP Class/Instance UIDs of the file meta.
"""

from __future__ import annotations

import errno
import logging
import resource
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE, _config

from hospital.imaging.adapters.spool import Spool, StagedFile
from hospital.imaging.api.dicom import (
    DicomConfig,
    DicomServer,
    StoredInstance,
    StoreStatus,
    start_dicom_server,
)

ServerFactory = Callable[..., DicomServer]
Sender = Callable[[Path], Dataset]


@pytest.fixture
def send(start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sender]:
    """Send one Part 10 file's data set as is; return the C-STORE response status."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    server = start_server()
    ae = AE(ae_title="CT_HUE")
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.address[1], ae_title="HOSPITAL_PACS")
    assert assoc.is_established

    def send_file(path: Path) -> Dataset:
        status = assoc.send_c_store(path)
        assert "Status" in status, "no response from the SCP"
        return status

    yield send_file
    assoc.release()


def _ct(tmp_path: Path, make_ct_series: Callable[..., list[Path]]) -> Dataset:
    (path,) = make_ct_series(tmp_path / "source", count=1)
    return pydicom.dcmread(path)


def _write(ds: Dataset, path: Path, *, announced_uid: str | None = None) -> Path:
    """Write `ds` as a Part 10 file whose meta announces CT Image Storage and `announced_uid`.

    pydicom's dcmwrite() would "fix" a meta that disagrees with the data set, so
    the file is assembled from its lower-level writers.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(announced_uid or ds.SOPInstanceUID)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    path.write_bytes(fp.getvalue())
    return path


def _assert_nothing_spooled(spool: Spool, stored: list[StoredInstance]) -> None:
    assert spool.pending() == []
    assert list((spool.root / "tmp").iterdir()) == []
    assert stored == []


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uid_is_refused(
    missing: str,
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = _ct(tmp_path, make_ct_series)
    announced = ds.SOPInstanceUID
    delattr(ds, missing)
    with caplog.at_level(logging.WARNING, logger="hospital.imaging.api.dicom"):
        status = send(_write(ds, tmp_path / "bad.dcm", announced_uid=announced))
    assert status.Status == StoreStatus.DATASET_MISMATCH
    assert missing in status.ErrorComment
    assert any("refused" in r.getMessage() and missing in r.getMessage() for r in caplog.records)
    _assert_nothing_spooled(spool, stored)


def test_instance_uid_differing_from_request_is_refused(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    ds = _ct(tmp_path, make_ct_series)
    status = send(_write(ds, tmp_path / "bad.dcm", announced_uid="1.2.826.0.1.3680043.10.1.999"))
    assert status.Status == StoreStatus.DATASET_MISMATCH
    assert "SOPInstanceUID" in status.ErrorComment
    _assert_nothing_spooled(spool, stored)


def test_sop_class_differing_from_request_is_refused(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    ds = _ct(tmp_path, make_ct_series)
    ds.SOPClassUID = MRImageStorage  # the request still announces CT Image Storage
    status = send(_write(ds, tmp_path / "bad.dcm"))
    assert status.Status == StoreStatus.DATASET_MISMATCH
    _assert_nothing_spooled(spool, stored)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_uid_unfit_for_a_file_name_is_refused(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    ds = _ct(tmp_path, make_ct_series)
    ds.SOPInstanceUID = "1.2/../../../etc/x"
    status = send(_write(ds, tmp_path / "bad.dcm"))
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    _assert_nothing_spooled(spool, stored)
    assert not (spool.root.parent / "etc").exists()


def test_undecodable_dataset_is_refused(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    good = _write(_ct(tmp_path, make_ct_series), tmp_path / "good.dcm")
    meta = pydicom.filereader.read_file_meta_info(good)
    header_length = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
    broken = tmp_path / "broken.dcm"
    # An undefined-length sequence whose item never ends.
    sequence = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    broken.write_bytes(good.read_bytes()[:header_length] + sequence + b"\x08\x00\x50\x00SH\x04\x00ABCD")
    status = send(broken)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    _assert_nothing_spooled(spool, stored)


def test_disk_full_answers_out_of_resources_and_cleans_up(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def disk_full(self: StagedFile, sop_instance_uid: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StagedFile, "commit", disk_full)
    status = send(_write(_ct(tmp_path, make_ct_series), tmp_path / "good.dcm"))
    assert status.Status == StoreStatus.OUT_OF_RESOURCES
    assert "No space left" in status.ErrorComment
    _assert_nothing_spooled(spool, stored)


def test_write_error_mid_file_answers_out_of_resources(
    tmp_path: Path,
    spool: Spool,
    stored: list[StoredInstance],
    send: Sender,
    make_ct_series: Callable[..., list[Path]],
) -> None:
    """A real failing write(2): a file size limit below the instance size (EFBIG)."""
    path = _write(_ct(tmp_path, make_ct_series), tmp_path / "good.dcm")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        status = send(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert status.Status == StoreStatus.OUT_OF_RESOURCES
    _assert_nothing_spooled(spool, stored)
    assert send(path).Status == StoreStatus.SUCCESS  # the sender's retry succeeds


def test_failing_callback_does_not_fail_a_durable_instance(
    tmp_path: Path,
    spool: Spool,
    make_ct_series: Callable[..., list[Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_callback(report: StoredInstance) -> None:
        raise RuntimeError("event bus down")

    config = DicomConfig(host="127.0.0.1", port=0, strict_ae=False)
    with start_dicom_server(config, spool, on_stored=broken_callback) as server:
        ae = AE(ae_title="CT_HUE")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.address[1], ae_title="HOSPITAL_PACS")
        with caplog.at_level(logging.ERROR, logger="hospital.imaging.api.dicom"):
            status = assoc.send_c_store(_ct(tmp_path, make_ct_series))
        assoc.release()
    assert status.Status == StoreStatus.SUCCESS
    assert len(spool.pending()) == 1
    assert any("on_stored callback failed" in r.getMessage() for r in caplog.records)
