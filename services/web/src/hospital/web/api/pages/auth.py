"""Sign-in, sign-out, the language switch and the start page."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hospital.chassis.errors import DomainError, Invalid
from hospital.chassis.fields import clean_text
from hospital.chassis.web import client_address
from hospital.web import i18n
from hospital.web.api.deps import (
    LANG_COOKIE,
    PRE_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfRefused,
    SignedIn,
    WebSession,
    lang,
    new_pre_csrf,
    optional_session,
    render,
    safe_next,
    web,
)
from hospital.web.app.accounts import SignInRefused
from hospital.web.domain.accounts import PASSWORD_INPUT_MAX, USERNAME_MAX
from hospital.web.domain.roles import home_for

router = APIRouter(tags=["sign-in"])


def _login_page(
    request: Request,
    *,
    status: int = 200,
    username: str = "",
    errors: dict[str, str] | None = None,
    notice: str = "",
    next_path: str = "",
) -> HTMLResponse:
    token = new_pre_csrf()
    resp = render(
        request,
        "login.html",
        status=status,
        pre_csrf=token,
        username=username,
        errors=errors or {},
        notice=notice,
        next_path=next_path,
    )
    resp.set_cookie(
        PRE_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=web(request).settings.cookie_secure,
    )
    return resp


@router.get("/", response_class=HTMLResponse, summary="The sign-in page, or the user's start screen")
async def index(request: Request, sess: Annotated[WebSession | None, Depends(optional_session)]) -> Response:
    if sess is not None:
        return RedirectResponse("/home", status_code=303)
    return _login_page(
        request,
        next_path=safe_next(request.query_params.get("next")) or "",
        notice=i18n.translate("signout.done", lang(request)) if "signed_out" in request.query_params else "",
    )


@router.get("/login", response_class=HTMLResponse, summary="The sign-in page")
async def login_page(request: Request) -> Response:
    notice = i18n.translate("signin.expired", lang(request)) if request.query_params.get("next") else ""
    return _login_page(request, next_path=safe_next(request.query_params.get("next")) or "", notice=notice)


def _clean(value: str) -> bool:
    try:
        clean_text(value, field="username", max_length=USERNAME_MAX)
    except Invalid:
        return False
    return True


@router.post("/login", response_class=HTMLResponse, summary="Sign in (form fields username, password)")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    cookie = request.cookies.get(PRE_CSRF_COOKIE, "")
    if not cookie or not csrf_token or not hmac.compare_digest(cookie, csrf_token):
        raise CsrfRefused()
    language = lang(request)
    errors: dict[str, str] = {}
    if not username.strip():
        errors["username"] = i18n.translate(
            "signin.required", language, field=i18n.translate("signin.username", language).lower()
        )
    elif len(username) > USERNAME_MAX or not _clean(username):
        errors["username"] = i18n.translate("signin.username_invalid", language)
        username = ""  # not shown back
    if not password:
        errors["password"] = i18n.translate(
            "signin.required", language, field=i18n.translate("signin.password", language).lower()
        )
    elif len(password) > PASSWORD_INPUT_MAX:
        errors["password"] = i18n.translate("signin.too_long", language, max=PASSWORD_INPUT_MAX)
    if errors:
        return _login_page(
            request, status=422, username=username, errors=errors, next_path=safe_next(next) or ""
        )
    w = web(request)
    try:
        cookie_value, sess = await w.accounts.sign_in(username, password, client_address(request))
    except SignInRefused as exc:
        if exc.code == "signin.locked":
            errors["username"] = i18n.translate("signin.locked", language, minutes=w.settings.lockout_minutes)
        else:
            errors["password"] = i18n.translate("signin.invalid", language)
        return _login_page(
            request, status=401, username=username, errors=errors, next_path=safe_next(next) or ""
        )
    target = safe_next(next) or home_for(sess.user.role) or "/home"
    if sess.must_change_password:  # set by an admin: the user chooses their own first (ADR 0602)
        target = "/password"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        httponly=True,
        samesite="strict",
        path="/",
        secure=w.settings.cookie_secure,
        max_age=w.settings.session_max_hours * 3600,
    )
    resp.delete_cookie(PRE_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout", summary="Sign out (ends the session)")
async def logout(request: Request, sess: SignedIn) -> Response:
    await web(request).accounts.sign_out(sess, client_address(request))
    resp = RedirectResponse("/?signed_out=1", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/language", summary="Switch the language (vi or en); a preference cookie only")
async def language(request: Request, to: str = "vi", next: str = "/") -> Response:
    resp = RedirectResponse(safe_next(next) or "/", status_code=303)
    if to in i18n.LANGS:
        resp.set_cookie(
            LANG_COOKIE,
            to,
            samesite="lax",
            path="/",
            max_age=365 * 86400,
            secure=web(request).settings.cookie_secure,
        )
    return resp


def _password_page(
    request: Request, status: int = 200, errors: dict[str, str] | None = None, notice: str = ""
) -> HTMLResponse:
    return render(
        request,
        "password.html",
        status=status,
        errors=errors or {},
        notice=notice,
        min_length=web(request).settings.password_min_length,
    )


@router.get("/password", response_class=HTMLResponse, summary="Change my password")
async def password_page(request: Request, sess: SignedIn) -> Response:
    return _password_page(request)


@router.post("/password", response_class=HTMLResponse, summary="Change my password")
async def change_password(
    request: Request,
    sess: SignedIn,
    current_password: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    w = web(request)
    if not current_password:
        field = i18n.translate("pwchange.current", language).lower()
        return _password_page(
            request, 422, {"current_password": i18n.translate("signin.required", language, field=field)}
        )
    try:
        await w.accounts.change_password(
            sess, current_password, password, confirm_password, client_address(request)
        )
    except DomainError as exc:
        key = f"err.{exc.code}"
        text = (
            i18n.translate(key, language, min=w.settings.password_min_length)
            if i18n.has(key)
            else exc.message
        )
        if (
            exc.code == "password.current_wrong"
            and await w.accounts.session(request.cookies.get(SESSION_COOKIE, "")) is None
        ):  # locked out: the session ended with it
            resp = RedirectResponse("/login", status_code=303)
            resp.delete_cookie(SESSION_COOKIE, path="/")
            return resp
        return _password_page(request, 422, {exc.field or "password": text})
    resp = RedirectResponse(home_for(sess.user.role) or "/home", status_code=303)
    return resp


@router.get("/home", response_class=HTMLResponse, summary="The user's start page: their screens")
async def home(request: Request, sess: SignedIn) -> Response:
    return render(request, "home.html")
