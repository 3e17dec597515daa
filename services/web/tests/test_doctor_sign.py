"""Signing on the doctor's screen in Chromium: the consultation note is signed through the EMR (Ed25519
JWS, verified by the EMR afterwards); the chart then shows who signed and when, the consultation fields
are locked and a save sent anyway is refused; a draft prescription is signed the same way."""

from __future__ import annotations

from playwright.async_api import expect

from hospital.testing.services import http_client

from .conftest import csrf_of, new_context, shot, sign_in
from .patients import doctor_token, visit
from .test_accessibility import axe


async def test_sign_the_note_and_the_prescription(stack, browser) -> None:
    room = "P202"
    v = await visit(stack, "Quách Văn Thịnh", room, "1966-04-04")
    enc_id, pid = v["encounter_id"], v["patient"]["id"]
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "doctor")
    await page.select_option("#room", room)
    await page.locator("#queue .queue-item").filter(has_text="Quách Văn Thịnh").click()

    await page.click("#sign-note")  # nothing saved yet
    await expect(page.locator("#sign-error")).to_have_text("Lưu phiếu khám trước khi ký.")
    await page.fill("#chief_complaint", "Đau thượng vị 2 tuần")
    await page.fill("#examination", "Bụng mềm, ấn đau thượng vị")
    await page.fill("#main_code", "K29.7")
    await page.fill("#treatment_plan", "Ức chế bơm proton 4 tuần")
    await page.click("#save-consultation")
    await expect(page.locator("#chart .notice")).to_contain_text("Đã lưu phiếu khám")

    # a prescription, signed from its line in the list
    await page.fill("#rx-0-drug_q", "omeprazol")
    await page.locator("#rx-0-drug-results input[value='OME20']").check()
    await page.fill("#rx-0-dose", "1 viên")
    await page.fill("#rx-0-frequency", "1 lần/ngày")
    await page.fill("#rx-0-duration_days", "28")
    await page.fill("#rx-0-quantity", "28")
    await page.fill("#rx-advice", "Tái khám sau 4 tuần")
    await page.click("#save-prescription")
    rx = page.locator("#chart .prescription")
    await expect(rx).to_have_attribute("data-status", "draft")
    await rx.locator("[data-sign-prescription]").click()
    await expect(page.locator("[data-rx-notice]")).to_contain_text("Đã ký số đơn thuốc")
    rx = page.locator("#chart .prescription")
    await expect(rx).to_have_attribute("data-status", "signed")
    await expect(rx.locator(".tag").first).to_have_text("Đã ký")
    await expect(rx.locator("[data-signed]")).to_contain_text("ký bởi")
    await expect(rx.locator("[data-sign-prescription]")).to_have_count(0)

    # the note: signed, then locked
    await page.click("#sign-note")
    banner = page.locator("#chart .signed-banner")
    await expect(banner).to_contain_text("Phiếu khám đã ký số")
    await expect(banner).to_contain_text("ký bởi")
    await expect(page.locator("#chief_complaint")).to_be_disabled()
    await expect(page.locator("#main_code")).to_be_disabled()
    await expect(page.locator("#save-consultation")).to_have_count(0)
    await expect(page.locator("#sign-note")).to_have_count(0)
    await shot(page, "35-doctor-note-signed")
    assert await axe(page) == []

    # a save sent anyway (an old tab, a crafted request) is refused and changes nothing
    html = await page.content()
    r = await page.request.post(
        f"{stack.url}/doctor/encounters/{enc_id}/consultation",
        form={"version": "1", "chief_complaint": "sửa sau khi ký", "main_code": "K29.7"},
        headers={"X-CSRF-Token": csrf_of(html)},
    )
    assert r.status == 422
    assert "Phiếu khám đã ký số: không sửa được nữa." in await r.text()
    await ctx.close()

    async with http_client(stack.emr, token=doctor_token(stack)) as emr:
        chart = (await emr.get(f"/api/v1/patients/{pid}/chart", params={"encounter_id": enc_id})).json()
        assert chart["consultation"]["chief_complaint"] == "Đau thượng vị 2 tuần"
        notes = [d for d in chart["documents"] if d["kind"] == "outpatient_note"]
        assert [d["status"] for d in notes] == ["signed"]
        sections = {s["code"]: s["text"] for s in notes[0]["sections"]}
        assert sections["reason"] == "Đau thượng vị 2 tuần" and sections["diagnosis"].startswith("K29.7")
        for doc_id in (notes[0]["id"], chart["prescriptions"][0]["document_id"]):
            verified = (await emr.get(f"/api/v1/documents/{doc_id}/verify")).json()
            assert verified["signed"] and verified["valid"], verified
            assert verified["signature"]["signer"] == "user:doctor"
