"""Invoice reads are patient data: every read, receipt and list is in the audit trail (with the
invoices shown and the purpose of use), over HTTP and gRPC; only the billing office lists invoices
without naming a patient or a visit (a nurse does not browse every invoice)."""

from __future__ import annotations

import json

import grpc
import pytest
from billing_testkit import invoice_of
from sqlalchemy import select

from hospital.chassis.db import audit_log_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.billing.v1 import billing_pb2 as pb
from hospital.contracts.billing.v1 import billing_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for


async def _audit(svc, *actions: str) -> list[dict]:
    async with svc.rt.db.session() as s:
        rows = (
            (
                await s.execute(
                    select(audit_log_table)
                    .where(audit_log_table.c.action.in_(actions))
                    .order_by(audit_log_table.c.at)
                )
            )
            .mappings()
            .all()
        )
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


async def test_invoice_reads_and_lists_are_audited(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    vid, pid, _ = await admissions.open_visit(name="Phan Thị Ngọc Hân")
    vid2, pid2, _ = await admissions.open_visit(name="Mai Văn Tiến")
    inv = await invoice_of(svc, vid)
    inv2 = await invoice_of(svc, vid2)
    before = len(await _audit(svc, "invoice.read", "invoice.list", "invoice.receipt"))
    async with http_client(svc, "doctor") as doctor:
        assert (await doctor.get(f"/api/v1/invoices/{inv['id']}")).status_code == 200
        r = await doctor.get(f"/api/v1/invoices/{inv['id']}/receipt")
        assert r.status_code == 200 and "Phan Thị Ngọc Hân" in r.text
    async with http_client(svc, "cashier") as cashier:
        r = await cashier.get("/api/v1/invoices", headers={"X-Purpose-Of-Use": "HPAYMT"})
        listed = [i["id"] for i in r.json()["items"]]
        assert {inv["id"], inv2["id"]} <= set(listed)
    records = (await _audit(svc, "invoice.read", "invoice.list", "invoice.receipt"))[before:]
    assert [(a["action"], a["actor"], a["patient_id"], a["resource_id"]) for a in records] == [
        ("invoice.read", "user:bs.minh", pid, inv["id"]),
        ("invoice.receipt", "user:bs.minh", pid, inv["id"]),
        ("invoice.list", "user:thungan.mai", None, None),
    ]
    assert records[0]["purpose"] == "TREAT" and records[2]["purpose"] == "HPAYMT"
    assert records[2]["detail"]["shown"] == listed and {pid, pid2} <= set(records[2]["detail"]["patients"])


@pytest.mark.parametrize("role", ["nurse", "doctor", "receptionist"])
async def test_clinical_roles_list_only_a_patients_invoices(billing_sqlite, admissions, role: str) -> None:
    svc = billing_sqlite
    vid, pid, _ = await admissions.open_visit(name="Quan Thị Mỹ")
    await admissions.open_visit(name="Kha Văn Bền")
    inv = await invoice_of(svc, vid)
    async with http_client(svc, role) as c:
        r = await c.get("/api/v1/invoices")
        assert r.status_code == 403 and r.json()["code"] == "invoice.list_needs_patient"
        r = await c.get("/api/v1/invoices", params={"patient_id": pid})
        assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [inv["id"]]
    (listed,) = [a for a in await _audit(svc, "invoice.list") if a["actor_roles"] == role]
    assert listed["patient_id"] == pid and listed["detail"]["shown"] == [inv["id"]]
    issuer = issuer_for(svc)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = pb_grpc.BillingServiceStub(ch)
        md = call_metadata(issuer.mint_for_role(role))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListInvoices(pb.ListInvoicesRequest(), metadata=md)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        got = await stub.GetInvoice(pb.GetInvoiceRequest(id=inv["id"]), metadata=md)
        assert got.id == inv["id"]
    reads = [a for a in await _audit(svc, "invoice.read") if a["actor_roles"] == role]
    assert [(a["resource_id"], a["patient_id"]) for a in reads] == [(inv["id"], pid)]
