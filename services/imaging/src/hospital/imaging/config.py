"""Settings of the imaging service (PACS gateway).

Environment: HOSPITAL_IMAGING_<NAME> (or HOSPITAL_<NAME> for shared settings), e.g.
``HOSPITAL_IMAGING_STRICT_AE=true`` turns the calling-AE allow-list on and
``HOSPITAL_IMAGING_KNOWN_AES="VIEWER=10.0.0.7:104,CT_HUE=10.0.0.21:4006"`` lists the peers
(C-MOVE destinations, routing destinations and, in strict mode, the only AEs allowed to call us).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

from hospital.chassis.settings import ServiceSettings
from hospital.imaging.api.dicom.access import parse_permissions
from hospital.imaging.api.dicom.config import DicomConfig


def parse_known_aes(value: str) -> dict[str, tuple[str, int]]:
    """``"AE=host:port,AE2=host:port"`` -> ``{"AE": ("host", port)}``; raises ValueError on a bad entry."""
    out: dict[str, tuple[str, int]] = {}
    for raw in value.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        title, sep, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host or not port.isdigit() or not title.strip():
            raise ValueError(f"known_aes entry {item!r} is not AE=host:port")
        out[title.strip()] = (host.strip(), int(port))
    return out


class ImagingSettings(ServiceSettings):
    """Environment: HOSPITAL_IMAGING_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "imaging"
    http_port: int = 8004
    grpc_port: int = 50054

    # DICOM listener. Loopback by default: a modality network is opened on purpose (dicom_host), and in
    # production only with strict_ae (or the explicit overrides below). ADR 0307.
    dicom_host: str = "127.0.0.1"
    dicom_port: int = 11112
    ae_title: str = "HOSPITAL_PACS"
    strict_ae: bool = False
    known_aes: str = ""  # AE=host:port,...
    # What a listed AE may do: "CT_HUE=store+worklist,VIEWER=query+retrieve" (store, query, retrieve,
    # worklist); a listed AE without an entry may do everything (api/dicom/access.py).
    ae_permissions: str = ""
    # Production refuses strict_ae=false and a wildcard dicom_host (0.0.0.0, ::) unless these say so.
    dicom_allow_any_calling_ae: bool = False
    dicom_allow_wildcard_host: bool = False
    dicom_max_associations: int = 32
    # Processes running the storage (C-STORE) associations; 0 = in the serve process itself.
    dicom_receiver_processes: int = 2
    # How receiver processes run associations: "lean" (api/dicom/lean.py) or "pynetdicom".
    dicom_receiver_engine: Literal["lean", "pynetdicom"] = "lean"

    # Storage and pipeline
    spool_dir: Path | None = None  # default: <data_dir>/imaging-spool
    bucket: str = "dicom"
    # Run the ingest pipeline in a child process of its own (app/pipeline_process.py); false: in this process.
    pipeline_process: bool = True
    upload_concurrency: int = 4
    index_batch_size: int = 200
    # After a pass that found less than a full batch, wait this long for more files before the next one:
    # fewer, bigger index transactions while images stream in (adds at most this much to "stored").
    pipeline_gather_seconds: float = 0.1
    # Upload with the minio SDK's fput_object (the requirement; it hashes each file again). False
    # sends a PUT signed by the SDK's signer with the digest the pipeline already computed
    # (adapters/s3put.py): one SHA-256 pass less per image, measured in docs/benchmarks.md.
    pipeline_sdk_upload: bool = True
    pipeline_poll_seconds: float = 1.0
    upload_retry_seconds: float = 2.0
    study_quiet_seconds: float = 30.0

    # Routing
    routing_poll_seconds: float = 1.0
    routing_retry_seconds: float = 10.0
    routing_max_retry_seconds: float = 600.0

    # Storage Commitment (ADR 0315): how long an instance still in the spool is waited for before it is
    # reported failed, and how the N-EVENT-REPORT to the requester is retried.
    commitment_wait_seconds: float = 120.0
    commitment_report_attempts: int = 5
    commitment_retry_seconds: float = 2.0
    # How often the commitment worker looks for requests due (it is also woken by each new request).
    commitment_poll_seconds: float = 1.0

    # Deletion of studies and series (ADR 0312): how often the worker looks for jobs, and the first retry
    # delay after an object-store failure (doubling up to deletion_max_retry_seconds).
    deletion_poll_seconds: float = 2.0
    deletion_retry_seconds: float = 5.0
    deletion_max_retry_seconds: float = 300.0

    # Query
    find_limit: int = 1000

    # Patient merges (admissions.patient.merged, ADR 0317): the durable consumer on the ADMISSIONS stream
    # and the admissions gRPC address the merged records' codes are read from.
    admissions_durable: str = "imaging-admissions"
    admissions_grpc: str = "127.0.0.1:50051"
    admissions_timeout_seconds: float = 5.0

    # Rendered frames (ADR 0319): rendered JPEG/PNG answers kept in memory, by instance (and digest),
    # frame and parameters, up to this many bytes per serve process; 0 turns the cache off. Measured: a
    # frame scrolled back to costs about half the CPU (tests/bench/imaging_rendered.py).
    rendered_cache_bytes: int = 64 << 20

    # STOW-RS: a request over these limits is answered 413 with the reason, before anything is stored.
    # The body streams to a temporary file under the spool, never into memory (app/stow.py).
    stow_max_body_bytes: int = 1 << 30
    stow_max_parts: int = 10_000
    # STOW-RS answers once its instances are indexed (queryable and retrievable); if that takes longer
    # than this, it answers 202 with a Warning header saying they are still being processed.
    stow_index_wait_seconds: float = 30.0
    # The DICOMweb root clients use (behind a proxy: e.g. https://pacs.benhvien.vn/dicomweb), for the
    # Retrieve URLs in answers; empty: taken from each request.
    dicomweb_base_url: str = ""

    @field_validator("known_aes")
    @classmethod
    def _check_known_aes(cls, value: str) -> str:
        parse_known_aes(value)
        return value

    @field_validator("ae_permissions")
    @classmethod
    def _check_ae_permissions(cls, value: str) -> str:
        parse_permissions(value)
        return value

    @model_validator(mode="after")
    def _dicom_exposure(self) -> ImagingSettings:
        if self.environment == "production":
            problems = []
            if not self.strict_ae and not self.dicom_allow_any_calling_ae:
                problems.append(
                    "strict_ae must be true in production (any calling AE could query patients); "
                    "set dicom_allow_any_calling_ae=true to override"
                )
            if self.dicom_host.strip() in ("0.0.0.0", "::", "", "*") and not self.dicom_allow_wildcard_host:
                problems.append(
                    f"dicom_host {self.dicom_host!r} listens on every interface; bind the "
                    "modality network's address, or set dicom_allow_wildcard_host=true"
                )
            if problems:
                raise ValueError("; ".join(problems))
        unknown = set(parse_permissions(self.ae_permissions)) - set(self.peers)
        if unknown:
            raise ValueError(f"ae_permissions names AEs not in known_aes: {sorted(unknown)}")
        return self

    @property
    def peers(self) -> dict[str, tuple[str, int]]:
        return parse_known_aes(self.known_aes)

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or Path(self.data_dir) / "imaging-spool"

    def dicom_config(self) -> DicomConfig:
        return DicomConfig(
            ae_title=self.ae_title,
            host=self.dicom_host,
            port=self.dicom_port,
            strict_ae=self.strict_ae,
            allowed_aes=self.peers,
            permissions=parse_permissions(self.ae_permissions),
            max_associations=self.dicom_max_associations,
        )
