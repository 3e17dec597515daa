"""HTTP API for the lab bench and the wards (OpenAPI at /docs). Lab technicians verify, correct, assign
and run QC; doctors and nurses order and read. Every read of patient data is audited."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from hospital.chassis.fields import Id, Real, code, line, text
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, require_roles
from hospital.lab.app.common import Caller
from hospital.lab.app.orders import NewOrder

TECH = ("lab_technician",)
READERS = ("lab_technician", "doctor", "nurse")


def Role(*roles: str) -> Any:
    return Annotated[Principal, Depends(require_roles(*roles))]


def caller(request: Request, who: Principal) -> Caller:
    return Caller(principal=who, source=client_address(request))


class PatientIn(BaseModel):
    id: code(36, min_length=1)
    patient_code: code(30) | None = Field(None, examples=["BN250000123"])
    full_name: line(200) = Field(..., examples=["Nguyễn Thị Hoa"])
    sex: Literal["male", "female", "unknown"]
    birth_date: code(10) | None = Field(None, examples=["1985-03-14", "1985"])


class OrderIn(BaseModel):
    """Text fields are bounded and cleaned (chassis ``fields``): 422 naming the field otherwise."""

    patient: PatientIn
    tests: list[code(20, min_length=1)] = Field(
        ..., min_length=1, max_length=100, examples=[["CBC", "GLU", "CRE"]]
    )
    priority: Literal["routine", "stat"] = "routine"
    visit_id: Id | None = None
    ordering_doctor: line(200) | None = None
    placer_order_number: code(60) | None = None
    request_id: code(100) | None = None
    clinical_note: text(2000) | None = None
    barcode: code(40) | None = Field(None, description="a pre-printed barcode (one tube only)")


class CancelIn(BaseModel):
    reason: text(300, min_length=1)


class VerifyIn(BaseModel):
    result_ids: list[Id] = Field(..., min_length=1, max_length=500)


class AmendIn(BaseModel):
    value: line(200, min_length=1)
    reason: text(300, min_length=1)


class AssignIn(BaseModel):
    instrument: code(40, min_length=1)
    barcode_received: code(40, min_length=1)
    barcode: code(40, min_length=1) = Field(..., description="the specimen the results belong to")


class CriticalCallIn(BaseModel):
    notified_person: line(200, min_length=1) = Field(..., examples=["BS. Trần Văn Nam"])
    notified_role: line(60, min_length=1) = Field(..., examples=["bác sĩ điều trị"])
    notified_at: datetime | None = None
    read_back_confirmed: bool
    note: text(1000) | None = None


class AutoVerifyIn(BaseModel):
    enabled: bool


class QcLotIn(BaseModel):
    instrument_id: code(40, min_length=1)
    test_code: code(20, min_length=1)
    lot_number: code(60, min_length=1)
    level: code(20, min_length=1) = Field(..., examples=["1", "2", "normal", "high"])
    material: line(200) = ""
    sample_id: code(60, min_length=1) = Field(..., description="the specimen ID the analyzer reports for it")
    mean: Real = Field(..., ge=-1e12, le=1e12, description="target mean (finite)")
    sd: Real = Field(..., gt=0, le=1e12, description="target standard deviation (finite, > 0)")
    expires: date | None = None


class QcResultIn(BaseModel):
    value: Real = Field(..., ge=-1e12, le=1e12)
    measured_at: datetime | None = None


def build_http(services: Any) -> FastAPI:
    app = FastAPI(
        title="Laboratory (LIS)",
        version="1.0",
        description="Orders, specimens and labels, analyzer results, verification, critical values, "
        "QC. Analyzers connect over ASTM (port 5100) or HL7/MLLP (port 2575): see docs/lab.md.",
    )
    api = APIRouter(prefix="/api/v1")
    o, r, qc, cat = services.orders, services.results, services.qc, services.catalogue

    @api.get("/catalogue", tags=["catalogue"])
    async def catalogue(_: Role(*READERS)) -> dict[str, Any]:
        await services.ingest.ensure_catalogue()
        return {
            "tests": [
                {
                    "code": t.code,
                    "name_vi": t.name_vi,
                    "name_en": t.name_en,
                    "loinc": t.loinc,
                    "unit": t.unit,
                    "specimen_type": t.specimen_type,
                    "tube": t.tube,
                    "ranges": [
                        {
                            "sex": x.sex,
                            "age_min_days": x.age_min_days,
                            "age_max_days": x.age_max_days,
                            "range": x.text(),
                        }
                        for x in t.ranges
                    ],
                }
                for t in sorted(cat.tests.values(), key=lambda t: t.sort)
            ],
            "panels": [{"code": c, "name_vi": cat.panel_names[c], "tests": m} for c, m in cat.panels.items()],
        }

    @api.post("/orders", status_code=201, tags=["orders"], summary="Order tests; specimens get barcodes")
    async def place(body: OrderIn, request: Request, who: Role("doctor", "lab_technician")) -> dict[str, Any]:
        await services.ingest.ensure_catalogue()
        p = body.patient
        return await o.place(
            NewOrder(
                patient_id=p.id,
                patient_code=p.patient_code,
                patient_name=p.full_name,
                patient_sex=p.sex,
                birth_date=p.birth_date,
                tests=body.tests,
                priority=body.priority,
                visit_id=body.visit_id,
                ordering_doctor=body.ordering_doctor,
                placer_order_number=body.placer_order_number,
                request_id=body.request_id,
                clinical_note=body.clinical_note,
                barcode=body.barcode,
            ),
            caller(request, who),
            source="http",
        )

    @api.get("/orders/{order_id}", tags=["orders"])
    async def get_order(order_id: str, request: Request, who: Role(*READERS)) -> dict[str, Any]:
        return await o.get(order_id, caller(request, who))

    @api.post("/orders/{order_id}/cancel", tags=["orders"])
    async def cancel(
        order_id: str, body: CancelIn, request: Request, who: Role("doctor", "lab_technician")
    ) -> dict[str, Any]:
        return await o.cancel(order_id, body.reason, caller(request, who))

    @api.get(
        "/orders/{order_id}/results", tags=["results"], summary="Results of an order (doctors read here)"
    )
    async def order_results(
        order_id: str,
        request: Request,
        who: Role(*READERS),
        verified_only: bool = False,
        include_info: bool = False,
    ) -> dict[str, Any]:
        return await r.for_order(
            caller(request, who), order_id, verified_only=verified_only, include_info=include_info
        )

    @api.get("/specimens/{barcode}", tags=["specimens"], summary="Order lookup by barcode")
    async def by_barcode(barcode: str, request: Request, who: Role(*READERS)) -> dict[str, Any]:
        return await o.get(None, caller(request, who), barcode=barcode)

    @api.post("/specimens/{barcode}/collect", tags=["specimens"])
    async def collect(barcode: str, request: Request, who: Role("nurse", "lab_technician")) -> dict[str, Any]:
        return await o.specimen_step(barcode, "collect", caller(request, who))

    @api.post("/specimens/{barcode}/receive", tags=["specimens"], summary="Specimen arrived in the lab")
    async def receive(barcode: str, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return await o.specimen_step(barcode, "receive", caller(request, who))

    @api.get(
        "/specimens/{barcode}/label.png",
        tags=["specimens"],
        summary="Tube label (Code 128, 50×25 mm)",
        response_class=Response,
    )
    async def label(barcode: str, request: Request, who: Role("nurse", "lab_technician")) -> Response:
        return Response(await o.label_png(barcode, caller(request, who)), media_type="image/png")

    @api.get("/worklist", tags=["bench"], summary="Results waiting for verification (critical first)")
    async def worklist(
        request: Request,
        who: Role(*TECH),
        status: str = "preliminary",
        instrument: str | None = None,
        limit: int = Query(200, ge=1, le=1000),
    ) -> dict[str, Any]:
        return {"items": await r.worklist(caller(request, who), status, instrument, limit)}

    @api.get("/results/{result_id}", tags=["results"], summary="A result with its history and calls")
    async def get_result(result_id: str, request: Request, who: Role(*READERS)) -> dict[str, Any]:
        return await r.get(result_id, caller(request, who))

    @api.post("/results/verify", tags=["bench"], summary="Verify results (one or a batch)")
    async def verify(body: VerifyIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return {"items": await r.verify(body.result_ids, caller(request, who))}

    @api.post("/results/{result_id}/verify", tags=["bench"])
    async def verify_one(result_id: str, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return (await r.verify([result_id], caller(request, who)))[0]

    @api.post(
        "/results/{result_id}/amend", tags=["bench"], summary="Correct a verified result (history kept)"
    )
    async def amend(result_id: str, body: AmendIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return await r.amend(result_id, body.value, body.reason, caller(request, who))

    @api.get("/unmatched", tags=["bench"], summary="Results whose barcode matched no specimen")
    async def unmatched(request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return {"items": await r.unmatched(caller(request, who))}

    @api.post("/unmatched/assign", tags=["bench"], summary="Attach unmatched results to a specimen")
    async def assign(body: AssignIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        await services.ingest.ensure_catalogue()
        return {
            "items": await r.assign(
                body.instrument, body.barcode_received, body.barcode, caller(request, who)
            )
        }

    @api.get("/critical", tags=["critical"], summary="Critical values and their documented calls")
    async def criticals(request: Request, who: Role(*READERS), pending_only: bool = False) -> dict[str, Any]:
        return {"items": await r.criticals(caller(request, who), pending_only)}

    @api.post(
        "/results/{result_id}/critical-calls",
        status_code=201,
        tags=["critical"],
        summary="Document who was told of a critical value, when, and the read-back",
    )
    async def critical_call(
        result_id: str, body: CriticalCallIn, request: Request, who: Role(*TECH)
    ) -> dict[str, Any]:
        return await r.record_call(result_id, body.model_dump(), caller(request, who))

    @api.get("/settings/autoverify", tags=["settings"])
    async def get_autoverify(_: Role(*TECH)) -> dict[str, Any]:
        return {"enabled": await r.autoverify()}

    @api.put("/settings/autoverify", tags=["settings"], summary="Switch auto-verification on or off")
    async def set_autoverify(body: AutoVerifyIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return {"enabled": await r.set_autoverify(body.enabled, caller(request, who))}

    @api.get("/qc/lots", tags=["qc"])
    async def qc_lots(_: Role(*TECH)) -> dict[str, Any]:
        return {"items": await qc.lots()}

    @api.post("/qc/lots", status_code=201, tags=["qc"], summary="Register a control lot with its targets")
    async def qc_lot(body: QcLotIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        await services.ingest.ensure_catalogue()
        return await qc.create_lot(body.model_dump(), caller(request, who))

    @api.post("/qc/lots/{lot_id}/results", status_code=201, tags=["qc"], summary="Enter a QC result")
    async def qc_result(lot_id: str, body: QcResultIn, request: Request, who: Role(*TECH)) -> dict[str, Any]:
        return await qc.record_manual(lot_id, body.value, body.measured_at, caller(request, who))

    @api.get("/qc/lots/{lot_id}/levey-jennings", tags=["qc"], summary="Levey-Jennings chart data")
    async def lj(lot_id: str, _: Role(*TECH)) -> dict[str, Any]:
        return await qc.levey_jennings(lot_id)

    @api.get("/qc/status", tags=["qc"], summary="QC state per instrument and test (gates auto-verification)")
    async def qc_state(_: Role(*TECH)) -> dict[str, Any]:
        return {"items": await qc.status()}

    app.include_router(api)
    return app
