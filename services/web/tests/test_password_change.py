"""A password an admin set (a new account, a reset) is changed by its user at the next sign-in, before any
screen opens: in Chromium, with the errors next to their fields; demo users are not asked (ADR 0602)."""

from __future__ import annotations

import uuid

from playwright.async_api import expect

from .conftest import csrf_of, http_sign_in, new_context, shot, sign_in
from .test_accessibility import axe


async def create_user(stack, name: str, password: str) -> str:
    admin = await http_sign_in(stack.url, "admin")
    try:
        page = await admin.get("/admin/users")
        r = await admin.post(
            "/admin/users",
            data={
                "csrf_token": csrf_of(page.text),
                "username": name,
                "display_name": "Mai Thị Thu Trang",
                "role": "cashier",
                "password": password,
            },
        )
        assert r.status_code == 200 and f"Đã tạo tài khoản {name}" in r.text
        assert "Chờ đổi mật khẩu" in r.text
    finally:
        await admin.aclose()
    users = await stack.web.rt.extras["web"].accounts.users()
    return next(u["id"] for u in users if u["username"] == name)


async def test_a_new_user_sets_their_own_password_before_any_screen(stack, browser) -> None:
    name = f"tn.{uuid.uuid4().hex[:6]}"
    uid = await create_user(stack, name, "Mat-khau-ban-dau-1")
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, name, "Mat-khau-ban-dau-1")
    assert page.url.endswith("/password")
    await expect(page.locator("#pw-forced")).to_contain_text("do quản trị viên đặt")
    await expect(page.locator("#current_password")).to_be_focused()
    assert await page.locator("nav.nav a[data-hotkey]").count() == 0  # no screen offered yet
    await shot(page, "40-password-forced")
    # every screen sends the user back here; a form posted elsewhere changes nothing
    await page.goto(stack.url + "/cashier")
    assert page.url.endswith("/password")
    # errors next to their fields, in Vietnamese
    await page.fill("#current_password", "sai-mat-khau-roi")
    await page.fill("#password", "Mat-khau-cua-toi-7")
    await page.fill("#confirm_password", "Mat-khau-cua-toi-7")
    await page.click("#change-password")
    await expect(page.locator("#current_password-error")).to_contain_text("Mật khẩu hiện tại không đúng")
    await page.fill("#current_password", "Mat-khau-ban-dau-1")
    await page.fill("#password", "Mat-khau-cua-toi-7")
    await page.fill("#confirm_password", "Mat-khau-cua-toi-8")
    await page.click("#change-password")
    await expect(page.locator("#confirm_password-error")).to_contain_text("không giống nhau")
    await page.fill("#current_password", "Mat-khau-ban-dau-1")
    await page.fill("#password", "Mat-khau-ban-dau-1")
    await page.fill("#confirm_password", "Mat-khau-ban-dau-1")
    await page.click("#change-password")
    await expect(page.locator("#password-error")).to_contain_text("phải khác mật khẩu hiện tại")
    await page.fill("#current_password", "Mat-khau-ban-dau-1")
    await page.fill("#password", "ngan")
    await page.fill("#confirm_password", "ngan")
    await page.click("#change-password")
    await expect(page.locator("#password-error")).to_contain_text("ít nhất 10 ký tự")
    await shot(page, "41-password-errors")
    assert await axe(page) == []
    # the right way: on to the cashier's desk
    await page.fill("#current_password", "Mat-khau-ban-dau-1")
    await page.fill("#password", "Mat-khau-cua-toi-7")
    await page.fill("#confirm_password", "Mat-khau-cua-toi-7")
    await page.click("#change-password")
    await page.wait_for_url("**/cashier")
    await ctx.close()
    # the old password no longer works; the new one opens the desk at once
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await page.goto(stack.url + "/")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", "Mat-khau-ban-dau-1")
    await page.press("input[name=password]", "Enter")
    await expect(page.locator("#password-error")).to_contain_text("Sai tên đăng nhập hoặc mật khẩu")
    await sign_in(page, stack.url, name, "Mat-khau-cua-toi-7")
    assert page.url.endswith("/cashier")
    await ctx.close()
    # an admin's reset asks again
    admin = await http_sign_in(stack.url, "admin")
    page_html = (await admin.get("/admin/users")).text
    r = await admin.post(
        f"/admin/users/{uid}/password",
        data={"csrf_token": csrf_of(page_html), "password": "Dat-lai-boi-admin-3"},
    )
    assert r.status_code == 200
    await admin.aclose()
    client = await http_sign_in(stack.url, name, "Dat-lai-boi-admin-3")
    try:
        r = await client.get("/cashier")
        assert r.status_code == 303 and r.headers["location"] == "/password"
        r = await client.get("/cashier/invoices", headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["hx-redirect"] == "/password"
        home = await client.get("/password")
        r = await client.post("/cashier/shift", data={"csrf_token": csrf_of(home.text), "opening_float": "0"})
        assert r.status_code == 403  # nothing done before the password is changed
    finally:
        await client.aclose()


async def test_demo_users_are_not_asked_to_change_their_password(stack) -> None:
    client = await http_sign_in(stack.url, "cashier")
    try:
        assert (await client.get("/cashier")).status_code == 200
    finally:
        await client.aclose()
