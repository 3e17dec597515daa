from __future__ import annotations

from typing import ClassVar

from hospital.chassis.settings import ServiceSettings


class AdmissionsSettings(ServiceSettings):
    """Environment: HOSPITAL_ADMISSIONS_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "admissions"
    http_port: int = 8001
    grpc_port: int = 50051
    search_limit: int = 20
    patient_code_prefix: str = "BN"
    # live waiting-room displays (SSE): per watched room, a safety re-read (catches events missed while
    # NATS was unreachable, and the new service day); a keep-alive comment to idle displays
    queue_display_resync_seconds: float = 30.0
    queue_display_keepalive_seconds: float = 15.0
