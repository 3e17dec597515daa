"""HTTP API for the web front end, kiosks and integrators (OpenAPI at /docs and /openapi.json)."""

from __future__ import annotations

import weakref
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hospital.admissions.api.fhir import router as fhir_router
from hospital.admissions.api.insurance import router as insurance_router
from hospital.admissions.app.patients import Caller, NewPatient
from hospital.admissions.app.queue_display import DisplaysFull, sse
from hospital.admissions.domain.identity import ScanError
from hospital.chassis.errors import DomainError, Invalid
from hospital.chassis.fields import INT32_MAX, Code, Id, code, line, text
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, problem, require_roles

CLINICAL = ("receptionist", "nurse", "doctor", "lab_technician", "radiographer", "radiologist", "cashier")
ANY_ROLE = (*CLINICAL, "admin", "auditor")


def caller(request: Request, principal: Principal) -> Caller:
    return Caller(principal=principal, source=client_address(request))


def Role(*roles: str) -> Any:  # reads like a type in signatures
    return Annotated[Principal, Depends(require_roles(*roles))]


Name = line(200)  # a blank name gets the domain's own error (patient.full_name)
Place = line(100)  # ward, district, ethnicity, occupation
Address = line(300)
Phone = code(20)
IdNumber = code(20)  # CCCD, CMND, BHYT number: the domain checks the format
Ticket = Annotated[int, Field(ge=1, le=INT32_MAX)]


class PatientIn(BaseModel):
    """Every text field is bounded and cleaned (chassis ``fields``): one line, no control characters,
    Unicode NFC; a longer or dirty value is refused with 422 naming the field."""

    full_name: Name = Field(..., examples=["Nguyễn Văn An"])
    birth_date: code(10) = Field(
        ..., description="YYYY-MM-DD, or YYYY when only the year is known", examples=["1985-09-04"]
    )
    sex: Literal["male", "female"]
    cccd: IdNumber | None = Field(None, description="12-digit citizen ID", examples=["001085012345"])
    old_id_number: IdNumber | None = Field(None, description="9-digit CMND")
    bhyt_number: IdNumber | None = Field(None, examples=["HS4010120878811"])
    bhyt_valid_from: date | None = None
    bhyt_valid_to: date | None = None
    bhyt_registered_facility: code(20) | None = Field(None, examples=["01 - 043"])
    bhyt_five_year_date: date | None = None
    phone: Phone | None = Field(None, examples=["0912345678"])
    address_line: Address | None = Field(
        None, description="at most 300 characters", examples=["Số 12 ngõ 34"]
    )
    ward: Place | None = Field(None, description="at most 100 characters")
    district: Place | None = Field(None, description="at most 100 characters")
    province_code: code(2) | None = None
    ethnicity: Place | None = Field(None, examples=["Kinh"])
    occupation: Place | None = None
    guardian_name: Name | None = None
    guardian_phone: Phone | None = None
    request_id: code(100) | None = Field(
        None, description="idempotency key: a retry returns the same patient"
    )


class PatientPatch(BaseModel):
    full_name: Name | None = None
    birth_date: code(10) | None = None
    sex: Literal["male", "female"] | None = None
    cccd: IdNumber | None = None
    old_id_number: IdNumber | None = None
    phone: Phone | None = None
    address_line: Address | None = None
    ward: Place | None = None
    district: Place | None = None
    province_code: code(2) | None = None
    ethnicity: Place | None = None
    occupation: Place | None = None
    guardian_name: Name | None = None
    guardian_phone: Phone | None = None


class CardIn(BaseModel):
    number: IdNumber = Field(..., examples=["HS4010120878811"])
    valid_from: date | None = None
    valid_to: date | None = None
    registered_facility: code(20) | None = Field(None, examples=["01 - 043"])
    five_year_date: date | None = None


class MergeIn(BaseModel):
    merged_id: Id = Field(..., description="the duplicate record to fold into this one")


class ScanIn(BaseModel):
    qr: text(4000, min_length=1) = Field(..., description="raw text of a CCCD or BHYT card QR code")


class VisitIn(BaseModel):
    patient_id: Id
    room: code(20, min_length=1) = Field(
        ..., description="clinic room code from GET /api/v1/rooms", examples=["P101"]
    )
    kind: Literal["insured", "fee_paying", "emergency", "referral"] = "fee_paying"
    insurance_card_number: IdNumber | None = None
    referral_code: Code | None = None


class QueueActionIn(BaseModel):
    action: Literal["next", "recall", "skip"] = "next"
    ticket_number: Ticket | None = None


class DisplayLinkIn(BaseModel):
    valid_days: int = Field(90, ge=1, le=366, description="how long the screen may use the link")


