"""The cash office in Chromium against the real services: the unpaid list following billing's events, a
refund with its reason (refused without one, above what was received, and sent once on a double click),
the shift closed with the counted cash against the expected cash, and the day's reconciliation (money by
method, the day's bank and gateway notifications with their invoices, an unmatched transfer)."""

from __future__ import annotations

import uuid

from playwright.async_api import expect

from hospital.testing.services import http_client
from hospital.testing.waits import wait_for

from .conftest import BANK_SECRET, new_context, shot, sign_in
from .test_accessibility import axe
from .test_cashier import vnpay_query, wait_for_invoice


def vnd(amount: int) -> str:
    return f"{amount:,} ₫".replace(",", ".")


async def open_visit(stack, name: str, birth: str) -> dict:
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients", json={"full_name": name, "birth_date": birth, "sex": "female"}
            )
        ).json()
        return (await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": "P102"})).json()


async def test_refund_shift_close_and_the_day(stack, browser) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "cashier")
    # a shift left open by an earlier visit to the desk is closed first: this one starts from its float
    await page.wait_for_selector("#shift form")
    if await page.locator("#close-shift").count():
        await page.fill("#counted_cash", "0")
        await page.click("#close-shift")
        await expect(page.locator("#shift-summary")).to_be_visible()
    await page.fill("#opening_float", "200000")
    await page.click("#open-shift")
    await expect(page.locator("#shift .shift-open")).to_contain_text("200.000 ₫")

    # the unpaid list follows billing's events: a visit opened now is listed without a reload (its poll
    # is 20 s; the expectation waits 5)
    visit = await open_visit(stack, "Lò Thị Hoa", "1991-02-14")
    invoice = await wait_for_invoice(stack, visit["id"])
    item = page.locator(f"#invoices a[data-number='{invoice['number']}']")
    await expect(item).to_be_visible(timeout=5000)
    await item.click()
    await expect(page.locator("#invoice .invoice")).to_contain_text("Lò Thị Hoa")
    assert await page.locator("#refund-toggle").count() == 0  # nothing received: nothing to give back

    await page.fill("#amount", "30000")
    await page.click("#take-cash")
    await expect(page.locator("#invoice .notice")).to_contain_text("Đã thu 30.000 ₫ tiền mặt")
    # a refund needs a reason, and cannot give back more than was received
    await page.click("#refund-toggle")
    await page.fill("#refund_amount", "10000")
    await page.click("#do-refund")
    await expect(page.locator("#refund_reason-error")).to_contain_text("Hãy ghi lý do hoàn tiền")
    await expect(page.locator("#refund_amount")).to_have_value("10000")  # what was typed is kept
    await page.fill("#refund_amount", "50000")
    await page.fill("#refund_reason", "Người bệnh không làm xét nghiệm đã đóng tiền")
    await page.click("#do-refund")
    await expect(page.locator("#refund_amount-error")).to_contain_text("lớn hơn số đã thu")
    await shot(page, "30-cashier-refund-error")
    assert await axe(page) == []
    # the right amount, double-clicked: given back once
    await page.fill("#refund_amount", "10.000")
    await page.dblclick("#do-refund")
    await expect(page.locator("#invoice .notice")).to_contain_text("Đã hoàn 10.000 ₫ tiền mặt")
    await expect(page.locator("#paid")).to_have_text("20.000 ₫")
    async with http_client(stack.billing, "cashier") as c:
        now = (await c.get(f"/api/v1/invoices/{invoice['id']}")).json()
    assert now["paid_amount"] == 20_000
    refunds = [p for p in now.get("payments", []) if p.get("kind") == "refund"]
    assert len(refunds) == 1 and refunds[0]["amount"] == 10_000, now.get("payments")
    await shot(page, "31-cashier-refunded")

    # close the shift: 200.000 float + 30.000 cash − 10.000 refunded = 220.000 expected; 215.000 counted
    await page.fill("#counted_cash", "abc")
    await page.click("#close-shift")
    await expect(page.locator("#counted_cash-error")).to_contain_text("Nhập số tiền đếm được")
    await page.fill("#counted_cash", "215.000")
    await page.click("#close-shift")
    summary = page.locator("#shift-summary")
    await expect(summary.locator("#expected-cash")).to_have_text("220.000 ₫")
    await expect(summary.locator("#counted-cash")).to_have_text("215.000 ₫")
    await expect(summary.locator("#cash-difference")).to_have_text("-5.000 ₫")
    await expect(page.locator("#open-shift")).to_be_visible()  # the next shift can be opened
    await shot(page, "32-cashier-shift-closed")

    # the rest is paid by VNPay; a transfer whose content names no invoice waits for a cashier
    async with http_client(stack.billing) as gateway:
        ipn = await gateway.get(
            "/api/v1/payments/vnpay/ipn",
            params=vnpay_query(invoice["number"], now["balance"], str(uuid.uuid4().int)[:8]),
        )
        assert ipn.json()["RspCode"] == "00", ipn.text
        ref = f"FT{uuid.uuid4().hex[:10].upper()}"
        r = await gateway.post(
            "/api/v1/payments/bank-webhook",
            json={
                "id": int(uuid.uuid4().int % 10**9),
                "gateway": "VietinBank",
                "transactionDate": "2026-12-07 10:31:00",
                "accountNumber": "113366668888",
                "code": None,
                "content": "chuyen tien vien phi me",
                "transferType": "in",
                "transferAmount": 75_000,
                "accumulated": 0,
                "subAccount": None,
                "referenceCode": ref,
                "description": "chuyen tien vien phi me",
            },
            headers={"Authorization": f"Apikey {BANK_SECRET}"},
        )
        assert r.status_code in (200, 201), r.text

    await page.keyboard.press("Alt+7")  # the day's reconciliation
    await page.wait_for_url("**/cashier/day")
    await expect(page.locator("h1")).to_contain_text("Đối soát trong ngày")
    cash = page.locator("#by-method tr[data-method='cash']")
    await expect(cash).to_be_visible()
    paid = page.locator(f"#callbacks tr:has-text('{invoice['number']}')")
    await expect(paid).to_have_attribute("data-outcome", "paid")
    await expect(page.locator("#unmatched")).to_contain_text(ref)
    await expect(page.locator("#unmatched")).to_contain_text("75.000 ₫")
    await expect(page.locator("#shifts")).to_contain_text("-5.000 ₫")
    await shot(page, "33-cashier-day")
    assert await axe(page) == []
    # the figures are billing's: the day's cash refunded includes this refund
    refunded = await cash.locator("td").nth(3).inner_text()
    assert int(refunded.replace(".", "").replace("₫", "").strip()) >= 10_000
    await ctx.close()


