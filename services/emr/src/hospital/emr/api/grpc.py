"""gRPC API for the web front end and other services (contract: proto/hospital/emr/v1/emr.proto). Messages
and the use cases' models share their field names: ``to_proto`` / ``from_proto`` convert."""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc

from hospital.chassis.caller import Caller
from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.chassis.rpc import principal
from hospital.contracts.emr.v1 import emr_pb2 as pb
from hospital.contracts.emr.v1 import emr_pb2_grpc as pb_grpc
from hospital.emr.api.http.deps import Services, clean_reason
from hospital.emr.app import schemas as sc
from hospital.emr.domain import templates

SERVICE = pb.DESCRIPTOR.services_by_name["EmrService"].full_name
READERS = ("doctor", "nurse", "radiologist")
DOCTOR = ("doctor",)
SIGNERS = ("doctor", "radiologist")
WARD = ("nurse", "doctor")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/{name}": roles
    for name, roles in {
        "GetChart": READERS,
        "ListEncounters": READERS,
        "ListMyQueue": READERS,
        "GetEncounter": READERS,
        "SaveConsultation": DOCTOR,
        "GetConsultation": READERS,
        "SearchIcd10": READERS,
        "SearchDrugs": READERS,
        "ListNoteTemplates": READERS,
        "PlaceOrders": DOCTOR,
        "CancelOrder": DOCTOR,
        "StopOrder": DOCTOR,
        "ListOrders": READERS,
        "CheckPrescription": DOCTOR,
        "SavePrescription": DOCTOR,
        "SaveDocument": SIGNERS,
        "GetDocument": READERS,
        "SignDocument": SIGNERS,
        "AmendDocument": SIGNERS,
        "VerifyDocument": READERS,
        "ListResults": READERS,
        "GetTrend": READERS,
        "ListCriticalAlerts": READERS,
        "AcknowledgeCritical": ("doctor", "nurse"),
        "StreamNotifications": READERS,
        "ListRadiologyWorklist": ("radiologist", "doctor"),
        "SavePaper": DOCTOR,
        "ListPapers": READERS,
        "RecordVitals": WARD,
        "ListVitals": READERS,
        "RecordAdministration": WARD,
        "ListAdministrations": READERS,
    }.items()
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise Invalid("date.invalid", f"{field} must be YYYY-MM-DD", field=field) from exc


