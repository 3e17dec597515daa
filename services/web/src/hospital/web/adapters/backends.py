"""The backend-for-frontend's clients: the other services' gRPC APIs, called with the signed-in user's token.

A failure is one of two kinds the screens show differently: :class:`BackendUnavailable` (the service does
not answer: that part of the page says which service is down, the rest works) and :class:`BackendRefused`
(the service answered no: a specific code, message and field, shown next to the field).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx

from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as adm_grpc
from hospital.contracts.billing.v1 import billing_pb2 as bil
from hospital.contracts.billing.v1 import billing_pb2_grpc as bil_grpc
from hospital.contracts.emr.v1 import emr_pb2 as emr
from hospital.contracts.emr.v1 import emr_pb2_grpc as emr_grpc
from hospital.contracts.imaging.v1 import imaging_pb2 as img
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as img_grpc
from hospital.contracts.lab.v1 import lab_pb2 as lab
from hospital.contracts.lab.v1 import lab_pb2_grpc as lab_grpc
from hospital.contracts.platform.v1 import audit_pb2 as aud
from hospital.contracts.platform.v1 import audit_pb2_grpc as aud_grpc

_DETAIL = re.compile(r"^(?P<code>[a-z0-9_.]+): (?P<message>.*?)(?: \(field (?P<field>[a-z0-9_.]+)\))?$", re.S)
_DOWN = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNIMPLEMENTED,
}


class BackendUnavailable(Exception):
    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(f"{service} unavailable: {detail}")
        self.service, self.detail = service, detail


class BackendRefused(Exception):
    def __init__(self, service: str, status: str, code: str, message: str, field: str | None) -> None:
        super().__init__(f"{service}: {code}: {message}")
        self.service, self.status, self.code, self.message, self.field = service, status, code, message, field


def parse_detail(details: str) -> tuple[str, str, str | None] | None:
    """(code, message, field) of a service's refusal text ``code: message (field f)``; None otherwise."""
    m = _DETAIL.match(details)
    return (m["code"], m["message"], m["field"]) if m else None


def translate(service: str, exc: grpc.aio.AioRpcError) -> Exception:
    if exc.code() in _DOWN:
        return BackendUnavailable(service, exc.details() or exc.code().name)
    details = exc.details() or ""
    parsed = parse_detail(details)
    if parsed:
        return BackendRefused(service, exc.code().name, *parsed)
    return BackendRefused(service, exc.code().name, exc.code().name.lower(), details, None)


