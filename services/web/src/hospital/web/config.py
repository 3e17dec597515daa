from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from hospital.chassis.settings import ServiceSettings


class WebSettings(ServiceSettings):
    """Environment: HOSPITAL_WEB_<NAME> (or HOSPITAL_<NAME> for shared settings)."""

    service: ClassVar[str] = "web"
    http_port: int = 8080
    grpc_port: int = 50080  # health only: the web serves browsers, no other service calls it

    # The back-end services' gRPC addresses (host:port). The browser never calls them.
    admissions_grpc: str = "127.0.0.1:50051"
    emr_grpc: str = "127.0.0.1:50052"
    lab_grpc: str = "127.0.0.1:50053"
    imaging_grpc: str = "127.0.0.1:50054"
    billing_grpc: str = "127.0.0.1:50055"
    backend_timeout_seconds: float = 5.0
    # Imaging's DICOMweb (HTTP): the image viewer's rendered frames are fetched there, as the user, by the
    # web's proxy route; the browser never calls imaging.
    imaging_http: str = "http://127.0.0.1:8004"

    # Sign-in and sessions
    session_idle_minutes: int = 30  # a shared ward PC: an idle session ends
    session_max_hours: int = 12  # a shift
    cookie_secure: bool = False  # true behind TLS (production): the cookie is sent over HTTPS only
    lockout_failures: int = 5  # consecutive wrong passwords that lock the account ...
    lockout_minutes: int = 15  # ... for this long
    password_min_length: int = 10
    default_language: Literal["vi", "en"] = "vi"

    # Service tokens the web mints for its users' calls to other services (RS256, same claims as the
    # identity provider's). Development: the local issuer's key under data_dir/auth. Production: a key
    # pair whose public key the services trust (docs/web.md), or OIDC.
    token_signing_key_file: Path | None = None
    token_ttl_seconds: int = 900

    # make up: the demo users' password (random and printed when unset)
    demo_password: str = ""

    def secret_values(self) -> dict[str, str]:
        return super().secret_values()
