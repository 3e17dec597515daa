"""Doctor: my queue of the clinic room (the EMR's encounters in ticket order), the chart of the chosen
patient (allergies, earlier encounters, results) and the consultation: complaint, examination, vitals
(checked and flagged by the EMR), the main diagnosis found by ICD-10 search as you type, the plan.
Orders (CPOE): lab tests picked from the lab's catalogue and an imaging procedure, placed through the EMR,
each shown with its status (pending while the EMR sends it, placed, refused with the reason) and, below it,
its results with their flags. An open critical value is a banner on the chart until the doctor
acknowledges it with the value read back (EMR AcknowledgeCritical). Prescribing runs the EMR's checks
first: a warning (allergy, duplicate drug or therapy) blocks the save until a reason is given for it.
"Call next" calls the room's next ticket through admissions (the waiting-room displays follow) and opens
that patient's chart; each analyte has its trend (an inline SVG chart with a table); a prescription has
several drug lines, each checked by the EMR; a lab or imaging order is cancelled with a reason; the
consultation note and each prescription are signed through the EMR (a signed note is no longer editable)."""

from __future__ import annotations

import re
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
from hospital.web.domain.trend import trend_chart

router = APIRouter(prefix="/doctor", tags=["doctor"])
Doctor = Annotated[WebSession, screen("doctor")]
VITALS_INT = ("systolic_bp", "diastolic_bp", "pulse", "spo2", "respiratory_rate")
VITALS_REAL = ("temperature_c", "weight_kg", "height_cm")
_ID = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def refused_text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


@router.get("", response_class=HTMLResponse, summary="The doctor's screen")
async def page(request: Request, sess: Doctor, room: str = "", encounter: str = "") -> Response:
    rooms, down = [], None
    try:
        rooms = await web(request).backends.admissions.rooms(token(request, sess))
    except BackendUnavailable as exc:
        down = exc.service
    return render(
        request,
        "doctor.html",
        rooms=rooms,
        rooms_down=down,
        room=room,
        encounter=encounter if _ID.match(encounter) else "",
        request_key=uuid.uuid4().hex,
    )


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
        "rx_lines": None,
        "rx_alerts": [],
        "rx_notice": "",
        "cancel_errors": {},
        "cancel_values": {},
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
    studies: dict[str, list[emr.ImagingStudy]] = {}
    for st in chart.studies:
        studies.setdefault(st.order_id, []).append(st)
    return {
        "results_by_order": _results_by_order(chart),
        "studies_by_order": studies,
        "refusals": {o.id: refusal_text(request, o.refusal_reason) for o in chart.orders if o.refusal_reason},
        "signed_note": signed_note(chart),
        "trend_codes": sorted({r.test_code for r in chart.results}),
    }


