"""The cashier's desk in Chromium: an invoice captured by billing from a visit, its split, the VietQR on
screen, cash within a shift, and a signed VNPay callback marking it paid on screen without a reload."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse

from playwright.async_api import expect

from hospital.testing.services import http_client
from hospital.testing.waits import wait_for

from .conftest import VNPAY_SECRET, new_context, shot, sign_in


def vnpay_query(invoice_number: str, amount: int, txn: str) -> dict[str, str]:
    params = {
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_OrderInfo": f"Thanh toan {invoice_number}",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": "DEVTMN01",
        "vnp_TransactionNo": txn,
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": invoice_number,
        "vnp_PayDate": "20261207103000",
    }
    data = "&".join(
        f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in sorted(params.items())
    )
    return {
        **params,
        "vnp_SecureHash": hmac.new(VNPAY_SECRET.encode(), data.encode(), hashlib.sha512).hexdigest(),
    }


async def wait_for_invoice(stack, visit_id: str) -> dict:
    async with http_client(stack.billing, "cashier") as c:

        async def captured() -> dict | None:
            r = await c.get(f"/api/v1/visits/{visit_id}/invoice")
            return r.json() if r.status_code == 200 else None

        return await wait_for(captured, what="billing captured the visit (admissions.visit.opened)")


async def test_invoice_vietqr_cash_and_a_callback_paying_it_live(stack, browser) -> None:
    async with http_client(stack.admissions, "receptionist") as clerk:
        patient = (
            await clerk.post(
                "/api/v1/patients",
                json={"full_name": "Tạ Quang Vinh", "birth_date": "1979-06-15", "sex": "male"},
            )
        ).json()
        visit = (
            await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": "P102"})
        ).json()
    invoice = await wait_for_invoice(stack, visit["id"])
    due = invoice["balance"]
    assert due > 10_000

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "cashier")
    assert page.url.endswith("/cashier")
    await page.click(f"#invoices a[data-number='{invoice['number']}']")
    panel = page.locator("#invoice .invoice")
    await expect(panel).to_contain_text("Tạ Quang Vinh")
    await expect(panel.locator(".lines tbody tr")).to_have_count(len(invoice["lines"]))
    await expect(page.locator("#pay-status [data-status]")).to_have_attribute(
        "data-status", invoice["status"]
    )
    # the VietQR for the balance, on screen
    await page.click("#show-qr")
    qr = page.locator("#vietqr .vietqr")
    await expect(qr).to_have_attribute("data-amount", str(due))
    assert await qr.locator("img").evaluate("img => img.naturalWidth > 100")
    await shot(page, "16-cashier-invoice-vietqr")
    # cash needs an open shift: the refusal stands next to the amount
    await page.fill("#amount", "10000")
    await page.click("#take-cash")
    await expect(page.locator("#amount-error")).to_contain_text("Chưa mở ca thu ngân")
    await page.fill("#opening_float", "500000")
    await page.click("#open-shift")
    await expect(page.locator("#shift .shift-open")).to_contain_text("500.000 ₫")
    await page.fill("#amount", "10.000")
    await page.dblclick("#take-cash")  # a double click takes the money once
    await expect(page.locator("#invoice .notice")).to_contain_text("Đã thu 10.000 ₫ tiền mặt")
    await expect(page.locator("#paid")).to_have_text("10.000 ₫")
    await expect(page.locator("#balance")).to_have_text(f"{due - 10_000:,} ₫".replace(",", "."))
    async with http_client(stack.billing, "cashier") as c:
        now = (await c.get(f"/api/v1/invoices/{invoice['id']}")).json()
    assert now["paid_amount"] == 10_000
    # the patient pays the rest by VNPay: the screen follows without a reload
    async with http_client(stack.billing) as gateway:
        ipn = await gateway.get(
            "/api/v1/payments/vnpay/ipn", params=vnpay_query(invoice["number"], due - 10_000, "14099887")
        )
        assert ipn.json()["RspCode"] == "00", ipn.text
    await expect(page.locator("#balance")).to_have_text("0 ₫")
    await expect(page.locator("#paid")).to_have_text(f"{due:,} ₫".replace(",", "."))
    await expect(page.locator("#invoice .pay-actions")).to_be_hidden()  # nothing more to take for it
    await shot(page, "17-cashier-paid-live")
    await ctx.close()
