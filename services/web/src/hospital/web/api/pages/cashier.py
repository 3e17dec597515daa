"""Cashier: unpaid invoices, an invoice with its BHYT split, the VietQR for the balance on screen, the
payment status updating live (a bank transfer, VNPay or MoMo payment arrives as billing's
``billing.payment.received`` event), and cash at the desk within the cashier's shift."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from hospital.contracts.billing.v1 import billing_pb2 as bil
from hospital.contracts.billing.v1 import events_pb2 as bil_events
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, env, lang, render, screen, token, web

router = APIRouter(prefix="/cashier", tags=["cashier"])
Desk = Annotated[WebSession, screen("cashier")]
Office = Annotated[WebSession, screen("reconcile")]
UNPAID = ("open", "issued", "partly_paid")
RESYNC_SECONDS = 15.0
REFUND_METHODS = ("cash", "bank_transfer")
REASON_MAX = 500


def refused_text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


@router.get("", response_class=HTMLResponse, summary="The cashier's desk")
async def page(request: Request, sess: Desk) -> Response:
    return render(request, "cashier.html")


@router.get("/shift", response_class=HTMLResponse, summary="The cashier's shift (fragment)")
async def shift(request: Request, sess: Desk) -> Response:
    try:
        current = await web(request).backends.billing.shift(token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused:
        current = None
    return render(request, "cashier/_shift.html", shift=current, errors={})


@router.post("/shift", response_class=HTMLResponse, summary="Open my shift (fragment)")
async def open_shift(request: Request, sess: Desk, opening_float: Annotated[str, Form()] = "0") -> Response:
    amount = _amount(opening_float)
    if amount is None:
        errors = {"opening_float": i18n.translate("cash.err.amount", lang(request))}
        return render(request, "cashier/_shift.html", status=422, shift=None, errors=errors)
    try:
        current = await web(request).backends.billing.open_shift(amount, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {"opening_float": refused_text(request, exc)}
        return render(request, "cashier/_shift.html", status=422, shift=None, errors=errors)
    return render(request, "cashier/_shift.html", shift=current, errors={})


@router.post("/shift/close", response_class=HTMLResponse, summary="Close my shift (fragment)")
async def close_shift(
    request: Request,
    sess: Desk,
    shift_id: Annotated[str, Form(max_length=40)],
    counted_cash: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    billing, tok = web(request).backends.billing, token(request, sess)
    amount = _amount(counted_cash) if counted_cash.strip() else None
    try:
        if amount is None:
            current = await billing.shift(tok)
            errors = {"counted_cash": i18n.translate("cash.err.counted", language)}
            return render(
                request, "cashier/_shift.html", status=422, shift=current, errors=errors, counted=counted_cash
            )
        closed = await billing.close_shift(shift_id, amount, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        if exc.code == "shift.closed":  # closed already (a second click, another tab): show the desk as it is
            return await shift(request, sess)
        try:
            current = await billing.shift(tok)
        except (BackendUnavailable, BackendRefused):
            current = None
        return render(
            request,
            "cashier/_shift.html",
            status=422,
            shift=current,
            errors={"counted_cash": refused_text(request, exc)},
            counted=counted_cash,
        )
    return render(request, "cashier/_shift.html", shift=None, closed=closed, errors={})


@router.get("/invoices/events", summary="Server-Sent Events: the unpaid list changed (billing events)")
async def list_events(request: Request, sess: Desk) -> StreamingResponse:
    """One ``changed`` event per burst of billing events (a charge, an invoice
    issued, a payment or a refund): the list re-reads itself. Without NATS the list's 20 s poll remains."""
    w = web(request)

    async def events() -> AsyncIterator[str]:
        changed = asyncio.Event()
        sub = None
        if w.nc is not None:

            async def on_event(msg: object) -> None:
                changed.set()

            sub = await w.nc.subscribe("billing.>", cb=on_event)
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    await asyncio.wait_for(changed.wait(), RESYNC_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                await asyncio.sleep(0.3)  # a payment's events come together: one refresh for them
                changed.clear()
                yield "event: changed\ndata: billing\n\n"
        finally:
            if sub is not None:
                await sub.unsubscribe()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/invoices", response_class=HTMLResponse, summary="Unpaid invoices (fragment)")
async def invoices(request: Request, sess: Desk) -> Response:
    billing, tok = web(request).backends.billing, token(request, sess)
    try:
        groups = await asyncio.gather(*(billing.invoices(tok, status) for status in UNPAID))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    items = sorted((i for g in groups for i in g), key=lambda i: i.number, reverse=True)
    return render(request, "cashier/_list.html", items=items)


async def _invoice(
    request: Request,
    sess: WebSession,
    *,
    invoice_id: str = "",
    number: str = "",
    status: int = 200,
    **extra: object,
) -> Response:
    try:
        inv = await web(request).backends.billing.invoice(token(request, sess), invoice_id, number)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=404, message=refused_text(request, exc))
    ctx: dict[str, object] = {"errors": {}, "qr": None, "qr_png": "", "notice": ""}
    ctx.update(extra)
    return render(
        request, "cashier/_invoice.html", status=status, inv=inv, request_key=secrets.token_urlsafe(16), **ctx
    )


