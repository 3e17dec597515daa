"""Administration: users (create, reset password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.chassis.errors import DomainError
from hospital.web import i18n
from hospital.web.api.deps import WebSession, caller, lang, render, screen, web
from hospital.web.domain.roles import ROLES

router = APIRouter(prefix="/admin", tags=["administration"])
Admin = Annotated[WebSession, screen("users")]


def _field_error(request: Request, exc: DomainError) -> str:
    key = f"err.{exc.code}"
    if i18n.has(key):
        return i18n.translate(key, lang(request), min=web(request).settings.password_min_length)
    return exc.message


async def _page(request: Request, status: int = 200, **context: object) -> Response:
    users = await web(request).accounts.users()
    ctx: dict[str, object] = {"errors": {}, "values": {}, "notice": "", "reset_errors": {}, "reset_for": ""}
    ctx.update(context)
    return render(
        request,
        "users.html",
        status=status,
        users=users,
        roles=ROLES,
        min_length=web(request).settings.password_min_length,
        **ctx,
    )


@router.get("/users", response_class=HTMLResponse, summary="Users and their roles")
async def users(request: Request, sess: Admin) -> Response:
    return await _page(request)


@router.post("/users", response_class=HTMLResponse, summary="Create a user")
async def create(
    request: Request,
    sess: Admin,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    departments: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    values = {"username": username, "display_name": display_name, "role": role, "departments": departments}
    try:
        user = await web(request).accounts.create_user(
            username, display_name, role, password, caller(request, sess), departments
        )
    except DomainError as exc:
        return await _page(
            request, status=422, errors={exc.field or "username": _field_error(request, exc)}, values=values
        )
    return await _page(request, notice=i18n.translate("users.created", lang(request), username=user.username))


@router.post("/users/{user_id}/password", response_class=HTMLResponse, summary="Reset a user's password")
async def reset(
    request: Request, sess: Admin, user_id: str, password: Annotated[str, Form()] = ""
) -> Response:
    w = web(request)
    try:
        await w.accounts.reset_password(user_id, password, caller(request, sess))
    except DomainError as exc:
        return await _page(
            request, status=422, reset_errors={user_id: _field_error(request, exc)}, reset_for=user_id
        )
    name = next((u["username"] for u in await w.accounts.users() if u["id"] == user_id), "")
    return await _page(request, notice=i18n.translate("users.reset_done", lang(request), username=name))
