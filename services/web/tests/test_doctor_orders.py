"""The doctor's orders and results in Chromium: lab tests picked from the lab's catalogue and an imaging
procedure placed through the EMR, each order's status on the chart (placed by the real lab, pending while
the imaging service does not answer, refused with the lab's reason); the analyzer's results (over the
lab's real ASTM port) shown under their order with their flags; the critical potassium a banner that goes
away only once acknowledged with the value read back."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in
from .test_accessibility import axe
from .test_lab_bench import astm_message


async def test_orders_results_and_critical_acknowledgement(stack, browser) -> None:
    room = "P102"
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Đinh Thị Bích Ngọc", "birth_date": "1970-09-21", "sex": "female"},
            )
        ).json()
        r = await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": room})
        assert r.status_code == 201, r.text
    emr_token = issuer_for(stack.emr).mint_for_role("doctor")
    async with http_client(stack.emr, token=emr_token) as emr:

        async def opened() -> bool:
            r = await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})
            return r.status_code == 200 and bool(r.json().get("items"))

        await wait_for(opened, what="the EMR opened the encounter")
        enc_id = (await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})).json()["items"][
            0
        ]["id"]

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Đinh Thị Bích Ngọc").click()
    await expect(page.locator("#chart .order-form")).to_be_visible()
    await expect(page.locator("#orders .empty")).to_have_text("Chưa có chỉ định.")

    # nothing chosen: refused next to the tests; half an imaging order: refused next to its fields
    await page.click("#place-orders")
    await expect(page.locator("#tests-error")).to_contain_text("Hãy chọn ít nhất một xét nghiệm")
    await page.fill("#procedure_code", "CT-SN")
    await page.click("#place-orders")
    await expect(page.locator("#imaging_description-error")).to_have_text("Nhập tên dịch vụ hình ảnh.")
    await expect(page.locator("#modality-error")).to_have_text("Chọn loại máy.")
    await expect(page.locator("#procedure_code")).to_have_value("CT-SN")

    # lab tests from the catalogue plus a CT of the head, in one go
    await page.locator(".lab-tests input[name=tests][value='K']").check()
    await page.locator(".lab-tests input[name=tests][value='NA']").check()
    await page.select_option("#modality", "CT")
    await page.fill("#imaging_description", "CT sọ não không tiêm thuốc")
    await page.fill("#clinical_note", "Mệt, yếu cơ")
    await page.click("#place-orders")
    await expect(page.locator("[data-order-notice]")).to_have_text("Đã gửi 2 chỉ định.")
    lab_order = page.locator("#orders .order[data-kind='lab']").filter(has_text="NA, K")
    imaging_order = page.locator("#orders .order[data-kind='imaging']")
    await expect(lab_order).to_have_attribute("data-status", "placed")  # the fragment polls while pending
    await expect(lab_order).to_contain_text("Đã tiếp nhận")
    await expect(imaging_order).to_have_attribute("data-status", "pending")
    await expect(imaging_order).to_contain_text("CT sọ não không tiêm thuốc")
    await expect(imaging_order.locator("[data-last-error]")).to_be_visible()

    # a code the lab does not know: the lab refuses, the chart says why
    await page.fill("#other_tests", "XN-KHONG-CO")
    await page.click("#place-orders")
    refused = page.locator("#orders .order[data-status='refused']")
    await expect(refused).to_contain_text("XN-KHONG-CO")
    await expect(refused.locator("[data-refusal]")).to_have_text(
        "Bị từ chối: xét nghiệm không có trong danh mục của khoa Xét nghiệm"
    )
    await page.locator("#orders").scroll_into_view_if_needed()
    await shot(page, "22-doctor-orders")

    # the lab receives the tube, the analyzer sends a critical potassium, the lab verifies
    async with http_client(stack.emr, token=emr_token) as emr:
        orders = (await emr.get(f"/api/v1/encounters/{enc_id}/orders")).json()["items"]
    lab_id = next(o for o in orders if o["kind"] == "lab" and o["status"] == "placed")["downstream_id"]
    async with http_client(stack.lab, "lab_technician") as tech:
        order = (await tech.get(f"/api/v1/orders/{lab_id}")).json()
        barcode = order["specimens"][0]["barcode"]
        r = await tech.post(f"/api/v1/specimens/{barcode}/receive")
        assert r.status_code == 200, r.text
        stats = await send_astm(
            "127.0.0.1",
            stack.lab.settings.astm_port,
            [astm_message(barcode, {"NA": ("128", "mmol/L"), "K": ("7.1", "mmol/L")})],
        )
        assert stats.messages_failed == 0
        results = (await tech.get(f"/api/v1/orders/{lab_id}/results")).json()["results"]
        assert {x["test_code"] for x in results} == {"NA", "K"}
        r = await tech.post("/api/v1/results/verify", json={"result_ids": [x["id"] for x in results]})
        assert r.status_code == 200, r.text
    # the web's signed-in doctor, of the outpatient department
    me = issuer_for(stack.emr).mint("user:doctor", ["doctor"], extra={"departments": ["KKB"]})
    async with http_client(stack.emr, token=me) as emr:

        async def arrived() -> tuple[int, int] | bool:
            chart = await emr.get(
                f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc_id}
            )
            alerts = await emr.get("/api/v1/critical-alerts", params={"patient_id": patient["id"]})
            got = (len(chart.json().get("results", [])), len(alerts.json().get("items", [])))
            return got if got == (2, 1) else False

        await wait_for(arrived, what="the EMR has the two results and the critical alert")

    await page.locator("#queue .queue-item").filter(has_text="Đinh Thị Bích Ngọc").click()
    banner = page.locator("#chart .critical-banner")
    await expect(banner).to_contain_text("7.1")
    k_row = lab_order.locator("tr[data-test='K']")
    await expect(k_row).to_have_class("row-critical")
    await expect(k_row.locator(".tag-critical")).to_contain_text("Nguy kịch")
    await expect(lab_order.locator("tr[data-test='NA'] [data-flag='L']")).to_have_text("L")
    await shot(page, "23-doctor-critical-banner")
    await lab_order.scroll_into_view_if_needed()
    await shot(page, "23b-doctor-results")
    assert await axe(page) == []

    # acknowledging needs the read-back; then the banner is gone and the EMR records who and what
    await banner.locator("button[type=submit]").click()
    await expect(page.locator("#chart .critical-banner .field-error")).to_have_text(
        "Hãy đọc lại kết quả trước khi xác nhận."
    )
    await page.locator("#chart .critical-banner input[name=read_back]").fill("Kali 7.1 mmol/L")
    await page.locator("#chart .critical-banner button[type=submit]").click()
    await expect(page.locator("#chart .notice")).to_have_text("Đã xác nhận giá trị nguy kịch.")
    await expect(page.locator("#chart .critical-banner")).to_have_count(0)
    await shot(page, "24-doctor-critical-acknowledged")
    async with http_client(stack.emr, token=me) as emr:
        alerts = (
            await emr.get(
                "/api/v1/critical-alerts", params={"patient_id": patient["id"], "include_acknowledged": True}
            )
        ).json()["items"]
    assert [(a["status"], a["read_back"]) for a in alerts] == [("acknowledged", "Kali 7.1 mmol/L")]
    await ctx.close()