@router.get("/find", response_class=HTMLResponse, summary="An invoice by its number (fragment)")
async def find(request: Request, sess: Desk, number: str = "") -> Response:
    code = number.strip().upper()
    if not re.fullmatch(r"[A-Z0-9-]{3,40}", code):
        return render(
            request,
            "cashier/_find_error.html",
            status=422,
            message=i18n.translate("cash.err.number", lang(request)),
        )
    return await _invoice(request, sess, number=code)


@router.get("/invoices/{invoice_id}", response_class=HTMLResponse, summary="An invoice (fragment)")
async def invoice(request: Request, sess: Desk, invoice_id: str) -> Response:
    return await _invoice(request, sess, invoice_id=invoice_id)


@router.post(
    "/invoices/{invoice_id}/vietqr", response_class=HTMLResponse, summary="Show the VietQR (fragment)"
)
async def vietqr(request: Request, sess: Desk, invoice_id: str) -> Response:
    try:
        qr = await web(request).backends.billing.vietqr(invoice_id, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=422, message=refused_text(request, exc))
    png = "data:image/png;base64," + base64.b64encode(qr.png).decode("ascii")
    return render(request, "cashier/_vietqr.html", qr=qr, qr_png=png)


def _amount(text: str) -> int | None:
    digits = re.sub(r"[.\s₫,]", "", text or "")
    return int(digits) if digits.isdigit() and len(digits) <= 12 else None


