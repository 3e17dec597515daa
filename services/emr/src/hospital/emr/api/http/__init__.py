"""HTTP API of the EMR (OpenAPI at /docs): one router per module, response models on every route."""

from __future__ import annotations

from fastapi import FastAPI

from hospital.emr.api.http import charts
from hospital.emr.api.http.deps import Services


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
    return app
