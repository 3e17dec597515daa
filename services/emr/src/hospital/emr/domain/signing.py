"""Signatures on clinical documents: canonical JSON content, compact JWS with a detached payload (RFC 7515
appendix F) signed with Ed25519 (EdDSA, RFC 8037), keys identified by their RFC 7638 JWK thumbprint, and a
provider interface so a hospital CA's remote signing service or a USB token can replace local keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"


def canonical(content: dict[str, Any]) -> bytes:
    """Canonical JSON (the JCS shape for our content: keys sorted, no insignificant whitespace, UTF-8;
    the content holds strings, integers, booleans, lists and objects only)."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, base64url."""
    required = {k: jwk[k] for k in ("crv", "kty", "x")}
    return b64url(hashlib.sha256(canonical(required)).digest())


@dataclass(frozen=True)
class SignerKey:
    key_id: str
    jwk: dict[str, str]
    provider: str


class SigningProvider(Protocol):
    """Where a user's signing key lives. ``key`` returns (creating if needed) the user's public key;
    ``sign`` signs bytes with the user's private key. Implementations: local files (below); a remote
    signing service of the hospital CA or a PKCS#11 token implement the same two calls."""

    name: str

    def key(self, subject: str) -> SignerKey: ...

    def sign(self, subject: str, data: bytes) -> bytes: ...


class LocalKeyProvider:
    """One Ed25519 key per user, a PEM file (mode 0600) under ``key_dir``, created on first use."""

    name = "local"

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir

    def _path(self, subject: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in subject)
        return self.key_dir / f"{safe}.pem"

    def _private(self, subject: str) -> Ed25519PrivateKey:
        path = self._path(subject)
        if not path.exists():
            self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # another process made one first: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def key(self, subject: str) -> SignerKey:
        jwk = public_jwk(self._private(subject).public_key())
        return SignerKey(thumbprint(jwk), jwk, self.name)

    def sign(self, subject: str, data: bytes) -> bytes:
        return self._private(subject).sign(data)


def sign_detached(
    provider: SigningProvider, subject: str, payload: bytes, header_extra: dict[str, Any]
) -> tuple[str, SignerKey]:
    """A compact JWS with a detached payload: ``<header>..<signature>``."""
    key = provider.key(subject)
    header = b64url(canonical({"alg": ALGORITHM, "kid": key.key_id, "typ": "JOSE", **header_extra}))
    signature = provider.sign(subject, f"{header}.{b64url(payload)}".encode())
    return f"{header}..{b64url(signature)}", key


def verify_detached(jws: str, payload: bytes, jwk: dict[str, str]) -> tuple[bool, str]:
    """(valid, reason). Checks the algorithm, the key id and the Ed25519 signature over the payload."""
    try:
        header_b64, empty, sig_b64 = jws.split(".")
        header = json.loads(unb64url(header_b64))
    except ValueError:
        return False, "chữ ký không đúng định dạng JWS"
    if empty:
        return False, "JWS phải tách rời nội dung (detached payload)"
    if header.get("alg") != ALGORITHM:
        return False, f"thuật toán {header.get('alg')!r} không được chấp nhận"
    if header.get("kid") != thumbprint(jwk):
        return False, "khóa ký không khớp"
    key = Ed25519PublicKey.from_public_bytes(unb64url(jwk["x"]))
    try:
        key.verify(unb64url(sig_b64), f"{header_b64}.{b64url(payload)}".encode())
    except InvalidSignature:
        return False, "nội dung đã bị thay đổi sau khi ký (chữ ký không còn khớp)"
    return True, ""
