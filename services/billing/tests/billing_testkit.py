"""Billing test helpers: admissions event publisher, polling, independently computed provider signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from hospital.billing.config import BillingSettings
from hospital.chassis.app import Service
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import events_pb2 as adm_events
from hospital.testing.services import http_client
from hospital.testing.waits import consumer_settled, wait_for

VNPAY_SECRET = "test-vnpay-hash-secret-9f1c"
MOMO_ACCESS = "test-momo-access-7b2e"
MOMO_SECRET = "test-momo-secret-3d5a"
BANK_SECRET = "test-bank-webhook-key-41aa"


def make_facility_credentials(d: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Bệnh viện Đa khoa tỉnh Thái Bình"),
        ]
    )
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return d / "key.pem", d / "cert.pem"


def overrides(creds: tuple[Path, Path]) -> dict[str, Any]:
    return {
        "vnpay_hash_secret": VNPAY_SECRET,
        "momo_access_key": MOMO_ACCESS,
        "momo_secret_key": MOMO_SECRET,
        "bank_webhook_secret": BANK_SECRET,
        "facility_key_file": creds[0],
        "facility_cert_file": creds[1],
        "admissions_durable": f"billing-test-{uuid.uuid4().hex[:10]}",
        "lab_durable": f"billing-test-lab-{uuid.uuid4().hex[:10]}",
        "imaging_durable": f"billing-test-img-{uuid.uuid4().hex[:10]}",
        "emr_durable": f"billing-test-emr-{uuid.uuid4().hex[:10]}",
        "order_events_start": "all",
        "consumer_max_deliver": 2,
        "shutdown_grace_seconds": 1,
    }


# ------------------------------------------------------------------------------------------ events
class Admissions:
    """Publishes admissions events straight onto the ADMISSIONS stream, as the admissions relay does."""

    def __init__(self, js: Any) -> None:
        self.js = js

    async def publish(
        self, subject: str, msg: Any, event_id: str | None = None, msg_id: str | None = None
    ) -> str:
        """As the producer's relay does (any domain: the source is the subject's first token)."""
        eid = event_id or str(uuid.uuid4())
        headers = {
            "Hospital-Event-Id": eid,
            "Hospital-Event-Type": msg.DESCRIPTOR.full_name,
            "Hospital-Event-Source": subject.split(".")[0],
            "Hospital-Event-Time": datetime.now(UTC).isoformat(),
            "Nats-Msg-Id": msg_id or eid,
        }
        await self.js.publish(subject, msg.SerializeToString(), headers=headers)
        return eid

    async def open_visit(
        self,
        *,
        kind: int = adm.VISIT_KIND_FEE_PAYING,
        card: str = "",
        name: str = "Nguyễn Văn An",
        opened_at: datetime | None = None,
        event_id: str | None = None,
        visit_id: str | None = None,
        patient_id: str | None = None,
        registered_facility: str = "35 - 001",
        ethnicity: str = "",
        occupation: str = "",
    ) -> tuple[str, str, str]:
        vid, pid = visit_id or str(uuid.uuid4()), patient_id or str(uuid.uuid4())
        patient = adm.Patient(
            id=pid,
            patient_code=f"BN{uuid.uuid4().int % 10**8:08d}",
            full_name=name,
            sex=adm.SEX_MALE,
            cccd="001085012345",
            ethnicity=ethnicity,
            occupation=occupation,
        )
        patient.birth_date.year, patient.birth_date.month, patient.birth_date.day = 1985, 9, 4
        if card:
            patient.insurance_cards.append(
                adm.InsuranceCard(
                    number=card,
                    benefit_level=int(card[2]),
                    registered_facility=registered_facility,
                    valid_from="2024-01-01",
                    valid_to="2030-12-31",
                )
            )
        visit = adm.Visit(
            id=vid,
            visit_code=f"KB{uuid.uuid4().int % 10**10:010d}",
            patient_id=pid,
            kind=kind,
            department_code="NTH",
            room_code="P101",
            ticket_number=1,
            status="open",
            insurance_card_number=card,
        )
        visit.opened_at.FromDatetime(opened_at or datetime.now(UTC))
        eid = await self.publish(
            "admissions.visit.opened", adm_events.VisitOpened(visit=visit, patient=patient), event_id=event_id
        )
        return vid, pid, eid

    async def close_visit(self, visit_id: str, patient_id: str) -> None:
        visit = adm.Visit(id=visit_id, patient_id=patient_id, status="closed", department_code="NTH")
        visit.closed_at.FromDatetime(datetime.now(UTC))
        await self.publish("admissions.visit.closed", adm_events.VisitClosed(visit=visit))


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns a truthy value (the consumer is asynchronous)."""
    return await wait_for(check, timeout)


