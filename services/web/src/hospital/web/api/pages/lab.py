"""Lab bench: specimen receipt by barcode scan, the worklist of results waiting for verification (critical
first, flags), verification of the selected results, and the critical-value call log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.contracts.lab.v1 import lab_pb2 as lab
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, lang, local_time, render, screen, token, web
from hospital.web.domain import levey_jennings

router = APIRouter(prefix="/lab", tags=["lab bench"])
Bench = Annotated[WebSession, screen("lab")]
WESTGARD_RULES = ("1-2s", "1-3s", "2-2s", "R-4s", "4-1s", "10-x")


def refused_text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


@router.get("", response_class=HTMLResponse, summary="The lab bench")
async def page(request: Request, sess: Bench) -> Response:
    return render(request, "lab.html")


@router.get(
    "/qc", response_class=HTMLResponse, summary="QC: Levey-Jennings charts, Westgard flags, analyzers"
)
async def qc(request: Request, sess: Bench, lot: str = "") -> Response:
    """Every control lot (by analyzer and test), the chosen one's Levey-Jennings chart (the latest 60 runs,
    SVG drawn here) with its Westgard flags and the runs as a table, and each analyzer's state."""
    tok = token(request, sess)
    backend = web(request).backends.lab
    lots: list[lab.QcLot] = []
    analyzers: list[lab.AnalyzerStatus] = []
    lj: lab.LeveyJennings | None = None
    chart: levey_jennings.Chart | None = None
    down: str | None = None
    error = ""
    try:
        lots = await backend.qc_lots(tok)
        analyzers = await backend.analyzers(tok)
        analyzers.sort(key=lambda a: (not a.last_message_at.seconds, a.name))  # those heard from first
        chosen = lot or (lots[0].id if lots else "")
        if chosen:
            lj = await backend.levey_jennings(chosen, tok)
            points = [
                (p.value, p.z, [v.rule for v in p.violations], p.accepted, local_time(p.measured_at, "%d/%m"))
                for p in lj.points
            ]
            chart = levey_jennings.chart(lj.lot.mean, lj.lot.sd, points)
    except BackendUnavailable as exc:
        down = exc.service
    except BackendRefused as exc:
        error = refused_text(request, exc)
    groups: dict[tuple[str, str], list[lab.QcLot]] = {}
    for item in lots:
        groups.setdefault((item.instrument_id, item.test_code), []).append(item)
    listed = [{"instrument": k[0], "test": k[1], "items": v} for k, v in groups.items()]
    return render(
        request,
        "lab_qc.html",
        groups=listed,
        rules=WESTGARD_RULES,
        analyzers=analyzers,
        lj=lj,
        chart=chart,
        down=down,
        error=error,
    )


@router.post("/receive", response_class=HTMLResponse, summary="Receive a specimen by its barcode (fragment)")
async def receive(request: Request, sess: Bench, barcode: Annotated[str, Form()] = "") -> Response:
    code = barcode.strip()
    if not code:
        return render(
            request,
            "lab/_receive_error.html",
            status=422,
            message=i18n.translate("lab.err.barcode", lang(request)),
        )
    try:
        got = await web(request).backends.lab.receive(code, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "lab/_receive_error.html", status=422, message=refused_text(request, exc))
    return render(request, "lab/_received.html", specimen=got.specimen, order=got.order)


async def _worklist(request: Request, sess: WebSession, status: int = 200, **extra: object) -> Response:
    try:
        items = await web(request).backends.lab.worklist(token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    return render(request, "lab/_worklist.html", status=status, items=items, **extra)


@router.get("/worklist", response_class=HTMLResponse, summary="Results waiting for verification (fragment)")
async def worklist(request: Request, sess: Bench) -> Response:
    return await _worklist(request, sess)


@router.post("/verify", response_class=HTMLResponse, summary="Verify the selected results (fragment)")
async def verify(request: Request, sess: Bench) -> Response:
    form = await request.form()
    ids = [str(v) for v in form.getlist("result_id")]
    if not ids:
        return await _worklist(request, sess, 422, error=i18n.translate("lab.err.select", lang(request)))
    try:
        done = await web(request).backends.lab.verify(ids, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return await _worklist(request, sess, 422, error=refused_text(request, exc))
    return await _worklist(request, sess, notice=i18n.translate("lab.verified", lang(request), n=len(done)))


async def _criticals(request: Request, sess: WebSession, status: int = 200, **extra: object) -> Response:
    try:
        items = await web(request).backends.lab.criticals(token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    ctx: dict[str, object] = {"errors": {}, "values": {}, "error_for": ""}
    ctx.update(extra)
    return render(request, "lab/_criticals.html", status=status, items=items, **ctx)


@router.get("/criticals", response_class=HTMLResponse, summary="Critical values not yet called (fragment)")
async def criticals(request: Request, sess: Bench) -> Response:
    return await _criticals(request, sess)


@router.post("/criticals/{result_id}/call", response_class=HTMLResponse, summary="Log a critical-value call")
async def call(
    request: Request,
    sess: Bench,
    result_id: str,
    notified_person: Annotated[str, Form()] = "",
    notified_role: Annotated[str, Form()] = "",
    read_back: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    errors: dict[str, str] = {}
    if not notified_person.strip():
        errors["notified_person"] = i18n.translate("lab.err.person", language)
    if not notified_role.strip():
        errors["notified_role"] = i18n.translate("lab.err.role", language)
    if not read_back:
        errors["read_back"] = i18n.translate("lab.err.read_back", language)
    values = {"notified_person": notified_person, "notified_role": notified_role, "note": note}
    if errors:
        return await _criticals(request, sess, 422, errors=errors, values=values, error_for=result_id)
    req = lab.RecordCriticalCallRequest(
        result_id=result_id,
        notified_person=notified_person.strip(),
        notified_role=notified_role.strip(),
        read_back_confirmed=True,
        note=note.strip(),
    )
    try:
        await web(request).backends.lab.record_call(req, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = exc.field if exc.field in ("notified_person", "notified_role") else "notified_person"
        errors[field] = refused_text(request, exc)
        return await _criticals(request, sess, 422, errors=errors, values=values, error_for=result_id)
    return await _criticals(request, sess, notice=i18n.translate("lab.called", language))
