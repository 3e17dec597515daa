"""Use cases of local accounts: sign-in with lock-out, browser sessions, users managed by an admin.

Passwords are hashed with argon2id (argon2-cffi; its parameters live in each hash and are upgraded on the
next sign-in when the defaults change). Hashing runs in a worker thread so a sign-in never stalls the
event loop. A session cookie holds 32 random bytes; the table keeps only their SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.security import Principal
from hospital.web.adapters import store
from hospital.web.config import WebSettings
from hospital.web.domain.accounts import (
    PASSWORD_INPUT_MAX,
    after_failure,
    check_display_name,
    check_password,
    check_role,
    check_username,
    is_locked,
)
from hospital.web.domain.roles import ROLES, demo_display_name

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
# Verified against when the username is unknown, so the answer takes as long as for a real account.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(DomainError):
    """Wrong username or password (code signin.invalid), or the account is locked (signin.locked)."""

    status = 401


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    role: str
    departments: tuple[str, ...] = ()  # the EMR's chart access (the token's "departments" claim)

    @property
    def principal(self) -> Principal:
        return Principal(
            subject=f"user:{self.username}", name=self.display_name, roles=frozenset({self.role})
        )


@dataclass(frozen=True)
class WebSession:
    id: str  # SHA-256 of the cookie value
    csrf_token: str
    user: User
    expires_at: datetime
    # the password was set by an admin (created or reset): only the password change is open (ADR 0602)
    must_change_password: bool = False


# Departments of the demo users (the EMR's chart access): the outpatient clinic and internal medicine.
DEMO_DEPARTMENTS = {"doctor": "KKB,NTH,CC", "nurse": "KKB,NTH"}


def split_departments(value: str | None) -> tuple[str, ...]:
    return tuple(d for d in (x.strip().upper() for x in (value or "").split(",")) if d)


def session_id(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(stored: str, password: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


def _anonymous(username: str, client: str) -> Caller:
    return Caller(Principal(subject=f"user:{username[:100]}", name=username[:100], roles=frozenset()), client)


class Accounts:
    def __init__(self, rt: Runtime[WebSettings], settings: WebSettings) -> None:
        self.rt, self.s = rt, settings

    # ------------------------------------------------------------------ sign-in and sessions
    async def sign_in(self, username: str, password: str, client: str) -> tuple[str, WebSession]:
        """Check the password; on success open a session and return (cookie value, session)."""
        name = (username or "").strip().lower()[:100]
        if len(password or "") > PASSWORD_INPUT_MAX:  # refused before any hashing
            raise SignInRefused("signin.invalid", "wrong username or password", field="password")
        caller = _anonymous(name, client)
        now = utcnow()
        async with self.rt.uow() as uow:
            row = await store.user_by_name(uow.session, name) if name else None
        if row is None:
            await _verify(_DUMMY_HASH, password or "")
            await self._audit(caller, "signin.failed", None, reason="unknown_user")
            raise SignInRefused("signin.invalid", "wrong username or password", field="password")
        if not row["active"]:
            await _verify(_DUMMY_HASH, password or "")
            await self._audit(caller, "signin.failed", row["id"], reason="inactive")
            raise SignInRefused("signin.invalid", "wrong username or password", field="password")
        if is_locked(row["locked_until"], now):
            await self._audit(caller, "signin.refused_locked", row["id"])
            raise SignInRefused(
                "signin.locked", "the account is locked after repeated wrong passwords", field="username"
            )
        ok = await _verify(row["password_hash"], password or "")
        async with self.rt.uow() as uow:
            if not ok:
                failed, locked = after_failure(
                    row["failed_attempts"], now, limit=self.s.lockout_failures, minutes=self.s.lockout_minutes
                )
                await store.update_user(
                    uow.session, row["id"], failed_attempts=failed, locked_until=locked, updated_at=now
                )
                uow.audit(
                    caller.audit(
                        "signin.failed",
                        "User",
                        row["id"],
                        None,
                        reason="wrong_password",
                        locked=locked is not None,
                    )
                )
                await uow.commit()
                if locked is not None:
                    raise SignInRefused(
                        "signin.locked",
                        "the account is locked after repeated wrong passwords",
                        field="username",
                    )
                raise SignInRefused("signin.invalid", "wrong username or password", field="password")
            values: dict[str, object] = {
                "failed_attempts": 0,
                "locked_until": None,
                "last_login_at": now,
                "updated_at": now,
            }
            if _hasher.check_needs_rehash(row["password_hash"]):
                values["password_hash"] = await hash_password(password)
            await store.update_user(uow.session, row["id"], **values)
            cookie = secrets.token_urlsafe(32)
            sess = {
                "id": session_id(cookie),
                "user_id": row["id"],
                "csrf_token": secrets.token_urlsafe(32),
                "created_at": now,
                "last_seen_at": now,
                "expires_at": self._expiry(now, now),
                "ended_at": None,
                "client": client[:200],
            }
            await store.insert_session(uow.session, sess)
            user = User(
                row["id"],
                row["username"],
                row["display_name"],
                row["role"],
                split_departments(row["departments"]),
            )
            uow.audit(Caller(user.principal, client).audit("signin", "User", row["id"], None))
            await uow.commit()
        return cookie, WebSession(
            sess["id"],  # type: ignore[arg-type]
            sess["csrf_token"],  # type: ignore[arg-type]
            user,
            sess["expires_at"],  # type: ignore[arg-type]
            bool(row["must_change_password"]),
        )

    def _expiry(self, created: datetime, now: datetime) -> datetime:
        return min(
            created + timedelta(hours=self.s.session_max_hours),
            now + timedelta(minutes=self.s.session_idle_minutes),
        )

    async def session(self, cookie_value: str) -> WebSession | None:
        """The live session of a cookie (its idle timer restarted), or None."""
        if not cookie_value or len(cookie_value) > 200:
            return None
        sid, now = session_id(cookie_value), utcnow()
        async with self.rt.db.session() as s:
            found = await store.live_session(s, sid, now)
        if found is None:
            return None
        row, u = found
        expires = row["expires_at"]
        if now - row["last_seen_at"] > timedelta(seconds=60):  # one write a minute, not one per request
            expires = self._expiry(row["created_at"], now)
            async with self.rt.uow() as uow:
                await store.touch_session(uow.session, sid, now, expires)
                await uow.commit()
        return WebSession(
            sid,
            row["csrf_token"],
            User(u["id"], u["username"], u["display_name"], u["role"], split_departments(u["departments"])),
            expires,
            u["must_change_password"],
        )

    async def sign_out(self, sess: WebSession, client: str) -> None:
        async with self.rt.uow() as uow:
            await store.end_session(uow.session, sess.id, utcnow())
            uow.audit(Caller(sess.user.principal, client).audit("signout", "User", sess.user.id, None))
            await uow.commit()

    async def audit(
        self,
        caller: Caller,
        action: str,
        resource_type: str,
        resource_id: str | None,
        patient_id: str | None,
        **detail: object,
    ) -> None:
        """A read of patient data the web itself serves (e.g. the image viewer) in its audit trail."""
        async with self.rt.uow() as uow:
            uow.audit(caller.audit(action, resource_type, resource_id, patient_id, **detail))
            await uow.commit()

    async def _audit(self, caller: Caller, action: str, user_id: str | None, **detail: object) -> None:
        async with self.rt.uow() as uow:
            uow.audit(caller.audit(action, "User", user_id, None, **detail))
            await uow.commit()

    # ------------------------------------------------------------------ administration
    async def users(self) -> list[dict[str, object]]:
        async with self.rt.db.session() as s:
            rows = await store.list_users(s)
        now = utcnow()
        return [
            {
                k: r[k]
                for k in (
                    "id",
                    "username",
                    "display_name",
                    "role",
                    "active",
                    "last_login_at",
                    "must_change_password",
                )
            }
            | {"locked": is_locked(r["locked_until"], now)}
            for r in rows
        ]

    async def create_user(
        self,
        username: str,
        display_name: str,
        role: str,
        password: str,
        caller: Caller,
        departments: str = "",
    ) -> User:
        name = check_username(username)
        display = check_display_name(display_name)
        check_role(role)
        check_password(password, min_length=self.s.password_min_length, username=name)
        hashed = await hash_password(password)
        now = utcnow()
        async with self.rt.uow() as uow:
            if await store.user_by_name(uow.session, name) is not None:
                raise Conflict("user.exists", f"username {name!r} is taken", field="username")
            uid = new_id()
            await store.insert_user(
                uow.session,
                {
                    "id": uid,
                    "username": name,
                    "display_name": display,
                    "role": role,
                    "departments": ",".join(split_departments(departments)),
                    "password_hash": hashed,
                    "active": True,
                    "failed_attempts": 0,
                    "locked_until": None,
                    "must_change_password": True,  # the admin knows it: the user sets their own
                    "password_changed_at": now,
                    "last_login_at": None,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            uow.audit(caller.audit("user.create", "User", uid, None, username=name, role=role))
            await uow.commit()
        return User(uid, name, display, role, split_departments(departments))

    async def reset_password(self, user_id: str, password: str, caller: Caller) -> None:
        """Set a new password, unlock the account and end its sessions."""
        now = utcnow()
        async with self.rt.db.session() as s:
            row = await store.user_by_id(s, user_id)
        if row is None:
            raise NotFound("user.not_found", f"no user {user_id}")
        check_password(password, min_length=self.s.password_min_length, username=row["username"])
        hashed = await hash_password(password)
        async with self.rt.uow() as uow:
            await store.update_user(
                uow.session,
                user_id,
                password_hash=hashed,
                failed_attempts=0,
                locked_until=None,
                must_change_password=True,  # the admin knows it: the user sets their own at sign-in
                password_changed_at=now,
                updated_at=now,
            )
            ended = await store.end_user_sessions(uow.session, user_id, now)
            uow.audit(caller.audit("user.password_reset", "User", user_id, None, sessions_ended=ended))
            await uow.commit()

    async def change_password(
        self, sess: WebSession, current: str, new: str, confirm: str, client: str
    ) -> None:
        """The user sets their own password: the current one is checked (a wrong one counts towards the
        lock-out), the new one follows the policy, differs from the current one and is typed twice. The
        user's other sessions end; this one goes on."""
        if len(current or "") > PASSWORD_INPUT_MAX:
            raise Invalid("password.current_wrong", "the current password is wrong", field="current_password")
        async with self.rt.db.session() as s:
            row = await store.user_by_id(s, sess.user.id)
        if row is None:
            raise NotFound("user.not_found", f"no user {sess.user.id}")
        caller = Caller(sess.user.principal, client)
        if not await _verify(row["password_hash"], current or ""):
            now = utcnow()
            failed, locked = after_failure(
                row["failed_attempts"], now, limit=self.s.lockout_failures, minutes=self.s.lockout_minutes
            )
            async with self.rt.uow() as uow:
                await store.update_user(
                    uow.session, row["id"], failed_attempts=failed, locked_until=locked, updated_at=now
                )
                if locked is not None:
                    await store.end_user_sessions(uow.session, row["id"], now)
                uow.audit(
                    caller.audit("password_change.failed", "User", row["id"], None, locked=locked is not None)
                )
                await uow.commit()
            raise Invalid("password.current_wrong", "the current password is wrong", field="current_password")
        check_password(new, min_length=self.s.password_min_length, username=row["username"])
        if new != confirm:
            raise Invalid("password.mismatch", "the two new passwords differ", field="confirm_password")
        if new == current:
            raise Invalid(
                "password.unchanged", "choose a password other than the current one", field="password"
            )
        hashed = await hash_password(new)
        now = utcnow()
        async with self.rt.uow() as uow:
            await store.update_user(
                uow.session,
                row["id"],
                password_hash=hashed,
                must_change_password=False,
                failed_attempts=0,
                password_changed_at=now,
                updated_at=now,
            )
            ended = await store.end_user_sessions(uow.session, row["id"], now, keep_session_id=sess.id)
            uow.audit(
                caller.audit(
                    "user.password_change",
                    "User",
                    row["id"],
                    None,
                    was_forced=bool(row["must_change_password"]),
                    sessions_ended=ended,
                )
            )
            await uow.commit()

    async def ensure_demo_users(self, password: str) -> list[str]:
        """One user per role named after the role, with ``password`` (created, or reset to it)."""
        check_password(password, min_length=self.s.password_min_length, username="")
        hashed = await hash_password(password)
        now = utcnow()
        system = Caller(
            Principal(subject="system:web-demo-users", name="make up", roles=frozenset()), "local"
        )
        async with self.rt.uow() as uow:
            for role in ROLES:
                row = await store.user_by_name(uow.session, role)
                if row is None:
                    uid = new_id()
                    await store.insert_user(
                        uow.session,
                        {
                            "id": uid,
                            "username": role,
                            "display_name": demo_display_name(role),
                            "role": role,
                            "departments": DEMO_DEPARTMENTS.get(role, ""),
                            "password_hash": hashed,
                            "active": True,
                            "failed_attempts": 0,
                            "locked_until": None,
                            "must_change_password": False,
                            "password_changed_at": now,
                            "last_login_at": None,
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                    uow.audit(
                        system.audit("user.create", "User", uid, None, username=role, role=role, demo=True)
                    )
                else:
                    await store.update_user(
                        uow.session,
                        row["id"],
                        password_hash=hashed,
                        failed_attempts=0,
                        locked_until=None,
                        role=role,
                        departments=DEMO_DEPARTMENTS.get(role, ""),
                        active=True,
                        must_change_password=False,  # demo users keep the make-up password (ADR 0602)
                        updated_at=now,
                    )
            await uow.commit()
        return list(ROLES)
