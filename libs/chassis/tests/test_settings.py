from typing import ClassVar

import pytest

from hospital.chassis.settings import ServiceSettings


class LabLikeSettings(ServiceSettings):
    service: ClassVar[str] = "lab"
    astm_port: int = 5100


def test_service_prefix_wins_over_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSPITAL_NATS_URL", "nats://shared:1")
    monkeypatch.setenv("HOSPITAL_LAB_NATS_URL", "nats://lab-only:2")
    monkeypatch.setenv("HOSPITAL_LAB_ASTM_PORT", "6100")
    s = LabLikeSettings()
    assert s.nats_url == "nats://lab-only:2"
    assert s.astm_port == 6100


def test_shared_prefix_reaches_every_service(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HOSPITAL_NATS_URL", "nats://shared:1")
    monkeypatch.setenv("HOSPITAL_DATA_DIR", str(tmp_path))
    s = LabLikeSettings()
    assert s.nats_url == "nats://shared:1"
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}"


def test_production_refuses_development_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSPITAL_LAB_ENVIRONMENT", "production")
    with pytest.raises(ValueError) as err:
        LabLikeSettings()
    text = str(err.value)
    assert "auth_dev_issuer must be false" in text
    assert "s3_secret_key still holds a development placeholder" in text
    assert "audit_key_file is required in production" in text


def test_audit_key_file_refused_when_short_or_a_placeholder(tmp_path) -> None:
    from hospital.chassis.audit import AuditKeyError, keyring_for

    short, placeholder, good = tmp_path / "short.key", tmp_path / "dev.key", tmp_path / "audit.key"
    short.write_text("0123456789abcdef")
    placeholder.write_text("changeme-changeme-changeme-changeme-changeme")
    good.write_text("7d1e6b0c93f24a58b1e07c6d2f9a4b3e8c5d1a7f")

    def settings(path, environment="production"):
        return LabLikeSettings.model_construct(
            environment=environment, audit_key_file=path, audit_previous_key_files=[], data_dir=tmp_path
        )

    with pytest.raises(AuditKeyError, match="at least 32"):
        keyring_for(settings(short))
    with pytest.raises(AuditKeyError, match="placeholder"):
        keyring_for(settings(placeholder))
    with pytest.raises(AuditKeyError, match="required in production"):
        keyring_for(settings(None))
    assert keyring_for(settings(good)).current_id.startswith("k")
    dev = keyring_for(settings(None, "development"))  # the local stack's key, created once
    assert (tmp_path / "auth" / "audit.key").stat().st_mode & 0o777 == 0o600
    assert keyring_for(settings(None, "development")).current_id == dev.current_id


def test_describe_masks_secrets() -> None:
    d = LabLikeSettings().describe()
    assert d["s3_secret_key"] == "***"
    assert d["nats_url"].startswith("nats://")


def test_production_refuses_weak_secrets(tmp_path) -> None:
    key = tmp_path / "issuer.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    base = {
        "environment": "production",
        "auth_dev_issuer": False,
        "auth_public_key_file": key,
        "audit_key_file": tmp_path / "audit.key",
        "data_dir": tmp_path,
    }
    for weak in ("x", "Zq8v3", "aaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab"):
        with pytest.raises(ValueError, match="s3_secret_key is too weak for production"):
            LabLikeSettings(**base, s3_secret_key=weak)
    assert (
        LabLikeSettings(**base, s3_secret_key="Zq8v3-prod-s3-key-xx").s3_secret_key == "Zq8v3-prod-s3-key-xx"
    )


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    from hospital.chassis.web import forwarded_client, trusted_networks

    proxies = trusted_networks(["10.0.0.0/24", "127.0.0.1"])
    assert forwarded_client("198.51.100.7", "203.0.113.9", ()) == "198.51.100.7"  # none trusted (default)
    assert forwarded_client("198.51.100.7", "203.0.113.9", proxies) == "198.51.100.7"  # not from a proxy
    assert forwarded_client("10.0.0.5", "203.0.113.9", proxies) == "203.0.113.9"
    # the client's own header entries (left) are not believed: the address the first proxy saw is
    assert forwarded_client("10.0.0.5", "1.2.3.4, 203.0.113.9, 127.0.0.1", proxies) == "203.0.113.9"
    assert forwarded_client("10.0.0.5", "not-an-address", proxies) == "10.0.0.5"
    assert forwarded_client("10.0.0.5", "10.0.0.9", proxies) == "10.0.0.5"  # only proxies: the peer
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        LabLikeSettings(trusted_proxies=["10.0.0.0/33"])
