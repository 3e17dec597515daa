"""Imaging desk (radiographers, radiologists): the modality worklist, the reconciliation queue (studies
that matched no order: link each to an order of the patient, or accept it as unordered), the MPPS flagged
for review (resolved with a note) and routing (destinations, forwards waiting with their error, retry).
Each panel is a fragment of its own: one service answer missing leaves the others working."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.contracts.imaging.v1 import imaging_pb2 as img
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, lang, render, screen, token, web

router = APIRouter(prefix="/imaging", tags=["imaging"])
Desk = Annotated[WebSession, screen("imaging")]
STATUS = {
    img.ORDER_STATUS_SCHEDULED: "scheduled",
    img.ORDER_STATUS_IN_PROGRESS: "in_progress",
    img.ORDER_STATUS_COMPLETED: "completed",
    img.ORDER_STATUS_DISCONTINUED: "discontinued",
    img.ORDER_STATUS_CANCELLED: "cancelled",
}
MODALITIES = ("CT", "MR", "CR", "DX", "US", "MG", "XA", "NM")
NOTE_MAX = 500


def refused_text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


def person(name: str) -> str:
    """A DICOM person name (family^given) as people write it."""
    return " ".join(p for p in name.replace("^", " ").split() if p)


def dicom_date(value: str) -> str:
    return f"{value[6:8]}/{value[4:6]}/{value[:4]}" if len(value) == 8 and value.isdigit() else value


HELPERS = {"person": person, "dicom_date": dicom_date, "status_name": STATUS}


@router.get("", response_class=HTMLResponse, summary="The imaging desk")
async def page(request: Request, sess: Desk) -> Response:
    return render(request, "imaging.html", modalities=MODALITIES)


@router.get("/worklist", response_class=HTMLResponse, summary="The modality worklist (fragment)")
async def worklist(request: Request, sess: Desk, modality: str = "") -> Response:
    modality = modality if modality in MODALITIES else ""
    try:
        items = await web(request).backends.imaging.orders(token(request, sess), modality=modality)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "_refused.html", message=refused_text(request, exc))
    return render(request, "imaging/_worklist.html", items=items, modality=modality, **HELPERS)


async def _reconciliation(request: Request, sess: WebSession, status: int = 200, **extra: Any) -> Response:
    tok = token(request, sess)
    try:
        items = await web(request).backends.imaging.reconciliation(tok)
        orders = (
            await web(request).backends.imaging.orders(tok, ["scheduled", "in_progress", "completed"])
            if items
            else []
        )
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "_refused.html", message=refused_text(request, exc))
    ctx: dict[str, Any] = {"errors": {}, "error_for": ""}
    ctx.update(extra)
    return render(
        request,
        "imaging/_reconciliation.html",
        status=status,
        items=items,
        orders=orders,
        **HELPERS,
        **ctx,
    )


@router.get("/reconciliation", response_class=HTMLResponse, summary="Studies matching no order (fragment)")
async def reconciliation(request: Request, sess: Desk) -> Response:
    return await _reconciliation(request, sess)


@router.post("/reconciliation/{item_id}", response_class=HTMLResponse, summary="Link a study or accept it")
async def reconcile(
    request: Request,
    sess: Desk,
    item_id: str,
    order_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "link",
) -> Response:
    language = lang(request)
    if action == "link" and not order_id:
        errors = {"order_id": i18n.translate("img.err.order", language)}
        return await _reconciliation(request, sess, 422, errors=errors, error_for=item_id)
    chosen = order_id if action == "link" else ""
    try:
        await web(request).backends.imaging.reconcile(item_id, chosen, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {"order_id": refused_text(request, exc)}
        return await _reconciliation(request, sess, 422, errors=errors, error_for=item_id)
    key = "img.linked" if chosen else "img.accepted"
    return await _reconciliation(request, sess, notice=i18n.translate(key, language))


async def _mpps(request: Request, sess: WebSession, status: int = 200, **extra: Any) -> Response:
    try:
        items = await web(request).backends.imaging.mpps(token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "_refused.html", message=refused_text(request, exc))
    ctx: dict[str, Any] = {"errors": {}, "error_for": "", "values": {}}
    ctx.update(extra)
    return render(request, "imaging/_mpps.html", status=status, items=items, **HELPERS, **ctx)


@router.get("/mpps", response_class=HTMLResponse, summary="MPPS flagged for review (fragment)")
async def mpps(request: Request, sess: Desk) -> Response:
    return await _mpps(request, sess)


@router.post("/mpps/{uid}", response_class=HTMLResponse, summary="Resolve a flagged MPPS with a note")
async def resolve_mpps(request: Request, sess: Desk, uid: str, note: Annotated[str, Form()] = "") -> Response:
    language = lang(request)
    text = " ".join(note.split())
    if not text or len(text) > NOTE_MAX:
        errors = {"note": i18n.translate("img.err.note", language, max=NOTE_MAX)}
        return await _mpps(request, sess, 422, errors=errors, error_for=uid, values={"note": note[:NOTE_MAX]})
    try:
        await web(request).backends.imaging.resolve_mpps(uid, text, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {"note": refused_text(request, exc)}
        return await _mpps(request, sess, 422, errors=errors, error_for=uid, values={"note": note})
    return await _mpps(request, sess, notice=i18n.translate("img.mpps_resolved", language))


async def _routing(request: Request, sess: WebSession, status: int = 200, **extra: Any) -> Response:
    try:
        state = await web(request).backends.imaging.routing(token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "_refused.html", message=refused_text(request, exc))
    return render(request, "imaging/_routing.html", status=status, state=state, **HELPERS, **extra)


@router.get("/routing", response_class=HTMLResponse, summary="Routing destinations and forwards (fragment)")
async def routing(request: Request, sess: Desk) -> Response:
    return await _routing(request, sess)


@router.post("/routing/retry", response_class=HTMLResponse, summary="Send a destination's forwards now")
async def retry(request: Request, sess: Desk, destination: Annotated[str, Form()] = "") -> Response:
    try:
        n = await web(request).backends.imaging.retry(destination, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return await _routing(request, sess, 422, error=refused_text(request, exc))
    notice = i18n.translate("img.retried", lang(request), n=n, destination=destination)
    return await _routing(request, sess, notice=notice)