DisplayExp = Annotated[int | None, Query(ge=0, le=2**40, description="display link: expiry (Unix time)")]
DisplaySig = Annotated[str | None, Query(max_length=64, description="display link: signature")]


class AdmitIn(BaseModel):
    patient_id: Id
    bed: code(30, min_length=1) = Field(..., examples=["NOI-101-01"])
    visit_id: Id | None = None


class TransferIn(BaseModel):
    bed: code(30, min_length=1)


class DischargeIn(BaseModel):
    discharge_type: code(30, min_length=1) = Field(
        "improved", examples=["recovered", "improved", "transferred_out", "deceased"]
    )


def build_http(services: Any) -> FastAPI:
    app = FastAPI(
        title="Admissions (HIS)",
        version="1.0",
        description="Patient index with CCCD/BHYT scanning, outpatient queues, inpatient ADT and beds. "
        "Every call needs `Authorization: Bearer <token>` (local stack: `make token ROLE=...`).",
    )
    api = APIRouter(prefix="/api/v1")
    patients, visits, inpatient, reference = (
        services.patients,
        services.visits,
        services.inpatient,
        services.reference,
    )

    @app.exception_handler(ScanError)
    async def _scan_error(_: Request, exc: ScanError) -> Any:
        extra = {"field": exc.field} if exc.field else {}
        return problem(422, "Unreadable card QR", exc.message, exc.code, **extra)

    @api.post("/patients/scan", tags=["patients"], summary="Parse a CCCD/BHYT QR; candidates and conflicts")
    async def scan(
        body: ScanIn, request: Request, who: Role("receptionist", "nurse", "doctor")
    ) -> dict[str, Any]:
        return await patients.scan(body.qr, caller(request, who))

    @api.post("/patients", status_code=201, tags=["patients"], summary="Register a patient")
    async def register(body: PatientIn, request: Request, who: Role("receptionist")) -> dict[str, Any]:
        return await patients.register(NewPatient(**body.model_dump()), caller(request, who))

    @api.get(
        "/patients",
        tags=["patients"],
        summary="Search: name (with or without diacritics), CCCD, BHYT, "
        "phone, patient code, birth year; best match first",
    )
    async def search(
        request: Request,
        who: Role(*CLINICAL),
        q: str = Query(..., min_length=1),
        limit: int = Query(20, ge=1, le=100),
    ) -> dict[str, Any]:
        return {"items": await patients.search(q, caller(request, who), limit)}

    @api.get("/patients/{patient_id}", tags=["patients"], summary="Read a patient (audited)")
    async def get_patient(patient_id: str, request: Request, who: Role(*CLINICAL)) -> dict[str, Any]:
        return await patients.get(patient_id, caller(request, who))

    @api.patch("/patients/{patient_id}", tags=["patients"], summary="Correct demographic fields")
    async def update_patient(
        patient_id: str, body: PatientPatch, request: Request, who: Role("receptionist")
    ) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            raise Invalid("patient.no_changes", "nothing to change")
        return await patients.update(patient_id, changes, caller(request, who))

    @api.post("/patients/{patient_id}/cards", tags=["patients"], summary="Add a BHYT card")
    async def add_card(
        patient_id: str, body: CardIn, request: Request, who: Role("receptionist")
    ) -> dict[str, Any]:
        return await patients.add_card(
            patient_id,
            body.number,
            caller(request, who),
            body.valid_from,
            body.valid_to,
            body.registered_facility,
            body.five_year_date,
        )

    @api.get("/patients/{patient_id}/duplicates", tags=["patients"], summary="Likely duplicate records")
    async def duplicates(
        patient_id: str, request: Request, who: Role("receptionist", "admin")
    ) -> dict[str, Any]:
        return {"items": await services.merge.candidates(patient_id, caller(request, who))}

    @api.post(
        "/patients/{patient_id}/merge",
        tags=["patients"],
        summary="Merge a duplicate into this patient (identifiers and history move here)",
    )
    async def merge(
        patient_id: str, body: MergeIn, request: Request, who: Role("receptionist", "admin")
    ) -> dict[str, Any]:
        return await services.merge.merge(patient_id, body.merged_id, caller(request, who))

    @api.get("/rooms", tags=["reference"], summary="Outpatient clinic rooms")
    async def rooms(_: Role(*ANY_ROLE)) -> dict[str, Any]:
        return {"items": await reference.rooms()}

    @api.get("/departments", tags=["reference"])
    async def departments(_: Role(*ANY_ROLE)) -> dict[str, Any]:
        return {"items": await reference.departments()}

    @api.get("/wards", tags=["reference"])
    async def wards(_: Role(*ANY_ROLE)) -> dict[str, Any]:
        return {"items": await reference.wards()}

    @api.get("/provinces", tags=["reference"])
    async def provinces(_: Role(*ANY_ROLE)) -> dict[str, Any]:
        return {"items": reference.provinces()}

    @api.post(
        "/visits", status_code=201, tags=["visits"], summary="Open a visit; returns it with its queue ticket"
    )
    async def open_visit(body: VisitIn, request: Request, who: Role("receptionist")) -> dict[str, Any]:
        return await visits.open(
            body.patient_id,
            body.room,
            caller(request, who),
            body.kind,
            body.insurance_card_number,
            body.referral_code,
        )

    @api.get("/visits/{visit_id}", tags=["visits"])
    async def get_visit(visit_id: str, request: Request, who: Role(*CLINICAL)) -> dict[str, Any]:
        return await visits.get(visit_id, caller(request, who))

    @api.post("/visits/{visit_id}/close", tags=["visits"])
    async def close_visit(
        visit_id: str, request: Request, who: Role("doctor", "receptionist")
    ) -> dict[str, Any]:
        return await visits.close(visit_id, caller(request, who))

    @api.post("/queues/{room}/next", tags=["queues"], summary="Call the next ticket (or recall / skip)")
    async def queue_next(
        room: str, request: Request, who: Role("doctor", "nurse"), body: QueueActionIn | None = None
    ) -> dict[str, Any]:
        body = body or QueueActionIn()
        return await visits.call(room, caller(request, who), body.action, body.ticket_number)

    @api.post(
        "/queues/{room}/display-link",
        tags=["queues"],
        summary="A signed link for a waiting-room screen of this room (no login on the screen)",
    )
    async def display_link(
        room: str,
        request: Request,
        who: Role("receptionist", "nurse", "admin"),
        body: DisplayLinkIn | None = None,
    ) -> dict[str, Any]:
        body = body or DisplayLinkIn()
        return await services.display_links.issue(room, caller(request, who), body.valid_days)

    @api.get(
        "/queues/{room}",
        tags=["queues"],
        summary="Queue state for a waiting-room display (numbers only); "
        "with the room's display link (exp, sig) or a bearer token",
    )
    async def queue_state(
        room: str, request: Request, exp: DisplayExp = None, sig: DisplaySig = None
    ) -> dict[str, Any]:
        await services.display_links.check_access(
            room, exp, sig, request.headers.get("authorization"), request.app.state.verifier
        )
        return await visits.queue(room)

    @api.get(
        "/queues/{room}/stream",
        tags=["queues"],
        summary="Live queue (Server-Sent Events): the state now, then each change as it happens; with the "
        "room's display link (exp, sig) or a bearer token. 503 when the server's display streams are full",
    )
    async def queue_stream(
        room: str, request: Request, exp: DisplayExp = None, sig: DisplaySig = None
    ) -> StreamingResponse:
        await services.display_links.check_access(
            room, exp, sig, request.headers.get("authorization"), request.app.state.verifier
        )
        try:
            release = services.displays.reserve(room)
        except DisplaysFull as exc:
            raise DomainError("queue.displays_full", str(exc), status=503) from None

        async def events() -> Any:
            try:
                async for state in services.displays.watch(room):
                    yield sse(state)
            finally:
                release()

        stream = events()
        weakref.finalize(stream, release)  # also when the stream is never started
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.post("/admissions", status_code=201, tags=["inpatient"], summary="Admit into a bed")
    async def admit(body: AdmitIn, request: Request, who: Role("nurse", "doctor")) -> dict[str, Any]:
        return await inpatient.admit(body.patient_id, body.bed, caller(request, who), body.visit_id)

    @api.post("/admissions/{admission_id}/transfer", tags=["inpatient"])
    async def transfer(
        admission_id: str, body: TransferIn, request: Request, who: Role("nurse", "doctor")
    ) -> dict[str, Any]:
        return await inpatient.transfer(admission_id, body.bed, caller(request, who))

    @api.post("/admissions/{admission_id}/discharge", tags=["inpatient"])
    async def discharge(
        admission_id: str, body: DischargeIn, request: Request, who: Role("doctor", "nurse")
    ) -> dict[str, Any]:
        return await inpatient.discharge(admission_id, body.discharge_type, caller(request, who))

    @api.get("/beds", tags=["inpatient"], summary="Bed board (all wards, or one)")
    async def bed_board(
        request: Request, who: Role("nurse", "doctor", "receptionist"), ward: str | None = None
    ) -> dict[str, Any]:
        items = await inpatient.bed_board(ward, caller(request, who))
        if ward and not items:
            raise Invalid("ward.unknown", f"no ward {ward!r}", field="ward")
        return {"items": items}

    app.include_router(api)
    app.include_router(fhir_router(services, caller))
    app.include_router(insurance_router(services, caller))
    return app
