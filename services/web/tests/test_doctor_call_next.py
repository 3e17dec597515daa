"""The doctor calls the next patient from their screen in Chromium: admissions calls the room's lowest
waiting ticket (the waiting-room display, open in another window, shows the number at once), the called
patient's chart opens; a double click calls one patient; an empty queue and a down admissions are said
beside the button while the chart stays as it was."""

from __future__ import annotations

import re

from playwright.async_api import expect
from sqlalchemy import select

from hospital.chassis.db import audit_log_table

from .conftest import csrf_of, http_sign_in, new_context, shot, sign_in
from .patients import visit
from .test_accessibility import axe


async def test_call_next_updates_the_display_and_opens_the_chart(stack, browser) -> None:
    room = "P110"
    first = await visit(stack, "Hà Thị Thanh Xuân", room, "1969-11-02", "female")
    second = await visit(stack, "Ông Văn Lộc", room, "1981-06-25")
    t1, t2 = first["visit"]["ticket_number"], second["visit"]["ticket_number"]

    ctx = await new_context(browser)
    display = await ctx.new_page()
    await sign_in(display, stack.url, "doctor")
    await display.goto(f"{stack.url}/display/{room}")
    waiting = display.locator("#waiting")
    await expect(waiting).to_contain_text(str(t1))
    await expect(waiting).to_contain_text(str(t2))

    page = await ctx.new_page()
    await page.goto(stack.url + "/doctor")
    await page.select_option("#room", room)
    await expect(page.locator("#queue .queue-item")).to_have_count(2)
    await expect(page.locator("#call-next")).to_contain_text("Gọi bệnh nhân tiếp theo")
    await page.dblclick("#call-next")  # a double click calls one patient
    await expect(page.locator("#call-status")).to_have_text(f"Đang gọi số {t1}: Hà Thị Thanh Xuân")
    await expect(page.locator("#chart .consult")).to_contain_text("Hà Thị Thanh Xuân")
    await expect(display.locator("#now-serving")).to_have_text(str(t1))  # live, no reload
    await expect(waiting).to_contain_text(str(t2))  # the second patient still waits
    await expect(page.locator("#chief_complaint")).to_be_focused()  # the doctor starts with the complaint
    await shot(page, "27-doctor-called-next")
    await shot(display, "28-display-after-call")
    assert await axe(page) == []

    # keyboard: F4 calls the next one
    await page.locator("#chief_complaint").click()
    await page.keyboard.press("F4")
    await expect(page.locator("#call-status")).to_have_text(f"Đang gọi số {t2}: Ông Văn Lộc")
    await expect(page.locator("#chart .consult")).to_contain_text("Ông Văn Lộc")
    await expect(display.locator("#now-serving")).to_have_text(str(t2))

    # nobody left: said beside the button, the chart of the patient being seen stays
    await page.click("#call-next")
    await expect(page.locator("#call-error")).to_have_text("Không còn bệnh nhân nào đang chờ ở phòng này.")
    await expect(page.locator("#chart .consult")).to_contain_text("Ông Văn Lộc")
    await ctx.close()

    async with stack.admissions.rt.db.session() as s:
        calls = (
            await s.execute(
                select(audit_log_table.c.actor, audit_log_table.c.resource_id).where(
                    audit_log_table.c.action == "queue.next",
                    audit_log_table.c.resource_id.in_([first["visit"]["id"], second["visit"]["id"]]),
                )
            )
        ).all()
    assert sorted(tuple(r) for r in calls) == sorted(
        [("user:doctor", first["visit"]["id"]), ("user:doctor", second["visit"]["id"])]
    )


async def test_call_next_with_admissions_down_says_so_beside_the_button(web_without_backends) -> None:
    client = await http_sign_in(web_without_backends, "doctor")
    try:
        page = await client.get("/doctor")
        assert page.status_code == 200
        r = await client.post(
            "/doctor/queue/call",
            data={"room": "P101", "request_key": "k1"},
            headers={"X-CSRF-Token": csrf_of(page.text), "HX-Request": "true"},
        )
    finally:
        await client.aclose()
    assert r.status_code == 200
    assert r.headers["HX-Retarget"] == "#call-box"
    assert 'data-service="admissions"' in r.text
    assert re.search(r"Dịch vụ Tiếp đón \(admissions\) hiện không phản hồi", r.text)
