"""The doctor's screen in Chromium: the visit reception opened reaches the EMR over the event bus and
shows in the doctor's queue; the consultation is saved with vitals (flagged by the EMR) and a main
diagnosis found by ICD-10 search; a bad number is refused next to its field."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in


async def test_queue_chart_and_consultation(stack, browser) -> None:
    room = "P101"
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Khổng Minh Triết", "birth_date": "1958-02-11", "sex": "male"},
            )
        ).json()
        visit = (await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": room})).json()
    token = issuer_for(stack.emr).mint_for_role("doctor")
    async with http_client(stack.emr, token=token) as emr:

        async def opened() -> bool:
            r = await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})
            return r.status_code == 200 and bool(r.json().get("items"))

        await wait_for(opened, what="the EMR opened the encounter (admissions.visit.opened)")

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    assert page.url.endswith("/doctor")
    await page.select_option("#room", room)
    item = page.locator("#queue .queue-item").filter(has_text="Khổng Minh Triết")
    await expect(item).to_contain_text(str(visit["ticket_number"]))
    await item.click()
    form = page.locator("#chart form.consult-form")
    await expect(form).to_be_visible()
    await expect(page.locator("#chart .consult")).to_contain_text("Khổng Minh Triết")
    await page.fill("#chief_complaint", "Ho, sốt 3 ngày")
    await page.fill("#systolic_bp", "abc")
    await page.fill("#pulse", "96")
    await page.click("#save-consultation")
    await expect(page.locator("#systolic_bp-error")).to_have_text("Nhập một con số.")
    await expect(page.locator("#chief_complaint")).to_have_value("Ho, sốt 3 ngày")  # what was typed is kept
    await page.fill("#systolic_bp", "168")
    await page.fill("#diastolic_bp", "95")
    await page.fill("#temperature_c", "38,6")
    await page.fill("#icd-search", "viêm phổi")
    pick = page.locator("#icd-results [data-icd-code='J18.9']")
    await expect(pick).to_be_visible()
    await pick.click()
    await expect(page.locator("#main_code")).to_have_value("J18.9")
    await shot(page, "19-doctor-consultation")
    await page.click("#save-consultation")
    await expect(page.locator("#chart .notice")).to_contain_text("Đã lưu phiếu khám")
    await expect(page.locator("#chart [data-flag='systolic_bp']")).to_be_visible()
    await expect(page.locator("#main_code")).to_have_value("J18.9")
    await shot(page, "20-doctor-saved")
    async with http_client(stack.emr, token=token) as emr:
        enc = (await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})).json()["items"][0]
        cons = (await emr.get(f"/api/v1/encounters/{enc['id']}/consultation")).json()
    assert cons["chief_complaint"] == "Ho, sốt 3 ngày" and cons["vitals"]["systolic_bp"] == 168
    assert [d["icd10_code"] for d in cons["diagnoses"] if d["main"]] == ["J18.9"]
    await ctx.close()


async def test_ward_bed_board_shows_who_lies_where(stack, browser) -> None:
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients", json={"full_name": "Lò Văn Sáng", "birth_date": "1949", "sex": "male"}
            )
        ).json()
    async with http_client(stack.admissions, "nurse") as nurse:
        beds = (await nurse.get("/api/v1/beds")).json()["items"]
        free = next(b for b in beds if not b["occupied"])
        r = await nurse.post("/api/v1/admissions", json={"patient_id": patient["id"], "bed": free["code"]})
        assert r.status_code == 201, r.text
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "nurse")
    assert page.url.endswith("/ward")
    bed = page.locator(f"[data-bed='{free['code']}']")
    await expect(bed).to_have_class("bed bed-occupied")
    await expect(bed).to_contain_text("Lò Văn Sáng")
    await shot(page, "21-ward-bed-board")
    await ctx.close()
