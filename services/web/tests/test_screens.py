"""The screens in Chromium against the running services: the reception journey from a scanned CCCD to a
printed ticket, the waiting-room display following it live, field errors, a double click, a service down."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.testing.services import http_client

from .conftest import new_context, shot, sign_in

# CCCD QR codes as the card's chip-card QR prints them (invented people).
CCCD_THU = (
    "001190023456|012345679|Đinh Thị Minh Thư|12031990|Nữ|"
    "Số 5 Lý Thường Kiệt, Phường Hàng Bài, Hà Nội|15082021"
)
CCCD_QUANG = "038085004321|Hồ Văn Quang|20111985|Nam|Thôn 3, Xã Quảng Phú, Thanh Hoá|01032022"
CCCD_PHUONG = "040192007788|Lưu Thị Phương|05071992|Nữ|Khối 7, Phường Hưng Bình, Nghệ An|11062021"


async def queue(stack, room: str) -> dict:
    async with http_client(stack.admissions, "receptionist") as c:
        return (await c.get(f"/api/v1/queues/{room}")).json()


async def test_reception_scans_a_cccd_opens_a_visit_and_the_display_follows_live(stack, browser) -> None:
    room = "P103"
    display_ctx = await new_context(browser)
    display = await display_ctx.new_page()
    await sign_in(display, stack.url, "nurse")
    await display.goto(stack.url + "/display")
    await shot(display, "05-display-choose-room")
    await display.click(f"a[href='/display/{room}']")
    await expect(display.locator(".display-body")).to_be_visible()
    before = await queue(stack, room)
    await expect(display.locator("#waiting li")).to_have_count(len(before["waiting"]))

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "receptionist")
    assert page.url.endswith("/reception")
    scan = page.locator("#scan")
    await expect(scan).to_be_focused()  # the reader types into the focused field
    await shot(page, "03-reception-empty")
    # the USB reader types the QR text and presses Enter
    await page.keyboard.type(CCCD_THU, delay=2)
    await page.keyboard.press("Enter")
    form = page.locator("form.visit-form")
    await expect(form).to_be_visible()
    await expect(form.locator(".card-id")).to_contain_text("Đinh Thị Minh Thư")
    await expect(form.locator(".card-id")).to_contain_text("001190023456")
    new_record = form.locator("input[name=patient][value=new]")
    await expect(new_record).to_be_checked()  # nobody on file yet
    # opening without a room: the error stands next to the field, in Vietnamese
    await page.click("#open-visit")
    await expect(page.locator("#room-error")).to_have_text("Hãy chọn phòng khám.")
    await expect(page.locator("#room")).to_be_focused()
    await shot(page, "04-reception-field-error")
    await page.select_option("#room", room)
    await page.click("#open-visit")
    ticket = page.locator(".ticket-number")
    await expect(ticket).to_be_visible()
    number = int(await ticket.inner_text())
    assert number == (max(before["waiting"] + before["called"], default=0) + 1)
    await expect(page.locator(".ticket")).to_contain_text("Đinh Thị Minh Thư")
    await shot(page, "06-reception-ticket")
    # the display shows the new ticket without a reload
    await expect(display.locator("#waiting")).to_contain_text(str(number))
    await shot(display, "07-display-waiting")
    # the doctor calls the next patient: the display shows who is called
    async with http_client(stack.admissions, "doctor") as doctor:
        r = await doctor.post(f"/api/v1/queues/{room}/next", json={"action": "next"})
        assert r.status_code == 200, r.text
    now = (await queue(stack, room))["now_serving"]
    await expect(display.locator("#now-serving")).to_have_text(str(now))
    await shot(display, "08-display-now-serving")

    # the same card scanned again finds the record made a moment ago
    await page.keyboard.press("Escape")
    await expect(scan).to_be_focused()
    await page.keyboard.type(CCCD_THU, delay=1)
    await page.keyboard.press("Enter")
    existing = form.locator("input[name=patient]:not([value=new])")
    await expect(existing).to_have_count(1)
    await expect(existing).to_be_checked()
    await expect(form).to_contain_text("trùng số CCCD")
    # and the search finds her as the clerk types, with or without diacritics
    await page.keyboard.press("F3")
    await expect(page.locator("#search")).to_be_focused()
    await page.keyboard.type("dinh thi minh", delay=5)
    await expect(page.locator("#search-results .result")).to_contain_text(["Đinh Thị Minh Thư"])
    await shot(page, "09-reception-search")
    await page.locator("#search-results .result").first.click()
    await expect(form.locator(".card-id")).to_contain_text("Đinh Thị Minh Thư")
    await ctx.close()
    await display_ctx.close()


async def test_a_double_click_opens_one_visit(stack, browser) -> None:
    room = "P104"
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "receptionist")
    await page.fill("#scan", CCCD_QUANG)
    await page.press("#scan", "Enter")
    await page.select_option("#room", room)
    before = await queue(stack, room)
    await page.dblclick("#open-visit")
    await expect(page.locator(".ticket-number")).to_be_visible()
    after = await queue(stack, room)
    assert len(after["waiting"]) == len(before["waiting"]) + 1
    # a replay of the same form (same one-time key) gets the same ticket, not a second visit
    await ctx.close()


async def test_unreadable_code_is_explained_next_to_the_scan_field(stack, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "receptionist")
    await page.fill("#scan", "xin chào")
    await page.press("#scan", "Enter")
    await expect(page.locator("#scan-error")).to_contain_text("Không nhận ra mã")
    await ctx.close()


async def test_admissions_down_shows_which_part_is_unavailable(web_without_backends, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, web_without_backends, "receptionist")
    await expect(page.locator("#scan")).to_be_focused()  # the screen itself works
    await page.fill("#scan", CCCD_PHUONG)
    await page.press("#scan", "Enter")
    alert = page.locator("#work .unavailable")
    await expect(alert).to_contain_text("Dịch vụ Tiếp đón (admissions) hiện không phản hồi")
    await shot(page, "10-reception-admissions-down")
    # the menu, the language switch and sign-out still work
    await page.click("a.lang")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.goto(web_without_backends + "/display/P101")
    await expect(page.locator(".display-down")).to_contain_text("Admissions")
    await ctx.close()
    # the lab bench: each panel says the lab is down, the page and its scan field still work
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, web_without_backends, "lab_technician")
    await expect(page.locator("#worklist .unavailable")).to_contain_text("Xét nghiệm (lab)")
    await expect(page.locator("#criticals .unavailable")).to_contain_text("Xét nghiệm (lab)")
    await expect(page.locator("#scan")).to_be_focused()
    await shot(page, "15-lab-bench-lab-down")
    await ctx.close()
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, web_without_backends, "cashier")
    await expect(page.locator("#invoices .unavailable")).to_contain_text("Viện phí (billing)")
    await expect(page.locator("#shift .unavailable")).to_contain_text("Viện phí (billing)")
    await ctx.close()


async def test_admin_creates_a_user_with_errors_shown_next_to_the_fields(stack, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "admin")
    assert page.url.endswith("/admin/users")
    await page.fill("#new-username", "bs.hoang")
    await page.fill("#new-display_name", "BS. Trương Minh Hoàng")
    await page.select_option("#new-role", "doctor")
    await page.fill("#new-departments", "kkb, nth")
    await page.fill("#new-password", "ngan")
    await page.click("form[action='/admin/users'] button[type=submit]")
    await expect(page.locator("#new-password-error")).to_contain_text("Mật khẩu cần ít nhất 10 ký tự")
    await expect(page.locator("#new-username")).to_have_value("bs.hoang")  # what was typed is kept
    await shot(page, "11-admin-users-error")
    await page.fill("#new-password", "Mat-khau-du-dai-9")
    await page.click("form[action='/admin/users'] button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("Đã tạo tài khoản bs.hoang")
    await expect(page.locator("table")).to_contain_text("BS. Trương Minh Hoàng")
    await shot(page, "12-admin-users")
    await ctx.close()
    doctor = await new_context(browser)
    p = await doctor.new_page()
    await sign_in(p, stack.url, "bs.hoang", "Mat-khau-du-dai-9")
    await expect(p.locator(".who")).to_contain_text("BS. Trương Minh Hoàng")
    assert p.url.endswith("/password")  # the admin chose it: the doctor sets their own first
    await p.fill("#current_password", "Mat-khau-du-dai-9")
    await p.fill("#password", "Mat-khau-rieng-cua-bs-4")
    await p.fill("#confirm_password", "Mat-khau-rieng-cua-bs-4")
    await p.press("#confirm_password", "Enter")
    await p.wait_for_url("**/doctor")  # a doctor starts at the consultation screen
    await doctor.close()


async def test_a_waiting_room_tv_opens_a_signed_display_link_without_signing_in(stack, browser) -> None:
    room = "P105"
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "receptionist")
    await page.goto(stack.url + "/display")
    await page.click(f"form[hx-post='/display/{room}/link'] button")
    link = page.locator(f"#link-{room} .display-link")
    await expect(link).to_be_visible()
    path = await link.get_attribute("data-path")
    assert path and path.startswith(f"/display/queue/{room}?exp=")
    await shot(page, "18-display-link")
    await ctx.close()

    tv_ctx = await new_context(browser)  # no session: the TV in the waiting room
    tv = await tv_ctx.new_page()
    await tv.goto(stack.url + path)
    await expect(tv.locator(".display-body")).to_be_visible()
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Mai Thị Thanh Xuân", "birth_date": "1996", "sex": "female"},
            )
        ).json()
        visit = (await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": room})).json()
    await expect(tv.locator("#waiting")).to_contain_text(str(visit["ticket_number"]))
    # the same link for another room, or altered, shows nothing but the reason
    await tv.goto(stack.url + path.replace(f"/{room}?", "/P106?"))
    await expect(tv.locator("[data-refused]")).to_contain_text("không hợp lệ cho phòng này")
    await tv.goto(stack.url + f"/display/queue/{room}")
    await expect(tv.locator("[data-refused]")).to_contain_text("thiếu chữ ký")
    await tv_ctx.close()
