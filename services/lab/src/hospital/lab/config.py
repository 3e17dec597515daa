from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from hospital.chassis.settings import ServiceSettings


class InstrumentConfig(BaseModel):
    """One analyzer connection beyond the shared listeners.

    ``mode="server"``: a dedicated ASTM listener on ``port`` for this analyzer (its results are tagged
    ``name`` whatever its H-5 says). ``mode="client"``: the analyzer listens on ``host:port`` and the LIS
    connects (serial-to-TCP converters often work this way).
    """

    name: str
    protocol: Literal["astm"] = "astm"
    mode: Literal["server", "client"] = "server"
    host: str = "127.0.0.1"
    port: int
    dialect: str | None = None  # "sysmex", "roche-cobas-c311", "dpc-immulite" to force one
    encoding: str = "utf-8"


class LabSettings(ServiceSettings):
    """Environment: HOSPITAL_LAB_<NAME> (or HOSPITAL_<NAME> for shared settings).

    ``HOSPITAL_LAB_INSTRUMENTS`` takes a JSON list of :class:`InstrumentConfig`.
    """

    service: ClassVar[str] = "lab"
    http_port: int = 8003
    grpc_port: int = 50053
    protocol_host: str = "127.0.0.1"  # where the MLLP and ASTM listeners bind (0.0.0.0 in the lab LAN)
    mllp_port: int = 2575
    astm_port: int = 5100
    instruments: list[InstrumentConfig] = Field(default_factory=list)
    # Listener limits (MLLP and ASTM listeners, each on its own; docs/lab.md "Listener limits")
    listener_max_connections: int = Field(64, ge=1)  # open at once on one listener
    listener_max_connections_per_host: int = Field(16, ge=1)  # from one address
    listener_idle_timeout_seconds: float = Field(1800.0, gt=0)  # nothing received, no message under way
    listener_message_timeout_seconds: float = Field(120.0, gt=0)  # an MLLP block / ASTM message begun
    listener_max_message_bytes: int = Field(1 << 20, ge=1024)  # one MLLP block or one ASTM message (H..L)
    astm_max_frame_bytes: int = Field(64 << 10, ge=256)
    astm_max_frames_per_transfer: int = Field(20_000, ge=1)  # ENQ to EOT
    result_value_max_chars: int = Field(4000, ge=1)  # OBX-5 / R-4; a longer value refuses the message
    lis_name: str = "HOSPITAL-LIS"
    # Patients of orders are checked against admissions over gRPC (ADR 0103)
    admissions_grpc: str = "127.0.0.1:50051"
    admissions_timeout_seconds: float = Field(2.0, gt=0)
    patient_recheck_seconds: float = Field(60.0, gt=0)  # orders placed while admissions was unreachable
    store_timeout_seconds: float = 10.0  # below the analyzers' 15 s reply timer
    ingest_batch_max: int = 100  # group commit: at most this many analyzer messages per transaction
    ingest_batch_window_ms: float = 10.0  # group commit: wait at most this long for the connections released
    # by the previous batch to send their next message (0: never wait)
    autoverify_default: bool = False  # initial value of the on/off switch (the switch lives in the database)
    autoverify_requires_qc: bool = (
        True  # an accepted QC run for the instrument and test within qc_validity_hours
    )
    qc_validity_hours: int = 24
    qc_run_minutes: int = 60  # control levels measured this close together form one run (R-4s)
    instrument_timezone: str = "Asia/Ho_Chi_Minh"  # analyzers send local times without a zone
    barcode_prefix: str = ""  # printed before the date part of generated barcodes
