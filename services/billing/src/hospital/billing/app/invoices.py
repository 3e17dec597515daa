"""Invoices: one per visit, numbered HD000123 from a gap-free counter when the visit opens. Totals
follow the visit's posted charges through the BHYT split; the status follows issue, payments and
refunds: open → issued → partly_paid → paid (→ refunded), or void."""

from __future__ import annotations

import html
import io
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from hospital.billing.adapters.tables import charges, invoices, payments, visits
from hospital.billing.app.common import (
    derive_status,
    later_cards,
    local_date,
    posted_charges,
    split_for,
    split_rules,
)
from hospital.billing.app.mapping import charge_dict, invoice_proto
from hospital.billing.config import BillingSettings
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.contracts.billing.v1 import events_pb2

STATUSES = ("open", "issued", "partly_paid", "paid", "refunded", "void")
BROWSE_ROLES = ("cashier", "admin", "auditor")  # may list invoices without naming a patient or visit


def invoice_summary(inv: Any) -> dict[str, Any]:
    return {
        "id": inv["id"],
        "number": inv["number"],
        "visit_id": inv["visit_id"],
        "patient_id": inv["patient_id"],
        "status": inv["status"],
        "total_amount": inv["total_amount"],
        "insurance_amount": inv["insurance_amount"],
        "patient_amount": inv["patient_amount"],
        "paid_amount": inv["paid_amount"],
        "refunded_amount": inv["refunded_amount"],
        "balance": inv["patient_amount"] - inv["paid_amount"],
        "created_at": inv["created_at"].isoformat(),
        "issued_at": inv["issued_at"].isoformat() if inv["issued_at"] else None,
    }


