"""Prescribing on the doctor's screen in Chromium: the drug found in the EMR's catalogue as you type, the
EMR's checks before saving: a drug the patient is allergic to is a warning that blocks the prescription
until the doctor gives a reason, which is kept with the saved prescription."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in
from .test_accessibility import axe


async def test_allergy_warning_must_be_overridden_with_a_reason(stack, browser) -> None:
    room = "P103"
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Mai Văn Phúc", "birth_date": "1984-05-30", "sex": "male"},
            )
        ).json()
        r = await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": room})
        assert r.status_code == 201, r.text
    me = issuer_for(stack.emr).mint("user:doctor", ["doctor"], extra={"departments": ["KKB"]})
    async with http_client(stack.emr, token=me) as emr:

        async def encounter() -> str | None:
            r = await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})
            items = r.json().get("items") if r.status_code == 200 else None
            return items[0]["id"] if items else None

        enc_id = await wait_for(encounter, what="the EMR opened the encounter")
        r = await emr.put(
            f"/api/v1/encounters/{enc_id}/consultation",
            json={
                "chief_complaint": "Đau họng, sốt",
                "diagnoses": [{"icd10_code": "J02.9", "main": True}],
                "allergies_set": True,
                "allergies": [{"substance": "Penicilin", "category": "drug"}],
            },
        )
        assert r.status_code == 200, r.text

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Mai Văn Phúc").click()
    await expect(page.locator("#chart .allergies")).to_contain_text("Penicilin")

    # nothing chosen: each missing field says so
    await page.click("#save-prescription")
    await expect(page.locator("#rx-0-drug_code-error")).to_have_text("Hãy chọn thuốc.")
    await expect(page.locator("#rx-0-dose-error")).to_have_text("Bắt buộc nhập.")

    await page.fill("#rx-0-drug_q", "amox")
    await page.locator("#rx-0-drug-results input[value='AMOX500']").check()
    await page.fill("#rx-0-dose", "1 viên")
    await page.fill("#rx-0-frequency", "3 lần/ngày")
    await page.fill("#rx-0-duration_days", "7")
    await page.fill("#rx-0-quantity", "21")
    await page.fill("#rx-0-instructions", "Uống sau ăn")
    await page.click("#save-prescription")
    alert = page.locator("#chart .rx-alert[data-alert-kind='allergy'][data-drug='AMOX500']")
    await expect(alert).to_contain_text("Dị ứng")
    await expect(page.locator("#chart .prescription")).to_have_count(0)  # nothing saved
    await expect(page.locator("#rx-0-dose")).to_have_value("1 viên")  # what was typed is kept
    await page.locator("#chart").locator(".rx-alerts").scroll_into_view_if_needed()
    await shot(page, "25-doctor-prescription-allergy")
    assert await axe(page) == []

    # going ahead without a reason is refused next to the warning
    await page.click("#save-prescription")
    await expect(alert.locator(".field-error")).to_have_text("Nêu lý do để vẫn kê thuốc này.")
    await expect(page.locator("#chart .prescription")).to_have_count(0)

    reason = "Đã test lẩy da âm tính, chỉ nổi mẩn nhẹ trước đây"
    await alert.locator("input").fill(reason)
    await page.click("#save-prescription")
    await expect(page.locator("[data-rx-notice]")).to_contain_text("Đã lưu đơn thuốc")
    saved = page.locator("#chart .prescription")
    await expect(saved).to_have_count(1)
    await expect(saved).to_contain_text("1 viên, 3 lần/ngày, 7 ngày")
    await expect(saved.locator("[data-override='allergy']")).to_contain_text(reason)
    await saved.scroll_into_view_if_needed()
    await shot(page, "26-doctor-prescription-saved")

    # the English switch: the same chart in English
    await page.click("a.lang")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Mai Văn Phúc").click()
    await expect(page.locator("#rx-title")).to_have_text("Prescription")
    await expect(page.locator("#orders-title")).to_have_text("Orders")
    await expect(page.locator("#chart [data-override='allergy']")).to_contain_text(
        "Warning overridden (Allergy)"
    )
    await ctx.close()
