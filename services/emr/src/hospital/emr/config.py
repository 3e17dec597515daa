from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from hospital.chassis.settings import ServiceSettings


class EmrSettings(ServiceSettings):
    """Environment: HOSPITAL_EMR_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "emr"
    http_port: int = 8002
    grpc_port: int = 50052

    facility_code: str = "35001"  # MA_CSKCB: the first 5 characters of every ma_don_thuoc

    # Durable consumers (tests give each running instance its own).
    admissions_durable: str = "emr-admissions"
    lab_durable: str = "emr-lab"
    imaging_durable: str = "emr-imaging"

    # Orders are sent to these gRPC endpoints with the EMR's service identity.
    lab_grpc_target: str = "127.0.0.1:50053"
    imaging_grpc_target: str = "127.0.0.1:50054"
    order_send_timeout_seconds: float = 5.0
    order_retry_base_seconds: float = 1.0  # first retry after a transient failure; doubles each time
    order_retry_max_seconds: float = 60.0
    order_send_concurrency: int = 8  # order commands sent at once (one at a time per order)
    order_poll_seconds: float = 1.0  # the dispatcher's idle poll (it is also woken on commit)

    # Critical values: escalated to the department's other doctors when unacknowledged this long.
    critical_escalation_seconds: float = 900.0
    critical_check_seconds: float = 5.0
    # Where the LAB and IMAGING durables start when first created ("new": results from now on).
    results_events_start: Literal["new", "all"] = "new"
    notification_poll_seconds: float = 0.1  # how often each serve process reads new notifications

    # Departments of staff whose tokens carry no "departments" claim (the identity provider's claim wins).
    # Development: the demo doctor works in the outpatient department and internal medicine.
    staff_departments: dict[str, list[str]] = Field(
        default_factory=lambda: {"user:bs.minh": ["KKB", "NTH", "CC"], "user:dieuduong.hoa": ["KKB", "NTH"]}
    )

    # Where a study opens (OHIF / the PACS viewer); {study_uid} and {accession} are substituted.
    viewer_url_template: str = "http://127.0.0.1:8080/viewer?StudyInstanceUIDs={study_uid}"

    # Document signing: "local" keeps one Ed25519 key per user under signing_key_dir (0600 files).
    signing_provider: Literal["local"] = "local"
    signing_key_dir: Path | None = None  # default: <data_dir>/emr-signing-keys

    # National e-prescription system (đơn thuốc quốc gia): where and how prescriptions are sent.
    eprescription_url: str = ""  # empty: prescriptions are queued, not sent
    eprescription_username: str = "dev-eprescription-user"
    eprescription_password: str = "dev-eprescription-password"
    eprescription_timeout_seconds: float = 10.0
    eprescription_retry_base_seconds: float = 5.0  # first retry after a transient failure; doubles each time
    eprescription_retry_max_seconds: float = 1800.0
    eprescription_max_attempts: int = 60  # then "failed" (resend with POST .../national/resend)
    eprescription_poll_seconds: float = 2.0

    def key_dir(self) -> Path:
        return self.signing_key_dir or (Path(self.data_dir) / "emr-signing-keys")

    def secret_values(self) -> dict[str, str]:
        values = super().secret_values()
        if self.eprescription_url:
            values["eprescription_password"] = self.eprescription_password
        return values
