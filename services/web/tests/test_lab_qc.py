"""Lab QC in Chromium against the lab: a glucose control's Levey-Jennings chart (SVG drawn by the web)
with every Westgard rule it broke (1-2s, 1-3s, 2-2s, R-4s, 4-1s, 10-x), the runs as a table, and the
analyzers' state (last message from the simulator, its QC per test). Other roles are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client

from .conftest import http_sign_in, new_context, shot, sign_in
from .test_accessibility import axe

# Level 1 (target 5.0 ± 0.2 mmol/L), one run a day: z = +0.5, +2.5 (1-2s), +3.5 (1-3s, 2-2s), -2.5
# (R-4s against the run before), four at +1.5 (4-1s on the fourth), six at +0.5 (10-x on the last:
# ten in a row above the mean).
LEVEL1 = [5.1, 5.5, 5.7, 4.5, 5.3, 5.3, 5.3, 5.3, 5.1, 5.1, 5.1, 5.1, 5.1, 5.1]
EXPECTED = {2: ["1-2s"], 3: ["1-3s", "2-2s"], 4: ["R-4s"], 8: ["4-1s"], 14: ["10-x"]}


def qc_message(sample: str, value: str, when: datetime) -> bytes:
    stamp = when.strftime("%Y%m%d%H%M%S")
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|QC||",
        f"O|1|{sample}||^^^GLU|R||||||Q||||||||||||||F",
        f"R|1|^^^GLU|{value}|mmol/L||N||F||SIM|{stamp}|{stamp}|SIM",
        "L|1|N",
    ]
    return ("\r".join(records) + "\r").encode()


async def test_levey_jennings_chart_westgard_flags_and_analyzers(stack, browser) -> None:
    async with http_client(stack.lab, "lab_technician") as tech:
        lots = {}
        for level, mean in (("1", 5.0), ("2", 15.0)):
            r = await tech.post(
                "/api/v1/qc/lots",
                json={
                    "instrument_id": "simulator",
                    "test_code": "GLU",
                    "lot_number": f"BR-2026-WEB-L{level}",
                    "level": level,
                    "material": f"Bio-Rad Multiqual {level}",
                    "sample_id": f"QC-WEB-GLU-L{level}",
                    "mean": mean,
                    "sd": 0.2,
                },
            )
            assert r.status_code == 201, r.text
            lots[level] = r.json()
        # level 2 from the analyzer itself, on target
        stats = await send_astm(
            "127.0.0.1",
            stack.lab.settings.astm_port,
            [qc_message("QC-WEB-GLU-L2", "15.1", datetime.now(UTC))],
        )
        assert stats.messages_failed == 0
        start = datetime.now(UTC) - timedelta(days=len(LEVEL1), hours=2)
        for day, value in enumerate(LEVEL1):
            r = await tech.post(
                f"/api/v1/qc/lots/{lots['1']['id']}/results",
                json={"value": value, "measured_at": (start + timedelta(days=day)).isoformat()},
            )
            assert r.status_code == 201, r.text
            assert [v["rule"] for v in r.json()["violations"]] == EXPECTED.get(day + 1, []), day + 1

    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "lab_technician")
    await page.click("nav.subnav a[href='/lab/qc']")
    await page.wait_for_url("**/lab/qc")
    await page.click(f"a[data-lot='{lots['1']['id']}']")
    await expect(page.locator("#chart-title")).to_contain_text("mức 1")
    chart = page.locator("svg.lj")
    await expect(chart.locator("g.lj-dot")).to_have_count(len(LEVEL1))
    await expect(chart.locator("g.lj-reject")).to_have_count(4)  # runs 3, 4, 8, 14
    await expect(chart.locator("g.lj-warning")).to_have_count(1)  # run 2
    for run, rules in EXPECTED.items():
        await expect(chart.locator(f"g.lj-dot[data-run='{run}'] .lj-rule")).to_have_text(" ".join(rules))
        row = page.locator(f"table.qc-runs tr[data-run='{run}']")
        for rule in rules:
            await expect(row).to_contain_text(rule)
    await expect(page.locator("table.qc-runs tr[data-run='14']")).to_have_class("row-critical")
    await expect(page.locator("table.qc-runs tr[data-run='2']")).to_have_class("row-warning")
    await expect(page.locator("table.qc-runs tr[data-run='1']")).to_contain_text("Nhập tay")
    # the analyzer: its last message (the level-2 control) and its QC state for glucose, failed (10-x)
    sim = page.locator(".analyzer[data-analyzer='simulator']")
    await expect(sim).to_contain_text("Bản tin cuối")
    await expect(sim.locator("[data-qc='GLU']")).to_have_text("GLU: Không đạt (10-x)")
    await shot(page, "50-lab-qc-levey-jennings")
    violations = await axe(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)

    # level 2: its one run came from the analyzer
    await page.click(f"a[data-lot='{lots['2']['id']}']")
    await expect(page.locator("svg.lj g.lj-ok")).to_have_count(1)
    await expect(page.locator("table.qc-runs tr[data-run='1']")).to_contain_text("Máy gửi")

    await page.goto(stack.url + f"/language?to=en&next=/lab/qc%3Flot%3D{lots['1']['id']}")
    title = page.locator("#chart-title")
    await expect(title).to_contain_text("Levey-Jennings chart: Glucose")
    await expect(title).to_contain_text("level 1")
    await ctx.close()

    for role in ("nurse", "doctor", "radiographer"):
        client = await http_sign_in(stack.url, role)
        try:
            r = await client.get("/lab/qc")
            assert r.status_code == 403 and "Không có quyền truy cập" in r.text, role
        finally:
            await client.aclose()
