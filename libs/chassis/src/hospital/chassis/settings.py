"""Settings from environment variables.

Every setting ``name`` of service ``svc`` is read from ``HOSPITAL_<SVC>_<NAME>`` and, when that is unset,
from ``HOSPITAL_<NAME>`` (so ``HOSPITAL_NATS_URL`` reaches every service of the local stack while
``HOSPITAL_LAB_DATABASE_URL`` reaches only the lab).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

DEV_SECRET_MARKERS = ("dev-", "changeme", "change-me", "secret")
# A production secret (HMAC keys, API keys, passwords) has at least this many characters, this many of them
# different: a one-character or "aaaa..." key would let anyone forge a payment notice.
SECRET_MIN_LENGTH = 16
SECRET_MIN_DISTINCT = 8


def repo_var_dir() -> Path:
    """``var/`` of the checkout when run from one (the local stack's data folder), else ``./var``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "services").is_dir():
            return parent / "var"
    return Path.cwd() / "var"


class ServiceSettings(BaseSettings):
    """Settings every service has. A service subclasses it, sets ``service`` and adds its own fields."""

    service: ClassVar[str] = "service"
    # Names in secret_values() that are identifiers issued by someone else (e.g. MoMo's access key): checked
    # for placeholders in production, not for length.
    secret_identifiers: ClassVar[tuple[str, ...]] = ()
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    data_dir: Path = Field(default_factory=repo_var_dir)

    database_url: str = ""  # default: sqlite file under data_dir
    database_pool_size: int = 10
    nats_url: str = "nats://127.0.0.1:14222"
    s3_endpoint: str = "127.0.0.1:18333"
    s3_access_key: str = "hospital-dev"
    s3_secret_key: str = "hospital-dev-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50050
    # Largest HTTP request body a route takes unless the service sets its own for a path (413 above it).
    http_max_body_bytes: int = 1024 * 1024
    # /docs, /redoc and /openapi.json: None = served except in production (docs/operations.md).
    api_docs: bool | None = None
    # /metrics: "open" (Kubernetes: the metrics-scrape NetworkPolicy admits only Prometheus) or "loopback"
    # (only a scraper on the same host).
    metrics_access: Literal["open", "loopback"] = "open"

    # Security: JWT verification. In development a local issuer's key pair lives under data_dir/auth.
    auth_issuer: str = "https://auth.hospital.local/dev"
    auth_audience: str = "hospital"
    auth_public_key_file: Path | None = None
    auth_dev_issuer: bool = True  # development only: create/use the local issuer key pair
    auth_leeway_seconds: int = 30
    service_token_file: Path | None = None  # production: a projected service-account token

    # Audit trail key (HMAC of every audit record and chain head; hospital.chassis.audit). A secret file
    # of at least 32 bytes, outside the database; required in production. In development the local
    # stack creates one under data_dir/auth/audit.key. Previous keys verify records written before a
    # key change.
    # Reverse proxies (addresses or CIDRs, e.g. ["10.0.0.0/24"]) whose X-Forwarded-For is believed for
    # the client address in audit records and logs; none by default (the peer's address is used).
    trusted_proxies: list[str] = Field(default_factory=list)
    audit_key_file: Path | None = None
    audit_previous_key_files: list[Path] = Field(default_factory=list)

    # Event bus
    nats_stream_replicas: int = 1  # 3 on a three-node JetStream cluster
    run_worker_in_serve: bool = True  # serve also runs the outbox relay and consumers
    outbox_batch_size: int = 500
    outbox_poll_seconds: float = 0.5
    consumer_batch_size: int = 256
    consumer_max_deliver: int = 5
    consumer_ack_wait_seconds: float = 30.0

    otel_exporter: Literal["none", "console", "otlp"] = "none"
    shutdown_grace_seconds: float = 15.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        own = EnvSettingsSource(
            settings_cls, env_prefix=f"HOSPITAL_{cls.service.upper()}_", case_sensitive=False
        )
        shared = EnvSettingsSource(settings_cls, env_prefix="HOSPITAL_", case_sensitive=False)
        return (init_settings, own, shared)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, values: list[str]) -> list[str]:
        import ipaddress

        for v in values:
            try:
                ipaddress.ip_network(v.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {v!r} is not an IP address or CIDR") from None
        return values

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / (self.service + '.db')}"
        if self.environment == "production":
            problems = []
            if self.auth_dev_issuer:
                problems.append("auth_dev_issuer must be false in production")
            if self.auth_public_key_file is None:
                problems.append("auth_public_key_file is required in production")
            if self.audit_key_file is None:
                problems.append("audit_key_file is required in production")
            for name, value in self.secret_values().items():
                if not value or any(m in value.lower() for m in DEV_SECRET_MARKERS):
                    problems.append(f"{name} still holds a development placeholder")
                elif name not in self.secret_identifiers and (
                    len(value) < SECRET_MIN_LENGTH or len(set(value)) < SECRET_MIN_DISTINCT
                ):
                    problems.append(
                        f"{name} is too weak for production: at least {SECRET_MIN_LENGTH} characters, "
                        f"{SECRET_MIN_DISTINCT} of them different"
                    )
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def api_docs_served(self) -> bool:
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    def secret_values(self) -> dict[str, str]:
        """Secrets that must not keep development placeholders in production; services extend it."""
        return {"s3_secret_key": self.s3_secret_key}

    def env_name(self, field: str) -> str:
        return f"HOSPITAL_{self.service.upper()}_{field.upper()}"

    def describe(self) -> dict[str, Any]:
        """Settings with secrets masked, for start-up logs."""
        data = self.model_dump(mode="json")
        for key in list(data):
            if any(k in key for k in ("secret", "password", "key")) and "file" not in key:
                data[key] = "***"
        return data
