"""gRPC API for other services (contract: proto/hospital/admissions/v1/admissions.proto)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import grpc

from hospital.admissions.api.http.schemas import AdmitIn, DischargeIn, TransferIn
from hospital.admissions.app.mapping import SEX, VISIT_KIND, patient_proto, stay_proto, visit_proto
from hospital.admissions.app.patients import Caller, NewPatient
from hospital.admissions.app.queue_display import DisplaysFull
from hospital.admissions.app.services import Services
from hospital.admissions.domain.identity import ScanError
from hospital.chassis.errors import Invalid
from hospital.chassis.rpc import principal
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["AdmissionsService"].full_name
CLINICAL = ("receptionist", "nurse", "doctor", "lab_technician", "radiographer", "radiologist", "cashier")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/GetPatient": CLINICAL,
    f"/{SERVICE}/SearchPatients": CLINICAL,
    f"/{SERVICE}/RegisterPatient": ("receptionist",),
    f"/{SERVICE}/GetVisit": CLINICAL,
    f"/{SERVICE}/ListActiveAdmissions": ("nurse", "doctor"),
    f"/{SERVICE}/ScanCard": ("receptionist", "nurse", "doctor"),
    f"/{SERVICE}/OpenVisit": ("receptionist",),
    f"/{SERVICE}/ListRooms": (*CLINICAL, "admin", "auditor"),
    f"/{SERVICE}/WatchQueue": (*CLINICAL, "admin", "auditor"),
    f"/{SERVICE}/CreateDisplayLink": ("receptionist", "nurse", "admin"),
    f"/{SERVICE}/CallTicket": ("doctor", "nurse"),
    f"/{SERVICE}/ListBeds": ("nurse", "doctor", "receptionist"),
    f"/{SERVICE}/AdmitInpatient": ("nurse", "doctor"),
    f"/{SERVICE}/TransferInpatient": ("nurse", "doctor"),
    f"/{SERVICE}/DischargeInpatient": ("nurse", "doctor"),
}
SEX_NAME = {v: k for k, v in SEX.items()}
KIND_NAME = {v: k for k, v in VISIT_KIND.items()}


def _iso(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


class AdmissionsServicer(pb_grpc.AdmissionsServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services

    async def GetPatient(self, request: pb.GetPatientRequest, context: Any) -> pb.Patient:  # noqa: N802
        return patient_proto(await self.s.patients.get(request.id, _caller(context)))

    async def RegisterPatient(self, request: pb.RegisterPatientRequest, context: Any) -> pb.Patient:  # noqa: N802
        p = NewPatient(
            full_name=request.full_name,
            birth_date=request.birth_date,
            sex=SEX_NAME.get(request.sex, ""),
            cccd=request.cccd or None,
            bhyt_number=request.bhyt_number or None,
            phone=request.phone or None,
            request_id=request.request_id or None,
            address_line=request.address_line or None,
            bhyt_valid_from=_iso(request.bhyt_valid_from),
            bhyt_valid_to=_iso(request.bhyt_valid_to),
            bhyt_registered_facility=request.bhyt_registered_facility or None,
        )
        return patient_proto(await self.s.patients.register(p, _caller(context)))

    async def SearchPatients(
        self, request: pb.SearchPatientsRequest, context: Any
    ) -> pb.SearchPatientsResponse:  # noqa: N802
        items = await self.s.patients.search(request.query, _caller(context), request.limit or None)
        return pb.SearchPatientsResponse(
            items=[patient_proto(await self.s.patients.get(i["id"], _caller(context))) for i in items]
        )

    async def GetVisit(self, request: pb.GetVisitRequest, context: Any) -> pb.Visit:  # noqa: N802
        v = await self.s.visits.get(request.id, _caller(context))
        return visit_proto(_visit_row(v))

    async def ListActiveAdmissions(
        self,
        request: pb.ListActiveAdmissionsRequest,  # noqa: N802
        context: Any,
    ) -> pb.ListActiveAdmissionsResponse:
        rows = await self.s.inpatient.active(request.ward_code or None, _caller(context))
        return pb.ListActiveAdmissionsResponse(items=[stay_proto(r) for r in rows])

    async def ScanCard(self, request: pb.ScanCardRequest, context: Any) -> pb.ScanCardResponse:  # noqa: N802
        caller = _caller(context)
        try:
            found = await self.s.patients.scan(request.qr, caller)
        except ScanError as exc:
            raise Invalid(exc.code, exc.message, field=exc.field) from None
        ident = found["identity"]
        facility = ident.get("registered_facility")
        identity = pb.ScannedIdentity(
            kind=found["kind"],
            full_name=ident.get("full_name", ""),
            birth_date=ident.get("birth_date") or "",
            sex=SEX.get(ident.get("sex", ""), pb.SEX_UNSPECIFIED),
            cccd=ident.get("cccd") or "",
            bhyt_number=ident.get("card_number") or "",
            address=ident.get("address") or "",
            bhyt_valid_from=ident.get("valid_from") or "" if found["kind"] == "bhyt" else "",
            bhyt_valid_to=ident.get("valid_to") or "" if found["kind"] == "bhyt" else "",
            registered_facility=_facility(facility),
        )
        candidates = [
            pb.ScanCandidate(
                patient=patient_proto(await self.s.patients.get(c["id"], caller)), match=c["match"]
            )
            for c in found["candidates"]
        ]
        conflicts = [
            pb.ScanConflict(code=c.get("code", ""), message=c.get("message", "")) for c in found["conflicts"]
        ]
        return pb.ScanCardResponse(identity=identity, candidates=candidates, conflicts=conflicts)

    async def OpenVisit(self, request: pb.OpenVisitRequest, context: Any) -> pb.Visit:  # noqa: N802
        v = await self.s.visits.open(
            request.patient_id,
            request.room_code,
            _caller(context),
            KIND_NAME.get(request.kind, "fee_paying"),
            request.insurance_card_number or None,
            request.referral_code or None,
        )
        return visit_proto(_visit_row(v))

    async def ListRooms(self, request: pb.ListRoomsRequest, context: Any) -> pb.ListRoomsResponse:  # noqa: N802
        rooms = await self.s.reference.rooms()
        return pb.ListRoomsResponse(
            items=[
                pb.Room(
                    code=r["code"],
                    name=r["name"],
                    department=r["department"],
                    department_code=r["department_code"],
                )
                for r in rooms
            ]
        )

    async def WatchQueue(self, request: pb.WatchQueueRequest, context: Any) -> Any:  # noqa: N802
        """The same per-room feed as the HTTP SSE stream (one database read per change, not per display);
        a keep-alive period without change sends nothing. Known rooms only (NOT_FOUND), within the same
        caps as the SSE streams (RESOURCE_EXHAUSTED)."""
        room = request.room_code
        if principal().is_service:  # a service relaying a display (the web's waiting-room page): its link
            refused = self.s.display_links.links.check(
                room, request.display_exp or None, request.display_sig or None
            )
            if refused:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{refused[0]}: {refused[1]}")
        if not await self.s.reference.room_known(room):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"queue.room_unknown: no clinic room {room[:40]!r}"
            )
        try:
            release = self.s.displays.reserve(room)
        except DisplaysFull as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"queue.displays_full: {exc}")
        try:
            async for state in self.s.displays.watch(room):
                if state is not None:
                    yield queue_proto(state)
        finally:
            release()

    async def CreateDisplayLink(self, request: pb.CreateDisplayLinkRequest, context: Any) -> pb.DisplayLink:  # noqa: N802
        link = await self.s.display_links.issue(request.room_code, _caller(context), request.valid_days or 90)
        out = pb.DisplayLink(room_code=link["room"], exp=link["exp"], sig=link["sig"])
        out.expires_at.FromDatetime(datetime.fromisoformat(link["expires_at"]))
        return out

    async def CallTicket(self, request: pb.CallTicketRequest, context: Any) -> pb.TicketCall:  # noqa: N802
        called = await self.s.visits.call(
            request.room_code, _caller(context), request.action or "next", request.ticket_number or None
        )
        return pb.TicketCall(
            room_code=called["room"],
            ticket_number=called["ticket_number"],
            visit_id=called["visit_id"],
            status=called["status"],
            patient_name=called["patient_name"] or "",
        )

    async def ListBeds(self, request: pb.ListBedsRequest, context: Any) -> pb.ListBedsResponse:
        caller = _caller(context)
        beds = await self.s.inpatient.bed_board(request.ward_code or None, caller)
        if request.ward_code and not beds:
            raise Invalid("ward.unknown", f"no ward {request.ward_code!r}", field="ward_code")
        names = {}
        for pid in {b["patient_id"] for b in beds if b["patient_id"]}:
            p = await self.s.patients.get(pid, caller)
            names[pid] = (p["full_name"], p["patient_code"])
        return pb.ListBedsResponse(
            items=[
                pb.Bed(
                    code=b["code"],
                    ward_code=b["ward"],
                    ward_name=b["ward_name"],
                    room=b["room"] or "",
                    occupied=b["occupied"],
                    admission_id=b["admission_id"] or "",
                    patient_id=b["patient_id"] or "",
                    patient_name=names.get(b["patient_id"], ("", ""))[0],
                    patient_code=names.get(b["patient_id"], ("", ""))[1],
                )
                for b in beds
            ]
        )

    async def AdmitInpatient(self, request: pb.AdmitInpatientRequest, context: Any) -> pb.Admission:  # noqa: N802
        """As ``POST /api/v1/admissions``: the same checks (a taken bed: ``bed.occupied``), event, audit."""
        body = AdmitIn(patient_id=request.patient_id, bed=request.bed_code, visit_id=request.visit_id or None)
        stay = await self.s.inpatient.admit(body.patient_id, body.bed, _caller(context), body.visit_id)
        return _admission(stay)

    async def TransferInpatient(self, request: pb.TransferInpatientRequest, context: Any) -> pb.Admission:  # noqa: N802
        body = TransferIn(bed=request.bed_code)
        return _admission(await self.s.inpatient.transfer(request.admission_id, body.bed, _caller(context)))

    async def DischargeInpatient(self, request: pb.DischargeInpatientRequest, context: Any) -> pb.Admission:  # noqa: N802
        body = DischargeIn(discharge_type=request.discharge_type or "improved")
        stay = await self.s.inpatient.discharge(request.admission_id, body.discharge_type, _caller(context))
        return _admission(stay)


def _admission(stay: dict[str, Any]) -> pb.Admission:
    """An inpatient stay as the HTTP API answers it (``stay_dict``), with its status, as a message."""
    msg = pb.Admission(
        id=stay["id"],
        patient_id=stay["patient_id"],
        visit_id=stay["visit_id"] or "",
        ward_code=stay["ward"],
        bed_code=stay["bed"],
        status=stay["status"],
        discharge_type=stay["discharge_type"] or "",
    )
    msg.admitted_at.FromDatetime(datetime.fromisoformat(stay["admitted_at"]))
    return msg


def queue_proto(state: dict[str, Any]) -> pb.QueueState:
    last = state.get("last_call") or {}
    return pb.QueueState(
        room_code=state["room"],
        service_date=state["service_date"],
        now_serving=state["now_serving"] or 0,
        called=state["called"],
        waiting=state["waiting"],
        last_call_ticket=last.get("ticket_number") or 0,
        last_call_action=last.get("action") or "",
    )


def _facility(value: Any) -> str:
    if isinstance(value, dict):  # RegisteredFacility: keep it as printed on the card
        return str(value.get("raw") or "")
    return str(value or "")


def _visit_row(v: dict[str, Any]) -> dict[str, Any]:
    return dict(
        v,
        room_code=v["room"],
        opened_at=datetime.fromisoformat(v["opened_at"]),
        closed_at=datetime.fromisoformat(v["closed_at"]) if v["closed_at"] else None,
    )


def register(server: grpc.aio.Server, services: Services) -> None:
    pb_grpc.add_AdmissionsServiceServicer_to_server(AdmissionsServicer(services), server)
