"""Shared fixtures for the DICOM gateway tests: a spool, a running server, dcmtk, synthetic CT."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom import DicomConfig, DicomServer, StoredInstance, start_dicom_server
from hospital.testing.servers import free_port
from hospital.testing.services import running_service

PACS_AE = "HOSPITAL_PACS"
PATIENT_NAME = "Phạm^Minh Tuấn"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def stored() -> list[StoredInstance]:
    """Every StoredInstance reported through on_stored, in order."""
    return []


ServerFactory = Callable[..., DicomServer]


@pytest.fixture
def start_server(spool: Spool, stored: list[StoredInstance]) -> Iterator[ServerFactory]:
    """Start the gateway on a free port of 127.0.0.1, recording on_stored reports."""
    servers: list[DicomServer] = []

    def start(
        *, strict_ae: bool = False, allowed_aes: Mapping[str, tuple[str, int]] | None = None
    ) -> DicomServer:
        config = DicomConfig(
            ae_title=PACS_AE, host="127.0.0.1", port=0, strict_ae=strict_ae, allowed_aes=allowed_aes or {}
        )
        server = start_dicom_server(config, spool, on_stored=stored.append)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


DcmtkRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def dcmtk() -> DcmtkRunner:
    """Run a dcmtk tool (echoscu, storescu, dcmconv...) and return the completed process."""
    # dcmtk is a real peer the suite depends on: `make setup` installs it. Missing means broken set-up.
    assert shutil.which("storescu") is not None, "dcmtk is not installed: run `make setup`"

    def run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, *map(str, args)], check=False, capture_output=True, text=True, timeout=60
        )

    return run


def _ct_slice(study_uid: str, series_uid: str, number: int, size: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20250314"
    ds.StudyTime = "083000"
    ds.AccessionNumber = "CT250314001"
    ds.Modality = "CT"
    ds.ReferringPhysicianName = "Nguyễn^Thị Lan"
    ds.StudyDescription = "CT sọ não không tiêm thuốc"
    ds.SeriesDescription = "Sọ não 5mm"
    ds.BodyPartExamined = "HEAD"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "BN-2025-000123"
    ds.PatientBirthDate = "19680203"
    ds.PatientSex = "M"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 2
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 5.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    pixels = (np.arange(size * size, dtype=np.uint16).reshape(size, size) + number) % 4096
    ds.PixelData = pixels.tobytes()
    return ds


SeriesFactory = Callable[..., list[Path]]


@pytest.fixture
def make_ct_series() -> SeriesFactory:
    """Write a synthetic CT series (one study, one series) as Part 10 files."""

    def make(directory: Path, count: int = 20, size: int = 64) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        study_uid, series_uid = generate_uid(), generate_uid()
        paths = []
        for number in range(1, count + 1):
            path = directory / f"CT{number:04d}.dcm"
            pydicom.dcmwrite(path, _ct_slice(study_uid, series_uid, number, size), enforce_file_format=True)
            paths.append(path)
        return paths

    return make


def dataset_bytes(path: Path) -> bytes:
    """The bytes after a Part 10 file's meta header, located with pydicom."""
    meta = pydicom.filereader.read_file_meta_info(path)
    start = 128 + 4 + 12 + meta.FileMetaInformationGroupLength
    return path.read_bytes()[start:]


@pytest.fixture
def sample_file() -> Callable[[str], Path]:
    """Path of one of pydicom's bundled test files."""

    def find(name: str) -> Path:
        path = get_testdata_file(name)
        assert isinstance(path, str), f"{name} is not bundled with pydicom"
        return Path(path)

    return find


@pytest.fixture
def read_dataset_bytes() -> Callable[[Path], bytes]:
    return dataset_bytes


# ---------------------------------------------------------------------------------------------------
# The whole service (chassis, database, NATS, S3) for end-to-end tests.


@pytest.fixture
def imaging_factory(database_url: str, nats_server, s3_server, tmp_path: Path):
    """Start the real imaging service; keyword arguments override settings."""
    from hospital.imaging.service import DEFINITION

    def start(s3=None, **overrides: Any):
        s3 = s3 or s3_server
        settings = {
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "dicom_host": "127.0.0.1",
            "dicom_port": free_port(),
            "study_quiet_seconds": 0.5,
            "pipeline_poll_seconds": 0.2,
            "routing_poll_seconds": 0.2,
            "routing_retry_seconds": 0.3,
            "routing_max_retry_seconds": 1.0,
            "upload_retry_seconds": 0.3,
            "shutdown_grace_seconds": 5,
            # each service its own durable on the session's NATS (no merges replayed from other tests),
            # and no admissions unless a test starts one
            "admissions_durable": f"imaging-admissions-{uuid.uuid4().hex[:12]}",
            "admissions_grpc": f"127.0.0.1:{free_port()}",
        }
        settings.update(overrides)
        return _marked(
            running_service(
                DEFINITION,
                data_dir=tmp_path / "svc",
                database_url=database_url,
                nats_url=nats_server.url,
                **settings,
            )
        )

    return start


@asynccontextmanager
async def _marked(service_cm) -> AsyncIterator[Any]:
    """The running service, with the time it started: `published()` reads its events back from
    JetStream from then on (the session's NATS server also holds earlier tests' events)."""
    started = datetime.now(UTC)
    async with service_cm as svc:
        svc.test_started_at = started
        # The DICOM listener starts after the service reports started: a peer dialling at once could be
        # refused (seen with pynetdicom's SCU in a loaded full-suite run).
        await asyncio.wait_for(svc.rt.imaging.dicom.started.wait(), timeout=30)
        yield svc


@pytest.fixture
async def imaging(imaging_factory) -> AsyncIterator[Any]:
    async with imaging_factory() as svc:
        yield svc