def signed_note(chart: emr.Chart) -> emr.Document | None:
    """The encounter's signed outpatient note (the consultation as signed), if any."""
    signed = [d for d in chart.documents if d.kind == NOTE_KIND and d.status in ("signed", "superseded")]
    return max(signed, key=lambda d: d.version) if signed else None


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
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        enc = await emr_api.encounter(encounter_id, tok)
        if signed_note(await emr_api.chart(enc.patient_id, encounter_id, tok)) is not None:
            errors["form"] = i18n.translate("sign.err.signed", language)
            return await _consultation(request, sess, encounter_id, 422, errors=errors)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=403, message=refused_text(request, exc))
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
    return render(
        request,
        "doctor/_orders.html",
        chart=chart,
        enc=enc,
        cancel_errors={},
        cancel_values={},
        **_orders_context(request, chart),
    )


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
async def drugs(request: Request, sess: Doctor, line: int = 0) -> Response:
    line = max(0, min(line, RX_MAX_LINES - 1))
    raw = request.query_params.get(f"drug_q-{line}", request.query_params.get("drug_q", ""))
    try:
        query = clean_text(raw, field="drug_q", max_length=SEARCH_MAX)
    except Invalid:
        error = i18n.translate("search.invalid", lang(request), max=SEARCH_MAX)
        return render(request, "doctor/_drugs.html", status=422, items=[], error=error, line=line)
    if len(query) < 2:
        return render(request, "doctor/_drugs.html", items=[], line=line)
    try:
        items = await web(request).backends.emr.drugs(query, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    return render(request, "doctor/_drugs.html", items=items, line=line)


RX_FIELDS = ("dose", "frequency", "quantity", "instructions")
RX_LINE_FIELDS = ("drug_code", "drug_q", "dose", "frequency", "duration_days", "quantity", "instructions")
RX_MAX_LINES = 20


def rx_lines(values: dict[str, str]) -> list[dict[str, str]]:
    """The prescription form's drug lines (fields ``<name>-<i>``), in order."""
    try:
        count = int(values.get("lines") or 1)
    except ValueError:
        count = 1
    count = max(1, min(count, RX_MAX_LINES))
    return [{f: values.get(f"{f}-{i}", "") for f in RX_LINE_FIELDS} for i in range(count)]


def _blank(line: dict[str, str]) -> bool:
    return not any(line.get(f, "").strip() for f in RX_LINE_FIELDS if f != "drug_q")


@router.post(
    "/encounters/{encounter_id}/prescriptions",
    response_class=HTMLResponse,
    summary="Prescribe several drugs: the EMR's checks first; each warning needs a reason (fragment)",
)
async def prescribe(request: Request, sess: Doctor, encounter_id: str) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    language = lang(request)
    lines = rx_lines(values)
    action = values.get("rx_action", "save")
    if action == "add":  # one more drug line; nothing is checked or saved yet
        if len(lines) < RX_MAX_LINES:
            lines.append({})
        return await _consultation(
            request, sess, encounter_id, rx_values=values, rx_lines=lines, rx_focus=True
        )
    if action.startswith("remove-") and action[7:].isdigit():
        drop = int(action[7:])
        lines = [x for i, x in enumerate(lines) if i != drop] or [{}]
        return await _consultation(request, sess, encounter_id, rx_values=values, rx_lines=lines)
    errors: dict[str, str] = {}
    # an empty extra line is left out; with nothing filled in at all, the first line says what is missing
    used = [(i, x) for i, x in enumerate(lines) if not (_blank(x) and len(lines) > 1)] or [(0, lines[0])]
    items: list[emr.PrescriptionItem] = []
    for i, x in used:
        if not x.get("drug_code", "").strip():
            errors[f"drug_code-{i}"] = i18n.translate("rx.err.drug", language)
        for name in ("dose", "frequency", "quantity"):
            if not x.get(name, "").strip():
                errors[f"{name}-{i}"] = i18n.translate("rx.err.required", language)
        days_text, days = x.get("duration_days", "").strip(), 0
        if days_text:
            if not days_text.isdigit() or int(days_text) < 1:
                errors[f"duration_days-{i}"] = i18n.translate("doc.err.number", language)
            else:
                days = int(days_text)
        items.append(
            emr.PrescriptionItem(
                drug_code=x.get("drug_code", "").strip(),
                duration_days=days,
                **{n: x.get(n, "").strip() for n in RX_FIELDS},
            )
        )
    if errors:
        return await _consultation(
            request, sess, encounter_id, 422, rx_errors=errors, rx_values=values, rx_lines=lines
        )
    req = emr.SavePrescriptionRequest(
        encounter_id=encounter_id,
        items=items,
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
                rx_lines=lines,
                rx_alerts=list(check.alerts),
            )
        saved = await emr_api.save_prescription(req, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        key = _rx_error_key(exc.field or "", values, [i for i, _ in used])
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
            rx_lines=lines,
            rx_alerts=alerts,
        )
    notice = i18n.translate("rx.saved", language, code=saved.code)
    return await _consultation(request, sess, encounter_id, rx_notice=notice)


def _rx_error_key(field: str, values: dict[str, str], line_of_item: list[int]) -> str:
    """The form field a refusal of the EMR names (``items.<n>.<field>`` is the n-th line sent)."""
    if field.startswith("overrides"):
        return next((k for k in values if k.startswith("override:")), "form")
    parts = field.split(".")
    if parts[0] == "items" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(line_of_item):
        line = line_of_item[int(parts[1])]
        leaf = parts[-1]
        return f"{leaf if leaf in (*RX_FIELDS, 'drug_code', 'duration_days') else 'drug_code'}-{line}"
    return "form"


@router.post(
    "/encounters/{encounter_id}/orders/{order_id}/cancel",
    response_class=HTMLResponse,
    summary="Cancel a lab or imaging order with a reason (fragment)",
)
async def cancel_order(request: Request, sess: Doctor, encounter_id: str, order_id: str) -> Response:
    form = await request.form()
    language = lang(request)
    reason = str(form.get("reason", "")).strip()
    if not reason:
        errors = {order_id: i18n.translate("ord.err.cancel_reason", language)}
        return await _consultation(request, sess, encounter_id, 422, cancel_errors=errors)
    try:
        await web(request).backends.emr.cancel_order(order_id, reason, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return await _consultation(
            request,
            sess,
            encounter_id,
            422,
            cancel_errors={order_id: refused_text(request, exc)},
            cancel_values={order_id: reason},
        )
    return await _consultation(
        request, sess, encounter_id, order_notice=i18n.translate("ord.cancel_sent", language)
    )


@router.get(
    "/encounters/{encounter_id}/trends/{test_code}",
    response_class=HTMLResponse,
    summary="One analyte's values over time: an SVG chart and the same values as a table (fragment)",
)
async def trend(request: Request, sess: Doctor, encounter_id: str, test_code: str) -> Response:
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        code = clean_text(test_code, field="test_code", max_length=40)
        enc = await emr_api.encounter(encounter_id, tok)
        got = await emr_api.trend(enc.patient_id, code, tok)
    except Invalid:
        return render(
            request,
            "cashier/_find_error.html",
            status=422,
            message=i18n.translate("search.invalid", lang(request), max=40),
        )
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "cashier/_find_error.html", status=403, message=refused_text(request, exc))
    chart = trend_chart(
        [
            (p.observed_at.ToDatetime(), p.numeric_value if p.numeric else None, p.value, p.flag)
            for p in got.points
        ],
        got.reference_range,
    )
    return render(request, "doctor/_trend.html", trend=got, code=code, svg=chart)


NOTE_KIND = "outpatient_note"


def _note_sections(chart: emr.Chart, language: i18n.Lang) -> list[emr.DocumentSection]:
    """The outpatient note's sections (EMR template ``outpatient_note``) from the saved consultation."""
    c = chart.consultation
    vitals = []
    for name in (
        "systolic_bp",
        "diastolic_bp",
        "pulse",
        "temperature_c",
        "spo2",
        "respiratory_rate",
        "weight_kg",
        "height_cm",
    ):
        if c.vitals.HasField(name):
            vitals.append(f"{i18n.translate('vital.' + name, language)}: {getattr(c.vitals, name):g}")
    examination = c.examination + (("\n" if c.examination else "") + "; ".join(vitals) if vitals else "")
    results = "; ".join(f"{r.test_name or r.test_code} {r.value} {r.unit}".strip() for r in chart.results)
    diagnoses = "; ".join(f"{d.icd10_code} {d.name}".strip() for d in c.diagnoses)
    advice = "; ".join(p.advice for p in chart.prescriptions if p.advice)
    sections = {
        "reason": c.chief_complaint,
        "history": c.history,
        "examination": examination,
        "paraclinical": results,
        "diagnosis": diagnoses,
        "treatment": c.treatment_plan,
        "advice": advice,
    }
    return [emr.DocumentSection(code=k, text=v) for k, v in sections.items()]


@router.post(
    "/encounters/{encounter_id}/sign",
    response_class=HTMLResponse,
    summary="Sign the consultation note through the EMR (fragment); afterwards it cannot be edited",
)
async def sign_note(request: Request, sess: Doctor, encounter_id: str) -> Response:
    language = lang(request)
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        enc = await emr_api.encounter(encounter_id, tok)
        chart = await emr_api.chart(enc.patient_id, encounter_id, tok)
        if signed_note(chart) is not None:
            return await _consultation(
                request, sess, encounter_id, notice=i18n.translate("sign.already", language)
            )
        if chart.consultation.version == 0:
            errors = {"sign": i18n.translate("sign.err.unsaved", language)}
            return await _consultation(request, sess, encounter_id, 422, errors=errors)
        doc = await emr_api.save_document(
            emr.SaveDocumentRequest(
                encounter_id=encounter_id,
                kind=NOTE_KIND,
                template_code=NOTE_KIND,
                sections=_note_sections(chart, language),
                request_id=f"web-note-{encounter_id}-v{chart.consultation.version}",
            ),
            tok,
        )
        if doc.status == "draft":
            await emr_api.sign_document(doc.id, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {"sign": refused_text(request, exc)}
        return await _consultation(request, sess, encounter_id, 422, errors=errors)
    return await _consultation(request, sess, encounter_id, notice=i18n.translate("sign.done", language))


@router.post(
    "/encounters/{encounter_id}/prescriptions/{prescription_id}/sign",
    response_class=HTMLResponse,
    summary="Sign a draft prescription through the EMR (fragment)",
)
async def sign_prescription(
    request: Request, sess: Doctor, encounter_id: str, prescription_id: str
) -> Response:
    language = lang(request)
    emr_api, tok = web(request).backends.emr, token(request, sess)
    try:
        enc = await emr_api.encounter(encounter_id, tok)
        chart = await emr_api.chart(enc.patient_id, encounter_id, tok)
        rx = next((p for p in chart.prescriptions if p.id == prescription_id), None)
        if rx is None:
            errors = {"form": i18n.translate("rx.err.unknown", language)}
            return await _consultation(request, sess, encounter_id, 422, rx_errors=errors)
        if rx.status != "signed":
            await emr_api.sign_document(rx.document_id, tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        errors = {f"sign:{prescription_id}": refused_text(request, exc)}
        return await _consultation(request, sess, encounter_id, 422, rx_errors=errors)
    notice = i18n.translate("rx.signed", language, code=rx.code)
    return await _consultation(request, sess, encounter_id, rx_notice=notice)


@router.post(
    "/queue/call",
    response_class=HTMLResponse,
    summary="Call the next patient of the room (admissions: the displays follow) and open their chart",
)
async def call_next(request: Request, sess: Doctor) -> Response:
    form = await request.form()
    language = lang(request)
    room = str(form.get("room", "")).strip()
    key = str(form.get("request_key", "")).strip() or uuid.uuid4().hex
    w, tok = web(request), token(request, sess)
    if not room:
        return _call_box(request, room, error=i18n.translate("doc.err.room", language))
    try:
        called = await w.once.run(
            f"call:{sess.user.id}:{key}", lambda: w.backends.admissions.call_ticket(room, tok)
        )
    except BackendUnavailable as exc:
        return _call_box(request, room, down=exc.service)
    except BackendRefused as exc:
        return _call_box(request, room, error=refused_text(request, exc))
    status = i18n.translate("doc.calling", language, n=called.ticket_number, name=called.patient_name)
    box = _call_box(request, room, status=status, oob=True).body.decode()
    try:
        queue_items = await w.backends.emr.my_queue(room, tok)
    except BackendUnavailable as exc:
        page = render(request, "_unavailable.html", service=exc.service)
        return _with_box(page, box)
    enc = next((e for e in queue_items if e.visit_id == called.visit_id), None)
    if enc is None:
        page = render(request, "doctor/_not_in_emr.html", called=called)
    else:
        page = await _consultation(request, sess, enc.id, notice=status, focus_complaint=True)
    return _with_box(page, box)


def _call_box(
    request: Request,
    room: str,
    *,
    error: str = "",
    status: str = "",
    down: str | None = None,
    oob: bool = False,
) -> Response:
    resp = render(
        request,
        "doctor/_call.html",
        room=room,
        call_error=error,
        call_status=status,
        call_down=down,
        request_key=uuid.uuid4().hex,
        oob=oob,
    )
    if not oob:  # an error or a down admissions shows beside the button; the chart stays as it was
        resp.headers["HX-Retarget"] = "#call-box"
        resp.headers["HX-Reswap"] = "outerHTML"
    return resp


def _with_box(page: Response, box: str) -> Response:
    """The chart with the call box swapped out of band, and the queue told to refresh."""
    body = page.body.decode() + box
    resp = HTMLResponse(body, status_code=page.status_code, headers={"Cache-Control": "no-store"})
    resp.headers["HX-Trigger"] = "queue-changed"
    return resp
