"""The insurance agency's (BHXH) receiving portal, over HTTP: a token from ``/api/token/take`` (user name
and MD5 of the password), then ``/api/egw/KQNhanLichSuKCB2024`` with the identifier, the patient's name
and birth date and the checking officer's name and CCCD. Endpoint, credentials and timeout are settings;
a portal that is down, slow or refuses the credentials gives ``Status.UNAVAILABLE`` within the timeout,
never an exception, so reception is not blocked."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import httpx

from hospital.admissions.domain.insurance_check import CheckResult, Status, classify
from hospital.chassis.db import utcnow

log = logging.getLogger(__name__)
TOKEN_PATH = "/api/token/take"
LOOKUP_PATH = "/api/egw/KQNhanLichSuKCB2024"
TOKEN_LIFETIME = 50 * 60  # seconds a token is reused


class InsurancePortal:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        officer_name: str,
        officer_cccd: str,
        timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password_md5 = hashlib.md5(password.encode()).hexdigest()  # noqa: S324 - the portal's scheme
        self.officer_name = officer_name
        self.officer_cccd = officer_cccd
        self.timeout = timeout
        self._token: tuple[str, str, float] | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.username)

    async def _take_token(self, client: httpx.AsyncClient) -> tuple[str, str] | str:
        """(access token, id token), or why none was given."""
        async with self._lock:
            if self._token and self._token[2] > time.monotonic():
                return self._token[0], self._token[1]
            r = await client.post(
                self.base_url + TOKEN_PATH, json={"username": self.username, "password": self.password_md5}
            )
            body = _json(r)
            key = body.get("APIKey") if isinstance(body.get("APIKey"), dict) else body
            access, id_token = str(key.get("access_token") or ""), str(key.get("id_token") or "")
            if r.status_code != 200 or not access:
                code = body.get("maKetQua", "")
                return f"the portal refused the hospital's credentials (HTTP {r.status_code} {code})"
            self._token = (access, id_token, time.monotonic() + TOKEN_LIFETIME)
            return access, id_token

    async def lookup(self, identifier: str, full_name: str, birth: str, today: Any) -> CheckResult:
        """``birth``: dd/mm/yyyy, or yyyy when only the year is known."""
        if not self.configured:
            return CheckResult(Status.NOT_CONFIGURED, "", "no insurance portal is configured", None, utcnow())
        try:
            async with asyncio.timeout(self.timeout):
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    for attempt in (1, 2):
                        token = await self._take_token(client)
                        if isinstance(token, str):
                            return _unavailable(token)
                        r = await client.post(
                            self.base_url + LOOKUP_PATH,
                            params={
                                "token": token[0],
                                "id_token": token[1],
                                "username": self.username,
                                "password": self.password_md5,
                            },
                            json={
                                "maThe": identifier,
                                "hoTen": full_name,
                                "ngaySinh": birth,
                                "hoTenCb": self.officer_name,
                                "cccdCb": self.officer_cccd,
                            },
                        )
                        body = _json(r)
                        if (r.status_code == 401 or str(body.get("maKetQua")) == "401") and attempt == 1:
                            self._token = None  # expired token: take a new one once
                            continue
                        if r.status_code != 200 or not body:
                            return _unavailable(f"the portal answered HTTP {r.status_code}")
                        return classify(body, today, utcnow())
        except TimeoutError:
            return _unavailable(f"the portal did not answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            log.warning("insurance portal unreachable: %s", exc)
            return _unavailable(f"the portal is unreachable ({type(exc).__name__})")
        return _unavailable("the portal kept refusing the hospital's token")


def _unavailable(why: str) -> CheckResult:
    return CheckResult(Status.UNAVAILABLE, "", f"{why}: proceed fee-paying or retry", None, utcnow())


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def birth_text(year: int | None, month: int | None, day: int | None) -> str:
    if year and month and day:
        return f"{day:02d}/{month:02d}/{year:04d}"
    return f"{year:04d}" if year else ""
