"""A confirmed payment the bill no longer needs is never lost: for every provider (VNPay, MoMo, SePay, Casso,
a VietQR transfer) it becomes a refund work item, listed by GET /api/v1/refund-items, and a cashier
records the money going back (POST /api/v1/refund-items/{id}/resolve). On SQLite and PostgreSQL (where
VNPay and MoMo first take the compare-and-set fast path)."""

from __future__ import annotations

import asyncio
import json

from billing_testkit import SEPAY_AUTH, casso_headers, invoice_of, momo_body, sepay_body, vnpay_params
from sqlalchemy import func, select

from hospital.billing.adapters.tables import payments, refund_items
from hospital.testing.services import http_client


async def issued_invoice(svc, admissions, name: str, extra: tuple[str, str] | None = None) -> dict:
    vid, _, _ = await admissions.open_visit(name=name)
    inv = await invoice_of(svc, vid)
    async with http_client(svc, "cashier") as c:
        if extra:
            r = await c.post(
                f"/api/v1/visits/{vid}/charges", json={"price_code": extra[0], "quantity": extra[1]}
            )
            assert r.status_code == 201, r.text
        r = await c.post(f"/api/v1/invoices/{inv['id']}/issue")
        assert r.status_code == 200, r.text
        return r.json()


async def items_for(svc, invoice_number: str, status: str = "open") -> list[dict]:
    async with http_client(svc, "cashier") as c:
        r = await c.get("/api/v1/refund-items", params={"status": status, "limit": 1000})
        assert r.status_code == 200, r.text
        return [i for i in r.json()["items"] if i["invoice_number"] == invoice_number]


async def count(svc, table, *where) -> int:
    async with svc.rt.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_twenty_vnpay_transactions_for_one_invoice(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, "Phạm Thị Lan", ("XN-CTM", "1"))
    due = inv["patient_amount"]
    txns = [f"1490{n:04d}" for n in range(20)]
    async with http_client(billing) as c:
        replies = await asyncio.gather(
            *(c.get("/api/v1/payments/vnpay/ipn", params=vnpay_params(inv["number"], due, t)) for t in txns)
        )
        codes = sorted(r.json()["RspCode"] for r in replies)
        assert codes == ["00"] + ["02"] * 19, codes
        # a retry of one of the nineteen changes nothing
        again = await c.get("/api/v1/payments/vnpay/ipn", params=vnpay_params(inv["number"], due, txns[7]))
        assert again.json()["RspCode"] in ("00", "02")
        # a cancelled attempt (no money moved) is no refund
        cancelled = vnpay_params(inv["number"], due, "14909999", code="24")
        assert (await c.get("/api/v1/payments/vnpay/ipn", params=cancelled)).json()["RspCode"] == "02"
    assert await count(billing, payments, payments.c.invoice_id == inv["id"]) == 1
    items = await items_for(billing, inv["number"])
    assert len(items) == 19 and {i["reason"] for i in items} == {"already_settled"}
    assert {i["amount"] for i in items} == {due} and not any(i["on_invoice"] for i in items)
    paid_txn = await paid_txn_of(billing, inv["id"])
    assert {i["provider_txn_id"] for i in items} == set(txns) - {paid_txn}
    assert all(i["provider"] == "vnpay" and i["invoice_id"] == inv["id"] for i in items)


async def paid_txn_of(svc, invoice_id: str) -> str:
    async with svc.rt.db.session() as s:
        return (
            await s.execute(select(payments.c.provider_txn_id).where(payments.c.invoice_id == invoice_id))
        ).scalar_one()


async def test_momo_second_payment_and_payment_for_a_void_invoice(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, "Đỗ Minh Châu")
    due = inv["patient_amount"]
    async with http_client(billing) as c:
        assert (
            await c.post("/api/v1/payments/momo/ipn", json=momo_body(inv["number"], due, 3_100_000_001))
        ).status_code == 204
        assert (
            await c.post("/api/v1/payments/momo/ipn", json=momo_body(inv["number"], due, 3_100_000_002))
        ).status_code == 204
        failed = momo_body(inv["number"], due, 3_100_000_003, result_code=1006)  # the payer declined
        assert (await c.post("/api/v1/payments/momo/ipn", json=failed)).status_code == 204
    items = await items_for(billing, inv["number"])
    assert [(i["provider"], i["provider_txn_id"], i["amount"], i["reason"]) for i in items] == [
        ("momo", "3100000002", due, "already_settled")
    ]
    # a confirmed payment for a void invoice (the admin voided it while the patient was paying)
    other = await issued_invoice(billing, admissions, "Lương Văn Hải")
    async with http_client(billing, "admin") as c:
        r = await c.post(f"/api/v1/invoices/{other['id']}/void", json={"reason": "lập nhầm hoá đơn"})
        assert r.status_code == 200, r.text
    async with http_client(billing) as c:
        body = momo_body(other["number"], other["patient_amount"], 3_100_000_004)
        assert (await c.post("/api/v1/payments/momo/ipn", json=body)).status_code == 204
        params = vnpay_params(other["number"], other["patient_amount"], "14909998")
        assert (await c.get("/api/v1/payments/vnpay/ipn", params=params)).json()["RspCode"] == "01"
    items = await items_for(billing, other["number"])
    assert sorted((i["provider"], i["reason"], i["on_invoice"]) for i in items) == [
        ("momo", "unknown_invoice", False),
        ("vnpay", "unknown_invoice", False),
    ]


