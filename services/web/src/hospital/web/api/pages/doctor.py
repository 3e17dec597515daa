"""Doctor: my queue of the clinic room (the EMR's encounters in ticket order), the chart of the chosen
patient (allergies, earlier encounters, results) and the consultation: complaint, examination, vitals
(checked and flagged by the EMR), the main diagnosis found by ICD-10 search as you type, the plan.
Orders (CPOE): lab tests picked from the lab's catalogue and an imaging procedure, placed through the EMR,
each shown with its status (pending while the EMR sends it, placed, refused with the reason) and, below it,
its results with their flags. An open critical value is a banner on the chart until the doctor
acknowledges it with the value read back (EMR AcknowledgeCritical). Prescribing runs the EMR's checks
first: a warning (allergy, duplicate drug or therapy) blocks the save until a reason is given for it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.contracts.emr.v1 import emr_pb2 as emr
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable, parse_detail
from hospital.web.api.deps import WebSession, lang, render, screen, token, web
from hospital.web.domain.accounts import SEARCH_MAX

router = APIRouter(prefix="/doctor", tags=["doctor"])
Doctor = Annotated[WebSession, screen("doctor")]
VITALS_INT = ("systolic_bp", "diastolic_bp", "pulse", "spo2", "respiratory_rate")
VITALS_REAL = ("temperature_c", "weight_kg", "height_cm")


def refused_text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


@router.get("", response_class=HTMLResponse, summary="The doctor's screen")
async def page(request: Request, sess: Doctor, room: str = "") -> Response:
    rooms, down = [], None
    try:
        rooms = await web(request).backends.admissions.rooms(token(request, sess))
    except BackendUnavailable as exc:
        down = exc.service
    return render(request, "doctor.html", rooms=rooms, rooms_down=down, room=room)


@router.get("/queue", response_class=HTMLResponse, summary="My queue in a room (fragment)")
async def queue(request: Request, sess: Doctor, room: str = "") -> Response:
    if not room:
        return render(request, "doctor/_queue.html", items=[], room="")
    try:
        items = await web(request).backends.emr.my_queue(room, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=422, message=refused_text(request, exc))
    return render(request, "doctor/_queue.html", items=items, room=room)


async def _consultation(
    request: Request, sess: WebSession, encounter_id: str, status: int = 200, **extra: object
) -> Response:
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        enc = await emr_api.encounter(encounter_id, tok)
        chart = await emr_api.chart(enc.patient_id, encounter_id, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=403, message=refused_text(request, exc))
    catalogue, catalogue_down = [], None
    try:
        catalogue = await web(request).backends.lab.catalogue(tok)
    except (BackendUnavailable, BackendRefused) as exc:
        catalogue_down = exc.service
    ctx: dict[str, object] = {
        "errors": {},
        "values": None,
        "notice": "",
        "order_errors": {},
        "order_values": None,
        "order_notice": "",
        "ack_errors": {},
        "rx_errors": {},
        "rx_values": None,
        "rx_alerts": [],
        "rx_notice": "",
    }
    ctx.update(extra)
    return render(
        request,
        "doctor/_consultation.html",
        status=status,
        chart=chart,
        enc=enc,
        catalogue=catalogue,
        catalogue_down=catalogue_down,
        **_orders_context(request, chart),
        **ctx,
    )


def refusal_text(request: Request, reason: str) -> str:
    """A downstream refusal as the EMR stored it (``code``, or ``code: message (field f)``), in words."""
    parsed = parse_detail(reason.strip())
    code = parsed[0] if parsed else reason.strip()
    key = f"err.{code}"
    if i18n.has(key):
        return i18n.translate(key, lang(request))
    return parsed[1] if parsed and parsed[1] else reason


def _orders_context(request: Request, chart: emr.Chart) -> dict[str, object]:
    return {
        "results_by_order": _results_by_order(chart),
        "refusals": {o.id: refusal_text(request, o.refusal_reason) for o in chart.orders if o.refusal_reason},
    }


def _results_by_order(chart: emr.Chart) -> dict[str, list[emr.LabResult]]:
    grouped: dict[str, list[emr.LabResult]] = {}
    for r in chart.results:
        grouped.setdefault(r.order_id, []).append(r)
    return grouped


@router.get("/encounters/{encounter_id}", response_class=HTMLResponse, summary="Chart and consultation")
async def encounter(request: Request, sess: Doctor, encounter_id: str) -> Response:
    return await _consultation(request, sess, encounter_id)


@router.get("/icd10", response_class=HTMLResponse, summary="ICD-10 codes matching the query (fragment)")
async def icd10(request: Request, sess: Doctor, q: str = "") -> Response:
    try:
        query = clean_text(q, field="q", max_length=SEARCH_MAX)
    except Invalid:
        error = i18n.translate("search.invalid", lang(request), max=SEARCH_MAX)
        return render(request, "doctor/_icd10.html", status=422, items=[], error=error)
    if len(query) < 2:
        return render(request, "doctor/_icd10.html", items=[])
    try:
        items = await web(request).backends.emr.icd10(query, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    return render(request, "doctor/_icd10.html", items=items)


@router.post(
    "/encounters/{encounter_id}/consultation",
    response_class=HTMLResponse,
    summary="Save the consultation (fragment)",
)
async def save(request: Request, sess: Doctor, encounter_id: str) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    language = lang(request)
    errors: dict[str, str] = {}
    vitals = emr.Vitals()
    for name in (*VITALS_INT, *VITALS_REAL):
        text = values.get(name, "").strip().replace(",", ".")
        if not text:
            continue
        try:
            number = float(text)
            if name in VITALS_INT:
                if not number.is_integer():
                    raise ValueError(text)
                setattr(vitals, name, int(number))
            else:
                setattr(vitals, name, number)
        except ValueError:
            errors[name] = i18n.translate("doc.err.number", language)
    code = values.get("main_code", "").strip().upper()
    if not code:
        errors["main_code"] = i18n.translate("doc.err.diagnosis", language)
    if errors:
        return await _consultation(request, sess, encounter_id, 422, errors=errors, values=values)
    req = emr.SaveConsultationRequest(
        encounter_id=encounter_id,
        expected_version=int(values.get("version") or 0),
        chief_complaint=values.get("chief_complaint", ""),
        examination=values.get("examination", ""),
        vitals=vitals,
        diagnoses=[emr.Diagnosis(icd10_code=code, main=True)],
        treatment_plan=values.get("treatment_plan", ""),
    )
    try:
        await web(request).backends.emr.save(req, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = exc.field or ""
        if field.startswith("diagnoses") or "icd10" in exc.code or "diagnos" in exc.code:
            field = "main_code"
        elif field.startswith("vitals."):
            field = field.removeprefix("vitals.")
        elif field not in ("chief_complaint", "examination", "treatment_plan"):
            field = "form"
        errors[field] = refused_text(request, exc)
        return await _consultation(request, sess, encounter_id, 422, errors=errors, values=values)
    return await _consultation(request, sess, encounter_id, notice=i18n.translate("doc.saved", language))


@router.get(
    "/encounters/{encounter_id}/orders",
    response_class=HTMLResponse,
    summary="The encounter's orders with their status and results (fragment, polled while one is pending)",
)
async def orders(request: Request, sess: Doctor, encounter_id: str) -> Response:
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        enc = await emr_api.encounter(encounter_id, tok)
        chart = await emr_api.chart(enc.patient_id, encounter_id, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=403, message=refused_text(request, exc))
    return render(request, "doctor/_orders.html", chart=chart, enc=enc, **_orders_context(request, chart))


@router.post(
    "/encounters/{encounter_id}/orders",
    response_class=HTMLResponse,
    summary="Place lab and imaging orders (fragment)",
)
async def place(request: Request, sess: Doctor, encounter_id: str) -> Response:
    form = await request.form()
    language = lang(request)
    tests = [str(t).strip().upper() for t in form.getlist("tests") if str(t).strip()]
    values = {k: str(v) for k, v in form.items() if k not in ("csrf_token", "tests")}
    values["tests"] = ",".join(tests)
    procedure = values.get("procedure_code", "").strip().upper()
    description = values.get("imaging_description", "").strip()
    modality = values.get("modality", "").strip().upper()
    errors: dict[str, str] = {}
    if procedure or description:
        if not procedure:
            errors["procedure_code"] = i18n.translate("ord.err.procedure", language)
        if not description:
            errors["imaging_description"] = i18n.translate("ord.err.description", language)
        if not modality:
            errors["modality"] = i18n.translate("ord.err.modality", language)
    elif not tests:
        errors["tests"] = i18n.translate("ord.err.empty", language)
    if errors:
        return await _consultation(request, sess, encounter_id, 422, order_errors=errors, order_values=values)
    note = values.get("clinical_note", "").strip()
    req = emr.PlaceOrdersRequest(
        encounter_id=encounter_id,
        request_id=values.get("request_id") or uuid.uuid4().hex,
    )
    if tests:
        req.lab.append(emr.LabOrderRequest(tests=tests, stat=bool(values.get("stat")), clinical_note=note))
    if procedure:
        req.imaging.append(
            emr.ImagingOrderRequest(
                procedure_code=procedure, description=description, modality=modality, clinical_note=note
            )
        )
    try:
        placed = await web(request).backends.emr.place_orders(req, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = (exc.field or "").split(".")[0]
        key = {"lab": "tests", "imaging": "procedure_code"}.get(field, "form")
        return await _consultation(
            request,
            sess,
            encounter_id,
            422,
            order_errors={key: refused_text(request, exc)},
            order_values=values,
        )
    notice = i18n.translate("ord.placed", language).format(n=len(placed))
    return await _consultation(request, sess, encounter_id, order_notice=notice)


@router.post(
    "/encounters/{encounter_id}/criticals/{alert_id}/acknowledge",
    response_class=HTMLResponse,
    summary="Acknowledge a critical value with the read-back (fragment)",
)
async def acknowledge(request: Request, sess: Doctor, encounter_id: str, alert_id: str) -> Response:
    form = await request.form()
    read_back = str(form.get("read_back", "")).strip()
    language = lang(request)
    if not read_back:
        errors = {alert_id: i18n.translate("crit.err.read_back", language)}
        return await _consultation(request, sess, encounter_id, 422, ack_errors=errors)
    try:
        await web(request).backends.emr.acknowledge(alert_id, read_back, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {alert_id: refused_text(request, exc)}
        return await _consultation(request, sess, encounter_id, 422, ack_errors=errors)
    return await _consultation(
        request, sess, encounter_id, notice=i18n.translate("crit.acknowledged", language)
    )


@router.get(
    "/drugs", response_class=HTMLResponse, summary="Drugs of the catalogue matching the query (fragment)"
)
async def drugs(request: Request, sess: Doctor, drug_q: str = "") -> Response:
    try:
        query = clean_text(drug_q, field="drug_q", max_length=SEARCH_MAX)
    except Invalid:
        error = i18n.translate("search.invalid", lang(request), max=SEARCH_MAX)
        return render(request, "doctor/_drugs.html", status=422, items=[], error=error)
    if len(query) < 2:
        return render(request, "doctor/_drugs.html", items=[])
    try:
        items = await web(request).backends.emr.drugs(query, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    return render(request, "doctor/_drugs.html", items=items)


RX_FIELDS = ("dose", "frequency", "quantity", "instructions")


@router.post(
    "/encounters/{encounter_id}/prescriptions",
    response_class=HTMLResponse,
    summary="Prescribe: the EMR's checks first; a warning must be overridden with a reason (fragment)",
)
async def prescribe(request: Request, sess: Doctor, encounter_id: str) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    language = lang(request)
    errors: dict[str, str] = {}
    code = values.get("drug_code", "").strip()
    if not code:
        errors["drug_code"] = i18n.translate("rx.err.drug", language)
    for name in ("dose", "frequency", "quantity"):
        if not values.get(name, "").strip():
            errors[name] = i18n.translate("rx.err.required", language)
    days_text = values.get("duration_days", "").strip()
    days = 0
    if days_text:
        if not days_text.isdigit() or int(days_text) < 1:
            errors["duration_days"] = i18n.translate("doc.err.number", language)
        else:
            days = int(days_text)
    if errors:
        return await _consultation(request, sess, encounter_id, 422, rx_errors=errors, rx_values=values)
    item = emr.PrescriptionItem(
        drug_code=code, duration_days=days, **{n: values.get(n, "").strip() for n in RX_FIELDS}
    )
    req = emr.SavePrescriptionRequest(
        encounter_id=encounter_id,
        items=[item],
        advice=values.get("advice", "").strip(),
        request_id=values.get("request_id") or uuid.uuid4().hex,
    )
    values["request_id"] = req.request_id
    for key, reason in values.items():
        if key.startswith("override:") and reason.strip():
            _, drug, kind = key.split(":", 2)
            req.overrides.append(emr.AlertOverride(drug_code=drug, kind=kind, reason=reason.strip()))
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        check = await emr_api.check_prescription(req, tok)
        if check.unresolved:
            for a in check.unresolved:
                if f"override:{a.drug_code}:{a.kind}" in values:
                    errors[f"override:{a.drug_code}:{a.kind}"] = i18n.translate("rx.err.reason", language)
            return await _consultation(
                request,
                sess,
                encounter_id,
                422,
                rx_errors=errors,
                rx_values=values,
                rx_alerts=list(check.alerts),
            )
        saved = await emr_api.save_prescription(req, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = exc.field or ""
        key = "form"
        if field.startswith("overrides"):
            key = next((k for k in values if k.startswith("override:")), "form")
        elif field.startswith("items"):
            leaf = field.rsplit(".", 1)[-1]
            key = leaf if leaf in (*RX_FIELDS, "drug_code", "duration_days") else "drug_code"
        alerts = []
        try:
            alerts = list((await emr_api.check_prescription(req, tok)).alerts)
        except (BackendUnavailable, BackendRefused):
            pass
        return await _consultation(
            request,
            sess,
            encounter_id,
            422,
            rx_errors={key: refused_text(request, exc)},
            rx_values=values,
            rx_alerts=alerts,
        )
    notice = i18n.translate("rx.saved", language, code=saved.code)
    return await _consultation(request, sess, encounter_id, rx_notice=notice)
