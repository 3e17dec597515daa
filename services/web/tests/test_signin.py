"""Sign-in, lock-out, CSRF, sign-out and the roles' screens, against the running web and admissions."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from hospital.web.domain.roles import ROLES, SCREENS

from .conftest import DEMO_PASSWORD, csrf_of, http_sign_in, new_context, shot, sign_in


async def test_root_is_the_sign_in_page_and_each_demo_user_signs_in(stack, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await page.goto(stack.url + "/")
    assert await page.locator("form[action='/login'] input[name=username]").count() == 1
    assert await page.locator("form[action='/login'] input[name=password][type=password]").count() == 1
    assert await page.locator("html").get_attribute("lang") == "vi"
    assert "Đăng nhập" in await page.locator("h1").inner_text()
    await shot(page, "01-sign-in")
    await sign_in(page, stack.url, "receptionist")
    assert page.url.endswith("/reception")
    cookies = {c["name"]: c for c in await ctx.cookies()}
    session = cookies["hospital_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # no script can read the session
    await page.goto(stack.url + "/home")
    await shot(page, "02-home-receptionist")
    # the English switch keeps the page
    await page.click("a.lang")
    await page.wait_for_url(stack.url + "/home")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert "Sign out" in await page.locator("header").inner_text()
    # sign-out ends the session on the server: the old cookie no longer opens a screen
    await page.click("text=Sign out")
    await page.wait_for_url(re.compile(r".*/\?signed_out=1$"))
    async with httpx.AsyncClient(base_url=stack.url, cookies={"hospital_session": session["value"]}) as old:
        r = await old.get("/reception")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    await ctx.close()


async def test_wrong_passwords_lock_the_account_until_an_admin_resets_it(stack) -> None:
    web = stack.web.rt.extras["web"]
    name = f"kt.{uuid.uuid4().hex[:6]}"
    admin = await http_sign_in(stack.url, "admin")
    page = await admin.get("/admin/users")
    r = await admin.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page.text),
            "username": name,
            "display_name": "Trịnh Văn Khải",
            "role": "lab_technician",
            "password": "Mat-khau-dung-1",
        },
    )
    assert r.status_code == 200 and f"Đã tạo tài khoản {name}" in r.text
    async with httpx.AsyncClient(base_url=stack.url) as c:
        for attempt in range(web.settings.lockout_failures):
            login = await c.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)[1]
            r = await c.post(
                "/login", data={"username": name, "password": "sai-mat-khau", "csrf_token": token}
            )
            assert r.status_code == 401
            if attempt < web.settings.lockout_failures - 1:
                assert "Sai tên đăng nhập hoặc mật khẩu." in r.text
        assert "Tài khoản tạm khoá" in r.text
        # locked: even the right password is refused, with the lock-out message next to the username
        login = await c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)[1]
        r = await c.post(
            "/login", data={"username": name, "password": "Mat-khau-dung-1", "csrf_token": token}
        )
        assert r.status_code == 401 and 'id="username-error"' in r.text and "Tài khoản tạm khoá" in r.text
    # the admin resets the password: the account is unlocked with the new one
    users = await web.accounts.users()
    uid = next(u["id"] for u in users if u["username"] == name)
    assert next(u for u in users if u["id"] == uid)["locked"]
    page = await admin.get("/admin/users")
    r = await admin.post(
        f"/admin/users/{uid}/password", data={"csrf_token": csrf_of(page.text), "password": "Mat-khau-moi-22"}
    )
    assert r.status_code == 200 and "Đã đặt lại mật khẩu" in r.text
    user = await http_sign_in(stack.url, name, "Mat-khau-moi-22")
    await user.aclose()
    await admin.aclose()


async def test_requests_without_the_csrf_token_are_refused(stack) -> None:
    # the sign-in form needs its own token (no login CSRF)
    async with httpx.AsyncClient(base_url=stack.url) as c:
        r = await c.post("/login", data={"username": "doctor", "password": DEMO_PASSWORD})
        assert r.status_code == 403 and "Yêu cầu bị từ chối" in r.text
        assert "hospital_session" not in c.cookies
    client = await http_sign_in(stack.url, "admin")
    page = await client.get("/admin/users")
    token = csrf_of(page.text)
    form = {
        "username": "khong.tao",
        "display_name": "Không Tạo",
        "role": "nurse",
        "password": "Mat-khau-dai-1",
    }
    r = await client.post("/admin/users", data=form)
    assert r.status_code == 403
    r = await client.post("/admin/users", data={**form, "csrf_token": "x" * 43})
    assert r.status_code == 403
    r = await client.post(
        "/admin/users", data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert all(u["username"] != "khong.tao" for u in await stack.web.rt.extras["web"].accounts.users())
    r = await client.post("/logout")  # sign-out too
    assert r.status_code == 403
    assert (await client.get("/home")).status_code == 200
    await client.aclose()


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_opens_only_its_screens(stack, role) -> None:
    client = await http_sign_in(stack.url, role)
    try:
        for screen in SCREENS:
            r = await client.get(screen.path)
            if role in screen.roles:
                assert r.status_code == 200, (role, screen.path, r.text[:300])
            else:
                assert r.status_code == 403, (role, screen.path)
                assert "Không có quyền truy cập" in r.text
        # nothing of another role's screens is offered in the menu
        home = (await client.get("/home")).text
        for screen in SCREENS:
            assert (f'href="{screen.path}"' in home) == (role in screen.roles), (role, screen.path)
    finally:
        await client.aclose()


async def test_signed_out_requests_go_to_the_sign_in_page(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        r = await c.get("/reception")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/reception"
        r = await c.get("/reception/search", params={"q": "Nguyễn"}, headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/login?next=")
        r = await c.get("/login", params={"next": "//evil.example/x"})
        assert 'value="//evil.example/x"' not in r.text