@router.post("/invoices/{invoice_id}/cash", response_class=HTMLResponse, summary="Take cash (fragment)")
async def cash(
    request: Request,
    sess: Desk,
    invoice_id: str,
    request_key: Annotated[str, Form()],
    amount: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    value = _amount(amount)
    if not value:
        return await _invoice(
            request,
            sess,
            invoice_id=invoice_id,
            status=422,
            errors={"amount": i18n.translate("cash.err.amount", language)},
            amount=amount,
        )
    w = web(request)
    req = bil.PayAtDeskRequest(
        invoice_id=invoice_id, amount=value, method="cash", request_id=f"web-{request_key}"
    )
    try:
        await w.once.run(
            f"cash:{sess.user.id}:{request_key}", lambda: w.backends.billing.pay(req, token(request, sess))
        )
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return await _invoice(
            request,
            sess,
            invoice_id=invoice_id,
            status=422,
            errors={"amount": refused_text(request, exc)},
            amount=amount,
        )
    return await _invoice(
        request,
        sess,
        invoice_id=invoice_id,
        notice=i18n.translate("cash.received", language, amount=env.filters["vnd"](value)),
    )


@router.post(
    "/invoices/{invoice_id}/refund", response_class=HTMLResponse, summary="Give money back (fragment)"
)
async def refund(
    request: Request,
    sess: Desk,
    invoice_id: str,
    request_key: Annotated[str, Form(max_length=64)],
    refund_amount: Annotated[str, Form()] = "",
    method: Annotated[str, Form()] = "cash",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """A refund with its reason: at most what the invoice received (billing checks it, and a cashier's
    limit); the form's one-time key makes a second click (or a resend) return the first refund."""
    language = lang(request)
    typed = {"refund_amount": refund_amount, "refund_reason": reason, "refund_method": method}
    errors: dict[str, str] = {}
    value = _amount(refund_amount)
    if not value:
        errors["refund_amount"] = i18n.translate("cash.err.amount", language)
    if method not in REFUND_METHODS:
        errors["refund_method"] = i18n.translate("refund.err.method", language)
    text = " ".join((reason or "").split())
    if not text:
        errors["refund_reason"] = i18n.translate("refund.err.reason", language)
    elif len(text) > REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
        errors["refund_reason"] = i18n.translate("refund.err.reason_long", language, max=REASON_MAX)
    if errors:
        return await _invoice(request, sess, invoice_id=invoice_id, status=422, errors=errors, **typed)
    w = web(request)
    req = bil.RefundPaymentRequest(
        invoice_id=invoice_id,
        amount=value or 0,
        method=method,
        reason=text,
        request_id=f"web-r-{request_key}",
    )
    try:
        await w.once.run(
            f"refund:{sess.user.id}:{request_key}",
            lambda: w.backends.billing.refund(req, token(request, sess)),
        )
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = {"reason": "refund_reason", "method": "refund_method"}.get(exc.field or "", "refund_amount")
        return await _invoice(
            request,
            sess,
            invoice_id=invoice_id,
            status=422,
            errors={field: refused_text(request, exc)},
            **typed,
        )
    return await _invoice(
        request,
        sess,
        invoice_id=invoice_id,
        notice=i18n.translate(f"refund.done.{method}", language, amount=env.filters["vnd"](value)),
    )


@router.get("/day", response_class=HTMLResponse, summary="The day's money: reconciliation")
async def day(request: Request, sess: Office, date: str = "") -> Response:
    language = lang(request)
    chosen = date.strip()
    if chosen and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", chosen):
        return render(
            request,
            "reconcile.html",
            status=422,
            rec=None,
            down=None,
            chosen=chosen,
            errors={"date": i18n.translate("day.err.date", language)},
        )
    try:
        rec = await web(request).backends.billing.daily(chosen, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "reconcile.html", rec=None, down=exc.service, chosen=chosen, errors={})
    except BackendRefused as exc:
        return render(
            request,
            "reconcile.html",
            status=422,
            rec=None,
            down=None,
            chosen=chosen,
            errors={"date": refused_text(request, exc)},
        )
    return render(request, "reconcile.html", rec=rec, down=None, chosen=rec.date, errors={})


@router.get("/invoices/{invoice_id}/stream", summary="Server-Sent Events: the invoice's payment status")
async def stream(request: Request, sess: Desk, invoice_id: str) -> StreamingResponse:
    w, language = web(request), lang(request)
    fragment = env.get_template("cashier/_status.html")

    def t(key: str, **values: object) -> str:
        return i18n.translate(key, language, **values)

    async def events() -> AsyncIterator[str]:
        changed = asyncio.Event()
        sub = None
        if w.nc is not None:

            async def on_payment(msg: object) -> None:
                try:
                    event = bil_events.PaymentReceived.FromString(msg.data)  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - not ours to judge; the resync catches up
                    return
                if event.invoice_id == invoice_id:
                    changed.set()

            sub = await w.nc.subscribe("billing.payment.received", cb=on_payment)
        last = None
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    inv = await w.backends.billing.invoice(token(request, sess), invoice_id)
                    html = fragment.render(t=t, inv=inv, down=None)
                except (BackendUnavailable, BackendRefused) as exc:
                    html = fragment.render(t=t, inv=None, down=exc.service)
                if html != last:
                    last = html
                    yield "event: status\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), RESYNC_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            if sub is not None:
                await sub.unsubscribe()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