async def test_a_refund_above_the_cashiers_limit_needs_an_admin(stack, browser) -> None:
    limit = stack.billing.settings.refund_cashier_limit
    visit = await open_visit(stack, "Hà Thị Mỹ", "1984-09-30")
    invoice = await wait_for_invoice(stack, visit["id"])

    async def paid_a_lot() -> bool:  # a deposit larger than the limit, taken at the desk by billing's API
        async with http_client(stack.billing, "cashier") as c:
            await c.post("/api/v1/shifts", json={"opening_float": 0})
            r = await c.post(
                f"/api/v1/invoices/{invoice['id']}/payments",
                json={"amount": limit + 1_000_000, "method": "card", "request_id": f"t-{visit['id']}"},
            )
            return r.status_code in (200, 201)

    await wait_for(paid_a_lot, what="a deposit above the refund limit")
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "cashier")
    await page.fill("#scan", invoice["number"])
    await page.press("#scan", "Enter")
    await page.click("#refund-toggle")
    await page.fill("#refund_amount", str(limit + 500_000))
    await page.select_option("#refund_method", "bank_transfer")
    await page.fill("#refund_reason", "Huỷ phẫu thuật theo yêu cầu")
    await page.click("#do-refund")
    await expect(page.locator("#refund_amount-error")).to_contain_text("vượt hạn mức của thu ngân")
    async with http_client(stack.billing, "cashier") as c:
        now = (await c.get(f"/api/v1/invoices/{invoice['id']}")).json()
    assert now["paid_amount"] == limit + 1_000_000  # nothing given back
    await ctx.close()
