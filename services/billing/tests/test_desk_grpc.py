"""The cash office over gRPC (ADR 0209), on SQLite and PostgreSQL: refunds (reason, at most what was
received, the cashier's limit, idempotent on request_id even when sent twice at once), the shift closed
with its expected cash and difference, the day's money, and a price changed from a date on."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import grpc
import pytest
from billing_testkit import invoice_of

from hospital.billing.app.common import LOCAL_TZ
from hospital.contracts.billing.v1 import billing_pb2 as pb
from hospital.contracts.billing.v1 import billing_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for


def md(svc, role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {issuer_for(svc).mint_for_role(role)}"),)


async def test_refunds_shift_close_and_the_day(billing, admissions) -> None:
    svc = billing
    vid, _, _ = await admissions.open_visit(name="Lường Văn Khánh")
    inv = await invoice_of(svc, vid)
    cashier, admin = md(svc, "cashier"), md(svc, "admin")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = pb_grpc.BillingServiceStub(ch)
        shift = await stub.OpenShift(pb.OpenShiftRequest(opening_float=100_000), metadata=cashier)
        await stub.PayAtDesk(
            pb.PayAtDeskRequest(invoice_id=inv["id"], amount=50_000, request_id="p-1"), metadata=cashier
        )
        limit = svc.settings.refund_cashier_limit
        await stub.PayAtDesk(
            pb.PayAtDeskRequest(invoice_id=inv["id"], amount=limit, method="card", request_id="p-2"),
            metadata=cashier,
        )
        paid = 50_000 + limit

        async def refund(amount: int, reason: str, key: str, who=cashier, method: str = "cash") -> pb.Invoice:
            return await stub.RefundPayment(
                pb.RefundPaymentRequest(
                    invoice_id=inv["id"], amount=amount, method=method, reason=reason, request_id=key
                ),
                metadata=who,
            )

        for amount, reason, who, code in (
            (10_000, "", cashier, "refund.reason"),
            (paid + 1, "Trả lại tiền thừa", admin, "refund.exceeds_paid"),
            (limit + 1, "Huỷ dịch vụ", cashier, "refund.over_cashier_limit"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await refund(amount, reason, f"bad-{code}", who=who, method="bank_transfer")
            assert err.value.details().startswith(f"{code}:"), err.value.details()
        # the same request twice at once: one refund, both answered alike
        a, b = await asyncio.gather(
            refund(20_000, "Không làm xét nghiệm", "r-1"), refund(20_000, "Không làm xét nghiệm", "r-1")
        )
        assert a.paid_amount == b.paid_amount == paid - 20_000
        again = await refund(20_000, "Không làm xét nghiệm", "r-1")
        assert again.paid_amount == paid - 20_000
        with pytest.raises(grpc.aio.AioRpcError) as err:  # the key of another refund
            await refund(5_000, "Khác", "r-1")
        assert err.value.details().startswith("refund.request_id_reused:")
        # above the cashier's limit an admin refunds (by transfer: no shift needed)
        big = await refund(limit + 1, "Huỷ phẫu thuật", "r-2", who=admin, method="bank_transfer")
        assert big.paid_amount == paid - 20_000 - (limit + 1)
        async with http_client(svc, "cashier") as c:
            pays = (await c.get(f"/api/v1/invoices/{inv['id']}")).json()["payments"]
        assert sorted(p["amount"] for p in pays if p["kind"] == "refund") == [20_000, limit + 1]

        # close: 100.000 + 50.000 − 20.000 = 130.000 expected; 128.000 counted
        closed = await stub.CloseShift(
            pb.CloseShiftRequest(shift_id=shift.id, counted_cash=128_000), metadata=cashier
        )
        assert closed.status == "closed"
        assert (closed.expected_cash, closed.counted_cash, closed.difference) == (130_000, 128_000, -2_000)
        totals = {t.method: t for t in closed.totals}
        assert (totals["cash"].received, totals["cash"].refunded) == (50_000, 20_000)
        assert totals["card"].received == limit
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CloseShift(pb.CloseShiftRequest(shift_id=shift.id, counted_cash=1), metadata=cashier)
        assert err.value.details().startswith("shift.closed:")

        day = await stub.GetDailyReconciliation(pb.GetDailyReconciliationRequest(), metadata=admin)
        assert day.date == datetime.now(LOCAL_TZ).date().isoformat()
        by = {m.method: m for m in day.by_method}
        assert by["cash"].received >= 50_000 and by["cash"].refunded >= 20_000
        assert by["bank_transfer"].refunded >= limit + 1
        assert shift.id in {s.id for s in day.shifts if s.status == "closed" and s.difference == -2_000}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetDailyReconciliation(pb.GetDailyReconciliationRequest(date="7/12"), metadata=admin)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetDailyReconciliation(pb.GetDailyReconciliationRequest(), metadata=md(svc, "doctor"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_price_changes_from_a_date_on(billing) -> None:
    svc = billing
    admin = md(svc, "admin")
    today = datetime.now(LOCAL_TZ).date()
    tomorrow = today + timedelta(days=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = pb_grpc.BillingServiceStub(ch)
        found = await stub.ListPrices(pb.ListPricesRequest(query="kham benh"), metadata=md(svc, "cashier"))
        item = next(i for i in found.items if i.category == "exam")
        assert "Khám" in item.name  # found without diacritics

        def change(**kw) -> pb.SetPriceRequest:
            base = {
                "code": item.code,
                "hospital_price": item.hospital_price + 5_000,
                "keep_insurance_price": True,
            }
            return pb.SetPriceRequest(**{**base, "reason": "QĐ 45/QĐ-SYT", **kw})

        for req, code in (
            (change(effective_from=(today - timedelta(days=1)).isoformat()), "price.effective_past"),
            (change(effective_from=tomorrow.isoformat(), reason=""), "price.reason"),
            (change(effective_from="ngày mai"), "price.date"),
            (change(code="KHONG-CO", effective_from=tomorrow.isoformat()), "price.not_found"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SetPrice(req, metadata=admin)
            assert err.value.details().startswith(f"{code}:"), err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetPrice(change(effective_from=tomorrow.isoformat()), metadata=md(svc, "cashier"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        saved = await stub.SetPrice(change(effective_from=tomorrow.isoformat()), metadata=admin)
        assert saved.effective_from == tomorrow.isoformat()
        assert (saved.hospital_price, saved.insurance_price) == (
            item.hospital_price + 5_000,
            item.insurance_price,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetPrice(change(effective_from=tomorrow.isoformat()), metadata=admin)
        assert err.value.details().startswith("price.later_change:")
        listed = await stub.ListPrices(pb.ListPricesRequest(query=item.code), metadata=admin)
        now = {i.code: i for i in listed.items}
        assert now[item.code].hospital_price == item.hospital_price
        assert (now[item.code].effective_to, now[item.code].next_change) == (
            today.isoformat(),
            tomorrow.isoformat(),
        )
        later = await stub.ListPrices(
            pb.ListPricesRequest(date=tomorrow.isoformat(), query=item.code), metadata=admin
        )
        assert [i.hospital_price for i in later.items if i.code == item.code] == [item.hospital_price + 5_000]
