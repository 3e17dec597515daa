"""The ward in Chromium against admissions: from the bed board a nurse admits a patient into a free bed
(keyboard only), sees a bed taken meanwhile by someone else refused clearly, moves the patient to a bed of
another ward and discharges them; a role without the ward is refused the actions."""

from __future__ import annotations

import json
import re

from playwright.async_api import expect

from hospital.testing.services import http_client

from .conftest import csrf_of, http_sign_in, new_context, shot, sign_in
from .test_accessibility import axe


async def _register(stack, name: str, born: str, sex: str) -> dict:
    async with http_client(stack.admissions, "receptionist") as clerk:
        r = await clerk.post("/api/v1/patients", json={"full_name": name, "birth_date": born, "sex": sex})
        assert r.status_code == 201, r.text
        return r.json()


async def _beds(stack, ward: str | None = None) -> dict[str, dict]:
    async with http_client(stack.admissions, "nurse") as nurse:
        r = await nurse.get("/api/v1/beds", params={"ward": ward} if ward else {})
        return {b["code"]: b for b in r.json()["items"]}


async def test_admit_conflict_transfer_and_discharge_from_the_bed_board(stack, browser) -> None:
    duyen = await _register(stack, "Hứa Thị Mỹ Duyên", "1974-05-06", "female")
    tram = await _register(stack, "Lâm Ngọc Trâm", "1999-11-30", "female")
    khai = await _register(stack, "Triệu Văn Khải", "1958-02-14", "male")
    noi = [code for code, b in (await _beds(stack, "NOI")).items() if not b["occupied"]]
    bed_a, bed_b = noi[0], noi[1]
    other = next(code for code, b in (await _beds(stack)).items() if not b["occupied"] and b["ward"] != "NOI")

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "nurse")
    await page.goto(stack.url + "/ward?ward=NOI")
    await expect(page.locator("h1")).to_have_text("Sơ đồ giường bệnh")
    # a free bed, opened with the keyboard: the cursor goes to the patient search
    await page.locator(f"[data-bed='{bed_a}'] button").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#admit-q")).to_be_focused()
    # admitting nobody is refused next to the choice
    await page.click("#admit")
    await expect(page.locator("#patient_id-error")).to_have_text("Hãy tìm và chọn bệnh nhân cần nhận.")
    await page.locator("#admit-q").focus()
    await page.keyboard.type("hua thi my duyen", delay=5)
    choice = page.locator(".patient-choice").filter(has_text="Hứa Thị Mỹ Duyên")
    await expect(choice).to_have_count(1)
    await shot(page, "30-ward-admit-search")
    violations = await axe(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    await page.keyboard.press("Tab")  # into the patients found
    await page.keyboard.press("Space")
    await expect(choice.locator("input")).to_be_checked()
    await page.keyboard.press("Tab")
    await expect(page.locator("#admit")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#bed-action .notice")).to_have_text(
        f"Đã nhận Hứa Thị Mỹ Duyên vào giường {bed_a}."
    )
    await expect(page.locator(f"[data-bed='{bed_a}']")).to_have_class("bed bed-occupied")
    await expect(page.locator(f"[data-bed='{bed_a}']")).to_contain_text("Hứa Thị Mỹ Duyên")
    stay = (await _beds(stack, "NOI"))[bed_a]
    assert stay["patient_id"] == duyen["id"]

    # bed B is open on screen while someone else puts another patient in it
    await page.locator(f"[data-bed='{bed_b}'] button").click()
    await expect(page.locator("#admit-q")).to_be_focused()
    await page.keyboard.type("lam ngoc tram", delay=5)
    await page.locator(".patient-choice").filter(has_text="Lâm Ngọc Trâm").locator("input").check()
    async with http_client(stack.admissions, "nurse") as nurse:
        r = await nurse.post("/api/v1/admissions", json={"patient_id": khai["id"], "bed": bed_b})
        assert r.status_code == 201, r.text
    await page.click("#admit")
    conflict = page.locator("#bed-error")
    await expect(conflict).to_contain_text(f"Giường {bed_b} vừa có bệnh nhân khác nằm")
    # the board is redrawn: bed B shows who took it
    await expect(page.locator(f"[data-bed='{bed_b}']")).to_contain_text("Triệu Văn Khải")
    await shot(page, "31-ward-bed-taken")
    violations = await axe(page)  # the occupied bed's transfer and discharge forms, the conflict shown
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    beds = await _beds(stack, "NOI")
    assert beds[bed_b]["patient_id"] == khai["id"]
    assert tram["id"] not in {b["patient_id"] for b in beds.values()}

    # transfer Duyên from bed A to a bed of another ward (department)
    await page.locator(f"[data-bed='{bed_a}'] button").click()
    await expect(page.locator("#to_bed")).to_be_focused()
    await page.click("#transfer")  # no bed chosen
    await expect(page.locator("#to_bed-error")).to_have_text("Hãy chọn giường chuyển đến.")
    await page.select_option("#to_bed", other)
    await page.click("#transfer")
    await expect(page.locator("#bed-action .notice")).to_have_text(
        f"Đã chuyển bệnh nhân từ giường {bed_a} sang giường {other}."
    )
    await expect(page.locator(f"[data-bed='{bed_a}']")).to_have_class("bed bed-free")
    beds = await _beds(stack)
    assert beds[other]["patient_id"] == duyen["id"] and not beds[bed_a]["occupied"]
    await shot(page, "32-ward-transferred")

    # the panel now shows the new bed: discharge from it (the outcome must be chosen)
    await expect(page.locator("#bed-action .bed-who")).to_contain_text("Hứa Thị Mỹ Duyên")
    await page.click("#discharge")
    await expect(page.locator("#discharge_type-error")).to_have_text("Hãy chọn tình trạng ra viện.")
    await expect(page.locator("#discharge_type")).to_be_focused()
    await page.select_option("#discharge_type", "recovered")
    await page.click("#discharge")
    await expect(page.locator("#bed-action .notice")).to_contain_text(f"Bệnh nhân giường {other} đã ra viện")
    assert not (await _beds(stack))[other]["occupied"]
    await shot(page, "33-ward-discharged")

    # English
    await page.goto(stack.url + "/language?to=en&next=/ward%3Fward%3DNOI")
    await expect(page.locator("h1")).to_have_text("Bed board")
    await page.locator(f"[data-bed='{bed_b}'] button").click()
    await expect(page.locator("#transfer")).to_have_text("Transfer")
    await ctx.close()


async def test_the_ward_actions_are_refused_to_other_roles(stack) -> None:
    patient = await _register(stack, "Mạc Thị Hương Giang", "1983-08-19", "female")
    bed = next(code for code, b in (await _beds(stack, "NOI")).items() if not b["occupied"])
    client = await http_sign_in(stack.url, "receptionist")
    try:
        csrf = csrf_of((await client.get("/reception")).text)
        for path, data in (
            ("/ward/admit", {"bed": bed, "patient_id": patient["id"]}),
            ("/ward/beds/" + bed, None),
            ("/ward/patients?q=giang", None),
        ):
            if data is None:
                r = await client.get(path)
            else:
                r = await client.post(path, data={**data, "csrf_token": csrf})
            assert r.status_code == 403 and "Không có quyền truy cập" in r.text, (path, r.status_code)
    finally:
        await client.aclose()
    assert not (await _beds(stack, "NOI"))[bed]["occupied"]
    # a nurse without the CSRF token changes nothing either
    nurse = await http_sign_in(stack.url, "nurse")
    try:
        r = await nurse.post("/ward/admit", data={"bed": bed, "patient_id": patient["id"]})
        assert r.status_code == 403 and re.search("Yêu cầu bị từ chối", r.text)
    finally:
        await nurse.aclose()
    assert not (await _beds(stack, "NOI"))[bed]["occupied"]


async def test_the_bed_board_says_admissions_is_down(web_without_backends, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, web_without_backends, "nurse")
    assert page.url.endswith("/ward")
    await expect(page.locator(".unavailable[data-service='admissions']")).to_contain_text("Tiếp đón")
    await expect(page.locator("h1")).to_have_text("Sơ đồ giường bệnh")
    await ctx.close()
