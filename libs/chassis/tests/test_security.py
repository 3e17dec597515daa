import time

import jwt
import pytest

from hospital.chassis.security import AuthError, DevIssuer, PermissionDenied, TokenVerifier

ISS, AUD = "https://auth.hospital.local/dev", "hospital"


@pytest.fixture
def issuer(tmp_path) -> DevIssuer:
    i = DevIssuer(tmp_path / "auth", ISS, AUD)
    i.ensure_keys()
    return i


@pytest.fixture
def verifier(issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier(issuer.public_key_file.read_bytes(), issuer=ISS, audience=AUD, leeway=0)


def test_valid_role_token(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    p = verifier.verify_header("Bearer " + issuer.mint_for_role("doctor"))
    assert p.roles == {"doctor"} and p.name == "BS. Lê Quang Minh" and not p.is_service
    p.require("doctor", "nurse")
    with pytest.raises(PermissionDenied):
        p.require("cashier")


def test_service_identity(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    p = verifier.verify(issuer.mint_for_service("billing"))
    assert p.is_service and p.subject == "service:billing"


@pytest.mark.parametrize(
    "header,reason",
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic abc", "authorization must be 'Bearer <token>'"),
        ("Bearer not-a-jwt", "malformed token"),
    ],
)
def test_missing_or_malformed(verifier: TokenVerifier, header, reason) -> None:
    with pytest.raises(AuthError) as err:
        verifier.verify_header(header)
    assert err.value.reason.startswith(reason)


def test_expired(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint("user:x", ["doctor"], ttl=-10)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_wrong_audience(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    with pytest.raises(AuthError, match="another audience"):
        verifier.verify(issuer.mint("user:x", ["doctor"], audience="some-other-system"))


def test_forged_with_another_key(tmp_path, verifier: TokenVerifier) -> None:
    forger = DevIssuer(tmp_path / "forger", ISS, AUD)
    with pytest.raises(AuthError, match="signature is invalid"):
        verifier.verify(forger.mint_for_role("admin"))


def test_tampered_claims(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    header, payload, sig = issuer.mint_for_role("nurse").split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.api_jws._jws_global_obj._load(f"{header}.{payload}.{sig}")[1].replace(b'"nurse"', b'"admin"')
    ).decode()
    with pytest.raises(AuthError, match="signature is invalid"):
        verifier.verify(f"{header}.{forged_payload}.{sig}")


def test_alg_none_rejected(verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISS, "aud": AUD, "sub": "user:x", "roles": ["admin"], "iat": now, "exp": now + 60},
        None,
        algorithm="none",
    )
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_untrusted_issuer(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = DevIssuer(issuer.key_dir, "https://evil.example", AUD).mint_for_role("doctor")  # same key
    with pytest.raises(AuthError, match="untrusted issuer"):
        verifier.verify(token)