class Backend:
    """One service's channel (created on first use; gRPC reconnects by itself)."""

    def __init__(self, name: str, target: str, timeout: float) -> None:
        self.name, self.target, self.timeout = name, target, timeout
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 2_000),
                ],
            )
        return self._channel

    async def call(self, method: Any, request: Any, token: str) -> Any:
        try:
            return await method(request, metadata=call_metadata(token), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(self.name, exc) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # every service serves its audit trail the same way (hospital.platform.v1.AuditService, the chassis)
    async def audit_query(self, request: aud.QueryAuditRequest, token: str) -> aud.QueryAuditResponse:
        return await self.call(aud_grpc.AuditServiceStub(self.channel).QueryAudit, request, token)

    async def audit_verify(self, token: str) -> aud.VerifyAuditResponse:
        stub = aud_grpc.AuditServiceStub(self.channel)
        return await self.call(stub.VerifyAudit, aud.VerifyAuditRequest(), token)


class Admissions(Backend):
    @property
    def stub(self) -> adm_grpc.AdmissionsServiceStub:
        return adm_grpc.AdmissionsServiceStub(self.channel)

    async def rooms(self, token: str) -> list[adm.Room]:
        return list((await self.call(self.stub.ListRooms, adm.ListRoomsRequest(), token)).items)

    async def search(self, query: str, token: str, limit: int = 10) -> list[adm.Patient]:
        resp = await self.call(
            self.stub.SearchPatients, adm.SearchPatientsRequest(query=query, limit=limit), token
        )
        return list(resp.items)

    async def patient(self, patient_id: str, token: str) -> adm.Patient:
        return await self.call(self.stub.GetPatient, adm.GetPatientRequest(id=patient_id), token)

    async def scan(self, qr: str, token: str) -> adm.ScanCardResponse:
        return await self.call(self.stub.ScanCard, adm.ScanCardRequest(qr=qr), token)

    async def register(self, request: adm.RegisterPatientRequest, token: str) -> adm.Patient:
        return await self.call(self.stub.RegisterPatient, request, token)

    async def open_visit(self, request: adm.OpenVisitRequest, token: str) -> adm.Visit:
        return await self.call(self.stub.OpenVisit, request, token)

    async def beds(self, ward: str, token: str) -> list[adm.Bed]:
        return list((await self.call(self.stub.ListBeds, adm.ListBedsRequest(ward_code=ward), token)).items)

    async def admit(self, patient_id: str, bed: str, token: str) -> adm.Admission:
        req = adm.AdmitInpatientRequest(patient_id=patient_id, bed_code=bed)
        return await self.call(self.stub.AdmitInpatient, req, token)

    async def transfer(self, admission_id: str, bed: str, token: str) -> adm.Admission:
        req = adm.TransferInpatientRequest(admission_id=admission_id, bed_code=bed)
        return await self.call(self.stub.TransferInpatient, req, token)

    async def discharge(self, admission_id: str, discharge_type: str, token: str) -> adm.Admission:
        req = adm.DischargeInpatientRequest(admission_id=admission_id, discharge_type=discharge_type)
        return await self.call(self.stub.DischargeInpatient, req, token)

    async def display_link(self, room: str, valid_days: int, token: str) -> adm.DisplayLink:
        req = adm.CreateDisplayLinkRequest(room_code=room, valid_days=valid_days)
        return await self.call(self.stub.CreateDisplayLink, req, token)

    async def call_ticket(self, room: str, token: str, action: str = "next") -> adm.TicketCall:
        """Call the next ticket of the room (or recall / skip): the waiting-room displays follow."""
        req = adm.CallTicketRequest(room_code=room, action=action)
        return await self.call(self.stub.CallTicket, req, token)

    async def watch_queue(
        self, room: str, token: str, exp: int = 0, sig: str = ""
    ) -> AsyncIterator[adm.QueueState]:
        """The room's queue now and at every change; raises BackendUnavailable when the stream breaks.
        ``exp``/``sig``: a display link, when the web relays a signed waiting-room page."""
        call = self.stub.WatchQueue(
            adm.WatchQueueRequest(room_code=room, display_exp=exp, display_sig=sig),
            metadata=call_metadata(token),
        )
        try:
            async for state in call:
                yield state
        except grpc.aio.AioRpcError as exc:
            raise translate(self.name, exc) from None
        finally:
            call.cancel()


class Lab(Backend):
    @property
    def stub(self) -> lab_grpc.LabServiceStub:
        return lab_grpc.LabServiceStub(self.channel)

    async def receive(self, barcode: str, token: str) -> lab.ReceiveSpecimenResponse:
        return await self.call(self.stub.ReceiveSpecimen, lab.ReceiveSpecimenRequest(barcode=barcode), token)

    async def worklist(self, token: str, status: str = "preliminary") -> list[lab.WorklistItem]:
        resp = await self.call(
            self.stub.ListWorklist, lab.ListWorklistRequest(status=status, limit=200), token
        )
        return list(resp.items)

    async def verify(self, result_ids: list[str], token: str) -> list[lab.Result]:
        resp = await self.call(
            self.stub.VerifyResults, lab.VerifyResultsRequest(result_ids=result_ids), token
        )
        return list(resp.results)

    async def criticals(self, token: str, pending_only: bool = True) -> list[lab.CriticalItem]:
        resp = await self.call(
            self.stub.ListCriticals, lab.ListCriticalsRequest(pending_only=pending_only), token
        )
        return list(resp.items)

    async def record_call(self, request: lab.RecordCriticalCallRequest, token: str) -> lab.CriticalCall:
        return await self.call(self.stub.RecordCriticalCall, request, token)

    async def catalogue(self, token: str) -> list[lab.CatalogueTest]:
        return list((await self.call(self.stub.ListCatalogue, lab.ListCatalogueRequest(), token)).tests)

    async def qc_lots(self, token: str) -> list[lab.QcLot]:
        return list((await self.call(self.stub.ListQcLots, lab.ListQcLotsRequest(), token)).items)

    async def levey_jennings(self, lot_id: str, token: str, limit: int = 60) -> lab.LeveyJennings:
        req = lab.GetLeveyJenningsRequest(lot_id=lot_id, limit=limit)
        return await self.call(self.stub.GetLeveyJennings, req, token)

    async def analyzers(self, token: str) -> list[lab.AnalyzerStatus]:
        return list((await self.call(self.stub.ListAnalyzers, lab.ListAnalyzersRequest(), token)).items)

    async def analyzer_connections(self, token: str) -> lab.ListAnalyzerConnectionsResponse:
        req = lab.ListAnalyzerConnectionsRequest()
        return await self.call(self.stub.ListAnalyzerConnections, req, token)


class Billing(Backend):
    @property
    def stub(self) -> bil_grpc.BillingServiceStub:
        return bil_grpc.BillingServiceStub(self.channel)

    async def invoice(self, token: str, invoice_id: str = "", number: str = "") -> bil.Invoice:
        return await self.call(
            self.stub.GetInvoice, bil.GetInvoiceRequest(id=invoice_id, number=number), token
        )

    async def invoices(self, token: str, status: str, limit: int = 30) -> list[bil.Invoice]:
        resp = await self.call(
            self.stub.ListInvoices, bil.ListInvoicesRequest(status=status, limit=limit), token
        )
        return list(resp.items)

    async def vietqr(self, invoice_id: str, token: str, amount: int = 0) -> bil.VietQr:
        return await self.call(
            self.stub.CreateVietQr, bil.CreateVietQrRequest(invoice_id=invoice_id, amount=amount), token
        )

    async def pay(self, request: bil.PayAtDeskRequest, token: str) -> bil.Invoice:
        return await self.call(self.stub.PayAtDesk, request, token)

    async def shift(self, token: str) -> bil.Shift:
        return await self.call(self.stub.GetCurrentShift, bil.GetCurrentShiftRequest(), token)

    async def open_shift(self, opening_float: int, token: str) -> bil.Shift:
        return await self.call(self.stub.OpenShift, bil.OpenShiftRequest(opening_float=opening_float), token)

    async def close_shift(self, shift_id: str, counted_cash: int, token: str) -> bil.Shift:
        req = bil.CloseShiftRequest(shift_id=shift_id, counted_cash=counted_cash)
        return await self.call(self.stub.CloseShift, req, token)

    async def refund(self, request: bil.RefundPaymentRequest, token: str) -> bil.Invoice:
        return await self.call(self.stub.RefundPayment, request, token)

    async def daily(self, day: str, token: str) -> bil.DailyReconciliation:
        req = bil.GetDailyReconciliationRequest(date=day)
        return await self.call(self.stub.GetDailyReconciliation, req, token)

    async def prices(
        self, token: str, query: str = "", category: str = "", limit: int = 100
    ) -> list[bil.PriceItem]:
        req = bil.ListPricesRequest(query=query, category=category, limit=limit)
        return list((await self.call(self.stub.ListPrices, req, token)).items)

    async def set_price(self, request: bil.SetPriceRequest, token: str) -> bil.PriceItem:
        return await self.call(self.stub.SetPrice, request, token)


class Emr(Backend):
    @property
    def stub(self) -> emr_grpc.EmrServiceStub:
        return emr_grpc.EmrServiceStub(self.channel)

    async def my_queue(self, room: str, token: str) -> list[emr.Encounter]:
        resp = await self.call(
            self.stub.ListMyQueue, emr.ListMyQueueRequest(room_code=room, include_closed=True), token
        )
        return list(resp.items)

    async def encounter(self, encounter_id: str, token: str) -> emr.Encounter:
        return await self.call(self.stub.GetEncounter, emr.GetEncounterRequest(id=encounter_id), token)

    async def chart(self, patient_id: str, encounter_id: str, token: str) -> emr.Chart:
        req = emr.GetChartRequest(patient_id=patient_id, encounter_id=encounter_id)
        return await self.call(self.stub.GetChart, req, token)

    async def icd10(self, query: str, token: str, limit: int = 12) -> list[emr.Icd10Code]:
        resp = await self.call(self.stub.SearchIcd10, emr.SearchIcd10Request(query=query, limit=limit), token)
        return list(resp.items)

    async def save(self, request: emr.SaveConsultationRequest, token: str) -> emr.Consultation:
        return await self.call(self.stub.SaveConsultation, request, token)

    async def place_orders(self, request: emr.PlaceOrdersRequest, token: str) -> list[emr.ClinicalOrder]:
        return list((await self.call(self.stub.PlaceOrders, request, token)).orders)

    async def drugs(self, query: str, token: str, limit: int = 10) -> list[emr.Drug]:
        resp = await self.call(self.stub.SearchDrugs, emr.SearchDrugsRequest(query=query, limit=limit), token)
        return list(resp.items)

    async def check_prescription(
        self, request: emr.SavePrescriptionRequest, token: str
    ) -> emr.CheckPrescriptionResponse:
        return await self.call(self.stub.CheckPrescription, request, token)

    async def save_prescription(self, request: emr.SavePrescriptionRequest, token: str) -> emr.Prescription:
        return await self.call(self.stub.SavePrescription, request, token)

    async def acknowledge(self, alert_id: str, read_back: str, token: str) -> emr.CriticalAlert:
        req = emr.AcknowledgeCriticalRequest(alert_id=alert_id, read_back=read_back)
        return await self.call(self.stub.AcknowledgeCritical, req, token)

    async def cancel_order(self, order_id: str, reason: str, token: str) -> emr.ClinicalOrder:
        req = emr.CancelOrderRequest(order_id=order_id, reason=reason)
        return await self.call(self.stub.CancelOrder, req, token)

    async def trend(
        self, patient_id: str, test_code: str, token: str, limit: int = 50
    ) -> emr.GetTrendResponse:
        req = emr.GetTrendRequest(patient_id=patient_id, test_code=test_code, limit=limit)
        return await self.call(self.stub.GetTrend, req, token)

    async def save_document(self, request: emr.SaveDocumentRequest, token: str) -> emr.Document:
        return await self.call(self.stub.SaveDocument, request, token)

    async def sign_document(self, document_id: str, token: str) -> emr.Document:
        req = emr.SignDocumentRequest(document_id=document_id)
        return await self.call(self.stub.SignDocument, req, token)


def _value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


class Imaging(Backend):
    """Imaging's gRPC API (the study and its series) and its DICOMweb (QIDO-RS instance lists and WADO-RS
    rendered frames), both called with the user's token: imaging checks the role and audits each read."""

    def __init__(self, name: str, target: str, timeout: float, http_base: str) -> None:
        super().__init__(name, target, timeout)
        self.http_base = http_base.rstrip("/")
        self._http: httpx.AsyncClient | None = None

    @property
    def stub(self) -> img_grpc.ImagingServiceStub:
        return img_grpc.ImagingServiceStub(self.channel)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.http_base,
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            )
        return self._http

    async def study(self, study_uid: str, token: str) -> img.Study:
        return await self.call(self.stub.GetStudy, img.GetStudyRequest(study_instance_uid=study_uid), token)

    async def dicomweb(
        self, path: str, token: str, accept: str, params: dict[str, str] | None = None
    ) -> bytes:
        """GET a DICOMweb resource as the user; BackendUnavailable when imaging does not answer,
        BackendRefused with imaging's code and message when it says no."""
        headers = {"Authorization": f"Bearer {token}", "Accept": accept}
        try:
            r = await self.http.get("/dicomweb" + path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.name, type(exc).__name__) from None
        if r.status_code >= 500:
            raise BackendUnavailable(self.name, f"HTTP {r.status_code}")
        if r.status_code == 204:
            return b""
        if r.status_code >= 400:
            code, message = f"http_{r.status_code}", r.text[:300]
            try:
                body = r.json()
                code, message = body.get("code") or code, body.get("detail") or body.get("message") or message
            except ValueError:
                pass
            raise BackendRefused(self.name, str(r.status_code), str(code), str(message), None)
        return r.content

    async def instances(self, study_uid: str, series_uid: str, token: str) -> list[tuple[str, int, int]]:
        """(SOP Instance UID, Instance Number, frames) of a series, in Instance Number order (QIDO-RS)."""
        body = await self.dicomweb(
            f"/studies/{study_uid}/series/{series_uid}/instances",
            token,
            "application/dicom+json",
            {"limit": "1000"},  # Instance Number and Number of Frames are returned by default
        )
        out = []
        for item in json.loads(body) if body else []:
            sop = _value(item, "00080018")
            if sop:
                out.append((str(sop), int(_value(item, "00200013") or 0), int(_value(item, "00280008") or 1)))
        return sorted(out, key=lambda x: (x[1], x[0]))

    async def close(self) -> None:
        await super().close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def orders(
        self, token: str, statuses: list[str] | None = None, modality: str = ""
    ) -> list[img.Order]:
        req = img.ListOrdersRequest(statuses=statuses or [], modality=modality, limit=200)
        return list((await self.call(self.stub.ListOrders, req, token)).items)

    async def reconciliation(self, token: str) -> list[img.ReconciliationItem]:
        resp = await self.call(
            self.stub.ListReconciliation, img.ListReconciliationRequest(status="open"), token
        )
        return list(resp.items)

    async def reconcile(self, item_id: str, order_id: str, token: str) -> img.ReconciliationItem:
        req = img.ResolveReconciliationRequest(item_id=item_id, order_id=order_id)
        return await self.call(self.stub.ResolveReconciliation, req, token)

    async def mpps(self, token: str) -> list[img.Mpps]:
        resp = await self.call(self.stub.ListMpps, img.ListMppsRequest(unmatched=True, limit=200), token)
        return list(resp.items)

    async def resolve_mpps(self, uid: str, note: str, token: str) -> img.Mpps:
        req = img.ResolveMppsRequest(mpps_instance_uid=uid, note=note)
        return await self.call(self.stub.ResolveMpps, req, token)

    async def routing(self, token: str) -> img.RoutingStatus:
        return await self.call(self.stub.GetRoutingStatus, img.GetRoutingStatusRequest(), token)

    async def retry(self, destination: str, token: str) -> int:
        req = img.RetryRoutingRequest(destination_ae=destination)
        return int((await self.call(self.stub.RetryRouting, req, token)).rescheduled)

    async def aes(self, token: str) -> img.ListAesResponse:
        return await self.call(self.stub.ListAes, img.ListAesRequest(), token)


class Backends:
    def __init__(self, settings: Any) -> None:
        t = settings.backend_timeout_seconds
        self.admissions = Admissions("admissions", settings.admissions_grpc, t)
        self.lab = Lab("lab", settings.lab_grpc, t)
        self.billing = Billing("billing", settings.billing_grpc, t)
        self.emr = Emr("emr", settings.emr_grpc, t)
        self.imaging = Imaging("imaging", settings.imaging_grpc, t, settings.imaging_http)
        # the web's own trail, read like the others' (its gRPC port serves only health and the trail)
        self.web = Backend("web", f"127.0.0.1:{settings.grpc_port}", t)

    @property
    def all(self) -> tuple[Backend, ...]:
        return (self.admissions, self.emr, self.lab, self.imaging, self.billing, self.web)

    async def close(self) -> None:
        for b in self.all:
            await b.close()
