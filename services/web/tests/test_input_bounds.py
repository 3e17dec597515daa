"""Bounded, clean form input: an over-long password is refused before any hashing, a username or display
name with control characters and over-long search boxes get a Vietnamese error next to the field, and
nothing is created."""

from __future__ import annotations

import re
import uuid

import httpx

from .conftest import csrf_of, http_sign_in


async def _login(c: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    return await c.post("/login", data={"username": username, "password": password, "csrf_token": token})


async def test_sign_in_refuses_over_long_passwords_and_unclean_usernames(stack) -> None:
    web = stack.web.rt.extras["web"]
    before = next(u for u in await web.accounts.users() if u["username"] == "doctor")
    async with httpx.AsyncClient(base_url=stack.url) as c:
        r = await _login(c, "doctor", "x" * 100_000)  # argon2 never sees it
        assert r.status_code == 422 and 'id="password-error"' in r.text
        assert "Mật khẩu tối đa 1024 ký tự." in r.text
        r = await _login(c, "doc\x00tor", "khong-quan-trong")
        assert r.status_code == 422 and 'id="username-error"' in r.text
        assert "Tên đăng nhập không hợp lệ" in r.text and "\x00" not in r.text
        r = await _login(c, "d" * 5000, "khong-quan-trong")
        assert r.status_code == 422 and "Tên đăng nhập không hợp lệ" in r.text and "d" * 100 not in r.text
        assert "hospital_session" not in c.cookies
    after = next(u for u in await web.accounts.users() if u["username"] == "doctor")
    assert after == before  # no failed attempt counted, no lock


async def test_display_names_are_bounded_and_clean(stack) -> None:
    web = stack.web.rt.extras["web"]
    admin = await http_sign_in(stack.url, "admin")
    try:
        for display in ("Trần Văn\x00Bình", "Trần Văn Bình " * 20):
            name = f"kt.{uuid.uuid4().hex[:6]}"
            page = await admin.get("/admin/users")
            r = await admin.post(
                "/admin/users",
                data={
                    "csrf_token": csrf_of(page.text),
                    "username": name,
                    "display_name": display,
                    "role": "nurse",
                    "password": "Mat-khau-dung-1",
                },
            )
            assert r.status_code == 422 and 'id="new-display_name-error"' in r.text, r.text
            assert "Họ tên hiển thị tối đa 200 ký tự, không chứa ký tự điều khiển." in r.text
            assert name not in {u["username"] for u in await web.accounts.users()}
        # a clean name is stored normalised: one line, NFC (base letter + combining mark becomes one letter)
        name = f"kt.{uuid.uuid4().hex[:6]}"
        page = await admin.get("/admin/users")
        r = await admin.post(
            "/admin/users",
            data={
                "csrf_token": csrf_of(page.text),
                "username": name,
                "display_name": "  Trần   Văn Bi\u0300nh ",
                "role": "nurse",
                "password": "Mat-khau-dung-1",
            },
        )
        assert r.status_code == 200, r.text
        user = next(u for u in await web.accounts.users() if u["username"] == name)
        assert user["display_name"] == "Trần Văn Bình"
    finally:
        await admin.aclose()


async def test_search_boxes_are_bounded(stack) -> None:
    for role, url in (("receptionist", "/reception/search"), ("doctor", "/doctor/icd10")):
        c = await http_sign_in(stack.url, role)
        try:
            r = await c.get(url, params={"q": "nguyễn " * 30})
            assert r.status_code == 422, (url, r.text)
            assert 'class="field-error"' in r.text
            assert "Từ khoá tìm kiếm tối đa 100 ký tự, không chứa ký tự điều khiển." in r.text
            # a control character in any query string is refused by the chassis before the page runs
            r = await c.get(url, params={"q": "viem\x00phoi"})
            assert r.status_code == 400 and r.json()["code"] == "request.control_character"
        finally:
            await c.aclose()
