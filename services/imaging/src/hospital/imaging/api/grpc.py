"""gRPC API (contract: proto/hospital/imaging/v1/imaging.proto). The EMR schedules orders here."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import grpc

from hospital.chassis.errors import Invalid
from hospital.chassis.rpc import principal
from hospital.contracts.imaging.v1 import imaging_pb2 as pb
from hospital.contracts.imaging.v1 import imaging_pb2_grpc as pb_grpc
from hospital.imaging.api.dicom.access import PERMISSIONS, parse_permissions
from hospital.imaging.app.access_audit import AccessAudit, http_entry
from hospital.imaging.app.orders import NewOrder, order_proto, proto_time
from hospital.imaging.app.services import Services

SERVICE = pb.DESCRIPTOR.services_by_name["ImagingService"].full_name
READ = ("doctor", "radiographer", "radiologist", "nurse")
STAFF = ("radiographer", "radiologist")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/ScheduleOrder": ("doctor",),
    f"/{SERVICE}/GetOrder": READ,
    f"/{SERVICE}/CancelOrder": ("doctor",),
    f"/{SERVICE}/RescheduleOrder": ("doctor", "radiographer"),
    f"/{SERVICE}/GetStudy": READ,
    f"/{SERVICE}/ListStudies": READ,
    f"/{SERVICE}/ListOrders": READ,
    f"/{SERVICE}/ListReconciliation": STAFF,
    f"/{SERVICE}/ResolveReconciliation": STAFF,
    f"/{SERVICE}/ListMpps": ("admin", *STAFF),
    f"/{SERVICE}/ResolveMpps": ("admin", *STAFF),
    f"/{SERVICE}/GetRoutingStatus": ("admin", *STAFF),
    f"/{SERVICE}/RetryRouting": ("admin", *STAFF),
    f"/{SERVICE}/ListAes": ("admin", "radiographer"),
}
DEFAULT_WORKLIST = ["scheduled", "in_progress"]


def _ts(msg: Any, name: str, value: str | datetime | None) -> None:
    """Set timestamp field ``name`` from an ISO text or a datetime (left unset when None)."""
    if value:
        getattr(msg, name).FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _reconciliation(r: dict[str, Any]) -> pb.ReconciliationItem:
    msg = pb.ReconciliationItem(
        id=r["id"],
        study_instance_uid=r["study_instance_uid"],
        reason=r["reason"],
        detail=r.get("detail") or "",
        candidate_order_id=r.get("candidate_order_id") or "",
        status=r["status"],
        resolved_order_id=r.get("resolved_order_id") or "",
        resolved_by=r.get("resolved_by") or "",
        patient_code=r.get("patient_id") or "",
        patient_name=r.get("patient_name") or "",
        accession_number=r.get("accession_number") or "",
        study_date=r.get("study_date") or "",
        modalities=r.get("modalities") or "",
    )
    _ts(msg, "created_at", r.get("created_at"))
    _ts(msg, "resolved_at", r.get("resolved_at"))
    return msg


def _mpps(r: dict[str, Any]) -> pb.Mpps:
    msg = pb.Mpps(
        mpps_instance_uid=r["mpps_instance_uid"],
        order_id=r.get("order_id") or "",
        accession_number=r.get("accession_number") or "",
        study_instance_uid=r.get("study_instance_uid") or "",
        patient_code=r.get("patient_id") or "",
        patient_name=r.get("patient_name") or "",
        calling_ae=r.get("calling_ae") or "",
        status=r.get("status") or "",
        attention=r.get("attention") or "",
        resolved_by=r.get("resolved_by") or "",
        resolution_note=r.get("resolution_note") or "",
    )
    _ts(msg, "created_at", r.get("created_at"))
    _ts(msg, "resolved_at", r.get("resolved_at"))
    return msg


class ImagingServicer(pb_grpc.ImagingServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services
        self.access = AccessAudit(services.rt)

    async def _audited(
        self,
        context: Any,
        action: str,
        resource_type: str,
        resource_id: str | None,
        patients: list[str],
        **kw: Any,
    ) -> None:
        """Record the read (who, from where, which patients) before it is answered."""
        rows = [{"PatientID": p} for p in patients]
        entry = http_entry(principal(), str(context.peer() or ""), action, resource_id, rows, **kw)
        await self.access.record(replace(entry, resource_type=resource_type))

    async def ScheduleOrder(self, request: pb.ScheduleOrderRequest, context: Any) -> pb.Order:
        p = request.patient
        o = NewOrder(
            accession_number=request.accession_number,
            requested_procedure_id=request.requested_procedure_id,
            requested_procedure_description=request.requested_procedure_description,
            modality=request.modality,
            station_ae_title=request.station_ae_title,
            scheduled_start=proto_time(request.scheduled_start)
            if request.HasField("scheduled_start")
            else None,
            patient_ref=p.patient_ref,
            patient_code=p.patient_code,
            full_name=p.full_name,
            birth_date=p.birth_date,
            sex=p.sex,
            referring_physician=request.referring_physician,
            order_ref=request.order_ref,
            request_id=request.request_id,
            visit_ref=request.visit_ref,
        )
        return await self.s.orders.schedule(o, principal())

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.Order:
        order = order_proto(await self.s.orders.get(request.id, request.accession_number))
        await self._audited(
            context, "imaging_order.read", "ImagingOrder", order.id, [order.patient.patient_code]
        )
        return order

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return await self.s.orders.cancel(request.id, principal(), request.reason)

    async def RescheduleOrder(self, request: pb.RescheduleOrderRequest, context: Any) -> pb.Order:
        start = proto_time(request.scheduled_start) if request.HasField("scheduled_start") else None
        return await self.s.orders.reschedule(
            request.id,
            start,
            principal(),
            station_ae_title=request.station_ae_title,
            reason=request.reason,
        )

    async def GetStudy(self, request: pb.GetStudyRequest, context: Any) -> pb.Study:
        study = await self.s.studies.get(request.study_instance_uid)
        shown = [study.patient_code]
        await self._audited(context, "imaging_study.read", "ImagingStudy", study.study_instance_uid, shown)
        return study

    async def ListStudies(self, request: pb.ListStudiesRequest, context: Any) -> pb.ListStudiesResponse:
        items = await self.s.studies.list(request.patient_code, request.accession_number, request.limit)
        await self._audited(
            context,
            "imaging_study.search",
            "ImagingStudy",
            None,
            [st.patient_code for st in items],
            query={"PatientID": request.patient_code, "AccessionNumber": request.accession_number},
        )
        return pb.ListStudiesResponse(items=items)

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Any) -> pb.ListOrdersResponse:  # noqa: N802
        statuses = list(request.statuses) or DEFAULT_WORKLIST
        limit = min(request.limit or 200, 500)
        rows = await self.s.orders.list_rows(statuses, request.modality or None, limit)
        items = [order_proto(r) for r in rows]
        await self._audited(
            context,
            "imaging_order.list",
            "ImagingOrder",
            None,
            [o.patient.patient_code for o in items],
            statuses=statuses,
            modality=request.modality or None,
        )
        return pb.ListOrdersResponse(items=items)

    async def ListReconciliation(  # noqa: N802
        self, request: pb.ListReconciliationRequest, context: Any
    ) -> pb.ListReconciliationResponse:
        status = request.status or "open"
        if status not in ("open", "resolved"):
            raise Invalid("reconciliation.status", "status: open or resolved", field="status")
        items = await self.s.studies.list_reconciliation(status)
        rows = [{"PatientID": r["patient_id"], "StudyInstanceUID": r["study_instance_uid"]} for r in items]
        entry = http_entry(
            principal(), str(context.peer() or ""), "imaging_reconciliation.list", None, rows, status=status
        )
        await self.access.record(entry)
        return pb.ListReconciliationResponse(items=[_reconciliation(r) for r in items])

    async def ResolveReconciliation(  # noqa: N802
        self, request: pb.ResolveReconciliationRequest, context: Any
    ) -> pb.ReconciliationItem:
        """As ``POST /api/v1/reconciliation/{id}/resolve`` (imaging.study.reconciled, audited)."""
        done = await self.s.studies.resolve(request.item_id, request.order_id or None, principal())
        return pb.ReconciliationItem(
            id=done["id"],
            status=done["status"],
            resolved_order_id=done["order_id"] or "",
            study_instance_uid=done["study_instance_uid"],
        )

    async def ListMpps(self, request: pb.ListMppsRequest, context: Any) -> pb.ListMppsResponse:  # noqa: N802
        items = await self.s.orders.list_mpps(request.unmatched, min(request.limit or 200, 1000))
        rows = [
            {"PatientID": r.get("patient_id"), "StudyInstanceUID": r.get("study_instance_uid")} for r in items
        ]
        entry = http_entry(
            principal(),
            str(context.peer() or ""),
            "imaging_mpps.list",
            None,
            rows,
            unmatched=request.unmatched,
        )
        await self.access.record(replace(entry, resource_type="ImagingMpps"))
        return pb.ListMppsResponse(items=[_mpps(r) for r in items])

    async def ResolveMpps(self, request: pb.ResolveMppsRequest, context: Any) -> pb.Mpps:  # noqa: N802
        """As ``POST /api/v1/mpps/{uid}/resolve``: the note is required (mpps.note), audited."""
        return _mpps(await self.s.orders.resolve_mpps(request.mpps_instance_uid, request.note, principal()))

    async def GetRoutingStatus(  # noqa: N802
        self, request: pb.GetRoutingStatusRequest, context: Any
    ) -> pb.RoutingStatus:
        rules = await self.s.routing.rules()
        queue = await self.s.routing.queue_status()
        peers = self.s.routing.s.peers
        names = sorted({r["destination_ae"] for r in rules} | set(queue["destinations"]))
        out = pb.RoutingStatus(
            rules=[
                pb.RoutingRule(
                    id=r["id"],
                    name=r["name"],
                    destination_ae=r["destination_ae"],
                    modality=r["modality"] or "",
                    source_ae=r["source_ae"] or "",
                    enabled=bool(r["enabled"]),
                )
                for r in rules
            ],
            destinations=[
                pb.RoutingDestination(
                    ae_title=name,
                    known=name in peers,
                    pending=queue["destinations"].get(name, {}).get("pending", 0),
                    sent=queue["destinations"].get(name, {}).get("sent", 0),
                    failed=queue["destinations"].get(name, {}).get("failed", 0),
                )
                for name in names
            ],
        )
        for j in queue["waiting"]:
            job = pb.RoutingJob(
                seq=j["seq"],
                destination_ae=j["destination_ae"],
                study_instance_uid=j["study_instance_uid"],
                sop_instance_uid=j["sop_instance_uid"],
                status=j["status"],
                attempts=j["attempts"],
                last_error=j["last_error"] or "",
            )
            _ts(job, "next_attempt_at", j["next_attempt_at"])
            out.waiting.append(job)
        return out

    async def RetryRouting(self, request: pb.RetryRoutingRequest, context: Any) -> pb.RetryRoutingResponse:  # noqa: N802
        n = await self.s.routing.retry(request.destination_ae or None, principal(), str(context.peer() or ""))
        return pb.RetryRoutingResponse(rescheduled=n)

    async def ListAes(self, request: pb.ListAesRequest, context: Any) -> pb.ListAesResponse:
        """The gateway's AE and its DICOM peers, as configured (nothing patient-related: not audited)."""
        st = self.s.settings
        granted = parse_permissions(st.ae_permissions)
        return pb.ListAesResponse(
            own_ae_title=st.ae_title,
            own_host=st.dicom_host,
            own_port=st.dicom_port,
            strict_ae=st.strict_ae,
            peers=[
                pb.DicomAe(
                    ae_title=title,
                    host=host,
                    port=port,
                    permissions=sorted(granted.get(title, PERMISSIONS)),
                )
                for title, (host, port) in sorted(st.peers.items())
            ],
            configured_by=(
                "HOSPITAL_IMAGING_KNOWN_AES, HOSPITAL_IMAGING_AE_PERMISSIONS, HOSPITAL_IMAGING_STRICT_AE"
            ),
        )


def register(server: grpc.aio.Server, services: Services) -> None:
    pb_grpc.add_ImagingServiceServicer_to_server(ImagingServicer(services), server)
