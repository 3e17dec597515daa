"""Service tokens for the signed-in user's calls to the other services.

The services already verify RS256 JWTs (issuer, audience, ``sub``, ``name``, ``roles``). The web mints
one per user with the same claims, valid for a few minutes and reused until shortly before it expires:
in development with the local issuer's key (``data_dir/auth``, the key ``make token`` uses), in
production with ``token_signing_key_file``, a key pair whose public key the services are given as the
identity provider's. With OIDC (docs/web.md) the identity provider's own access token is passed on instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from hospital.chassis.ids import new_id
from hospital.chassis.security import dev_issuer_for
from hospital.web.app.accounts import User
from hospital.web.config import WebSettings


class TokenMinter:
    def __init__(self, settings: WebSettings) -> None:
        self.s = settings
        self._cache: dict[str, tuple[str, float]] = {}

    def _key(self) -> bytes:
        if self.s.token_signing_key_file:
            return Path(self.s.token_signing_key_file).read_bytes()
        if not self.s.auth_dev_issuer:
            raise RuntimeError("no token signing key: set HOSPITAL_WEB_TOKEN_SIGNING_KEY_FILE")
        issuer = dev_issuer_for(self.s)
        issuer.ensure_keys()
        return issuer.private_key_file.read_bytes()

    def token_for(self, user: User) -> str:
        key = f"{user.id}:{user.role}:{','.join(user.departments)}"
        hit = self._cache.get(key)
        now = time.time()
        if hit is not None and hit[1] - 60 > now:
            return hit[0]
        ttl = self.s.token_ttl_seconds
        claims = {
            "iss": self.s.auth_issuer,
            "aud": self.s.auth_audience,
            "sub": f"user:{user.username}",
            "name": user.display_name,
            "roles": [user.role],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + ttl,
            "jti": new_id(),
            "azp": "web",
            "departments": list(user.departments),
        }
        token = jwt.encode(claims, self._key(), algorithm="RS256")
        self._cache[key] = (token, now + ttl)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return token
