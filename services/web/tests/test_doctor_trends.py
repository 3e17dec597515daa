"""Trends on the doctor's screen in Chromium: two potassium results of the same patient (two lab orders,
each received, measured over the lab's real ASTM port and verified) drawn as an inline SVG chart with the
reference range as a band and the high value marked, and the same values in a table for screen readers."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in
from .patients import doctor_token, visit
from .test_accessibility import axe


def astm(barcode: str, code: str, value: str, unit: str, stamp: str) -> bytes:
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|BN1||",
        f"O|1|{barcode}||^^^ALL|R||||||N||||||||||||||F",
        f"R|1|^^^{code}|{value}|{unit}||N||F||SIM|{stamp}|{stamp}|SIM",
        "L|1|N",
    ]
    return ("\r".join(records) + "\r").encode()


async def result_arrives(stack, lab_order_id: str, value: str, stamp: str) -> None:
    """The lab receives the order's tube, the analyzer sends the potassium, the technician verifies."""
    async with http_client(stack.lab, "lab_technician") as tech:
        order = (await tech.get(f"/api/v1/orders/{lab_order_id}")).json()
        barcode = order["specimens"][0]["barcode"]
        assert (await tech.post(f"/api/v1/specimens/{barcode}/receive")).status_code == 200
        stats = await send_astm(
            "127.0.0.1", stack.lab.settings.astm_port, [astm(barcode, "K", value, "mmol/L", stamp)]
        )
        assert stats.messages_failed == 0
        results = (await tech.get(f"/api/v1/orders/{lab_order_id}/results")).json()["results"]
        r = await tech.post("/api/v1/results/verify", json={"result_ids": [x["id"] for x in results]})
        assert r.status_code == 200, r.text


async def test_potassium_trend_chart_and_table(stack, browser) -> None:
    room = "P111"
    v = await visit(stack, "Thân Thị Mỹ Duyên", room, "1957-01-19", "female")
    enc_id, pid = v["encounter_id"], v["patient"]["id"]
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        lab_ids = []
        for n in (1, 2):
            r = await emr.post(
                f"/api/v1/encounters/{enc_id}/orders",
                json={"lab": [{"tests": ["K"]}], "request_id": f"trend-{enc_id}-{n}"},
            )
            assert r.status_code == 201, r.text
            order_id = r.json()["orders"][0]["id"]

            async def downstream(order_id: str = order_id) -> str | None:
                items = (await emr.get(f"/api/v1/encounters/{enc_id}/orders")).json()["items"]
                o = next(o for o in items if o["id"] == order_id)
                return o["downstream_id"] if o["status"] == "placed" else None

            lab_ids.append(await wait_for(downstream, what="the lab accepted the order"))
    await result_arrives(stack, lab_ids[0], "5.9", "20261201080000")
    await result_arrives(stack, lab_ids[1], "4.2", "20261205080000")
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:

        async def both() -> bool:
            r = await emr.get(f"/api/v1/patients/{pid}/results", params={"encounter_id": enc_id})
            return len(r.json().get("results", [])) == 2

        await wait_for(both, what="the EMR has both potassium results")

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Thân Thị Mỹ Duyên").click()
    button = page.locator("#chart [data-trend='K']")
    await expect(button).to_have_text("Biểu đồ K")
    # a key press before htmx has bound the swapped-in button would do nothing: wait until it has
    await page.wait_for_function(
        "b => b['htmx-internal-data'] !== undefined", arg=await button.element_handle()
    )
    await button.focus()
    await page.keyboard.press("Enter")
    figure = page.locator("#trend figure[data-trend-code='K']")
    await expect(figure.locator("svg.trend-chart")).to_be_visible()
    await expect(figure.locator("svg circle")).to_have_count(2)
    await expect(figure.locator("svg circle.trend-flagged")).to_have_count(1)  # 5.9 is above the range
    await expect(figure.locator("svg rect.trend-band")).to_have_count(1)  # the reference range
    await expect(figure.locator("svg title")).to_have_text("Diễn biến Kali máu")
    rows = figure.locator("table.trend-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("5.9")
    await expect(rows.nth(0)).to_contain_text("01/12/2026")  # oldest first, in Vietnam's time
    await expect(rows.nth(1)).to_contain_text("4.2")
    # the high value is drawn above the normal one (SVG y grows downwards)
    ys = [float(await c.get_attribute("cy") or 0) for c in await figure.locator("svg circle").all()]
    assert ys[0] < ys[1]
    await figure.scroll_into_view_if_needed()
    await shot(page, "29-doctor-trend")
    assert await axe(page) == []
    await ctx.close()
