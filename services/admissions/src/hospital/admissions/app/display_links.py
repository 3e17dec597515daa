"""Signed waiting-room display links: a TV in a waiting room shows a room's live queue without anyone
logging in on it, and nobody else can open streams on rooms of their choosing.

Staff (receptionist, nurse, admin) ask for a link for one room (``POST /api/v1/queues/{room}/display-link``);
the link carries the room's expiry and an HMAC of (room, expiry) under the display-link key:

    /api/v1/queues/P101/stream?exp=1767225600&sig=<base64url HMAC-SHA256>

The web front end's display page takes the same three values in its own address
(``/display/queue/P101?exp=…&sig=…``) and opens the stream (EventSource) with them. A link names one room
and stops working at its expiry; changing the key (``queue_display_key_file``) withdraws every link.
The key defaults to one derived from the service's audit key (a separate secret is not needed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hospital.admissions.app.reference import ReferenceService
from hospital.admissions.config import AdmissionsSettings
from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditKeyring, read_key_file
from hospital.chassis.caller import Caller
from hospital.chassis.errors import DomainError, Invalid, NotFound

_PURPOSE = b"hospital-admissions-queue-display-link-v1\n"


@dataclass(frozen=True)
class DisplayLink:
    room: str
    exp: int
    sig: str

    @property
    def query(self) -> str:
        return f"exp={self.exp}&sig={self.sig}"


class DisplayLinks:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: AdmissionsSettings, audit_keyring: AuditKeyring) -> DisplayLinks:
        key_file: Path | None = settings.queue_display_key_file
        if key_file:
            return cls(read_key_file(key_file, production=settings.environment == "production"))
        return cls(audit_keyring.derive(b"admissions queue display links"))

    def _sig(self, room: str, exp: int) -> str:
        mac = hmac.new(self._key, _PURPOSE + f"{room}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, room: str, valid_seconds: int, now: float | None = None) -> DisplayLink:
        exp = int((now if now is not None else time.time()) + valid_seconds)
        return DisplayLink(room, exp, self._sig(room, exp))

    def check(
        self, room: str, exp: int | None, sig: str | None, now: float | None = None
    ) -> tuple[str, str] | None:
        """None when the link is good for ``room`` now, else (code, why not)."""
        if exp is None or not sig:
            return "display_link.missing", "a display link (exp and sig) or a bearer token is needed"
        if not hmac.compare_digest(self._sig(room, exp), sig):
            return "display_link.invalid", "the display link's signature is not valid for this room"
        if exp < (now if now is not None else time.time()):
            return "display_link.expired", "the display link has expired: ask the reception for a new one"
        return None


class DisplayLinkService:
    """Issue display links (audited) and check a display's access to a room."""

    def __init__(
        self, rt: Runtime[AdmissionsSettings], links: DisplayLinks, reference: ReferenceService
    ) -> None:
        self.rt, self.links, self.reference = rt, links, reference

    async def issue(self, room: str, caller: Caller, valid_days: int) -> dict[str, Any]:
        max_days = self.rt.settings.queue_display_link_max_days
        if not 1 <= valid_days <= max_days:
            raise Invalid(
                "display_link.valid_days", f"valid_days must be 1 to {max_days}", field="valid_days"
            )
        if not await self.reference.room_known(room):
            raise NotFound("queue.room_unknown", f"no clinic room {room!r}")
        link = self.links.issue(room, valid_days * 86400)
        expires = datetime.fromtimestamp(link.exp, UTC)
        async with self.rt.uow() as uow:
            uow.audit(
                caller.audit(
                    "queue.display_link.issue", "ClinicRoom", room, None, expires_at=expires.isoformat()
                )
            )
            await uow.commit()
        path = f"/api/v1/queues/{quote(room, safe='')}"
        return {
            "room": room,
            "exp": link.exp,
            "sig": link.sig,
            "expires_at": expires.isoformat(),
            "stream_path": f"{path}/stream?{link.query}",
            "state_path": f"{path}?{link.query}",
            "display_path": f"/display/queue/{quote(room, safe='')}?{link.query}",
        }

    async def check_access(
        self, room: str, exp: int | None, sig: str | None, authorization: str | None, verifier: Any
    ) -> None:
        """A display may read ``room``: a good link for it, or a bearer token of any staff role; and
        the room exists. Raises 401 (``display_link.missing|invalid|expired``, or a bad token) or
        404 ``queue.room_unknown``; creates nothing."""
        if exp is not None or sig or not authorization:
            refused = self.links.check(room, exp, sig)
            if refused:
                raise DomainError(refused[0], refused[1], status=401)
        else:
            verifier.verify_header(authorization)  # AuthError: 401
        if not await self.reference.room_known(room):
            raise NotFound("queue.room_unknown", f"no clinic room {room!r}")
