"""The auditor's screen in Chromium against the real services, and the audit contract every service serves
through the chassis: records filtered by service, user, patient, action, purpose and time; each trail's
chain verified (and a record altered in a service's database shown as such); the auditor's reading is
recorded in the trails read; other roles are refused the RPCs."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from playwright.async_api import expect

from hospital.chassis.rpc import call_metadata
from hospital.contracts.platform.v1 import audit_pb2 as aud
from hospital.contracts.platform.v1 import audit_pb2_grpc as aud_grpc
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .conftest import new_context, shot, sign_in

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def audit_query(svc, role: str, **fields) -> aud.QueryAuditResponse:
    token = issuer_for(svc).mint_for_role(role)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = aud_grpc.AuditServiceStub(ch)
        return await stub.QueryAudit(
            aud.QueryAuditRequest(**fields), metadata=call_metadata(token), timeout=10
        )


async def register(stack, name: str) -> dict:
    async with http_client(stack.admissions, "receptionist") as clerk:
        r = await clerk.post(
            "/api/v1/patients", json={"full_name": name, "birth_date": "1966-03-08", "sex": "male"}
        )
        assert r.status_code in (200, 201), r.text
        return r.json()


async def test_every_service_serves_its_trail_to_auditors_only(stack) -> None:
    patient = await register(stack, "Đinh Công Tráng")
    for name in ("Nông Văn Dền", "Sầm Thị Liên"):  # more than a page of registrations below
        await register(stack, name)
    out = await audit_query(stack.admissions, "auditor", patient_id=patient["id"], reason="kiểm tra định kỳ")
    assert out.service == "admissions"
    assert out.records and all(r.patient_id == patient["id"] for r in out.records)
    assert "patient.register" in {r.action for r in out.records}
    # the query itself is in the trail it read, with its filters and the auditor's reason
    recorded = await audit_query(stack.admissions, "auditor", action="audit.query", limit=5)
    mine = [r for r in recorded.records if patient["id"] in r.detail_json]
    assert mine and "kiểm tra định kỳ" in mine[0].detail_json and mine[0].purpose == "HCOMPL"
    # a prefix of actions, a purpose and paging: newest first, no record twice
    first = await audit_query(stack.admissions, "auditor", action="patient.", purpose="HOPERAT", limit=2)
    assert len(first.records) == 2 and first.next_page_token
    assert all(r.action.startswith("patient.") and r.purpose == "HOPERAT" for r in first.records)
    second = await audit_query(
        stack.admissions,
        "auditor",
        action="patient.",
        purpose="HOPERAT",
        limit=2,
        page_token=first.next_page_token,
    )
    assert {r.id for r in first.records}.isdisjoint({r.id for r in second.records})
    assert first.records[-1].at.ToDatetime() >= second.records[0].at.ToDatetime()
    # the same contract on every other service (one implementation, the chassis)
    for svc in (stack.lab, stack.billing, stack.emr, stack.web):
        assert (await audit_query(svc, "auditor", limit=1)).service == svc.settings.service
    # bad filters are refused naming the field; other roles may not read the trail
    for fields, field in (
        ({"purpose": "SNOOP"}, "purpose"),
        ({"limit": 501}, "limit"),
        ({"page_token": "x"}, "page_token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await audit_query(stack.admissions, "auditor", **fields)
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"(field {field})" in err.value.details()
        )
    for role in ("admin", "doctor", "receptionist"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await audit_query(stack.admissions, role)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_auditor_filters_the_trails_and_sees_each_chain(stack, browser) -> None:
    patient = await register(stack, "Vi Thị Đào")
    ctx = await new_context(browser)
    page = await ctx.new_page()
    await sign_in(page, stack.url, "auditor")
    assert page.url.endswith("/audit")  # the auditor's start screen
    chains = page.locator("#chain-table")
    for name in ("admissions", "lab", "billing", "emr", "web"):
        await expect(chains.locator(f"[data-service='{name}']")).to_have_attribute("data-state", "ok")
    await expect(chains.locator("[data-service='imaging']")).to_have_attribute("data-state", "down")
    await expect(page.locator("#f-service")).to_be_focused()  # keyboard first: the filters
    # one patient's records, across every service
    await page.fill("#f-patient", patient["id"])
    await page.fill("#f-reason", "Người bệnh khiếu nại về việc xem hồ sơ")
    await page.press("#f-patient", "Enter")
    rows = page.locator("#records tbody tr")
    await expect(rows.first).to_be_visible()
    await expect(page.locator("#records")).to_contain_text("patient.register")
    assert await rows.count() == await page.locator(f"#records tbody tr:has-text('{patient['id']}')").count()
    await page.locator("#records").scroll_into_view_if_needed()
    await shot(page, "37-audit-patient")
    # by user and service, within the last hour, with a purpose
    now = datetime.now(TZ)
    await page.goto(stack.url + "/audit")
    await page.select_option("#f-service", "admissions")
    await page.fill("#f-user", "letan.lan")  # the receptionist who registered the patient
    await page.select_option("#f-purpose", "HOPERAT")
    await page.fill("#f-since", (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#f-until", (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
    await page.click("#audit-search")
    await expect(rows.first).to_be_visible()
    services = set(
        await page.locator("#records tbody tr").evaluate_all("rs => rs.map(r => r.dataset.service)")
    )
    assert services == {"admissions"}
    await expect(page.locator("#records tbody")).not_to_contain_text("user:bs.minh")
    assert await rows.count() == await page.locator("#records tbody tr:has-text('user:letan.lan')").count()
    # a time range the wrong way round is refused next to its field
    await page.fill("#f-until", (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    await page.click("#audit-search")
    await expect(page.locator("#f-until-error")).to_contain_text("phải sau thời điểm bắt đầu")
    # the auditor's reading is in the trails it read, and the screen's use in the web's
    await page.goto(stack.url + "/audit?service=admissions&action=audit.query&user=auditor")
    await expect(page.locator("#records")).to_contain_text("Người bệnh khiếu nại")
    await page.goto(stack.url + "/audit?service=web&action=audit.screen")
    await expect(page.locator("#records tbody tr").first).to_contain_text("user:auditor")
    await page.locator("#records").scroll_into_view_if_needed()
    await shot(page, "38-audit-reading-audited")
    # the English switch: the same screen, the same filters
    await page.click("a.lang")
    await expect(page.locator("h1")).to_have_text("Audit trail")
    await expect(page.locator("#chain-table [data-service='web']")).to_contain_text("Intact")
    await expect(page.locator("#f-action")).to_have_value("audit.screen")
    await shot(page, "38-audit-english")
    await ctx.close()


async def test_an_altered_record_shows_on_the_chain_state(stack, browser) -> None:
    """A record of the lab's trail changed in its database (without the key): the lab's chain is shown
    altered, the others intact; put back, it verifies again."""
    db = Path(stack.lab.settings.database_url.split("///", 1)[1])
    await audit_query(stack.lab, "auditor", limit=1)  # something in the lab's trail: the query itself

    def newest() -> tuple[int, int, str] | None:
        with sqlite3.connect(db, timeout=30) as con:  # the running lab writes too
            return con.execute("SELECT chain, seq, detail FROM audit_log ORDER BY at DESC LIMIT 1").fetchone()

    row = await wait_for(newest, what="a record in the lab's trail")
    chain, seq, detail = row
    with sqlite3.connect(db, timeout=30) as con:  # the running lab writes too
        con.execute("UPDATE audit_log SET detail = ? WHERE chain = ? AND seq = ?", (detail + " ", chain, seq))
    ctx = await new_context(browser)
    page = await ctx.new_page()
    try:
        await sign_in(page, stack.url, "auditor")
        lab_row = page.locator("#chain-table [data-service='lab']")
        await expect(lab_row).to_have_attribute("data-state", "broken")
        await expect(lab_row).to_contain_text("Bị sửa đổi")
        await expect(page.locator("#chain-table [data-service='billing']")).to_have_attribute(
            "data-state", "ok"
        )
        await shot(page, "39-audit-chain-altered")
    finally:
        with sqlite3.connect(db, timeout=30) as con:  # the running lab writes too
            con.execute("UPDATE audit_log SET detail = ? WHERE chain = ? AND seq = ?", (detail, chain, seq))
    await page.reload()
    await expect(page.locator("#chain-table [data-service='lab']")).to_have_attribute("data-state", "ok")
    await ctx.close()