class InvoiceService:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt
        self.rules = split_rules(rt.settings)

    async def _load(
        self, s: Any, invoice_id: str | None = None, number: str | None = None, lock: bool = False
    ) -> Any:
        stmt = select(invoices).where(
            invoices.c.id == invoice_id if invoice_id else invoices.c.number == number
        )
        row = (await s.execute(stmt.with_for_update() if lock else stmt)).mappings().first()
        if row is None:
            raise NotFound("invoice.not_found", f"no invoice {invoice_id or number}")
        return row

    async def detail(self, s: Any, inv: Any) -> dict[str, Any]:
        visit = (await s.execute(select(visits).where(visits.c.id == inv["visit_id"]))).mappings().one()
        posted = await posted_charges(s, inv["visit_id"])
        later = await later_cards(s, inv["visit_id"])
        split = split_for(visit, posted, self.rules, later=later)
        history = (
            (
                await s.execute(
                    select(charges)
                    .where(charges.c.visit_id == inv["visit_id"], charges.c.status != "posted")
                    .order_by(charges.c.created_at)
                )
            )
            .mappings()
            .all()
        )
        pays = (
            (
                await s.execute(
                    select(payments)
                    .where(payments.c.invoice_id == inv["id"])
                    .order_by(payments.c.received_at)
                )
            )
            .mappings()
            .all()
        )
        out = invoice_summary(inv)
        out.update(
            {
                "visit": {
                    "visit_code": visit["visit_code"],
                    "kind": visit["kind"],
                    "inpatient": visit["inpatient"],
                    "status": visit["status"],
                    "card_number": visit["card_number"],
                    # every card of the visit: the one it opened with, then those issued during it
                    "cards": [c for c in (visit["card_number"], *(r["card_number"] for r in later)) if c],
                    "patient_name": visit["patient_name"],
                    "patient_code": visit["patient_code"],
                },
                "small_visit_rule_applied": split.small_visit_rule_applied,
                "totals": {
                    "t_tongchi_bv": split.t_tongchi_bv,
                    "t_tongchi_bh": split.t_tongchi_bh,
                    "t_bhtt": split.t_bhtt,
                    "t_bncct": split.t_bncct,
                    "t_bntt": split.t_bntt,
                },
                "lines": [charge_dict(r, line) for r, line in zip(posted, split.lines, strict=True)],
                "cancelled": [charge_dict(r) for r in history],
                "payments": [
                    {
                        "id": p["id"],
                        "kind": p["kind"],
                        "amount": p["amount"],
                        "method": p["method"],
                        "provider": p["provider"],
                        "provider_txn_id": p["provider_txn_id"],
                        "received_at": p["received_at"].isoformat(),
                        "reason": p["reason"],
                    }
                    for p in pays
                ],
                "deposits": sum(p["amount"] for p in pays if p["kind"] == "deposit"),
            }
        )
        return out

    async def _read(self) -> Any:
        """A read session whose statements share one snapshot (PostgreSQL REPEATABLE READ), so the totals,
        lines and payments shown belong together while a consumer posts charges (SQLite's read
        transaction is one snapshot already)."""
        s = self.rt.db.session()
        if not self.rt.db.is_sqlite:
            try:
                await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            except BaseException:
                await s.close()
                raise
        return s

    async def _audit_read(self, caller: Caller, action: str, inv: dict[str, Any], **detail: Any) -> None:
        """An invoice shows a patient's care and money: every read is in the audit trail."""
        async with self.rt.uow() as uow:
            uow.audit(
                caller.audit(action, "Invoice", inv["id"], inv["patient_id"], number=inv["number"], **detail)
            )
            await uow.commit()

    async def get(
        self,
        invoice_id: str | None = None,
        number: str | None = None,
        *,
        caller: Caller,
        action: str = "invoice.read",
    ) -> dict[str, Any]:
        async with await self._read() as s:
            inv = await self.detail(s, await self._load(s, invoice_id, number))
        await self._audit_read(caller, action, inv)
        return inv

    async def for_visit(self, visit_id: str, *, caller: Caller) -> dict[str, Any]:
        async with await self._read() as s:
            row = (
                (await s.execute(select(invoices).where(invoices.c.visit_id == visit_id))).mappings().first()
            )
            if row is None:
                raise NotFound("invoice.not_found", f"no invoice for visit {visit_id}")
            inv = await self.detail(s, row)
        await self._audit_read(caller, "invoice.read", inv)
        return inv

    async def list(
        self,
        *,
        caller: Caller,
        patient_id: str | None = None,
        visit_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Invoices, newest first. The billing office (cashier, admin, auditor) and services list any;
        clinical roles only a patient's or a visit's (a nurse does not browse every invoice). Audited
        with the invoices shown."""
        if status and status not in STATUSES:
            raise Invalid("invoice.status", f"status must be one of {', '.join(STATUSES)}", field="status")
        p = caller.principal
        if not (p.is_service or p.has_any(BROWSE_ROLES)) and not (patient_id or visit_id):
            raise DomainError(
                "invoice.list_needs_patient",
                "give patient_id or visit_id: listing every invoice is for the billing office",
                status=403,
            )
        stmt = select(
            invoices, visits.c.visit_code, visits.c.card_number, visits.c.patient_name, visits.c.patient_code
        ).join(visits, visits.c.id == invoices.c.visit_id, isouter=True)
        if patient_id:
            stmt = stmt.where(invoices.c.patient_id == patient_id)
        if visit_id:
            stmt = stmt.where(invoices.c.visit_id == visit_id)
        if status:
            stmt = stmt.where(invoices.c.status == status)
        async with self.rt.db.session() as s:
            rows = await s.execute(stmt.order_by(invoices.c.created_at.desc()).limit(min(max(limit, 1), 500)))
            items = [
                invoice_summary(r)
                | {"visit": {k: r[k] for k in ("visit_code", "card_number", "patient_name", "patient_code")}}
                for r in rows.mappings()
            ]
        patients = {i["patient_id"] for i in items}
        async with self.rt.uow() as uow:
            uow.audit(
                caller.audit(
                    "invoice.list",
                    "Invoice",
                    None,
                    patient_id or (next(iter(patients)) if len(patients) == 1 else None),
                    patient_filter=patient_id,
                    visit_filter=visit_id,
                    status=status,
                    results=len(items),
                    shown=[i["id"] for i in items],
                    patients=sorted(patients),
                )
            )
            await uow.commit()
        return items

    async def issue(self, invoice_id: str, caller: Caller) -> dict[str, Any]:
        async with self.rt.uow() as uow:
            s = uow.session
            inv = await self._load(s, invoice_id, lock=True)
            if inv["status"] != "open":
                raise Conflict("invoice.not_open", f"invoice {inv['number']} is {inv['status']}, not open")
            if not await posted_charges(s, inv["visit_id"]):
                raise Conflict("invoice.empty", f"invoice {inv['number']} has no charge to bill")
            now = utcnow()
            status = derive_status({**inv, "issued_at": now})
            await s.execute(
                update(invoices).where(invoices.c.id == invoice_id).values(issued_at=now, status=status)
            )
            out = await self.detail(s, {**inv, "issued_at": now, "status": status})
            uow.publish(
                "billing.invoice.issued",
                events_pb2.InvoiceIssued(invoice=invoice_proto(out), by=caller.actor()),
            )
            uow.audit(
                caller.audit(
                    "invoice.issue",
                    "Invoice",
                    invoice_id,
                    inv["patient_id"],
                    number=inv["number"],
                    patient_amount=inv["patient_amount"],
                )
            )
            await uow.commit()
        return out

    async def void(self, invoice_id: str, reason: str, caller: Caller) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("invoice.reason", "voiding needs a reason", field="reason")
        async with self.rt.uow() as uow:
            s = uow.session
            inv = await self._load(s, invoice_id, lock=True)
            if inv["status"] == "void":
                raise Conflict("invoice.void", "invoice is already void")
            if inv["paid_amount"] != 0:
                raise Conflict("invoice.has_payments", "refund the payments before voiding the invoice")
            await s.execute(
                update(invoices).where(invoices.c.id == invoice_id).values(voided_at=utcnow(), status="void")
            )
            uow.audit(caller.audit("invoice.void", "Invoice", invoice_id, inv["patient_id"], reason=reason))
            await uow.commit()
        async with await self._read() as s:  # the invoice as voided (the void above is its audit record)
            return await self.detail(s, await self._load(s, invoice_id))

    # --------------------------------------------------------------------------------- receipts
    async def receipt_html(self, invoice_id: str, facility: str, *, caller: Caller) -> str:
        inv = await self.get(invoice_id, caller=caller, action="invoice.receipt")
        e = html.escape
        rows = "".join(
            f"<tr><td>{i}</td><td>{e(line['name'])}</td><td>{e(line['unit'])}</td>"
            f"<td class=n>{line['quantity']}</td>"
            f"<td class=n>{_vnd(line['hospital_unit_price'])}</td>"
            f"<td class=n>{_vnd(line['split']['thanh_tien_bv'])}</td>"
            f"<td class=n>{_vnd(line['split']['t_bhtt'])}</td>"
            f"<td class=n>{_vnd(line['split']['t_bncct'] + line['split']['t_bntt'])}</td></tr>"
            for i, line in enumerate(inv["lines"], start=1)
        )
        pays = "".join(
            f"<li>{e(p['received_at'][:16].replace('T', ' '))} — {e(_METHOD.get(p['method'], p['method']))}"
            f" {'hoàn trả ' if p['kind'] == 'refund' else ''}{_vnd(p['amount'])} đ</li>"
            for p in inv["payments"]
        )
        v = inv["visit"]
        return f"""<!doctype html><html lang="vi"><head><meta charset="utf-8">
<title>Biên lai {e(inv["number"])}</title>
<style>body{{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em}}
table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #999;padding:4px}}.n{{text-align:right}}</style></head><body>
<h2>{e(facility)}</h2><h1>BIÊN LAI THU TIỀN VIỆN PHÍ</h1>
<p>Số: <b>{e(inv["number"])}</b> — Trạng thái: {e(_STATUS.get(inv["status"], inv["status"]))}</p>
<p>Người bệnh: <b>{e(v["patient_name"])}</b> ({e(v["patient_code"])}) — Mã lượt khám: {e(v["visit_code"])}
{f" — Thẻ BHYT: {e(v['card_number'])}" if v["card_number"] else ""}</p>
<table><tr><th>STT</th><th>Nội dung</th><th>ĐVT</th><th>SL</th><th>Đơn giá</th><th>Thành tiền</th>
<th>BHYT trả</th><th>Người bệnh trả</th></tr>{rows}</table>
<p>Tổng chi phí: <b>{_vnd(inv["total_amount"])} đ</b>; quỹ BHYT thanh toán: {_vnd(inv["insurance_amount"])} đ;
người bệnh phải trả: <b>{_vnd(inv["patient_amount"])} đ</b>; đã thu: {_vnd(inv["paid_amount"])} đ;
còn lại: <b>{_vnd(inv["balance"])} đ</b>.</p><ul>{pays}</ul></body></html>"""

    async def receipt_pdf(self, invoice_id: str, facility: str, *, caller: Caller) -> bytes:
        from reportlab.lib.pagesizes import A4
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont
        from reportlab.pdfgen import canvas

        inv = await self.get(invoice_id, caller=caller, action="invoice.receipt")
        font = "Helvetica"
        for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
            try:
                pdfmetrics.registerFont(TTFont("DejaVuSans", path))
                font = "DejaVuSans"
            except Exception:  # noqa: BLE001, S110 - no Unicode font: diacritics may not render
                pass
        buf = io.BytesIO()
        c = canvas.Canvas(buf, pagesize=A4)
        c.setTitle(f"Biên lai {inv['number']}")
        y = 800
        c.setFont(font, 11)
        for text in (
            facility,
            "BIÊN LAI THU TIỀN VIỆN PHÍ",
            f"Số: {inv['number']}",
            f"Người bệnh: {inv['visit']['patient_name']} ({inv['visit']['patient_code']})",
        ):
            c.drawString(40, y, text)
            y -= 18
        c.setFont(font, 9)
        for i, line in enumerate(inv["lines"], start=1):
            c.drawString(40, y, f"{i}. {line['name'][:70]}  x{line['quantity']}")
            c.drawRightString(555, y, f"{_vnd(line['split']['thanh_tien_bv'])} đ")
            y -= 14
            if y < 80:
                c.showPage()
                c.setFont(font, 9)
                y = 800
        c.setFont(font, 11)
        for text in (
            f"Tổng chi phí: {_vnd(inv['total_amount'])} đ",
            f"BHYT trả: {_vnd(inv['insurance_amount'])} đ",
            f"Người bệnh trả: {_vnd(inv['patient_amount'])} đ",
            f"Đã thu: {_vnd(inv['paid_amount'])} đ",
        ):
            y -= 16
            c.drawString(40, y, text)
        c.showPage()
        c.save()
        return buf.getvalue()


_METHOD = {
    "cash": "Tiền mặt",
    "card": "Thẻ",
    "bank_transfer": "Chuyển khoản",
    "vnpay": "VNPay",
    "momo": "MoMo",
}
_STATUS = {
    "open": "Đang mở",
    "issued": "Đã phát hành",
    "partly_paid": "Thu một phần",
    "paid": "Đã thu đủ",
    "refunded": "Đã hoàn trả",
    "void": "Đã hủy",
}


def _vnd(amount: int | Decimal) -> str:
    """Vietnamese grouping: 1.234.567 đồng, decimals after a comma (1.234,567)."""
    return f"{amount:,}".replace(",", " ").replace(".", ",").replace(" ", ".")


__all__ = ["InvoiceService", "invoice_summary", "local_date"]
