"""Request plumbing of the pages: the session cookie, CSRF, roles per screen, language, rendering."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hospital.chassis.caller import Caller
from hospital.chassis.web import client_address
from hospital.web import i18n
from hospital.web.adapters.backends import Backends
from hospital.web.app.accounts import Accounts, WebSession
from hospital.web.app.once import Once
from hospital.web.app.tokens import TokenMinter
from hospital.web.app.viewer import StudyGrants
from hospital.web.config import WebSettings
from hospital.web.domain.roles import BY_KEY, screens_for

SESSION_COOKIE = "hospital_session"
PRE_CSRF_COOKIE = "hospital_csrf"  # sign-in form only (no session yet): double-submit
LANG_COOKIE = "hospital_lang"
HERE = Path(__file__).resolve().parent.parent
STATIC_VERSION = "3"


@dataclass
class Web:
    settings: WebSettings
    accounts: Accounts
    backends: Backends
    tokens: TokenMinter
    once: Once
    nc: Any = None  # the NATS connection: live screens follow the services' events
    identity: Any = None  # the web's own service identity (signed waiting-room displays)
    grants: StudyGrants = field(default_factory=lambda: StudyGrants())  # studies a session may view


class NotSignedIn(Exception):
    pass


class PasswordChangeRequired(Exception):
    """The user's password was set by an admin: every screen sends them to /password first."""


# What a user who must change their password may still open.
PASSWORD_CHANGE_PATHS = ("/password", "/logout", "/language")


class Forbidden(Exception):
    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


class CsrfRefused(Exception):
    pass


def web(request: Request) -> Web:
    state: Web = request.app.state.web
    return state


def lang(request: Request) -> i18n.Lang:
    value = request.cookies.get(LANG_COOKIE)
    if value in i18n.LANGS:
        return value  # type: ignore[return-value]
    return web(request).settings.default_language


env = Environment(
    loader=FileSystemLoader(str(HERE / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    enable_async=False,
)


def vnd(amount: int | float | None) -> str:
    """Whole đồng the Vietnamese way: 1.234.567 ₫."""
    return f"{int(amount or 0):,}".replace(",", ".") + " ₫"


env.filters["vnd"] = vnd
HOSPITAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LOCAL_TZ = HOSPITAL_TZ


def local_time(ts: Any, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """A protobuf Timestamp (or an aware datetime) as the hospital's local time; empty when unset."""
    if ts is None:
        return ""
    if hasattr(ts, "ToDatetime"):
        if not ts.seconds and not ts.nanos:
            return ""
        ts = ts.ToDatetime(tzinfo=UTC)
    return str(ts.astimezone(HOSPITAL_TZ).strftime(fmt))


env.filters["local_time"] = local_time


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    language = lang(request)
    sess: WebSession | None = getattr(request.state, "web_session", None)

    def t(key: str, **values: Any) -> str:
        return i18n.translate(key, language, **values)

    nav = screens_for(sess.user.role) if sess and not sess.must_change_password else []
    here = request.url.path
    current = max(
        (x.path for x in nav if here == x.path or here.startswith(x.path + "/")), key=len, default=""
    )
    ctx = {
        "request": request,
        "t": t,
        "lang": language,
        "session": sess,
        "user": sess.user if sess else None,
        "csrf_token": sess.csrf_token if sess else "",
        "nav": nav,
        "nav_current": current,
        "path": request.url.path,
        "static_version": STATIC_VERSION,
        "lang_url": f"/language?to={'en' if language == 'vi' else 'vi'}&next={quote(_here(request))}",
    }
    ctx.update(context)
    html = env.get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def current_session(request: Request) -> WebSession:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    sess = await web(request).accounts.session(cookie) if cookie else None
    if sess is None:
        raise NotSignedIn()
    request.state.web_session = sess
    if sess.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PasswordChangeRequired()
    return sess


async def optional_session(request: Request) -> WebSession | None:
    try:
        return await current_session(request)
    except NotSignedIn:
        return None


def screen(key: str) -> Any:
    """Dependency: a signed-in user whose role may open screen ``key``; on POST also a valid CSRF token."""
    allowed = BY_KEY[key].roles

    async def dep(request: Request, sess: Annotated[WebSession, Depends(current_session)]) -> WebSession:
        if sess.user.role not in allowed:
            raise Forbidden(sess.user.role)
        await check_csrf(request, sess)
        return sess

    return Depends(dep)


async def signed_in(request: Request, sess: Annotated[WebSession, Depends(current_session)]) -> WebSession:
    await check_csrf(request, sess)
    return sess


SignedIn = Annotated[WebSession, Depends(signed_in)]


async def check_csrf(request: Request, sess: WebSession) -> None:
    """Unsafe methods need the session's CSRF token (form field ``csrf_token`` or ``X-CSRF-Token``) and,
    when the browser sends one, an Origin of this site."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRefused()
    sent = request.headers.get("x-csrf-token")
    if not sent:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else ""
    if not sent or not hmac.compare_digest(sent, sess.csrf_token):
        raise CsrfRefused()


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(32)


def caller(request: Request, sess: WebSession) -> Caller:
    return Caller(sess.user.principal, client_address(request))


def token(request: Request, sess: WebSession) -> str:
    return web(request).tokens.token_for(sess.user)


def safe_next(value: str | None) -> str | None:
    """Only a path on this site (no scheme, no //host) may be a redirect target after sign-in."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    return value
