"""Payments over the real service: provider callbacks (signatures computed here with hmac/hashlib),
exactly one payment under 100 parallel deliveries, replays, forgeries, wrong amounts, unknown invoices,
out-of-order notices, bank transfers (partial, over, unmatched), desk payments and refunds."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from billing_testkit import (
    SEPAY_AUTH,
    casso_headers,
    invoice_of,
    momo_body,
    sepay_body,
    vnpay_params,
)
from sqlalchemy import func, select

from hospital.billing.adapters.tables import payments, provider_callbacks, refund_items, rejected_callbacks
from hospital.chassis.db import Database
from hospital.testing.services import http_client


async def rows(svc, table, *where) -> int:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())
    finally:
        await db.dispose()


async def issued_invoice(svc, admissions, extra: list[tuple[str, str]] = ()) -> dict:
    vid, _, _ = await admissions.open_visit(name="Hoàng Thị Thu Hà")
    inv = await invoice_of(svc, vid)
    async with http_client(svc, "cashier") as c:
        for code, qty in extra:
            assert (
                await c.post(f"/api/v1/visits/{vid}/charges", json={"price_code": code, "quantity": qty})
            ).status_code == 201
        r = await c.post(f"/api/v1/invoices/{inv['id']}/issue")
        assert r.status_code == 200, r.text
        return r.json()


async def test_100_parallel_deliveries_of_one_vnpay_ipn_make_one_payment(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, [("CDHA-SAOB", "1")])
    due = inv["patient_amount"]
    assert inv["status"] == "issued" and due == 42_100 + 43_900
    params = vnpay_params(inv["number"], due, "14123456")
    async with http_client(billing) as c:
        replies = await asyncio.gather(
            *(c.get("/api/v1/payments/vnpay/ipn", params=params) for _ in range(100))
        )
        assert {r.status_code for r in replies} == {200}
        assert {r.json()["RspCode"] for r in replies} == {"00"}  # every delivery hears success
        # a replay long after, and a second transaction for the settled bill
        assert (await c.get("/api/v1/payments/vnpay/ipn", params=params)).json()["RspCode"] == "00"
        other = vnpay_params(inv["number"], due, "14123999")
        assert (await c.get("/api/v1/payments/vnpay/ipn", params=other)).json()["RspCode"] == "02"
    assert await rows(billing, payments, payments.c.invoice_id == inv["id"]) == 1
    async with http_client(billing, "auditor") as c:
        got = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert got["status"] == "paid" and got["paid_amount"] == due and got["balance"] == 0


async def test_100_parallel_momo_and_bank_deliveries_make_one_payment_each(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, [("XN-CTM", "1")])
    due = inv["patient_amount"]
    body = momo_body(inv["number"], due // 2, 2_400_000_001)  # wrong amount: recorded, not paid
    async with http_client(billing) as c:
        r = await c.post("/api/v1/payments/momo/ipn", json=body)
        assert r.status_code == 204
        transfer = sepay_body(90_001, due, f"MBVCB.3344.NGUYEN VAN AN chuyen tien {inv['number']}.CT tu 0123")
        replies = await asyncio.gather(
            *(c.post("/api/v1/payments/bank-webhook", json=transfer, headers=SEPAY_AUTH) for _ in range(100))
        )
        assert {r.status_code for r in replies} == {200} and all(r.json()["success"] for r in replies)
        assert sum(not r.json()["replay"] for r in replies) == 1
    assert await rows(billing, payments, payments.c.invoice_id == inv["id"]) == 1
    assert await rows(billing, provider_callbacks, provider_callbacks.c.outcome == "amount_mismatch") == 1


async def test_vnpay_reply_codes(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    inv = await issued_invoice(svc, admissions, [("CDHA-XQNGUC", "1")])
    due = inv["patient_amount"]
    async with http_client(svc) as c:

        async def ipn(params: dict) -> str:
            r = await c.get("/api/v1/payments/vnpay/ipn", params=params)
            assert r.status_code == 200
            return r.json()["RspCode"]

        forged = vnpay_params(inv["number"], due, "777", secret="not-the-secret")
        assert await ipn(forged) == "97"
        tampered = vnpay_params(inv["number"], due, "778")
        tampered["vnp_Amount"] = str(due * 100 - 100)  # signed for another amount
        assert await ipn(tampered) == "97"
        assert (
            await ipn(
                {k: v for k, v in vnpay_params(inv["number"], due, "779").items() if k != "vnp_SecureHash"}
            )
            == "97"
        )
        assert await ipn(vnpay_params("HD999999", due, "780")) == "01"
        assert await ipn(vnpay_params(inv["number"], due - 1_000, "781")) == "04"
        assert await ipn(vnpay_params(inv["number"], due, "782", code="24")) == "00"  # cancelled by the payer
        assert await ipn(vnpay_params(inv["number"], due, "783", vnp_Amount="12a")) == "99"
        assert await ipn(vnpay_params(inv["number"], due, "784")) == "00"
    assert await rows(svc, payments, payments.c.invoice_id == inv["id"]) == 1
    assert await rows(svc, rejected_callbacks, rejected_callbacks.c.provider == "vnpay") == 4


async def test_forged_and_replayed_bank_and_momo_callbacks(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    inv = await issued_invoice(svc, admissions)
    due = inv["patient_amount"]
    async with http_client(svc) as c:
        body = momo_body(inv["number"], due, 2_400_000_002, secret="forged")
        r = await c.post("/api/v1/payments/momo/ipn", json=body)
        assert r.status_code == 401 and r.json()["code"] == "callback.invalid_signature"
        t = sepay_body(90_100, due, f"TT {inv['number']}")
        r = await c.post("/api/v1/payments/bank-webhook", json=t, headers={"Authorization": "Apikey wrong"})
        assert r.status_code == 401
        r = await c.post("/api/v1/payments/bank-webhook", json=t)
        assert r.status_code == 401
        casso = {
            "error": 0,
            "data": {
                "id": 55_001,
                "reference": "FT55001",
                "description": f"CK {inv['number']}",
                "amount": due,
                "accountNumber": "113366668888",
                "transactionDateTime": "2024-08-02 10:40:00",
            },
        }
        r = await c.post(
            "/api/v1/payments/bank-webhook",
            content=json.dumps(casso),
            headers=casso_headers(casso, key="forged-key"),
        )
        assert r.status_code == 401 and r.json()["code"] == "callback.invalid_signature"
        old = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1000)
        r = await c.post(
            "/api/v1/payments/bank-webhook",
            content=json.dumps(casso),
            headers=casso_headers(casso, at_ms=old),
        )
        assert r.status_code == 401 and r.json()["code"] == "callback.stale"  # a captured call replayed later
        r = await c.post(
            "/api/v1/payments/bank-webhook", content=json.dumps(casso), headers=casso_headers(casso)
        )
        assert r.status_code == 200 and r.json()["outcome"] == "paid"
        r = await c.post(
            "/api/v1/payments/bank-webhook", content=json.dumps(casso), headers=casso_headers(casso)
        )
        assert r.status_code == 200 and r.json()["replay"] is True  # Casso retry: success, nothing new
        ok = momo_body(inv["number"], due, 2_400_000_003)
        assert (await c.post("/api/v1/payments/momo/ipn", json=ok)).status_code == 204  # bill already paid
    assert await rows(svc, payments, payments.c.invoice_id == inv["id"]) == 1
    assert await rows(svc, rejected_callbacks) == 5


async def test_partial_over_unmatched_and_out_of_order_transfers(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    inv = await issued_invoice(svc, admissions, [("CDHA-CTSN", "1")])
    due = inv["patient_amount"]
    assert due == 42_100 + 522_000
    async with http_client(svc, "cashier") as cashier, http_client(svc) as bank:

        async def send(body: dict) -> dict:
            r = await bank.post("/api/v1/payments/bank-webhook", json=body, headers=SEPAY_AUTH)
            assert r.status_code == 200, r.text
            return r.json()

        # out of order: a refund is asked for (and the bank reports money going out) before the payment notice
        r = await cashier.post(
            f"/api/v1/invoices/{inv['id']}/refunds",
            json={"amount": 100_000, "method": "bank_transfer", "reason": "Hoàn tiền"},
        )
        assert r.status_code == 409 and r.json()["code"] == "refund.exceeds_paid"
        assert (await send(sepay_body(91_000, 100_000, f"Hoan tien {inv['number']}", direction="out")))[
            "outcome"
        ] == "outgoing"
        # partial, then over-payment
        assert (await send(sepay_body(91_001, 300_000, f"{inv['number'].lower()} tam ung")))[
            "outcome"
        ] == "paid"
        got = (await cashier.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert got["status"] == "partly_paid" and got["balance"] == due - 300_000
        assert (await send(sepay_body(91_002, 400_000, f"HĐ{inv['number'][2:]} con lai")))[
            "outcome"
        ] == "paid"
        got = (await cashier.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert got["status"] == "paid" and got["balance"] == due - 700_000 < 0  # to give back
        # the refund now goes through; more than was paid is refused and writes nothing
        r = await cashier.post(
            f"/api/v1/invoices/{inv['id']}/refunds",
            json={"amount": 700_001, "method": "bank_transfer", "reason": "quá"},
        )
        assert r.status_code == 409
        r = await cashier.post(
            f"/api/v1/invoices/{inv['id']}/refunds",
            json={"amount": 700_000 - due, "method": "bank_transfer", "reason": "Trả lại tiền thừa"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["invoice"]["status"] == "paid" and r.json()["invoice"]["balance"] == 0
        # no code, two codes, an unknown code: queued for a cashier, who assigns one
        for n, text in enumerate(["chuyen tien vien phi", f"{inv['number']} va HD999998", "HD999997"]):
            assert (await send(sepay_body(92_000 + n, 50_000, text)))["outcome"] == "unmatched"
        queue = (await cashier.get("/api/v1/bank-transfers/unmatched")).json()["items"]
        assert sorted(i["outcome"] for i in queue) == ["outgoing", "unmatched", "unmatched", "unmatched"]
        other = await issued_invoice(svc, admissions)
        first = next(i for i in queue if i["outcome"] == "unmatched")
        r = await cashier.post(
            f"/api/v1/bank-transfers/{first['id']}/match", json={"invoice_id": other["id"]}
        )
        assert r.status_code == 200 and r.json()["invoice_status"] == "paid", r.text
        r = await cashier.post(
            f"/api/v1/bank-transfers/{first['id']}/match", json={"invoice_id": other["id"]}
        )
        assert r.status_code == 409 and r.json()["code"] == "transfer.not_unmatched"


async def test_desk_payments_need_a_shift_deposits_and_vietqr(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    vid, _, _ = await admissions.open_visit(name="Vũ Đức Thắng")
    inv = await invoice_of(svc, vid)
    async with http_client(svc, "cashier") as c:
        r = await c.post(f"/api/v1/invoices/{inv['id']}/payments", json={"amount": 500_000, "method": "cash"})
        assert r.status_code == 409 and r.json()["code"] == "shift.not_open"
        shift = (await c.post("/api/v1/shifts", json={"opening_float": 1_000_000})).json()
        assert (await c.post("/api/v1/shifts", json={})).json()["code"] == "shift.already_open"
        r = await c.post(
            f"/api/v1/invoices/{inv['id']}/payments",
            json={"amount": 500_000, "method": "cash", "request_id": "dep-1"},
        )
        assert r.status_code == 201 and r.json()["kind"] == "deposit"  # inpatient deposit while open
        r = await c.post(
            f"/api/v1/invoices/{inv['id']}/payments",
            json={"amount": 500_000, "method": "cash", "request_id": "dep-1"},
        )
        assert r.json()["payment_id"]  # retried: same payment
        assert (
            await c.post(f"/api/v1/invoices/{inv['id']}/payments", json={"amount": -5})
        ).status_code == 422
        qr = await c.post(f"/api/v1/invoices/{inv['id']}/vietqr", json={"amount": 200_000})
        assert qr.status_code == 200, qr.text
        assert (
            qr.json()["payload"].startswith("000201010212") and f"TT {inv['number']}" in qr.json()["payload"]
        )
        png = await c.post(f"/api/v1/invoices/{inv['id']}/vietqr?format=png", json={"amount": 200_000})
        assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
        r = await c.post(f"/api/v1/invoices/{inv['id']}/issue")
        assert (
            r.json()["status"] == "paid"
            and r.json()["deposits"] == 500_000
            and r.json()["balance"] == 42_100 - 500_000
        )
        r = await c.post(
            f"/api/v1/invoices/{inv['id']}/refunds",
            json={"amount": 500_000 - 42_100, "method": "cash", "reason": "Hoàn tạm ứng"},
        )
        assert r.status_code == 201 and r.json()["invoice"]["status"] == "paid"
        html = await c.get(f"/api/v1/invoices/{inv['id']}/receipt")
        assert "BIÊN LAI" in html.text and "Vũ Đức Thắng" in html.text
        pdf = await c.get(f"/api/v1/invoices/{inv['id']}/receipt?format=pdf")
        assert pdf.content.startswith(b"%PDF")
        closed = (
            await c.post(f"/api/v1/shifts/{shift['id']}/close", json={"counted_cash": 1_040_000})
        ).json()
        totals = closed["totals"]
        assert totals["by_method"]["cash"] == {"received": 500_000, "refunded": 457_900, "count": 2}
        assert totals["expected_cash"] == 1_042_100 and totals["difference"] == -2_100
    assert await rows(svc, payments) == 2


async def test_vnpay_outcomes_and_racing_transactions_on_both_databases(billing, admissions) -> None:
    """Every outcome through the lean callback endpoint (PostgreSQL: the compare-and-set path of ADR 0201),
    then 30 different transactions racing for one bill: exactly one pays, the others hear 02, and the
    losers of the race on PostgreSQL went through the locking path."""
    inv = await issued_invoice(billing, admissions, [("XN-GLU", "1")])
    due = inv["patient_amount"]
    pays = billing.rt.extras["payments"]
    async with http_client(billing) as c:

        async def ipn(params: dict) -> str:
            r = await c.get("/api/v1/payments/vnpay/ipn", params=params)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            return r.json()["RspCode"]

        assert await ipn(vnpay_params("HD999998", due, "1701")) == "01"
        assert await ipn(vnpay_params(inv["number"], due + 1, "1702")) == "04"
        assert await ipn(vnpay_params(inv["number"], due, "1703", code="24")) == "00"  # failed: recorded only
        assert await ipn(vnpay_params(inv["number"], due, "1703", code="24")) == "00"  # its replay
        assert await ipn(vnpay_params(inv["number"], due, "1704", secret="forged")) == "97"
        racers = [vnpay_params(inv["number"], due, f"18{i:04d}") for i in range(30)]
        replies = await asyncio.gather(*(ipn(p) for p in racers))
        assert sorted(replies).count("00") == 1 and set(replies) == {"00", "02"}, replies
        assert await ipn(racers[replies.index("00")]) == "00"  # the winner's replay
        assert await ipn(racers[replies.index("02")]) == "02"  # a loser's replay keeps its answer
    assert await rows(billing, payments, payments.c.invoice_id == inv["id"]) == 1
    outcomes = {}
    db = Database(billing.settings.database_url)
    try:
        async with db.session() as s:
            for outcome, n in await s.execute(
                select(provider_callbacks.c.outcome, func.count())
                .where(provider_callbacks.c.invoice_number.in_((inv["number"], "HD999998")))
                .group_by(provider_callbacks.c.outcome)
            ):
                outcomes[outcome] = n
    finally:
        await db.dispose()
    assert outcomes == {
        "unknown_invoice": 1,
        "amount_mismatch": 1,
        "failed": 1,
        "paid": 1,
        "already_settled": 29,
    }
    async with http_client(billing, "auditor") as c:
        got = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert got["status"] == "paid" and got["paid_amount"] == due
    # every confirmed payment the bill did not take (29 racers, the unknown invoice) is money to give back
    assert (
        await rows(billing, refund_items, refund_items.c.invoice_number.in_((inv["number"], "HD999998")))
        == 30
    )
    if billing.settings.database_url.startswith("postgresql"):
        # the lean path settled the plain cases (paid, failed, mismatch); money to give back takes the
        # locking path (ADR 0205)
        assert pays.fast is not None and pays.fast_settled >= 3
    else:
        assert pays.fast is None


async def test_callback_endpoints_still_answer_other_methods_through_fastapi(billing_sqlite) -> None:
    async with http_client(billing_sqlite) as c:
        assert (await c.post("/api/v1/payments/vnpay/ipn")).status_code == 405
        assert (await c.get("/api/v1/payments/momo/ipn")).status_code == 405
        r = await c.post("/api/v1/payments/momo/ipn", content=b"x" * (300 * 1024))
        assert r.status_code == 413 and r.json()["code"] == "callback.too_large"
        assert "/api/v1/payments/vnpay/ipn" in (await c.get("/openapi.json")).json()["paths"]


async def test_cashier_resolves_amount_mismatches_once(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, [("XN-CTM", "1")])
    due = inv["patient_amount"]
    short = momo_body(inv["number"], due - 20_000, 2_400_000_101)  # the payer sent less than due
    extra = momo_body(inv["number"], due + 5_000, 2_400_000_102)  # a second, wrong transfer
    async with http_client(billing) as c:
        for body in (short, extra):
            assert (await c.post("/api/v1/payments/momo/ipn", json=body)).status_code == 204
    async with http_client(billing, "cashier") as c:
        queue = {
            q["provider_txn_id"]: q
            for q in (await c.get("/api/v1/bank-transfers/unmatched")).json()["items"]
            if q["invoice_number"] == inv["number"]
        }
        assert {q["outcome"] for q in queue.values()} == {"amount_mismatch"} and len(queue) == 2
        first, second = queue["2400000101"], queue["2400000102"]
        r = await c.post(
            f"/api/v1/callbacks/{first['id']}/resolve",
            json={"action": "accept", "reason": "Bệnh nhân trả thiếu, thu phần còn lại tại quầy"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["invoice_status"] == "partly_paid" and r.json()["payment_id"]
        again = await c.post(
            f"/api/v1/callbacks/{first['id']}/resolve", json={"action": "refund", "reason": "x"}
        )
        assert again.status_code == 409 and again.json()["code"] == "callback.not_mismatch"
        r = await c.post(
            f"/api/v1/callbacks/{second['id']}/resolve",
            json={"action": "refund", "reason": "Chuyển nhầm", "refund_reference": "MOMO-RF-1"},
        )
        assert r.status_code == 200 and r.json()["outcome"] == "returned" and r.json()["payment_id"] is None
        r = await c.post(f"/api/v1/callbacks/{second['id']}/resolve", json={"action": "keep", "reason": "x"})
        assert r.status_code == 422
        got = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert (
            got["paid_amount"] == due - 20_000 and got["balance"] == 20_000 and got["status"] == "partly_paid"
        )
        left = [
            q
            for q in (await c.get("/api/v1/bank-transfers/unmatched")).json()["items"]
            if q["invoice_number"] == inv["number"]
        ]
        assert left == []
    async with http_client(billing) as c:  # MoMo retries the accepted one: still one payment
        assert (await c.post("/api/v1/payments/momo/ipn", json=short)).status_code == 204
    assert await rows(billing, payments, payments.c.invoice_id == inv["id"]) == 1