class EmrServicer(pb_grpc.EmrServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services

    async def GetChart(self, request: pb.GetChartRequest, context: Any) -> pb.Chart:
        chart = await self.s.charts.chart(
            _caller(context),
            request.patient_id,
            request.encounter_id or None,
            clean_reason(request.break_glass_reason),
            self.s.chart_extras,
        )
        return sc.to_proto(chart, pb.Chart)

    async def ListEncounters(
        self, request: pb.ListEncountersRequest, context: Any
    ) -> pb.ListEncountersResponse:
        page = await self.s.encounters.list(
            _caller(context),
            patient_id=request.patient_id or None,
            department_code=request.department_code or None,
            status=request.status or None,
            kind=request.kind or None,
            limit=request.limit,
            page_token=request.page_token or None,
        )
        return sc.to_proto(page, pb.ListEncountersResponse)

    async def ListMyQueue(self, request: pb.ListMyQueueRequest, context: Any) -> pb.ListEncountersResponse:
        page = await self.s.encounters.queue(
            _caller(context),
            department_code=request.department_code or None,
            room_code=request.room_code or None,
            service_date=_date(request.service_date, "service_date"),
            include_closed=request.include_closed,
        )
        return sc.to_proto(page, pb.ListEncountersResponse)

    async def GetEncounter(self, request: pb.GetEncounterRequest, context: Any) -> pb.Encounter:
        return sc.to_proto(await self.s.encounters.get(_caller(context), request.id), pb.Encounter)

    async def SaveConsultation(self, request: pb.SaveConsultationRequest, context: Any) -> pb.Consultation:
        body = sc.from_proto(request, sc.SaveConsultation)
        out = await self.s.charts.save_consultation(_caller(context), request.encounter_id, body)
        return sc.to_proto(out, pb.Consultation)

    async def GetConsultation(self, request: pb.GetConsultationRequest, context: Any) -> pb.Consultation:
        out = await self.s.charts.consultation(
            _caller(context), request.encounter_id, clean_reason(request.break_glass_reason)
        )
        return sc.to_proto(out, pb.Consultation)

    async def SearchIcd10(self, request: pb.SearchIcd10Request, context: Any) -> pb.SearchIcd10Response:
        return sc.to_proto(self.s.charts.search_icd10(request.query, request.limit), pb.SearchIcd10Response)

    async def ListNoteTemplates(
        self, request: pb.ListNoteTemplatesRequest, context: Any
    ) -> pb.ListNoteTemplatesResponse:
        return pb.ListNoteTemplatesResponse(
            items=[
                pb.NoteTemplate(
                    code=t.code,
                    title=t.title,
                    sections=[pb.DocumentSection(code=c, title=title) for c, title in t.sections],
                )
                for t in templates.TEMPLATES.values()
            ]
        )

    async def SearchDrugs(self, request: pb.SearchDrugsRequest, context: Any) -> pb.SearchDrugsResponse:
        page = await self.s.prescriptions.search_drugs(request.query, request.limit)
        return sc.to_proto(page, pb.SearchDrugsResponse)

    async def PlaceOrders(self, request: pb.PlaceOrdersRequest, context: Any) -> pb.PlaceOrdersResponse:
        body = sc.from_proto(request, sc.PlaceOrders)
        placed = await self.s.orders.place(_caller(context), request.encounter_id, body)
        return sc.to_proto(placed, pb.PlaceOrdersResponse)

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.ClinicalOrder:
        return sc.to_proto(
            await self.s.orders.cancel(
                _caller(context),
                request.order_id,
                clean_text(
                    request.reason,
                    field="reason",
                    max_length=500,
                    error_code="order.cancel_reason",
                    multiline=True,
                ),
            ),
            pb.ClinicalOrder,
        )

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Any) -> pb.ListOrdersResponse:
        page = await self.s.orders.list(
            _caller(context), request.encounter_id or None, request.patient_id or None
        )
        return sc.to_proto(page, pb.ListOrdersResponse)

    async def StopOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.ClinicalOrder:
        reason = clean_text(
            request.reason, field="reason", max_length=500, error_code="order.stop_reason", multiline=True
        )
        return sc.to_proto(
            await self.s.orders.stop(_caller(context), request.order_id, reason), pb.ClinicalOrder
        )

    async def CheckPrescription(
        self, request: pb.SavePrescriptionRequest, context: Any
    ) -> pb.CheckPrescriptionResponse:
        body = sc.from_proto(request, sc.SavePrescription)
        out = await self.s.prescriptions.check(_caller(context), request.encounter_id, body)
        return sc.to_proto(out, pb.CheckPrescriptionResponse)

    async def SavePrescription(self, request: pb.SavePrescriptionRequest, context: Any) -> pb.Prescription:
        body = sc.from_proto(request, sc.SavePrescription, **({} if request.type else {"type": "c"}))
        out = await self.s.prescriptions.save(_caller(context), request.encounter_id, body)
        return sc.to_proto(out, pb.Prescription)

    async def ListResults(self, request: pb.ListResultsRequest, context: Any) -> pb.ListResultsResponse:
        page = await self.s.results.list(
            _caller(context), request.patient_id or None, request.encounter_id or None, request.limit
        )
        return sc.to_proto(page, pb.ListResultsResponse)

    async def GetTrend(self, request: pb.GetTrendRequest, context: Any) -> pb.GetTrendResponse:
        trend = await self.s.results.trend(
            _caller(context), request.patient_id, request.test_code, request.limit
        )
        return sc.to_proto(trend, pb.GetTrendResponse)

    async def ListCriticalAlerts(
        self, request: pb.ListCriticalAlertsRequest, context: Any
    ) -> pb.ListCriticalAlertsResponse:
        page = await self.s.results.criticals(
            _caller(context), request.patient_id or None, request.include_acknowledged
        )
        return sc.to_proto(page, pb.ListCriticalAlertsResponse)

    async def AcknowledgeCritical(
        self, request: pb.AcknowledgeCriticalRequest, context: Any
    ) -> pb.CriticalAlert:
        body = sc.AcknowledgeIn(read_back=request.read_back) if len(request.read_back.strip()) >= 3 else None
        if body is None:
            raise Invalid("critical.read_back", "cần nhắc lại kết quả (read-back)", field="read_back")
        out = await self.s.results.acknowledge(_caller(context), request.alert_id, body.read_back)
        return sc.to_proto(out, pb.CriticalAlert)

    async def StreamNotifications(self, request: pb.StreamNotificationsRequest, context: Any) -> Any:
        """Registered before the initial metadata is sent: a client that has read it misses nothing."""
        caller = _caller(context)
        recipients = self.s.hub.recipients_of(caller.subject, self.s.ctx.departments(caller))
        async with self.s.ctx.uow() as uow:
            uow.audit(caller.audit("notification.stream", "Notification", None, None, via="grpc"))
            await uow.commit()
        feed = self.s.hub.open(recipients)
        try:
            await context.send_initial_metadata(())
            async for item in feed:
                yield sc.to_proto(item, pb.Notification)
        finally:
            feed.close()

    async def SaveDocument(self, request: pb.SaveDocumentRequest, context: Any) -> pb.Document:
        caller = _caller(context)
        if request.document_id:
            body = sc.UpdateDocument(
                title=request.title, sections=[sc.from_proto(x, sc.DocumentSection) for x in request.sections]
            )
            return sc.to_proto(await self.s.documents.update(caller, request.document_id, body), pb.Document)
        save = sc.from_proto(request, sc.SaveDocument)
        return sc.to_proto(
            await self.s.documents.save(caller, request.encounter_id or None, save), pb.Document
        )

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Any) -> pb.Document:
        return sc.to_proto(await self.s.documents.get(_caller(context), request.id), pb.Document)

    async def SignDocument(self, request: pb.SignDocumentRequest, context: Any) -> pb.Document:
        return sc.to_proto(await self.s.documents.sign(_caller(context), request.document_id), pb.Document)

    async def AmendDocument(self, request: pb.AmendDocumentRequest, context: Any) -> pb.Document:
        body = sc.from_proto(request, sc.AmendDocument)
        return sc.to_proto(
            await self.s.documents.amend(_caller(context), request.document_id, body), pb.Document
        )

    async def VerifyDocument(
        self, request: pb.VerifyDocumentRequest, context: Any
    ) -> pb.VerifyDocumentResponse:
        out = await self.s.documents.verify(_caller(context), request.document_id)
        return sc.to_proto(out, pb.VerifyDocumentResponse)

    async def ListRadiologyWorklist(
        self, request: pb.ListRadiologyWorklistRequest, context: Any
    ) -> pb.ListRadiologyWorklistResponse:
        page = await self.s.documents.worklist(
            _caller(context),
            request.modality or None,
            request.include_reported,
            request.limit,
            self.s.results.study_model,
        )
        return sc.to_proto(page, pb.ListRadiologyWorklistResponse)

    async def SavePaper(self, request: pb.SavePaperRequest, context: Any) -> pb.Paper:
        body = sc.from_proto(request, sc.SavePaper)
        out = await self.s.papers.save(_caller(context), request.encounter_id, body)
        return sc.to_proto(out, pb.Paper)

    async def ListPapers(self, request: pb.ListPapersRequest, context: Any) -> pb.ListPapersResponse:
        page = await self.s.papers.list(_caller(context), request.encounter_id)
        return sc.to_proto(page, pb.ListPapersResponse)

    async def RecordVitals(self, request: pb.RecordVitalsRequest, context: Any) -> pb.VitalObservation:
        body = sc.from_proto(request, sc.RecordVitals)
        out = await self.s.nursing.record_vitals(_caller(context), request.encounter_id, body)
        return sc.to_proto(out, pb.VitalObservation)

    async def ListVitals(self, request: pb.ListVitalsRequest, context: Any) -> pb.ListVitalsResponse:
        page = await self.s.nursing.list_vitals(
            _caller(context),
            request.encounter_id,
            clean_reason(request.break_glass_reason),
            request.limit or 200,
        )
        return sc.to_proto(page, pb.ListVitalsResponse)

    async def RecordAdministration(
        self, request: pb.RecordAdministrationRequest, context: Any
    ) -> pb.MedicationAdministration:
        body = sc.from_proto(request, sc.RecordAdministration)
        out = await self.s.nursing.record_administration(_caller(context), request.order_id, body)
        return sc.to_proto(out, pb.MedicationAdministration)

    async def ListAdministrations(
        self, request: pb.ListAdministrationsRequest, context: Any
    ) -> pb.ListAdministrationsResponse:
        page = await self.s.nursing.list_administrations(
            _caller(context),
            request.encounter_id,
            request.order_id or None,
            clean_reason(request.break_glass_reason),
            request.limit or 200,
        )
        return sc.to_proto(page, pb.ListAdministrationsResponse)


def register(server: grpc.aio.Server, services: Services) -> None:
    pb_grpc.add_EmrServiceServicer_to_server(EmrServicer(services), server)
