"""Security: JWT verification, the local development issuer, roles, and service identities.

Tokens are RS256 JWTs with ``iss``, ``aud``, ``sub``, ``exp``, ``iat``, ``jti``, ``name`` and ``roles``.
In development a local issuer keeps its key pair under ``<data_dir>/auth``; every service of the local
stack trusts its public key, and ``make token ROLE=<role>`` mints a token for that role's demo user.
In production services only hold the identity provider's public key.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hospital.chassis.ids import new_id
from hospital.chassis.settings import ServiceSettings

ROLES = (
    "receptionist",
    "nurse",
    "doctor",
    "lab_technician",
    "radiographer",
    "radiologist",
    "cashier",
    "admin",
    "auditor",
)
SERVICE_ROLE = "service"

# Demo users of the local stack, one per role (invented people).
DEMO_USERS: dict[str, tuple[str, str]] = {
    "receptionist": ("letan.lan", "Nguyễn Thị Lan"),
    "nurse": ("dieuduong.hoa", "Trần Thị Hoa"),
    "doctor": ("bs.minh", "BS. Lê Quang Minh"),
    "lab_technician": ("ktv.xetnghiem.tuan", "Phạm Anh Tuấn"),
    "radiographer": ("ktv.cdha.hung", "Võ Văn Hùng"),
    "radiologist": ("bs.cdha.thao", "BS. Đặng Thu Thảo"),
    "cashier": ("thungan.mai", "Hoàng Thị Mai"),
    "admin": ("quantri.khoa", "Bùi Đăng Khoa"),
    "auditor": ("kiemtra.ngoc", "Đỗ Bảo Ngọc"),
}


class AuthError(Exception):
    """Authentication failed (HTTP 401 / gRPC UNAUTHENTICATED)."""

    # What a client is told; anything else (expiry, audience, signature, the JWT library's own message)
    # stays in the service's log: a caller probing tokens learns nothing from the answer.
    PUBLIC = frozenset({"missing bearer token", "authorization must be 'Bearer <token>'"})

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def public(self) -> str:
        return self.reason if self.reason in self.PUBLIC else "invalid token"


class PermissionDenied(Exception):
    """Authenticated, but the role may not do this (HTTP 403 / gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    name: str
    roles: frozenset[str]
    token_id: str = ""
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_service(self) -> bool:
        return SERVICE_ROLE in self.roles

    def has_any(self, roles: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
        return bool(self.roles & set(roles))

    def require(self, *roles: str) -> None:
        if not self.has_any(roles):
            raise PermissionDenied(
                f"role(s) {sorted(self.roles)} may not do this; needs one of {sorted(roles)}"
            )


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class DevIssuer:
    """The local development identity provider: a key pair on disk."""

    key_dir: Path
    issuer: str
    audience: str

    @property
    def private_key_file(self) -> Path:
        return self.key_dir / "dev-issuer.key"

    @property
    def public_key_file(self) -> Path:
        return self.key_dir / "dev-issuer.pub"

    def ensure_keys(self) -> None:
        if self.private_key_file.exists() and self.public_key_file.exists():
            return
        self.key_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _atomic_write(
            self.private_key_file,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            0o600,
        )
        private = serialization.load_pem_private_key(self.private_key_file.read_bytes(), password=None)
        _atomic_write(
            self.public_key_file,
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )

    def mint(
        self,
        subject: str,
        roles: list[str] | tuple[str, ...],
        *,
        name: str = "",
        ttl: int = 8 * 3600,
        audience: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        self.ensure_keys()
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience or self.audience,
            "sub": subject,
            "name": name or subject,
            "roles": list(roles),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": new_id(),
        }
        claims.update(extra or {})
        return jwt.encode(claims, self.private_key_file.read_bytes(), algorithm="RS256")

    def mint_for_role(self, role: str, ttl: int = 8 * 3600) -> str:
        if role not in DEMO_USERS:
            raise ValueError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
        username, name = DEMO_USERS[role]
        return self.mint(f"user:{username}", [role], name=name, ttl=ttl)

    def mint_for_service(self, service: str, ttl: int = 3600) -> str:
        return self.mint(f"service:{service}", [SERVICE_ROLE], name=service, ttl=ttl)


class TokenVerifier:
    """Verifies RS256 tokens: signature, issuer, audience, expiry (with leeway), required claims."""

    def __init__(
        self, public_key_pem: bytes, *, issuer: str, audience: str, leeway: int = 30, cache_size: int = 4096
    ) -> None:
        self._key = public_key_pem
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str) -> Principal:
        """Verify a token. A token verified before is served from a small cache (an RSA verification
        costs more than the rest of a typical request) until its own expiry."""
        hit = self._cache.get(token)
        if hit is not None:
            if time.time() < hit[1] + self.leeway:
                self._cache.move_to_end(token)
                return hit[0]
            del self._cache[token]
        principal = self._verify(token)
        self._cache[token] = (principal, float(principal.claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token from an untrusted issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("token roles claim is malformed")
        return Principal(
            subject=claims["sub"],
            name=str(claims.get("name", claims["sub"])),
            roles=frozenset(roles),
            token_id=str(claims.get("jti", "")),
            claims=claims,
        )

    def verify_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())


def dev_issuer_for(settings: ServiceSettings) -> DevIssuer:
    return DevIssuer(Path(settings.data_dir) / "auth", settings.auth_issuer, settings.auth_audience)


def verifier_for(settings: ServiceSettings) -> TokenVerifier:
    if settings.auth_public_key_file:
        pem = Path(settings.auth_public_key_file).read_bytes()
    elif settings.auth_dev_issuer:
        issuer = dev_issuer_for(settings)
        issuer.ensure_keys()
        pem = issuer.public_key_file.read_bytes()
    else:
        raise RuntimeError("no token verification key: set auth_public_key_file")
    return TokenVerifier(
        pem, issuer=settings.auth_issuer, audience=settings.auth_audience, leeway=settings.auth_leeway_seconds
    )


class ServiceIdentity:
    """This service's own credentials for calling other services."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        if self.settings.service_token_file:
            return Path(self.settings.service_token_file).read_text().strip()
        if time.time() > self._expires - 60:
            self._token = dev_issuer_for(self.settings).mint_for_service(self.settings.service, ttl=3600)
            self._expires = time.time() + 3600
        assert self._token is not None
        return self._token
