"""Accessibility of every screen with axe-core (the vendored, pinned build in tests/vendor, checked by
its SHA-256): WCAG 2.x A and AA rules, labels, contrast, landmarks, focus order. No violations allowed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .conftest import new_context, shot, sign_in

AXE = Path(__file__).parent / "vendor" / "axe-core-4.10.3.min.js"
AXE_SHA256 = "880970c081707360e64f34cea25ff91892f5bc95675b0776925b9709dd8a68bb"
CCCD = "079188009911|Phan Thị Ngọc Ánh|08081988|Nữ|12 Nguyễn Huệ, Phường Bến Nghé, TP Hồ Chí Minh|02022022"


async def axe(page) -> list[dict]:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "axe-core changed: update the pin deliberately"
    await page.evaluate(source.decode())  # evaluated by the test driver, not a page script: the CSP stays on
    result = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result
    ]


@pytest.mark.parametrize(
    ("user", "path", "name"),
    [
        (None, "/", "sign-in"),
        ("receptionist", "/home", "home"),
        ("receptionist", "/reception", "reception"),
        ("admin", "/admin/users", "users"),
        ("lab_technician", "/lab", "lab"),
        ("cashier", "/cashier", "cashier"),
        ("doctor", "/doctor?room=P101", "doctor"),
        ("nurse", "/ward", "ward"),
        ("radiographer", "/imaging", "imaging"),
        ("nurse", "/display", "display-choose"),
        ("nurse", "/display/P105", "display"),
        ("cashier", "/cashier/day", "reconcile"),
        ("admin", "/admin/prices", "prices"),
        ("admin", "/admin/devices", "devices"),
        ("auditor", "/audit?service=admissions", "audit"),
    ],
)
async def test_screen_has_no_accessibility_violations(stack, browser, user, path, name) -> None:
    ctx = await new_context(browser)
    page = await ctx.new_page()
    if user:
        await sign_in(page, stack.url, user)
    await page.goto(stack.url + path)
    if path == "/display/P105":
        await page.wait_for_selector(".display-body")
    if path == "/cashier":  # an invoice with its VietQR
        await page.wait_for_selector("#invoices .result, #invoices .empty:not(:has-text('…'))")
        if await page.locator("#invoices .result").count():
            await page.locator("#invoices .result").first.click()
            await page.wait_for_selector("#invoice .invoice")
    if path.startswith("/doctor"):  # the consultation form of the first patient waiting, if any
        await page.wait_for_selector("#queue .result, #queue .empty")
        if await page.locator("#queue .result").count():
            await page.locator("#queue .result").first.click()
            await page.wait_for_selector("#chart form.consult-form")
    if path.startswith("/audit"):
        await page.wait_for_selector("#chain-table")
    if path == "/admin/prices":  # a price's change form, with an error shown
        await page.locator("#price-list tbody tr button").first.click()
        await page.wait_for_selector("#price-edit form")
        await page.click("#save-price")
        await page.wait_for_selector("#p-reason-error")
    if path == "/lab":
        await page.wait_for_selector("#worklist table, #worklist .empty:not(:has-text('…'))")
    violations = await axe(page)
    assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    if path == "/reception":  # the visit form too, with its errors shown
        await page.fill("#scan", CCCD)
        await page.press("#scan", "Enter")
        await page.click("#open-visit")
        await page.wait_for_selector("#room-error")
        violations = await axe(page)
        assert violations == [], json.dumps(violations, ensure_ascii=False, indent=1)
    # the first control takes the keyboard without a click
    if path in ("/", "/reception"):
        focused = await page.evaluate("document.activeElement && document.activeElement.id")
        assert focused in ("username", "scan", "room")
    await shot(page, f"a11y-{name}")
    await ctx.close()


async def test_vendored_front_end_files_are_the_pinned_ones() -> None:
    """htmx and its SSE extension are served from the web itself; their bytes are pinned (VENDOR.json)."""
    static = Path(__file__).resolve().parents[1] / "src" / "hospital" / "web" / "static" / "vendor"
    pins = json.loads((static / "VENDOR.json").read_text())
    for entry in pins["files"]:
        data = (static / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
    listed = {e["file"] for e in pins["files"]}
    assert listed == {p.name for p in static.glob("*.js")}


async def test_the_checker_reports_what_it_should(browser) -> None:
    """The check above cannot pass by accident: on a page with an unlabelled field, no language, no title
    and grey-on-white text, axe reports exactly those."""
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await page.set_content(
        "<html><body><input type=text><p style='color:#aaa;background:#fff'>mờ</p></body></html>"
    )
    found = {v["id"] for v in await axe(page)}
    assert {"label", "html-has-lang", "document-title", "color-contrast"} <= found
    await ctx.close()
