"""Administration of what the services let an admin change or see: the price list (billing: search, a new
price from a date on) and the device connections (the lab's analyzers, imaging's DICOM AEs: read-only,
they are set in those services' configuration)."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.contracts.billing.v1 import billing_pb2 as bil
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import LOCAL_TZ, WebSession, lang, render, screen, token, vnd, web
from hospital.web.domain.accounts import SEARCH_MAX

router = APIRouter(prefix="/admin", tags=["administration"])
Prices = Annotated[WebSession, screen("prices")]
Devices = Annotated[WebSession, screen("devices")]
CATEGORIES = ("exam", "lab", "imaging", "procedure", "bed", "supply", "drug")
REASON_MAX = 500


def _refused(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


def _today() -> date:
    return datetime.now(LOCAL_TZ).date()


def _bad_search(value: str) -> bool:
    return len(value) > SEARCH_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value)


async def _items(request: Request, sess: WebSession, q: str, category: str) -> dict[str, object]:
    if _bad_search(q):
        return {
            "items": [],
            "down": None,
            "search_error": i18n.translate("search.invalid", lang(request), max=SEARCH_MAX),
        }
    try:
        items = await web(request).backends.billing.prices(
            token(request, sess), query=q.strip(), category=category if category in CATEGORIES else ""
        )
    except BackendUnavailable as exc:
        return {"items": [], "down": exc.service, "search_error": ""}
    except BackendRefused as exc:
        return {"items": [], "down": None, "search_error": _refused(request, exc)}
    return {"items": items, "down": None, "search_error": ""}


@router.get("/prices", response_class=HTMLResponse, summary="The price list (search, change a price)")
async def prices(request: Request, sess: Prices, q: str = "", category: str = "") -> Response:
    found = await _items(request, sess, q, category)
    return render(
        request,
        "prices.html",
        q=q if not found["search_error"] else "",
        category=category,
        categories=CATEGORIES,
        **found,
    )


@router.get("/prices/list", response_class=HTMLResponse, summary="Price-list search results (fragment)")
async def price_list(request: Request, sess: Prices, q: str = "", category: str = "") -> Response:
    found = await _items(request, sess, q, category)
    return render(request, "prices/_list.html", status=422 if found["search_error"] else 200, **found)


async def _edit(
    request: Request, sess: WebSession, code: str, status: int = 200, **extra: object
) -> Response:
    try:
        items = await web(request).backends.billing.prices(token(request, sess), query=code, limit=50)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    item = next((i for i in items if i.code == code), None)
    if item is None:
        return render(
            request,
            "cashier/_find_error.html",
            status=404,
            message=i18n.translate("err.price.not_found", lang(request)),
        )
    ctx: dict[str, object] = {
        "errors": {},
        "values": {"effective_from": (_today() + timedelta(days=1)).isoformat()},
        "min_date": _today().isoformat(),
        "notice": "",
    }
    ctx.update(extra)
    return render(request, "prices/_edit.html", status=status, item=item, **ctx)


@router.get("/prices/{code}/edit", response_class=HTMLResponse, summary="A price's change form (fragment)")
async def edit(request: Request, sess: Prices, code: str) -> Response:
    return await _edit(request, sess, code[:30])


@router.post("/prices/{code}", response_class=HTMLResponse, summary="A new price from a date on (fragment)")
async def set_price(
    request: Request,
    sess: Prices,
    code: str,
    hospital_price: Annotated[str, Form()] = "",
    insurance_price: Annotated[str, Form()] = "",
    effective_from: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    code = code[:30]
    values = {
        "hospital_price": hospital_price,
        "insurance_price": insurance_price,
        "effective_from": effective_from,
        "reason": reason,
    }
    errors: dict[str, str] = {}
    price = _money(hospital_price)
    if price is None:
        errors["hospital_price"] = i18n.translate("cash.err.amount", language)
    ins = _money(insurance_price) if insurance_price.strip() else None
    if insurance_price.strip() and ins is None:
        errors["insurance_price"] = i18n.translate("cash.err.amount", language)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", effective_from.strip()):
        errors["effective_from"] = i18n.translate("day.err.date", language)
    text = " ".join((reason or "").split())
    if not text:
        errors["reason"] = i18n.translate("price.err.reason", language)
    elif len(text) > REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
        errors["reason"] = i18n.translate("refund.err.reason_long", language, max=REASON_MAX)
    if errors:
        return await _edit(request, sess, code, status=422, errors=errors, values=values)
    req = bil.SetPriceRequest(
        code=code,
        hospital_price=price or 0,
        insurance_price=ins or 0,
        keep_insurance_price=ins is None,
        effective_from=effective_from.strip(),
        reason=text,
    )
    try:
        item = await web(request).backends.billing.set_price(req, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = exc.field if exc.field in values else "hospital_price"
        return await _edit(
            request, sess, code, status=422, errors={field: _refused(request, exc)}, values=values
        )
    return render(
        request,
        "prices/_saved.html",
        item=item,
        notice=i18n.translate(
            "prices.saved",
            language,
            code=item.code,
            amount=vnd(item.hospital_price),
            day=item.effective_from,
        ),
    )


def _money(text: str) -> int | None:
    digits = re.sub(r"[.\s₫,]", "", text or "")
    return int(digits) if digits.isdigit() and len(digits) <= 12 else None


@router.get("/devices", response_class=HTMLResponse, summary="Analyzer connections and DICOM AEs")
async def devices(request: Request, sess: Devices) -> Response:
    backends, tok = web(request).backends, token(request, sess)
    lab_out, img_out = await asyncio.gather(
        backends.lab.analyzer_connections(tok), backends.imaging.aes(tok), return_exceptions=True
    )
    ctx: dict[str, object] = {"analyzers": None, "aes": None, "lab_down": None, "imaging_down": None}
    for key, down_key, out in (("analyzers", "lab_down", lab_out), ("aes", "imaging_down", img_out)):
        if isinstance(out, (BackendUnavailable, BackendRefused)):
            ctx[down_key] = out.service
        elif isinstance(out, BaseException):
            raise out
        else:
            ctx[key] = out
    return render(request, "devices.html", **ctx)
