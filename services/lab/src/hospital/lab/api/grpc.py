"""gRPC API for other services (contract: proto/hospital/lab/v1/lab.proto)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from hospital.chassis.errors import Invalid
from hospital.chassis.rpc import principal
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.contracts.lab.v1 import lab_pb2_grpc as pb_grpc
from hospital.lab.app.analyzers import AnalyzerStatus
from hospital.lab.app.common import SEX_NAME, Caller, result_proto
from hospital.lab.app.orders import NewOrder, order_proto, specimen_proto
from hospital.lab.app.services import Services
from hospital.lab.config import LabSettings

SERVICE = pb.DESCRIPTOR.services_by_name["LabService"].full_name
CLINICAL = ("doctor", "nurse", "lab_technician")
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/PlaceOrder": ("doctor",),
    f"/{SERVICE}/CancelOrder": ("doctor", "lab_technician"),
    f"/{SERVICE}/GetOrder": CLINICAL,
    f"/{SERVICE}/GetResults": CLINICAL,
    f"/{SERVICE}/ListCatalogue": CLINICAL,
    f"/{SERVICE}/ReceiveSpecimen": ("lab_technician",),
    f"/{SERVICE}/ListWorklist": ("lab_technician",),
    f"/{SERVICE}/VerifyResults": ("lab_technician",),
    f"/{SERVICE}/ListCriticals": CLINICAL,
    f"/{SERVICE}/RecordCriticalCall": ("lab_technician",),
    f"/{SERVICE}/ListQcLots": ("lab_technician",),
    f"/{SERVICE}/GetLeveyJennings": ("lab_technician",),
    f"/{SERVICE}/ListAnalyzers": ("lab_technician",),
    f"/{SERVICE}/ListAnalyzerConnections": ("admin", "lab_technician"),
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(principal=principal(), source=context.peer() or "")


def _ts(msg: Any, name: str, value: Any) -> None:
    """Set timestamp field ``name`` from a datetime or ISO text (left unset when empty)."""
    if value:
        getattr(msg, name).FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)


class LabServicer(pb_grpc.LabServiceServicer):
    def __init__(self, services: Services, settings: LabSettings | None = None) -> None:
        self.s, self.settings = services, settings
        self.analyzers = AnalyzerStatus(services.ingest.rt, services.catalogue)

    def _lot(self, lot: dict[str, Any]) -> pb.QcLot:
        test = self.s.catalogue.tests.get(lot["test_code"])
        return pb.QcLot(
            id=lot["id"],
            instrument_id=lot["instrument_id"],
            test_code=lot["test_code"],
            test_name=test.name_vi if test else "",
            test_name_en=test.name_en if test else "",
            lot_number=lot["lot_number"],
            level=lot["level"],
            material=lot["material"] or "",
            mean=lot["mean"],
            sd=lot["sd"],
            expires=lot["expires"] or "",
            active=bool(lot["active"]),
            unit=test.unit if test else "",
        )

    async def ListQcLots(self, request: pb.ListQcLotsRequest, context: Any) -> pb.ListQcLotsResponse:  # noqa: N802
        await self.s.ingest.ensure_catalogue()
        return pb.ListQcLotsResponse(items=[self._lot(lot) for lot in await self.s.qc.lots()])

    async def GetLeveyJennings(self, request: pb.GetLeveyJenningsRequest, context: Any) -> pb.LeveyJennings:  # noqa: N802
        """The latest ``limit`` runs of a lot (default 60, at most 500), oldest first; qc.lot_not_found."""
        await self.s.ingest.ensure_catalogue()
        if request.limit < 0:
            raise Invalid("qc.limit", "limit must not be negative", field="limit")
        data = await self.s.qc.levey_jennings(request.lot_id, min(request.limit or 60, 500))
        out = pb.LeveyJennings(lot=self._lot(data["lot"]))
        for p in data["points"]:
            point = pb.QcPoint(
                value=p["value"],
                z=p["z"],
                accepted=bool(p["accepted"]),
                source=p["source"],
                violations=[pb.QcViolation(rule=v, rejection=v != "1-2s") for v in p["violations"]],
            )
            _ts(point, "measured_at", p["measured_at"])
            out.points.append(point)
        return out

    async def ListAnalyzers(self, request: pb.ListAnalyzersRequest, context: Any) -> pb.ListAnalyzersResponse:  # noqa: N802
        await self.s.ingest.ensure_catalogue()
        out = pb.ListAnalyzersResponse()
        for a in await self.analyzers.status(self.s.ingest.listeners):
            item = pb.AnalyzerStatus(
                id=a["id"],
                name=a["name"],
                protocol=a["protocol"],
                last_message_kind=a["last_message_kind"],
                last_peer=a["last_peer"],
                messages=a["messages"],
                connected=a["connected"],
            )
            _ts(item, "last_message_at", a["last_message_at"])
            for q in a["qc"]:
                state = pb.QcState(
                    test_code=q["test_code"],
                    accepted=bool(q["accepted"]),
                    violations=q["violations"],
                    lot_id=q["lot_id"],
                )
                _ts(state, "last_run_at", q["last_run_at"])
                item.qc.append(state)
            out.items.append(item)
        return out

    async def ListAnalyzerConnections(
        self, request: pb.ListAnalyzerConnectionsRequest, context: Any
    ) -> pb.ListAnalyzerConnectionsResponse:
        """The connections analyzers use, as configured (nothing patient-related: not audited)."""
        st = self.settings
        if st is None:
            raise RuntimeError("the lab's settings were not given to its gRPC servicer")
        items = [
            pb.AnalyzerConnection(
                name="mllp",
                protocol="hl7-mllp",
                mode="server",
                host=st.protocol_host,
                port=st.mllp_port,
                shared=True,
            ),
            pb.AnalyzerConnection(
                name="astm",
                protocol="astm",
                mode="server",
                host=st.protocol_host,
                port=st.astm_port,
                shared=True,
            ),
        ]
        items += [
            pb.AnalyzerConnection(
                name=i.name,
                protocol=i.protocol,
                mode=i.mode,
                host=st.protocol_host if i.mode == "server" else i.host,
                port=i.port,
                dialect=i.dialect or "",
            )
            for i in st.instruments
        ]
        return pb.ListAnalyzerConnectionsResponse(
            items=items,
            configured_by="HOSPITAL_LAB_INSTRUMENTS, HOSPITAL_LAB_MLLP_PORT, HOSPITAL_LAB_ASTM_PORT",
        )

    async def PlaceOrder(self, request: pb.PlaceOrderRequest, context: Any) -> pb.Order:
        p = request.patient
        o = NewOrder(
            patient_id=p.id,
            patient_code=p.patient_code or None,
            patient_name=p.full_name,
            patient_sex=SEX_NAME.get(p.sex, "unknown"),
            birth_date=p.birth_date or None,
            tests=list(request.tests),
            priority="stat" if request.priority == pb.PRIORITY_STAT else "routine",
            visit_id=request.visit_id or None,
            ordering_doctor=request.ordering_doctor or None,
            placer_order_number=request.placer_order_number or None,
            request_id=request.request_id or None,
            clinical_note=request.clinical_note or None,
            barcode=request.barcode or None,
        )
        return order_proto(await self.s.orders.place(o, _caller(context), source="grpc"))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return order_proto(await self.s.orders.cancel(request.order_id, request.reason, _caller(context)))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.Order:
        return order_proto(
            await self.s.orders.get(
                request.order_id or None, _caller(context), barcode=request.barcode or None
            )
        )

    async def GetResults(self, request: pb.GetResultsRequest, context: Any) -> pb.GetResultsResponse:
        out = await self.s.results.for_order(
            _caller(context),
            request.order_id or None,
            request.barcode or None,
            verified_only=request.verified_only,
        )
        return pb.GetResultsResponse(results=[result_proto(r) for r in out["results"]])

    async def ListCatalogue(self, request: pb.ListCatalogueRequest, context: Any) -> pb.ListCatalogueResponse:
        await self.s.ingest.ensure_catalogue()
        return pb.ListCatalogueResponse(
            tests=[
                pb.CatalogueTest(
                    code=t.code,
                    name_vi=t.name_vi,
                    name_en=t.name_en,
                    loinc=t.loinc or "",
                    unit=t.unit,
                    specimen_type=t.specimen_type,
                    tube=t.tube,
                )
                for t in sorted(self.s.catalogue.tests.values(), key=lambda t: t.sort)
            ]
        )

    async def ReceiveSpecimen(
        self, request: pb.ReceiveSpecimenRequest, context: Any
    ) -> pb.ReceiveSpecimenResponse:
        caller = _caller(context)
        spec = await self.s.orders.specimen_step(request.barcode.strip(), "receive", caller)
        order = await self.s.orders.get(None, caller, barcode=spec["barcode"])
        return pb.ReceiveSpecimenResponse(specimen=specimen_proto(spec), order=order_proto(order))

    async def ListWorklist(self, request: pb.ListWorklistRequest, context: Any) -> pb.ListWorklistResponse:
        items = await self.s.results.worklist(
            _caller(context),
            request.status or "preliminary",
            request.instrument or None,
            request.limit or 200,
        )
        return pb.ListWorklistResponse(
            items=[
                pb.WorklistItem(
                    result=result_proto(i),
                    patient_name=i["patient_name"] or "",
                    order_number=i["order_number"],
                )
                for i in items
            ]
        )

    async def VerifyResults(self, request: pb.VerifyResultsRequest, context: Any) -> pb.GetResultsResponse:
        if not request.result_ids:
            raise Invalid("verify.empty", "no result to verify", field="result_ids")
        done = await self.s.results.verify(list(request.result_ids), _caller(context))
        return pb.GetResultsResponse(results=[result_proto(r) for r in done])

    async def ListCriticals(self, request: pb.ListCriticalsRequest, context: Any) -> pb.ListCriticalsResponse:
        items = await self.s.results.criticals(_caller(context), request.pending_only)
        return pb.ListCriticalsResponse(
            items=[
                pb.CriticalItem(
                    result=result_proto(i),
                    patient_name=i["patient_name"] or "",
                    ordering_doctor=i["ordering_doctor"] or "",
                    calls=[call_proto(c) for c in i["calls"]],
                )
                for i in items
            ]
        )

    async def RecordCriticalCall(
        self, request: pb.RecordCriticalCallRequest, context: Any
    ) -> pb.CriticalCall:
        body = {
            "notified_person": request.notified_person,
            "notified_role": request.notified_role,
            "read_back_confirmed": request.read_back_confirmed,
            "note": request.note or None,
        }
        return call_proto(await self.s.results.record_call(request.result_id, body, _caller(context)))


def call_proto(c: dict[str, Any]) -> pb.CriticalCall:
    return pb.CriticalCall(
        id=c["id"],
        result_id=c["result_id"],
        notified_person=c["notified_person"] or "",
        notified_role=c.get("notified_role") or "",
        notified_at=str(c["notified_at"] or ""),
        read_back_confirmed=bool(c["read_back_confirmed"]),
        called_by=c["called_by"] or "",
        note=c.get("note") or "",
    )


def register(server: grpc.aio.Server, services: Services, settings: LabSettings | None = None) -> None:
    pb_grpc.add_LabServiceServicer_to_server(LabServicer(services, settings), server)
