"""The billing use cases, built once per process and handed to the HTTP and gRPC APIs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from hospital.billing.adapters.tables import price_items
from hospital.billing.app.cashoffice import CashOfficeService
from hospital.billing.app.charges import ChargeService
from hospital.billing.app.claims import ClaimService
from hospital.billing.app.common import local_date
from hospital.billing.app.invoices import InvoiceService
from hospital.billing.app.orders import OrderCharges
from hospital.billing.app.payments import PaymentService
from hospital.billing.app.prices import PriceListService
from hospital.billing.config import BillingSettings
from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow


@dataclass
class Services:
    rt: Runtime[BillingSettings]
    settings: BillingSettings
    charges: ChargeService
    orders: OrderCharges
    invoices: InvoiceService
    payments: PaymentService
    office: CashOfficeService
    claims: ClaimService
    price_list: PriceListService

    async def prices(self, on: date | None, category: str | None) -> list[dict[str, Any]]:
        day = on or local_date(utcnow())
        stmt = select(price_items).where(
            price_items.c.effective_from <= day,
            (price_items.c.effective_to.is_(None)) | (price_items.c.effective_to >= day),
        )
        if category:
            stmt = stmt.where(price_items.c.category == category)
        async with self.rt.db.session() as s:
            rows = (
                (await s.execute(stmt.order_by(price_items.c.category, price_items.c.code))).mappings().all()
            )
        return [
            {
                "code": r["code"],
                "name": r["name"],
                "category": r["category"],
                "unit": r["unit"],
                "hospital_price": r["hospital_price"],
                "insurance_price": r["insurance_price"],
                "covered": r["covered"],
                "payment_ratio": r["payment_ratio"],
                "bhyt_code": r["bhyt_code"],
                "effective_from": r["effective_from"].isoformat(),
                "effective_to": r["effective_to"].isoformat() if r["effective_to"] else None,
            }
            for r in rows
        ]