async def test_bank_transfers_over_the_balance_and_to_a_paid_invoice(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, "Nông Thị Hoa", ("XN-CTM", "1"))
    due = inv["patient_amount"]
    async with http_client(billing) as c:
        over = sepay_body(91_001, due + 50_000, f"NONG THI HOA chuyen tien {inv['number']}")
        r = await c.post("/api/v1/payments/bank-webhook", json=over, headers=SEPAY_AUTH)
        assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
        casso = {
            "error": 0,
            "data": {
                "id": 91_002,
                "reference": "FT91002",
                "description": f"CK {inv['number']}",
                "amount": 30_000,
                "accountNumber": "113366668888",
                "transactionDateTime": "2024-08-02 10:40:00",
            },
        }
        r = await c.post(
            "/api/v1/payments/bank-webhook", content=json.dumps(casso), headers=casso_headers(casso)
        )
        assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
        # retries of both change nothing
        assert (await c.post("/api/v1/payments/bank-webhook", json=over, headers=SEPAY_AUTH)).json()["replay"]
        r = await c.post(
            "/api/v1/payments/bank-webhook", content=json.dumps(casso), headers=casso_headers(casso)
        )
        assert r.json()["replay"] is True
    items = sorted(await items_for(billing, inv["number"]), key=lambda i: i["provider"])
    assert [(i["provider"], i["amount"], i["reason"], i["on_invoice"]) for i in items] == [
        ("casso", 30_000, "over_payment", True),
        ("sepay", 50_000, "over_payment", True),
    ]
    async with http_client(billing, "cashier") as c:
        got = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert got["status"] == "paid" and got["balance"] == -80_000
        # the cashier sends the money back and records it: the invoice's balance comes back to zero
        for item in items:
            r = await c.post(
                f"/api/v1/refund-items/{item['id']}/resolve",
                json={"refund_reference": f"FT-RF-{item['provider_txn_id']}", "note": "Đã chuyển trả"},
            )
            assert r.status_code == 200 and r.json()["status"] == "refunded", r.text
        again = await c.post(f"/api/v1/refund-items/{items[0]['id']}/resolve", json={"note": "lần hai"})
        assert again.status_code == 200 and again.json()["note"] == "Đã chuyển trả"  # unchanged
        got = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()
        assert got["balance"] == 0 and got["paid_amount"] == due and got["refunded_amount"] == 80_000
    assert await items_for(billing, inv["number"]) == []
    assert len(await items_for(billing, inv["number"], status="refunded")) == 2


async def test_two_payers_scan_one_vietqr(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, "Triệu Văn Sơn")
    due = inv["patient_amount"]
    async with http_client(billing, "cashier") as c:
        qr = (await c.post(f"/api/v1/invoices/{inv['id']}/vietqr")).json()
    assert qr["amount"] == due
    async with http_client(billing) as c:
        for txn, payer in ((92_001, "TRIEU VAN SON"), (92_002, "TRIEU THI MAI")):
            t = sepay_body(txn, qr["amount"], f"MBVCB.{txn}.{payer} {qr['purpose']}.CT tu 0123")
            r = await c.post("/api/v1/payments/bank-webhook", json=t, headers=SEPAY_AUTH)
            assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
    items = await items_for(billing, inv["number"])
    assert [(i["provider_txn_id"], i["amount"], i["reason"]) for i in items] == [
        ("92002", due, "over_payment")
    ]
    async with http_client(billing, "nurse") as c:  # work items are for the cash office
        assert (await c.get("/api/v1/refund-items")).status_code == 403
    async with http_client(billing, "cashier") as c:
        r = await c.post(f"/api/v1/refund-items/{items[0]['id']}/resolve", json={"note": "\x00"})
        assert r.status_code == 422 and r.json()["field"] == "note"
        r = await c.post("/api/v1/refund-items/no-such-item/resolve", json={"note": "hoàn tiền"})
        assert r.status_code == 404 and r.json()["code"] == "refund_item.not_found"
    assert await count(billing, refund_items, refund_items.c.invoice_id == inv["id"]) == 1


async def test_cashier_matching_a_transfer_to_a_paid_invoice(billing, admissions) -> None:
    inv = await issued_invoice(billing, admissions, "Hà Thị Nga")
    due = inv["patient_amount"]
    async with http_client(billing) as c:
        paid = sepay_body(93_001, due, f"HA THI NGA {inv['number']}")
        assert (await c.post("/api/v1/payments/bank-webhook", json=paid, headers=SEPAY_AUTH)).json()[
            "outcome"
        ] == "paid"
        no_code = sepay_body(93_002, 40_000, "HA THI NGA chuyen tien vien phi")  # no invoice code
        r = await c.post("/api/v1/payments/bank-webhook", json=no_code, headers=SEPAY_AUTH)
        assert r.json()["outcome"] == "unmatched"
    async with http_client(billing, "cashier") as c:
        queued = [
            t
            for t in (await c.get("/api/v1/bank-transfers/unmatched")).json()["items"]
            if t["provider_txn_id"] == "93002"
        ]
        r = await c.post(f"/api/v1/bank-transfers/{queued[0]['id']}/match", json={"invoice_id": inv["id"]})
        assert r.status_code == 200, r.text
    items = await items_for(billing, inv["number"])
    assert [(i["provider_txn_id"], i["amount"], i["reason"], i["on_invoice"]) for i in items] == [
        ("93002", 40_000, "over_payment", True)
    ]
