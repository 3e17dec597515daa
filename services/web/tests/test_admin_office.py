"""The admin's price list and device connections in Chromium against the real services: a price found
without diacritics and changed from a date on through billing (refused in the past, without a reason,
and twice for the same date), billing's price list then answering the new price from that date and the
old one before it; the lab's analyzer connections and imaging's DICOM AEs as those services report them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from hospital.imaging.service import DEFINITION as IMAGING
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, running_service
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def test_admin_changes_a_price_from_a_date_on(stack, browser) -> None:
    today = datetime.now(TZ).date()
    async with http_client(stack.billing, "admin") as c:
        items = (await c.get("/api/v1/prices", params={"category": "lab"})).json()["items"]
    target = next(i for i in items if i["name"].startswith("Tổng phân tích tế bào máu"))
    code, old = target["code"], target["hospital_price"]
    new_price = old + 7_000

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "admin")
    await page.keyboard.press("Alt+8")
    await page.wait_for_url("**/admin/prices")
    await expect(page.locator("#search")).to_be_focused()
    await page.keyboard.type("te bao mau ngoai vi")  # typed without diacritics
    row = page.locator(f"#price-list tr[data-code='{code}']")
    await expect(row).to_be_visible()
    await expect(page.locator("#price-list tbody tr")).not_to_have_count(0)
    await row.get_by_role("button").click()
    form = page.locator(f"#price-edit form[data-code='{code}']")
    await expect(form).to_be_visible()
    await expect(page.locator("#p-hospital_price")).to_be_focused()
    # a date in the past, and no reason: both refused next to their fields
    await page.fill("#p-hospital_price", str(new_price))
    await page.fill("#p-effective_from", (today - timedelta(days=3)).isoformat())
    await page.click("#save-price")
    await expect(page.locator("#p-reason-error")).to_contain_text("Hãy ghi lý do")
    await page.fill("#p-reason", "Quyết định 1234/QĐ-SYT điều chỉnh giá")
    await page.click("#save-price")
    await expect(page.locator("#p-effective_from-error")).to_contain_text("chỉ áp dụng từ hôm nay trở đi")
    await shot(page, "34-admin-price-error")
    tomorrow = today + timedelta(days=1)
    await page.fill("#p-effective_from", tomorrow.isoformat())
    await page.click("#save-price")
    await expect(page.locator(".price-saved .notice")).to_contain_text(f"Đã đặt giá {code}")
    await expect(page.locator("#saved-from")).to_have_text(tomorrow.isoformat())
    await shot(page, "35-admin-price-saved")
    # billing prices by the day: the old price today, the new one from tomorrow
    async with http_client(stack.billing, "admin") as c:
        now = {i["code"]: i for i in (await c.get("/api/v1/prices")).json()["items"]}
        later = {
            i["code"]: i
            for i in (await c.get("/api/v1/prices", params={"on": tomorrow.isoformat()})).json()["items"]
        }
    assert now[code]["hospital_price"] == old and now[code]["effective_to"] == today.isoformat()
    assert later[code]["hospital_price"] == new_price
    assert later[code]["insurance_price"] == target["insurance_price"]  # left empty: unchanged
    # the list marks the coming change; a second change for the same date is refused
    await page.fill("#search", code)
    await expect(row).to_contain_text(f"giá mới từ {tomorrow.isoformat()}")
    await row.get_by_role("button").click()
    await page.fill("#p-hospital_price", str(new_price + 1_000))
    await page.fill("#p-effective_from", tomorrow.isoformat())
    await page.fill("#p-reason", "Nhập nhầm")
    await page.click("#save-price")
    await expect(page.locator("#p-effective_from-error")).to_contain_text("đã có giá mới")
    await ctx.close()


async def test_admin_sees_the_analyzers_and_the_dicom_aes(stack, browser, s3_server, tmp_path) -> None:
    lab = stack.lab.settings
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "admin")
    # imaging is not running yet: its part says so, the analyzers are shown
    await page.goto(stack.url + "/admin/devices")
    await expect(page.locator("#aes .unavailable")).to_contain_text("Chẩn đoán hình ảnh")
    analyzers = page.locator("#analyzers")
    await expect(analyzers.locator("tr[data-analyzer='mllp']")).to_contain_text(f":{lab.mllp_port}")
    await expect(analyzers.locator("tr[data-analyzer='astm']")).to_contain_text(f":{lab.astm_port}")
    xn = analyzers.locator("tr[data-analyzer='XN-550']")
    await expect(xn).to_contain_text("sysmex")
    await expect(xn).to_contain_text(f":{lab.instruments[0].port}")
    async with running_service(
        IMAGING,
        data_dir=stack.web.settings.data_dir,  # the same development token issuer as the web
        database_url=f"sqlite+aiosqlite:///{tmp_path}/imaging.db",
        nats_url=stack.web.settings.nats_url,
        grpc_port=stack.imaging_port,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        ae_title="BVT_PACS",
        strict_ae=True,
        known_aes="CT_HUE=10.0.0.21:4006,VIEWER=10.0.0.7:104",
        ae_permissions="CT_HUE=store+worklist",
        shutdown_grace_seconds=2,
    ):

        async def shown() -> bool:  # the web's channel to imaging reconnects by itself (backoff ≤ 2 s)
            await page.reload()
            return await page.locator("#aes #own-ae").count() > 0

        await wait_for(shown, interval=0.5, what="imaging's AEs on the devices screen")
        aes = page.locator("#aes")
        await expect(aes.locator("#own-ae")).to_have_text("BVT_PACS")
        await expect(aes).to_contain_text("Chỉ nhận AE đã khai báo")
        ct = aes.locator("tr[data-ae='CT_HUE']")
        await expect(ct).to_contain_text("10.0.0.21:4006")
        await expect(ct).to_contain_text("Gửi ảnh")
        await expect(ct).not_to_contain_text("Lấy ảnh")  # store and worklist only
        await expect(aes.locator("tr[data-ae='VIEWER']")).to_contain_text("Lấy ảnh")  # no entry: everything
        await shot(page, "36-admin-devices")
    await ctx.close()
