"""The local stack's development facility certificate: `make up` gives billing a key and a self-signed
certificate marked as development, so a closed insured visit's claim exports as it is; production refuses
it."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from billing_testkit import BANK_SECRET, MOMO_ACCESS, MOMO_SECRET, VNPAY_SECRET
from cryptography import x509
from cryptography.x509.oid import NameOID

from hospital.billing.app.claims import ClaimService
from hospital.billing.devcredentials import (
    DEVELOPMENT_MARK,
    DevFacilityCredentials,
    is_development_certificate,
)
from hospital.billing.domain.xml130 import validate, verify
from hospital.billing.service import DEFINITION
from hospital.chassis.errors import DomainError
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.testing.services import http_client, running_service

ROOT = Path(__file__).resolve().parents[3]


def load_stack(var: Path):
    spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deploy" / "local" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.VAR = var
    return module


def test_stack_gives_billing_a_marked_development_certificate(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HOSPITAL_BILLING_FACILITY_KEY_FILE", raising=False)
    monkeypatch.delenv("HOSPITAL_BILLING_FACILITY_CERT_FILE", raising=False)
    stack = load_stack(tmp_path / "var")
    env = stack.service_env("billing", "sqlite")
    key, cert = (
        Path(env["HOSPITAL_BILLING_FACILITY_KEY_FILE"]),
        Path(env["HOSPITAL_BILLING_FACILITY_CERT_FILE"]),
    )
    assert key.parent == tmp_path / "var" / "billing" and key.stat().st_mode & 0o077 == 0
    pem = cert.read_bytes()
    assert is_development_certificate(pem)
    subject = x509.load_pem_x509_certificate(pem).subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == DEVELOPMENT_MARK
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("[DEVELOPMENT] 35001")
    # a second `make up` keeps the pair; other services get none; an operator's own files win
    assert stack.service_env("billing", "sqlite")["HOSPITAL_BILLING_FACILITY_CERT_FILE"] == str(cert)
    assert cert.read_bytes() == pem
    assert "HOSPITAL_ADMISSIONS_FACILITY_KEY_FILE" not in stack.service_env("admissions", "sqlite")
    monkeypatch.setenv("HOSPITAL_BILLING_FACILITY_KEY_FILE", "/etc/hospital/facility.key")
    monkeypatch.setenv("HOSPITAL_BILLING_FACILITY_CERT_FILE", "/etc/hospital/facility.crt")
    assert (
        stack.service_env("billing", "sqlite")["HOSPITAL_BILLING_FACILITY_CERT_FILE"]
        == "/etc/hospital/facility.crt"
    )
    # another facility code or a damaged file: made again
    renewed = DevFacilityCredentials(tmp_path / "var" / "billing", "01001").ensure()[1].read_bytes()
    assert renewed != pem and is_development_certificate(renewed)
    key.write_bytes(b"garbage")
    DevFacilityCredentials(tmp_path / "var" / "billing", "01001").ensure()
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


async def test_closed_insured_visit_exports_with_the_stack_certificate(
    nats_server, tmp_path, admissions, monkeypatch
) -> None:
    monkeypatch.delenv("HOSPITAL_BILLING_FACILITY_KEY_FILE", raising=False)
    monkeypatch.delenv("HOSPITAL_BILLING_FACILITY_CERT_FILE", raising=False)
    env = load_stack(tmp_path / "var").service_env("billing", "sqlite")
    key, cert = (
        Path(env["HOSPITAL_BILLING_FACILITY_KEY_FILE"]),
        Path(env["HOSPITAL_BILLING_FACILITY_CERT_FILE"]),
    )
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db",
        nats_url=nats_server.url,
        facility_key_file=key,
        facility_cert_file=cert,
        vnpay_hash_secret=VNPAY_SECRET,
        momo_access_key=MOMO_ACCESS,
        momo_secret_key=MOMO_SECRET,
        bank_webhook_secret=BANK_SECRET,
        admissions_durable=f"billing-test-{uuid.uuid4().hex[:10]}",
        lab_durable=f"billing-test-lab-{uuid.uuid4().hex[:10]}",
        imaging_durable=f"billing-test-img-{uuid.uuid4().hex[:10]}",
        emr_durable=f"billing-test-emr-{uuid.uuid4().hex[:10]}",
        shutdown_grace_seconds=1,
    ) as svc:
        vid, pid, _ = await admissions.open_visit(
            kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Đặng Thị Thu Hà"
        )
        doctor = "003456/TB-CCHN"
        async with http_client(svc, "cashier") as c:

            async def opened() -> bool:
                return (await c.get(f"/api/v1/visits/{vid}/invoice")).status_code == 200

            await asyncio.wait_for(_until(opened), 20)
            r = await c.post(
                f"/api/v1/visits/{vid}/charges",
                json={"price_code": "CDHA-SAOB", "quantity": "1", "ordered_by": doctor},
            )
            assert r.status_code == 201, r.text
            assert (
                await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "K80.2", "text": "Sỏi túi mật"})
            ).status_code == 200
            await admissions.close_visit(vid, pid)

            r = await _first(lambda: c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": doctor}))
            assert r.status_code == 200, r.text
        validate(r.content, strict=False)
        verify(r.content, cert.read_bytes())
        # the same service in production refuses to sign with the development certificate
        prod = ClaimService(
            SimpleNamespace(settings=svc.settings.model_copy(update={"environment": "production"}))
        )
        with pytest.raises(DomainError) as err:
            prod._credentials()
        assert err.value.code == "claim.development_certificate" and err.value.status == 503


async def _first(call):
    """The export once the visit's closing has reached billing (the consumer is asynchronous)."""
    for _ in range(200):
        r = await call()
        if r.status_code != 409 or r.json()["code"] != "claim.visit_open":
            return r
        await asyncio.sleep(0.05)
    raise AssertionError("the visit never closed in billing")


async def _until(check) -> None:
    while not await check():
        await asyncio.sleep(0.05)
