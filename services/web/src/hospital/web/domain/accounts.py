"""Rules for local accounts: usernames, password policy, lock-out."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.chassis.security import ROLES

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{2,63}$")
USERNAME_MAX = 64
# What a sign-in form accepts as a password: longer input is refused before hashing (argon2 on megabytes
# of input is a denial of service); passwords set here are at most 256 characters anyway.
PASSWORD_INPUT_MAX = 1024
DISPLAY_NAME_MAX = 200
SEARCH_MAX = 100  # a search box: a name, a code, words of a diagnosis


def check_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise Invalid(
            "user.username",
            "3-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter",
            field="username",
        )
    return name


def check_display_name(display_name: str) -> str:
    """The name shown on screens: one line (whitespace collapsed), NFC, no control characters, at most 200."""
    display = clean_text(
        display_name or "",
        field="display_name",
        max_length=DISPLAY_NAME_MAX,
        error_code="user.display_name_invalid",
    )
    if not display:
        raise Invalid("user.display_name", "the name shown on screens is required", field="display_name")
    return display


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid("user.role", f"role must be one of {', '.join(ROLES)}", field="role")
    return role


def check_password(password: str, *, min_length: int, username: str) -> str:
    if len(password or "") < min_length:
        raise Invalid("password.too_short", f"at least {min_length} characters", field="password")
    if len(password) > 256:
        raise Invalid("password.too_long", "at most 256 characters", field="password")
    if password.strip().lower() == username.lower():
        raise Invalid("password.is_username", "the password must not be the username", field="password")
    return password


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def after_failure(
    failed_attempts: int, now: datetime, *, limit: int, minutes: int
) -> tuple[int, datetime | None]:
    """Failed attempts and lock time after one more wrong password: the ``limit``-th locks the account."""
    failed = failed_attempts + 1
    if failed >= limit:
        return 0, now + timedelta(minutes=minutes)
    return failed, None