async def settled(billing: Service[BillingSettings], js: Any) -> None:
    """Billing's consumers have applied (and acknowledged) every event on their streams so far, copies
    included: what the database holds now is final."""
    s = billing.settings
    for stream, durable in (
        ("ADMISSIONS", s.admissions_durable),
        ("LAB", s.lab_durable),
        ("IMAGING", s.imaging_durable),
        ("EMR", s.emr_durable),
    ):
        await consumer_settled(js, stream, durable)


async def invoice_of(svc: Service, visit_id: str, min_lines: int = 1) -> dict[str, Any]:
    async with http_client(svc, "cashier") as c:

        async def check() -> Any:
            r = await c.get(f"/api/v1/visits/{visit_id}/invoice")
            return r.json() if r.status_code == 200 and len(r.json()["lines"]) >= min_lines else None

        return await eventually(check)


# ------------------------------------------------------------------------------------------ signatures
def vnpay_params(
    invoice_number: str, amount: int, txn: str, *, secret: str = VNPAY_SECRET, code: str = "00", **extra: str
) -> dict[str, str]:
    params = {
        "vnp_TmnCode": "DEVTMN01",
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_OrderInfo": f"Thanh toan vien phi {invoice_number}",
        "vnp_PayDate": "20240802103000",
        "vnp_ResponseCode": code,
        "vnp_TransactionStatus": code,
        "vnp_TransactionNo": txn,
        "vnp_TxnRef": invoice_number,
        **extra,
    }
    data = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(params.items()))
    params["vnp_SecureHashType"] = "HmacSHA512"
    params["vnp_SecureHash"] = hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()
    return params


def momo_body(
    invoice_number: str, amount: int, trans_id: int, *, result_code: int = 0, secret: str = MOMO_SECRET
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partnerCode": "MOMODEV",
        "orderId": invoice_number,
        "requestId": str(uuid.uuid4()),
        "amount": amount,
        "orderInfo": f"Vien phi {invoice_number}",
        "orderType": "momo_wallet",
        "transId": trans_id,
        "resultCode": result_code,
        "message": "Thành công.",
        "payType": "qr",
        "responseTime": 1722570000000,
        "extraData": "",
    }
    raw = "&".join(
        f"{k}={MOMO_ACCESS if k == 'accessKey' else body[k]}"
        for k in (
            "accessKey",
            "amount",
            "extraData",
            "message",
            "orderId",
            "orderInfo",
            "orderType",
            "partnerCode",
            "payType",
            "requestId",
            "responseTime",
            "resultCode",
            "transId",
        )
    )
    body["signature"] = hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return body


def sepay_body(
    txn: int, amount: int, content: str, *, direction: str = "in", ref: str | None = None
) -> dict[str, Any]:
    return {
        "id": txn,
        "gateway": "VietinBank",
        "transactionDate": "2024-08-02 10:31:00",
        "accountNumber": "113366668888",
        "code": None,
        "content": content,
        "transferType": direction,
        "transferAmount": amount,
        "accumulated": 0,
        "subAccount": None,
        "referenceCode": ref or f"FT{txn}",
        "description": content,
    }


def casso_headers(
    body: dict[str, Any], *, key: str = BANK_SECRET, at_ms: int | None = None
) -> dict[str, str]:
    t = at_ms if at_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    sig = hmac.new(key.encode(), f"{t}.{canonical}".encode(), hashlib.sha512).hexdigest()
    return {"X-Casso-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


SEPAY_AUTH = {"Authorization": f"Apikey {BANK_SECRET}"}
TODAY = date.today()
