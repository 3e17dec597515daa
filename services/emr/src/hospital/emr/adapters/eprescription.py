"""The national e-prescription system (Hệ thống thông tin quốc gia về quản lý kê đơn thuốc, QĐ 808/QĐ-BYT):
its HTTP client, and the queue table of prescriptions waiting to be sent.

The facility logs in with its connection code and password (``POST /api/auth/dang-nhap-co-so-kham-chua-benh``
→ a bearer token), then posts each prescription (``POST /api/v1/gui-don-thuoc``). The client sorts answers
into: delivered, already delivered (the code is known there: a retry after a lost answer), refused (the
prescription must be corrected: no retry) and transient (network, timeout, 5xx, 429, authentication)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.emr.adapters.tables import eprescription_queue

Row = dict[str, Any]

LOGIN_PATH = "/api/auth/dang-nhap-co-so-kham-chua-benh"
SEND_PATH = "/api/v1/gui-don-thuoc"


class NationalTransient(Exception):
    """The national system did not take the prescription this time (retry later)."""


class NationalRefused(Exception):
    """The national system refused the prescription for good (its reason is the message)."""


@dataclass(frozen=True)
class Delivered:
    duplicate: bool  # the national system already had this ma_don_thuoc (an earlier attempt got through)
    answer: dict[str, Any]


def _answer(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {"text": resp.text[:500]}
    return body if isinstance(body, dict) else {"body": body}


def _reason(resp: httpx.Response) -> str:
    body = _answer(resp)
    errors = body.get("danh_sach_cac_loi") or body.get("errors") or []
    parts = [str(body.get("message") or body.get("success") or body.get("error") or "")]
    for e in errors if isinstance(errors, list) else [errors]:
        if isinstance(e, dict):
            parts.append(
                ": ".join(
                    str(v) for v in (e.get("truong") or e.get("field"), e.get("loi") or e.get("message")) if v
                )
            )
        else:
            parts.append(str(e))
    text = "; ".join(p for p in parts if p) or resp.text[:300]
    return f"HTTP {resp.status_code}: {text}"


def _is_duplicate(resp: httpx.Response) -> bool:
    """A 409, or a 422 naming ma_don_thuoc as already existing (đã tồn tại / đã được gửi)."""
    if resp.status_code == 409:
        return True
    if resp.status_code != 422:
        return False
    text = resp.text.lower()
    return "ma_don_thuoc" in text and ("đã tồn tại" in text or "đã được gửi" in text or "already" in text)


class NationalPrescriptionClient:
    """HTTP client of the national e-prescription system; one bearer token reused until it is refused."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self.token: str | None = None

    async def close(self) -> None:
        await self.http.aclose()

    async def _login(self) -> str:
        try:
            resp = await self.http.post(
                LOGIN_PATH,
                json={"ma_lien_thong_co_so_kham_chua_benh": self.username, "password": self.password},
            )
        except httpx.HTTPError as exc:
            raise NationalTransient(f"đăng nhập: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            # wrong credentials are fixed by IT in the settings; keep the prescription queued meanwhile
            raise NationalTransient(f"đăng nhập: {_reason(resp)}")
        token = _answer(resp).get("token")
        if not token:
            raise NationalTransient("đăng nhập: the answer carries no token")
        self.token = str(token)
        return self.token

    async def send(self, payload: dict[str, Any]) -> Delivered:
        for fresh_login in (False, True):
            token = self.token if (self.token and not fresh_login) else await self._login()
            try:
                resp = await self.http.post(
                    SEND_PATH, json=payload, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TimeoutException as exc:
                raise NationalTransient(f"timeout: {type(exc).__name__}") from exc
            except httpx.HTTPError as exc:
                raise NationalTransient(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code == 401 and not fresh_login:
                self.token = None
                continue  # the token expired (7 days): log in again once
            if 200 <= resp.status_code < 300:
                return Delivered(duplicate=False, answer=_answer(resp))
            if _is_duplicate(resp):
                return Delivered(duplicate=True, answer=_answer(resp))
            if resp.status_code in (400, 422):
                raise NationalRefused(_reason(resp))
            raise NationalTransient(_reason(resp))
        raise NationalTransient("HTTP 401: the national system refused the facility's token")


class EPrescriptionQueue:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(eprescription_queue.insert().values(**row))

    async def of_prescription(self, prescription_id: str) -> Row | None:
        q = select(eprescription_queue).where(eprescription_queue.c.prescription_id == prescription_id)
        row = (await self.s.execute(q)).mappings().first()
        return dict(row) if row else None

    async def get(self, entry_id: str) -> Row | None:
        q = select(eprescription_queue).where(eprescription_queue.c.id == entry_id)
        row = (await self.s.execute(q)).mappings().first()
        return dict(row) if row else None

    async def due(self, now: datetime, limit: int) -> list[Row]:
        q = (
            select(eprescription_queue)
            .where(eprescription_queue.c.status == "queued", eprescription_queue.c.next_attempt_at <= now)
            .order_by(eprescription_queue.c.next_attempt_at)
            .limit(limit)
        )
        return [dict(r) for r in (await self.s.execute(q)).mappings()]

    async def claim(self, entry_id: str, seen_next: datetime, lease_until: datetime) -> bool:
        """Take an entry for sending (one sender at a time, also across processes)."""
        res = await self.s.execute(
            update(eprescription_queue)
            .where(
                eprescription_queue.c.id == entry_id,
                eprescription_queue.c.status == "queued",
                eprescription_queue.c.next_attempt_at == seen_next,
            )
            .values(next_attempt_at=lease_until)
        )
        return (res.rowcount or 0) == 1

    async def update(self, entry_id: str, **values: Any) -> None:
        await self.s.execute(
            update(eprescription_queue).where(eprescription_queue.c.id == entry_id).values(**values)
        )
