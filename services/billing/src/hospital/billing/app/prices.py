"""The price list as an admin keeps it: what is in force on a day (searched by code or name, with or
without diacritics) and a new price from a date on (ADR 0209).

A price is never edited in place: a change closes the row in force the day before the new date
(``effective_to``) and adds a row from that date, so a charge of any day is priced as it was that day and
older invoices keep their amounts. The new date is today or later, and after the row in force; a change
already set for a later date must be taken back (not built) before another one is set before it.
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, update

from hospital.billing.adapters.tables import price_items
from hospital.billing.app.common import local_date
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound

MAX_PRICE = 10_000_000_000  # 10 billion VND: above any item of a provincial price list


def fold(text: str) -> str:
    """Lower case without diacritics ("Chụp X-quang" → "chup x-quang"; đ → d)."""
    decomposed = unicodedata.normalize("NFD", (text or "").replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def price_dict(r: Any, next_change: date | None = None) -> dict[str, Any]:
    return {
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
        "next_change": next_change.isoformat() if next_change else None,
    }


def parse_day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("price.date", "a date as YYYY-MM-DD", field=field) from None


class PriceListService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def search(
        self, on: date | None, category: str | None, query: str = "", limit: int = 100
    ) -> list[dict[str, Any]]:
        day = on or local_date(utcnow())
        c = price_items.c
        stmt = select(price_items).where(
            c.effective_from <= day, (c.effective_to.is_(None)) | (c.effective_to >= day)
        )
        if category:
            stmt = stmt.where(c.category == category)
        async with self.rt.db.session() as s:
            rows = (await s.execute(stmt.order_by(c.category, c.code))).mappings().all()
            later = (await s.execute(select(c.code, c.effective_from).where(c.effective_from > day))).all()
        nxt: dict[str, date] = {}
        for code, start in later:
            if code not in nxt or start < nxt[code]:
                nxt[code] = start
        words = fold(query).split()
        out = []
        for r in rows:
            if words:
                hay = f"{fold(r['code'])} {fold(r['name'])} {fold(r['bhyt_code'])}"
                if not all(w in hay for w in words):
                    continue
            out.append(price_dict(r, nxt.get(r["code"])))
            if len(out) >= limit:
                break
        return out

    async def set_price(
        self,
        code: str,
        hospital_price: int,
        insurance_price: int | None,
        effective_from: date,
        reason: str,
        caller: Caller,
    ) -> dict[str, Any]:
        """A new price for ``code`` from ``effective_from`` on (``insurance_price`` None: unchanged)."""
        today = local_date(utcnow())
        if effective_from < today:
            raise Invalid(
                "price.effective_past",
                "a new price takes effect today or later; charges already posted keep their price",
                field="effective_from",
            )
        if not 0 <= hospital_price <= MAX_PRICE:
            raise Invalid("price.amount", "a whole number of VND, 0 or more", field="hospital_price")
        if insurance_price is not None and not 0 <= insurance_price <= MAX_PRICE:
            raise Invalid("price.amount", "a whole number of VND, 0 or more", field="insurance_price")
        if not reason.strip():
            raise Invalid("price.reason", "say why the price changes", field="reason")
        c = price_items.c
        async with self.rt.uow() as uow:
            s = uow.session
            rows = (
                (
                    await s.execute(
                        select(price_items).where(c.code == code).order_by(c.effective_from).with_for_update()
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                raise NotFound("price.not_found", f"no price-list item {code}", field="code")
            later = [r for r in rows if r["effective_from"] >= effective_from]
            if later:
                raise Conflict(
                    "price.later_change",
                    f"{code} already has a price from {later[0]['effective_from'].isoformat()}",
                    field="effective_from",
                )
            current = next(
                (
                    r
                    for r in reversed(rows)
                    if r["effective_from"] <= effective_from
                    and (r["effective_to"] is None or r["effective_to"] >= effective_from)
                ),
                None,
            )
            if current is None:
                raise Conflict(
                    "price.not_in_force",
                    f"{code} is not on the price list on {effective_from.isoformat()}",
                    field="effective_from",
                )
            new_row = {**current}
            new_row.update(
                effective_from=effective_from,
                effective_to=current["effective_to"],
                hospital_price=hospital_price,
                insurance_price=current["insurance_price"] if insurance_price is None else insurance_price,
            )
            await s.execute(
                update(price_items)
                .where(c.code == code, c.effective_from == current["effective_from"])
                .values(effective_to=effective_from - timedelta(days=1))
            )
            await s.execute(price_items.insert().values(**new_row))
            uow.audit(
                caller.audit(
                    "price.set",
                    "PriceItem",
                    code,
                    None,
                    effective_from=effective_from.isoformat(),
                    hospital_price=[current["hospital_price"], new_row["hospital_price"]],
                    insurance_price=[current["insurance_price"], new_row["insurance_price"]],
                    reason=reason,
                )
            )
            await uow.commit()
        return price_dict(new_row)
