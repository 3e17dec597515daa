"""Reception: scan a CCCD / BHYT QR (a USB reader types it into the focused field and presses Enter), match or
create the patient, check conflicts, open the visit and print the queue ticket; patient search as you type."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, lang, render, screen, token, web
from hospital.web.domain.accounts import SEARCH_MAX

router = APIRouter(prefix="/reception", tags=["reception"])
Reception = Annotated[WebSession, screen("reception")]
SEX = {adm.SEX_MALE: "male", adm.SEX_FEMALE: "female"}
KINDS = {
    "insured": adm.VISIT_KIND_INSURED,
    "fee_paying": adm.VISIT_KIND_FEE_PAYING,
    "emergency": adm.VISIT_KIND_EMERGENCY,
}


def refused_text(request: Request, exc: BackendRefused, **values: Any) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request), **values) if i18n.has(key) else exc.message


def birth(value: Any) -> str:
    """A PartialDate (or 'YYYY-MM-DD' text) as dd/mm/yyyy, mm/yyyy or yyyy."""
    if isinstance(value, str):
        parts = value.split("-")
    else:
        parts = (
            [f"{value.year:04d}"]
            + ([f"{value.month:02d}"] if value.month else [])
            + ([f"{value.day:02d}"] if value.day else [])
        )
    return "/".join(reversed(parts)) if parts and parts[0] else ""


async def _rooms(request: Request, sess: WebSession) -> tuple[list[adm.Room], str | None]:
    try:
        return await web(request).backends.admissions.rooms(token(request, sess)), None
    except BackendUnavailable as exc:
        return [], exc.service


@router.get("", response_class=HTMLResponse, summary="The reception screen")
async def page(request: Request, sess: Reception) -> Response:
    return render(request, "reception.html")


@router.get("/search", response_class=HTMLResponse, summary="Patients matching the query (fragment)")
async def search(request: Request, sess: Reception, q: str = "") -> Response:
    try:
        query = clean_text(q, field="q", max_length=SEARCH_MAX)
    except Invalid:
        error = i18n.translate("search.invalid", lang(request), max=SEARCH_MAX)
        return render(request, "reception/_search.html", status=422, items=[], query="", error=error)
    if len(query) < 2:
        return render(request, "reception/_search.html", items=[], query=query)
    try:
        items = await web(request).backends.admissions.search(query, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused:
        items = []
    return render(request, "reception/_search.html", items=items, query=query, birth=birth, sex=SEX)


@router.post(
    "/scan", response_class=HTMLResponse, summary="Read a scanned card QR: match, conflicts (fragment)"
)
async def scan(request: Request, sess: Reception, qr: Annotated[str, Form()] = "") -> Response:
    w = web(request)
    tok = token(request, sess)
    try:
        found = await w.backends.admissions.scan(qr.strip(), tok)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "reception/_scan_error.html", status=422, message=refused_text(request, exc))
    rooms, rooms_down = await _rooms(request, sess)
    return render(
        request,
        "reception/_visit_form.html",
        found=found,
        patient=None,
        qr=qr.strip(),
        rooms=rooms,
        rooms_down=rooms_down,
        birth=birth,
        sex=SEX,
        errors={},
        values={},
        request_key=secrets.token_urlsafe(16),
    )


@router.get("/patients/{patient_id}", response_class=HTMLResponse, summary="Open a visit for a found patient")
async def chosen(request: Request, sess: Reception, patient_id: str) -> Response:
    try:
        patient = await web(request).backends.admissions.patient(patient_id, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "reception/_scan_error.html", status=404, message=refused_text(request, exc))
    rooms, rooms_down = await _rooms(request, sess)
    return render(
        request,
        "reception/_visit_form.html",
        found=None,
        patient=patient,
        qr="",
        rooms=rooms,
        rooms_down=rooms_down,
        birth=birth,
        sex=SEX,
        errors={},
        values={},
        request_key=secrets.token_urlsafe(16),
    )


@router.post(
    "/visits",
    response_class=HTMLResponse,
    summary="Open the visit (creating the patient from the card "
    "if chosen) and show the queue ticket (fragment)",
)
async def open_visit(
    request: Request,
    sess: Reception,
    request_key: Annotated[str, Form()],
    patient: Annotated[str, Form()] = "",
    qr: Annotated[str, Form()] = "",
    room: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "fee_paying",
    confirm: Annotated[str, Form()] = "",
    conflicts: Annotated[int, Form()] = 0,
) -> Response:
    w = web(request)
    language = lang(request)
    tok = token(request, sess)
    errors: dict[str, str] = {}
    if not patient:
        errors["patient"] = i18n.translate("rec.err.choose", language)
    if not room:
        errors["room"] = i18n.translate("rec.err.room", language)
    if conflicts and not confirm:
        errors["confirm"] = i18n.translate("rec.err.confirm", language)
    values = {"patient": patient, "room": room, "kind": kind, "confirm": confirm}

    async def form_again(status: int) -> Response:
        found, chosen_patient = None, None
        try:
            if qr:
                found = await w.backends.admissions.scan(qr, tok)
            elif patient and patient != "new":
                chosen_patient = await w.backends.admissions.patient(patient, tok)
        except BackendUnavailable as exc:
            return render(request, "_unavailable.html", service=exc.service)
        except BackendRefused:
            return render(
                request,
                "reception/_scan_error.html",
                status=422,
                message=i18n.translate("rec.err.scan_again", language),
            )
        rooms, rooms_down = await _rooms(request, sess)
        return render(
            request,
            "reception/_visit_form.html",
            status=status,
            found=found,
            patient=chosen_patient,
            qr=qr,
            rooms=rooms,
            rooms_down=rooms_down,
            birth=birth,
            sex=SEX,
            errors=errors,
            values=values,
            request_key=request_key,
        )

    if errors:
        return await form_again(422)

    async def work() -> tuple[adm.Patient, adm.Visit]:
        if patient == "new":
            found = await w.backends.admissions.scan(qr, tok)
            ident = found.identity
            person = await w.backends.admissions.register(
                adm.RegisterPatientRequest(
                    full_name=ident.full_name,
                    birth_date=ident.birth_date,
                    sex=ident.sex,
                    cccd=ident.cccd,
                    bhyt_number=ident.bhyt_number,
                    address_line=ident.address,
                    bhyt_valid_from=ident.bhyt_valid_from,
                    bhyt_valid_to=ident.bhyt_valid_to,
                    bhyt_registered_facility=ident.registered_facility,
                    request_id=f"web-{request_key}",
                ),
                tok,
            )
        else:
            person = await w.backends.admissions.patient(patient, tok)
        card = person.insurance_cards[0].number if kind == "insured" and person.insurance_cards else ""
        visit = await w.backends.admissions.open_visit(
            adm.OpenVisitRequest(
                patient_id=person.id,
                room_code=room,
                kind=KINDS.get(kind, adm.VISIT_KIND_FEE_PAYING),
                insurance_card_number=card,
            ),
            tok,
        )
        return person, visit

    try:
        person, visit = await w.once.run(f"visit:{sess.user.id}:{request_key}", work)
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        field = {"room": "room", "room_code": "room", "kind": "kind"}.get(exc.field or "", "patient")
        errors[field] = refused_text(request, exc)
        return await form_again(422)
    rooms, _ = await _rooms(request, sess)
    room_name = next((r.name for r in rooms if r.code == visit.room_code), visit.room_code)
    return render(
        request, "reception/_ticket.html", person=person, visit=visit, room_name=room_name, birth=birth
    )
