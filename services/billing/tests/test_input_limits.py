"""Billing's HTTP inputs are bounded: overflowing amounts, NUL bytes in the diagnosis that feeds the claim
XML, 100,000-deep JSON and lone surrogates on the provider webhooks each get a specific 4xx (never a 500),
nothing is written, and the same connection answers the next request."""

from __future__ import annotations

import json
from datetime import date

import pytest
from billing_testkit import SEPAY_AUTH, momo_body
from pydantic import ValidationError
from sqlalchemy import func, select

from hospital.billing.adapters.tables import payments, rejected_callbacks
from hospital.billing.config import BillingSettings
from hospital.testing.services import http_client


async def count(svc, table) -> int:
    async with svc.rt.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def test_amounts_are_bounded(billing_sqlite) -> None:
    async with http_client(billing_sqlite, "cashier") as c:
        for value in (2**63, 10**30, -1):
            r = await c.post("/api/v1/shifts", json={"opening_float": value})
            assert r.status_code == 422 and r.json()["field"] == "opening_float", r.text
        for value in (2**63, 0):
            r = await c.post("/api/v1/invoices/x/payments", json={"amount": value})
            assert r.status_code == 422 and r.json()["field"] == "amount", r.text
            r = await c.post("/api/v1/invoices/x/refunds", json={"amount": value, "reason": "trả lại"})
            assert r.status_code == 422 and r.json()["field"] == "amount", r.text
        r = await c.get("/api/v1/invoices", params={"limit": str(2**64)})
        assert r.status_code == 422 and r.json()["field"] == "query.limit"
        r = await c.post("/api/v1/shifts", json={"opening_float": 500_000})
        assert r.status_code == 201, r.text


async def test_diagnosis_text_takes_no_control_characters(billing_sqlite) -> None:
    async with http_client(billing_sqlite, "doctor") as c:
        for body, field in (
            ({"code": "K80.2", "text": "Sỏi\x00 túi mật"}, "text"),
            ({"code": "K80\x00", "text": "Sỏi túi mật"}, "code"),
            ({"code": "K80.2", "text": "x" * 501}, "text"),
        ):
            r = await c.put("/api/v1/visits/v-1/diagnosis", json=body)
            assert r.status_code == 422 and r.json()["field"] == field, r.text
        r = await c.put(
            "/api/v1/visits/v-1/diagnosis",
            content=b'{"code": "K80.2", "text": "S\\udc80i"}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["field"] == "text", r.text


async def test_webhooks_refuse_deep_json_and_lone_surrogates(billing_sqlite) -> None:
    svc = billing_sqlite
    paid_before = await count(svc, payments)
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    async with http_client(svc) as c:
        for raw in (deep, deep_object, b'{"data": [[[[[[[[[[1]]]]]]]]]]}'):
            for path, headers in (
                ("/api/v1/payments/momo/ipn", {}),
                ("/api/v1/payments/bank-webhook", SEPAY_AUTH),
            ):
                r = await c.post(path, content=raw, headers={"content-type": "application/json", **headers})
                assert r.status_code == 400 and r.json()["code"] == "callback.malformed", (path, r.text)
        body = momo_body("HD000001", 10_000, 2_400_009_001)
        body["orderInfo"] = "Vien phi \ud800"
        raw = json.dumps(body).encode()  # ASCII JSON with the escape \ud800
        r = await c.post(
            "/api/v1/payments/momo/ipn", content=raw, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["code"] == "callback.malformed", r.text
        # A NUL byte in a forged VNPay call is recorded (escaped) and refused, not a 500.
        r = await c.get("/api/v1/payments/vnpay/ipn", params={"vnp_TxnRef": "HD\x00", "vnp_SecureHash": "00"})
        assert r.status_code == 200 and r.json()["RspCode"] == "97", r.text
        # The connection survived all of it.
        assert (await c.get("/healthz")).status_code == 200
    assert await count(svc, payments) == paid_before
    assert await count(svc, rejected_callbacks) == 8


def test_production_refuses_weak_payment_secrets(tmp_path) -> None:
    key = tmp_path / "issuer.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    strong = {
        "vnpay_hash_secret": "K7P2QX9MZB4WJ6TRN3VH8D5LFY1CGSAE",
        "momo_secret_key": "at67qH6mk8w5Y1nAyMoYKMWACiEi2bsa",
        "momo_access_key": "F8BBA842ECF85",  # issued by MoMo: an identifier, checked for placeholders only
        "bank_webhook_secret": "sepay_9cB2xQ7rT4mW8zK1",
    }
    base = {
        "environment": "production",
        "auth_dev_issuer": False,
        "auth_public_key_file": key,
        "s3_secret_key": "Zq8v3-prod-s3-key-xx",
        "audit_key_file": tmp_path / "audit.key",
        "data_dir": tmp_path,
    }
    assert BillingSettings(**base, **strong).vnpay_hash_secret == strong["vnpay_hash_secret"]
    for name in ("vnpay_hash_secret", "momo_secret_key", "bank_webhook_secret"):
        for weak in ("x", "1234567890", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"):
            with pytest.raises(ValidationError, match=f"{name} is too weak for production"):
                BillingSettings(**base, **{**strong, name: weak})


async def test_bank_statement_takes_no_control_characters(billing_sqlite) -> None:
    today = date.today().isoformat()
    async with http_client(billing_sqlite, "cashier") as c:
        statement = (
            f"date,reference,amount,description\n{today},FT1,100000,CK HD000001\n{today},FT2,5000,x\x00y\n"
        )
        r = await c.post(
            f"/api/v1/reconciliations?date={today}",
            content=statement.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 422 and r.json()["code"] == "statement.control_character", r.text
        assert "line 3" in r.json()["detail"]
