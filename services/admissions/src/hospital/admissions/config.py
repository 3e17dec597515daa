from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from hospital.chassis.settings import ServiceSettings


class AdmissionsSettings(ServiceSettings):
    """Environment: HOSPITAL_ADMISSIONS_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "admissions"
    http_port: int = 8001
    grpc_port: int = 50051
    search_limit: int = 20
    # Patient searches per user and serve process: a burst, then this many a minute (0: no limit)
    search_rate_per_minute: int = 60
    search_burst: int = 30
    patient_code_prefix: str = "BN"
    # live waiting-room displays (SSE): per watched room, a safety re-read (catches events missed while
    # NATS was unreachable, and the new service day); a keep-alive comment to idle displays
    queue_display_resync_seconds: float = 30.0
    queue_display_keepalive_seconds: float = 15.0
    # Display streams per serve process: in all, and per room (further ones get 503)
    queue_display_max_streams: int = 500
    queue_display_max_streams_per_room: int = 20
    # Signed display links (app/display_links.py): their longest validity, and their key (a secret
    # file of at least 32 bytes; default: derived from the audit key). Changing the key withdraws all links.
    queue_display_link_max_days: int = 366
    queue_display_key_file: Path | None = None
    # Card-less reception: the insurance agency's (BHXH) receiving portal, e.g. https://egw.baohiemxahoi.gov.vn
    # (empty: look-ups answer not_configured). The account and the checking officer (name, CCCD) are the
    # ones BHXH registered for the hospital; a look-up gives up after the timeout and reception goes on.
    insurance_portal_url: str = ""
    insurance_portal_username: str = ""
    insurance_portal_password: str = ""
    insurance_portal_officer_name: str = ""
    insurance_portal_officer_cccd: str = ""
    insurance_portal_timeout_seconds: float = 4.0

    def secret_values(self) -> dict[str, str]:
        values = super().secret_values()
        if self.insurance_portal_url:
            values["insurance_portal_password"] = self.insurance_portal_password
        return values
