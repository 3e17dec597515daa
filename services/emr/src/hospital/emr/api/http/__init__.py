"""HTTP API of the EMR (OpenAPI at /docs): one router per module, response models on every route."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hospital.chassis.web import problem
from hospital.emr.api.http import (
    charts,
    documents,
    eprescription,
    fhir,
    nursing,
    orders,
    papers,
    reports,
    results,
)
from hospital.emr.api.http.deps import Services
from hospital.emr.app.prescriptions import AlertsNotOverridden


def build_http(services: Services) -> FastAPI:
    app = FastAPI(
        title="EMR",
        version="1",
        description=(
            "Electronic medical record: encounters, consultations, ICD-10, orders, prescriptions, "
            "documents and signatures, results and critical values. Bearer token required; chart reads "
            "outside the caller's departments need a break-the-glass reason (break_glass_reason)."
        ),
    )
    app.state.services = services
    app.include_router(charts.router)
    app.include_router(orders.router)
    app.include_router(results.router)
    app.include_router(documents.router)
    app.include_router(papers.router)
    app.include_router(nursing.router)
    app.include_router(reports.router)
    app.include_router(eprescription.router)
    fhir.install(app)

    @app.exception_handler(AlertsNotOverridden)
    async def _alerts(_: Request, exc: AlertsNotOverridden) -> JSONResponse:
        return problem(
            exc.status,
            exc.message,
            exc.message,
            exc.code,
            field=exc.field,
            alerts=[a.model_dump() for a in exc.alerts],
        )

    return app
