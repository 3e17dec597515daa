"""The lab bench in Chromium: a tube scanned in, an analyzer's results over ASTM in the worklist with
their flags, verification, and a critical potassium called and logged with its read-back."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client

from .conftest import new_context, shot, sign_in


def astm_message(barcode: str, values: dict[str, tuple[str, str]]) -> bytes:
    stamp = "20261207081500"
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|BN1||",
        f"O|1|{barcode}||^^^ALL|R||||||N||||||||||||||F",
    ]
    for n, (code, (value, unit)) in enumerate(values.items(), start=1):
        records.append(f"R|{n}|^^^{code}|{value}|{unit}||N||F||SIM|{stamp}|{stamp}|SIM")
    records.append("L|1|N")
    return ("\r".join(records) + "\r").encode()


async def test_receive_verify_and_call_a_critical_value(stack, browser) -> None:
    async with http_client(stack.admissions, "receptionist") as clerk:
        person = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Vương Thị Lệ Hằng", "birth_date": "1961-04-02", "sex": "female"},
            )
        ).json()
    patient = {k: person[k] for k in ("id", "patient_code", "full_name", "sex", "birth_date")}
    async with http_client(stack.lab, "doctor") as doctor:
        r = await doctor.post(
            "/api/v1/orders",
            json={"patient": patient, "tests": ["ELEC"], "ordering_doctor": "BS. Cao Thị Hồng Nhung"},
        )
        assert r.status_code == 201, r.text
        order = r.json()
    barcode = order["specimens"][0]["barcode"]
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "lab_technician")
    assert page.url.endswith("/lab")
    await expect(page.locator("#scan")).to_be_focused()
    # an unknown barcode is explained; the scanner's next read goes into the same field
    await page.keyboard.type("XN-KHONG-CO", delay=2)
    await page.keyboard.press("Enter")
    await expect(page.locator("[data-receive-error]")).to_contain_text("Không tìm thấy mẫu")
    await expect(page.locator("#scan")).to_be_focused()
    await page.keyboard.type(barcode, delay=2)
    await page.keyboard.press("Enter")
    received = page.locator(f".received[data-barcode='{barcode}']")
    await expect(received).to_contain_text("Vương Thị Lệ Hằng")
    await expect(page.locator("#scan")).to_have_value("")
    async with http_client(stack.lab, "lab_technician") as tech:
        spec = (await tech.get(f"/api/v1/specimens/{barcode}")).json()
        assert next(s for s in spec["specimens"] if s["barcode"] == barcode)["status"] == "received"

    stats = await send_astm(
        "127.0.0.1",
        stack.lab.settings.astm_port,
        [astm_message(barcode, {"NA": ("139", "mmol/L"), "K": ("7.2", "mmol/L"), "CL": ("101", "mmol/L")})],
    )
    assert stats.messages_failed == 0
    await page.reload()  # the worklist also refreshes by itself every 10 s
    row_k = page.locator("#worklist tr[data-test='K']").filter(has_text="Vương Thị Lệ Hằng")
    await expect(row_k).to_have_class("row-critical")
    await expect(row_k).to_contain_text("7.2")
    await shot(page, "13-lab-bench")
    # verifying nothing is refused next to the button
    await page.click("#verify")
    await expect(page.locator("#verify-error")).to_have_text("Hãy chọn ít nhất một kết quả.")

    # the critical potassium: the call is logged only with the read-back
    item = page.locator("#criticals .critical-item").filter(has_text="Vương Thị Lệ Hằng")
    await expect(item).to_contain_text("BS. Cao Thị Hồng Nhung")
    await item.locator("input[name=notified_person]").fill("BS. Cao Thị Hồng Nhung")
    await item.locator("input[name=notified_role]").fill("bác sĩ điều trị")
    await item.locator("button[type=submit]").click()
    item = page.locator("#criticals .critical-item").filter(has_text="Vương Thị Lệ Hằng")
    await expect(item.locator(".field-error")).to_contain_text("đã đọc lại kết quả")
    await expect(item.locator("input[name=notified_person]")).to_have_value("BS. Cao Thị Hồng Nhung")
    await shot(page, "14-lab-critical-call-error")
    await item.locator("input[name=read_back]").check()
    await item.locator("button[type=submit]").click()
    await expect(page.locator("#criticals .notice")).to_contain_text("Đã ghi nhận cuộc gọi")
    await expect(page.locator("#criticals")).not_to_contain_text("Vương Thị Lệ Hằng")

    # verify the three results of the tube
    rows = page.locator("#worklist tbody tr").filter(has_text="Vương Thị Lệ Hằng")
    await expect(rows).to_have_count(3)
    for i in range(3):
        await rows.nth(i).locator("input[type=checkbox]").check()
    await page.click("#verify")
    await expect(page.locator("#worklist .notice")).to_contain_text("Đã duyệt 3 kết quả")
    await expect(page.locator("#worklist")).not_to_contain_text("Vương Thị Lệ Hằng")
    async with http_client(stack.lab, "doctor") as doctor:
        res = (await doctor.get(f"/api/v1/orders/{order['id']}/results")).json()["results"]
    assert {r["test_code"]: r["status"] for r in res} == {"NA": "verified", "K": "verified", "CL": "verified"}
    await ctx.close()
