"""Development facility signing credentials for the local stack.

A real facility signs its QĐ130 claims with the certificate issued to it (a CA licensed in Vietnam);
that certificate never leaves the hospital. The local stack (``make up``) needs *some* key to sign
with so that a closed insured visit can be exported end to end, so it creates a self-signed one the
same way it creates the development token issuer. The certificate is marked as development in its
subject (organizational unit and common name) and billing refuses to sign with it in production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DEVELOPMENT_MARK = "DEVELOPMENT ONLY - NOT VALID FOR BHXH CLAIMS"
VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=7)


def is_development_certificate(cert_pem: bytes) -> bool:
    """Whether a PEM certificate carries the development mark in its subject."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return any(DEVELOPMENT_MARK in str(a.value) for a in units)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class DevFacilityCredentials:
    """A self-signed facility key and certificate under ``key_dir`` (``facility-dev.key``/``.crt``)."""

    key_dir: Path
    facility_code: str = "35001"
    facility_name: str = "Bệnh viện Đa khoa tỉnh (demo)"

    @property
    def key_file(self) -> Path:
        return self.key_dir / "facility-dev.key"

    @property
    def cert_file(self) -> Path:
        return self.key_dir / "facility-dev.crt"

    def _current(self) -> bool:
        if not (self.key_file.exists() and self.cert_file.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except ValueError:
            return False
        same_key = cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        uid = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
        return (
            same_key
            and bool(uid)
            and uid[0].value == self.facility_code
            and cert.not_valid_after_utc - RENEW_BEFORE > datetime.now(UTC)
        )

    def ensure(self) -> tuple[Path, Path]:
        """Create the pair when missing, unreadable, for another facility code or about to expire."""
        if self._current():
            return self.key_file, self.cert_file
        self.key_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.facility_name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEVELOPMENT_MARK),
                x509.NameAttribute(NameOID.USER_ID, self.facility_code),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"[DEVELOPMENT] {self.facility_code} {self.facility_name}"[:64]
                ),
            ]
        )
        start = datetime.now(UTC) - timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write(
            self.key_file,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            0o600,
        )
        _write(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return self.key_file, self.cert_file
