"""HTTP API for the web front end, kiosks and integrators (OpenAPI at /docs and /openapi.json): one
router per module, a response model on every route."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hospital.admissions.api.http import fhir, inpatient, insurance, patients, reference, visits
from hospital.admissions.app.services import Services
from hospital.admissions.domain.identity import ScanError
from hospital.chassis.web import problem


def build_http(services: Services) -> FastAPI:
    app = FastAPI(
        title="Admissions (HIS)",
        version="1.0",
        description="Patient index with CCCD/BHYT scanning, outpatient queues, inpatient ADT and beds. "
        "Every call needs `Authorization: Bearer <token>` (local stack: `make token ROLE=...`).",
    )
    app.state.services = services

    @app.exception_handler(ScanError)
    async def _scan_error(_: Request, exc: ScanError) -> JSONResponse:
        extra = {"field": exc.field} if exc.field else {}
        return problem(422, "Unreadable card QR", exc.message, exc.code, **extra)

    for module in (patients, reference, visits, inpatient, fhir, insurance):
        app.include_router(module.router)
    return app
