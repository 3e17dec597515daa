"""Ward: the bed board (every bed and who lies in it) and, from a bed, admit an inpatient into it, move
the patient to another bed of this or another ward (department), or discharge them — through admissions'
AdmitInpatient / TransferInpatient / DischargeInpatient. A bed taken meanwhile by someone else is said
so next to the choice and the board is redrawn."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, lang, render, screen, token, web
from hospital.web.api.pages.reception import SEX, birth
from hospital.web.domain.accounts import SEARCH_MAX

router = APIRouter(prefix="/ward", tags=["ward"])
Ward = Annotated[WebSession, screen("ward")]
DISCHARGE_TYPES = (
    "recovered",
    "improved",
    "unchanged",
    "worse",
    "transferred_out",
    "against_advice",
    "deceased",
)


def refused_text(request: Request, exc: BackendRefused, **values: Any) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request), **values) if i18n.has(key) else exc.message


def group(beds: list[adm.Bed]) -> list[dict[str, Any]]:
    wards: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for b in beds:
        w = wards.setdefault(
            b.ward_code, {"code": b.ward_code, "name": b.ward_name, "beds": [], "occupied": 0}
        )
        w["beds"].append(b)
        w["occupied"] += int(b.occupied)
    return list(wards.values())


async def _beds(request: Request, sess: WebSession) -> tuple[list[adm.Bed], str | None]:
    """Every bed (admissions' ListBeds, audited with the patients on it), or the service that is down."""
    try:
        return await web(request).backends.admissions.beds("", token(request, sess)), None
    except BackendUnavailable as exc:
        return [], exc.service


def _board_context(beds: list[adm.Bed], ward: str) -> dict[str, Any]:
    wards = group(beds)
    code = ward.strip().upper()
    shown = [w for w in wards if w["code"] == code] if code else wards
    return {"wards": shown, "all_wards": wards, "ward": code, "unknown_ward": bool(code) and not shown}


@router.get("", response_class=HTMLResponse, summary="The bed board")
async def page(request: Request, sess: Ward, ward: str = "") -> Response:
    beds, down = await _beds(request, sess)
    return render(request, "ward.html", down=down, **_board_context(beds, ward))


def _panel(
    request: Request,
    beds: list[adm.Bed],
    code: str,
    ward: str,
    status: int = 200,
    board: bool = False,
    **extra: Any,
) -> Response:
    """The side panel for one bed (admit into a free bed; transfer or discharge its patient), and with
    ``board`` the board redrawn out of band (after a change, or a bed found taken)."""
    bed = next((b for b in beds if b.code == code), None)
    free = [b for b in beds if not b.occupied and b.code != code]
    ctx: dict[str, Any] = {
        "bed": bed,
        "code": code,
        "free_wards": group(free),
        "errors": {},
        "values": {},
        "discharge_types": DISCHARGE_TYPES,
        "oob_board": board,
        "patients": [],
        "query": "",
        "birth": birth,
        "sex": SEX,
    }
    ctx.update(_board_context(beds, ward))
    ctx.update(extra)
    return render(request, "ward/_panel.html", status=status, **ctx)


@router.get("/beds/{code}", response_class=HTMLResponse, summary="What can be done with one bed (fragment)")
async def bed_panel(request: Request, sess: Ward, code: str, ward: str = "") -> Response:
    beds, down = await _beds(request, sess)
    if down:
        return render(request, "_unavailable.html", service=down)
    return _panel(request, beds, code, ward)


async def _search(request: Request, sess: WebSession, q: str) -> tuple[list[adm.Patient], str, str]:
    """(patients, the query as kept, an error) for the admit form's patient search."""
    try:
        query = clean_text(q, field="q", max_length=SEARCH_MAX)
    except Invalid:
        return [], "", i18n.translate("search.invalid", lang(request), max=SEARCH_MAX)
    if len(query) < 2:
        return [], query, ""
    try:
        return await web(request).backends.admissions.search(query, token(request, sess)), query, ""
    except BackendRefused:
        return [], query, ""


@router.get("/patients", response_class=HTMLResponse, summary="Patients to admit, as you type (fragment)")
async def patients(request: Request, sess: Ward, q: str = "") -> Response:
    try:
        items, query, error = await _search(request, sess, q)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    return render(
        request,
        "ward/_patients.html",
        status=422 if error else 200,
        patients=items,
        query=query,
        search_error=error,
        birth=birth,
        sex=SEX,
        errors={},
    )


def _bed_error(request: Request, exc: BackendRefused, bed: str) -> str:
    return refused_text(request, exc, bed=bed)


@router.post("/admit", response_class=HTMLResponse, summary="Admit a patient into a free bed (fragment)")
async def admit(
    request: Request,
    sess: Ward,
    bed: Annotated[str, Form()] = "",
    patient_id: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "",
    ward: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    tok = token(request, sess)
    errors: dict[str, str] = {}
    name = ""
    if not patient_id:
        errors["patient_id"] = i18n.translate("ward.err.patient", language)
    else:
        try:
            stay = await web(request).backends.admissions.admit(patient_id, bed, tok)
            patient = await web(request).backends.admissions.patient(stay.patient_id, tok)
            name = patient.full_name
        except BackendUnavailable as exc:
            return render(request, "_unavailable.html", service=exc.service)
        except BackendRefused as exc:
            key = "bed" if exc.field in ("bed", "bed_code") or exc.code.startswith("bed.") else "patient_id"
            errors[key] = _bed_error(request, exc, bed)
    beds, down = await _beds(request, sess)
    if down:
        return render(request, "_unavailable.html", service=down)
    if errors:
        found, query, search_error = await _search(request, sess, q)
        return _panel(
            request,
            beds,
            bed,
            ward,
            status=422,
            board="bed" in errors,
            errors=errors,
            patients=found,
            query=query,
            search_error=search_error,
            chosen=patient_id,
        )
    notice = i18n.translate("ward.admitted", language, name=name, bed=bed)
    return _panel(request, beds, bed, ward, board=True, notice=notice)


@router.post("/transfer", response_class=HTMLResponse, summary="Move the patient to another bed (fragment)")
async def transfer(
    request: Request,
    sess: Ward,
    bed: Annotated[str, Form()] = "",
    admission_id: Annotated[str, Form()] = "",
    to_bed: Annotated[str, Form()] = "",
    ward: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    errors: dict[str, str] = {}
    if not to_bed:
        errors["to_bed"] = i18n.translate("ward.err.to_bed", language)
    else:
        try:
            await web(request).backends.admissions.transfer(admission_id, to_bed, token(request, sess))
        except BackendUnavailable as exc:
            return render(request, "_unavailable.html", service=exc.service)
        except BackendRefused as exc:
            errors["to_bed"] = _bed_error(request, exc, to_bed)
    beds, down = await _beds(request, sess)
    if down:
        return render(request, "_unavailable.html", service=down)
    if errors:
        return _panel(
            request, beds, bed, ward, status=422, board=True, errors=errors, values={"to_bed": to_bed}
        )
    notice = i18n.translate("ward.transferred", language, from_bed=bed, to_bed=to_bed)
    return _panel(request, beds, to_bed, ward, board=True, notice=notice)


@router.post("/discharge", response_class=HTMLResponse, summary="Discharge the patient (fragment)")
async def discharge(
    request: Request,
    sess: Ward,
    bed: Annotated[str, Form()] = "",
    admission_id: Annotated[str, Form()] = "",
    discharge_type: Annotated[str, Form()] = "",
    ward: Annotated[str, Form()] = "",
) -> Response:
    language = lang(request)
    errors: dict[str, str] = {}
    if discharge_type not in DISCHARGE_TYPES:
        errors["discharge_type"] = i18n.translate("ward.err.discharge_type", language)
    else:
        try:
            await web(request).backends.admissions.discharge(
                admission_id, discharge_type, token(request, sess)
            )
        except BackendUnavailable as exc:
            return render(request, "_unavailable.html", service=exc.service)
        except BackendRefused as exc:
            errors["discharge_type"] = refused_text(request, exc, bed=bed)
    beds, down = await _beds(request, sess)
    if down:
        return render(request, "_unavailable.html", service=down)
    if errors:
        return _panel(request, beds, bed, ward, status=422, board=True, errors=errors)
    notice = i18n.translate("ward.discharged", language, bed=bed)
    return _panel(request, beds, bed, ward, board=True, notice=notice)
