"""A prescription of several drugs on the doctor's screen in Chromium: lines added from the keyboard, each
drug checked by the EMR (the allergy warning stands under its own line and needs a reason), saved as one
prescription; and a lab order cancelled with a reason (refused without one, next to the field), shown as
cancelled once the lab has cancelled it."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.testing.services import http_client

from .conftest import new_context, shot, sign_in
from .patients import doctor_token, visit
from .test_accessibility import axe


async def test_two_drug_prescription_and_a_cancelled_order(stack, browser) -> None:
    room = "P201"
    v = await visit(stack, "Kiều Thị Ngọc Hân", room, "1990-10-10", "female")
    enc_id = v["encounter_id"]
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        r = await emr.put(
            f"/api/v1/encounters/{enc_id}/consultation",
            json={
                "chief_complaint": "Sốt, đau họng",
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
    await page.locator("#queue .queue-item").filter(has_text="Kiều Thị Ngọc Hân").click()

    await page.fill("#rx-0-drug_q", "paracetamol")
    await page.locator("#rx-0-drug-results input[value='PARA500']").check()
    await page.fill("#rx-0-dose", "1 viên")
    await page.fill("#rx-0-frequency", "3 lần/ngày")
    await page.fill("#rx-0-duration_days", "5")
    await page.fill("#rx-0-quantity", "15")
    await page.click("#add-drug-line")
    line2 = page.locator(".rx-line[data-line='1']")
    await expect(line2).to_be_visible()
    await expect(page.locator("#rx-1-drug_q")).to_be_focused()  # the cursor is where the doctor continues
    await expect(page.locator("#rx-0-dose")).to_have_value("1 viên")  # line 1 is kept
    await page.keyboard.type("amox")
    await page.locator("#rx-1-drug-results input[value='AMOX500']").check()
    await page.fill("#rx-1-dose", "1 viên")
    await page.fill("#rx-1-frequency", "2 lần/ngày")
    await page.fill("#rx-1-quantity", "10")
    await page.click("#add-drug-line")  # a third, left empty, then removed
    await expect(page.locator(".rx-line")).to_have_count(3)
    await page.click("[data-remove-line='2']")
    await expect(page.locator(".rx-line")).to_have_count(2)

    # a missing field on line 2 is said on line 2
    await page.fill("#rx-1-quantity", "")
    await page.click("#save-prescription")
    await expect(page.locator("#rx-1-quantity-error")).to_have_text("Bắt buộc nhập.")
    await expect(page.locator("#rx-0-quantity-error")).to_have_count(0)
    await page.fill("#rx-1-quantity", "10")
    await page.click("#save-prescription")
    # the allergy warning is under the amoxicillin line only
    alert = line2.locator(".rx-alert[data-alert-kind='allergy'][data-drug='AMOX500']")
    await expect(alert).to_contain_text("Dị ứng")
    await expect(page.locator(".rx-line[data-line='0'] .rx-alert")).to_have_count(0)
    await expect(page.locator("#chart .prescription")).to_have_count(0)
    await line2.scroll_into_view_if_needed()
    await shot(page, "33-doctor-two-drugs-allergy")
    assert await axe(page) == []
    await alert.locator("input").fill("Đã dùng amoxicilin năm 2024 không phản ứng")
    await page.click("#save-prescription")
    await expect(page.locator("[data-rx-notice]")).to_contain_text("Đã lưu đơn thuốc")
    saved = page.locator("#chart .prescription")
    await expect(saved).to_have_count(1)
    await expect(saved.locator("ol > li")).to_have_count(2)
    await expect(saved).to_contain_text("Paracetamol")
    await expect(saved).to_contain_text("Amoxicilin")
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        chart = (
            await emr.get(f"/api/v1/patients/{v['patient']['id']}/chart", params={"encounter_id": enc_id})
        ).json()
    [rx] = chart["prescriptions"]
    assert [i["drug_code"] for i in rx["items"]] == ["PARA500", "AMOX500"]
    assert [(o["drug_code"], o["kind"]) for o in rx["overrides"]] == [("AMOX500", "allergy")]

    # a lab order, then cancelled: a reason is required
    await page.locator(".lab-tests input[name=tests][value='NA']").check()
    await page.click("#place-orders")
    order = page.locator("#orders .order[data-kind='lab']")
    await expect(order).to_have_attribute("data-status", "placed")
    await order.locator("details.cancel-order summary").click()
    await order.locator("[data-cancel-order]").click()
    await expect(page.locator("#orders .order[data-kind='lab'] .field-error")).to_have_text(
        "Nhập lý do hủy chỉ định."
    )
    order = page.locator("#orders .order[data-kind='lab']")
    await order.locator("input[name=reason]").fill("Chỉ định nhầm bệnh nhân")
    await order.locator("input[name=reason]").press("Enter")
    await expect(page.locator("[data-order-notice]")).to_have_text("Đã gửi yêu cầu hủy chỉ định.")
    order = page.locator("#orders .order[data-kind='lab']")
    await expect(order).to_have_attribute("data-status", "cancelled")  # the lab cancelled it; the list polls
    await expect(order.locator(".tag").first).to_have_text("Đã hủy")
    await expect(order.locator("[data-cancel-reason]")).to_have_text("Lý do hủy: Chỉ định nhầm bệnh nhân")
    await expect(order.locator("details.cancel-order")).to_have_count(0)
    await order.scroll_into_view_if_needed()
    await shot(page, "34-doctor-order-cancelled")
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        items = (await emr.get(f"/api/v1/encounters/{enc_id}/orders")).json()["items"]
    lab_order = next(o for o in items if o["kind"] == "lab")
    async with http_client(stack.lab, "lab_technician") as tech:
        got = (await tech.get(f"/api/v1/orders/{lab_order['downstream_id']}")).json()
    assert got["status"] == "cancelled"
    await ctx.close()
