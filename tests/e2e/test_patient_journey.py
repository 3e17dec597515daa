"""A patient's outpatient journey across services, each a real running service with its own database:
reception registers and opens an insured visit (admissions) → the event bus → billing captures the
examination fee with the insurance split → the patient pays the co-pay via a VNPay callback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import urllib.parse
import uuid

import pytest

from hospital.admissions.service import DEFINITION as ADMISSIONS
from hospital.billing.service import DEFINITION as BILLING
from hospital.testing.services import http_client, running_service

VNPAY_SECRET = "e2e-vnpay-secret-5a1f"


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
        "vnp_PayDate": "20261122103000",
    }
    data = "&".join(
        f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in sorted(params.items())
    )
    return {
        **params,
        "vnp_SecureHash": hmac.new(VNPAY_SECRET.encode(), data.encode(), hashlib.sha512).hexdigest(),
    }


@pytest.fixture
async def services(pg_server, nats_server, tmp_path):
    a_url = await pg_server.create_database(f"adm_{uuid.uuid4().hex[:8]}")
    b_url = await pg_server.create_database(f"bil_{uuid.uuid4().hex[:8]}")
    async with (
        running_service(ADMISSIONS, data_dir=tmp_path, database_url=a_url, nats_url=nats_server.url) as adm,
        running_service(
            BILLING,
            data_dir=tmp_path,
            database_url=b_url,
            nats_url=nats_server.url,
            vnpay_hash_secret=VNPAY_SECRET,
            admissions_durable=f"billing-e2e-{uuid.uuid4().hex[:8]}",
            shutdown_grace_seconds=2,
        ) as bil,
    ):
        yield adm, bil


async def test_outpatient_visit_is_billed_with_insurance_and_paid(services) -> None:
    adm, bil = services
    async with http_client(adm, "receptionist") as reception:
        patient = (
            await reception.post(
                "/api/v1/patients",
                json={
                    "full_name": "Lương Thị Thanh Tâm",
                    "birth_date": "1968-10-20",
                    "sex": "female",
                    "bhyt_number": "HT3350123456789",
                    "bhyt_valid_from": "2026-01-01",
                    "bhyt_valid_to": "2026-12-31",
                },
            )
        ).json()
        visit = (
            await reception.post(
                "/api/v1/visits", json={"patient_id": patient["id"], "room": "P101", "kind": "insured"}
            )
        ).json()
    assert visit["ticket_number"] == 1
    async with http_client(bil, "cashier") as cashier:
        invoice = None
        for _ in range(200):  # the visit event crosses the bus
            r = await cashier.get(f"/api/v1/visits/{visit['id']}/invoice")
            if r.status_code == 200:
                invoice = r.json()
                break
            await asyncio.sleep(0.05)
        assert invoice is not None, "billing never saw admissions.visit.opened"
        assert invoice["visit"]["patient_name"] == "Lương Thị Thanh Tâm"
        assert invoice["visit"]["card_number"] == "HT3350123456789"
        line = invoice["lines"][0]
        assert (
            invoice["total_amount"] > 0
            and invoice["insurance_amount"] + invoice["patient_amount"] == invoice["total_amount"]
        )
        assert line["source_event_id"]
        # A head CT takes the visit above 15% of the base salary: the insurer now pays 95% (benefit level
        # 3 of an HT3 card) and the patient 5%, by VNPay.
        r = await cashier.post(
            f"/api/v1/visits/{visit['id']}/charges",
            json={"price_code": "CDHA-CTSN", "quantity": "1", "request_id": "e2e-1"},
        )
        assert r.status_code in (200, 201), r.text
        invoice = (await cashier.get(f"/api/v1/invoices/{invoice['id']}")).json()
        due = invoice["balance"]
        assert due == invoice["patient_amount"] == invoice["total_amount"] - invoice["insurance_amount"]
        assert round(invoice["total_amount"] * 0.05) - 1 <= due <= round(invoice["total_amount"] * 0.05) + 1
        ipn = await cashier.get(
            "/api/v1/payments/vnpay/ipn", params=vnpay_query(invoice["number"], due, "14012345")
        )
        assert ipn.json()["RspCode"] == "00", ipn.text
        again = await cashier.get(
            "/api/v1/payments/vnpay/ipn", params=vnpay_query(invoice["number"], due, "14012345")
        )
        assert again.json()["RspCode"] in ("00", "02")  # a replay never pays twice
        final = (await cashier.get(f"/api/v1/invoices/{invoice['id']}")).json()
        assert final["paid_amount"] == due and final["balance"] == 0
