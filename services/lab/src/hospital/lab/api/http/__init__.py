"""HTTP API for the lab bench and the wards (OpenAPI at /docs): one router per module, a response model on
every route. Lab technicians verify, correct, assign and run QC; doctors and nurses order and read. Every
read of patient data is audited."""

from __future__ import annotations

from fastapi import FastAPI

from hospital.lab.api.http import catalogue, orders, qc, results
from hospital.lab.app.services import Services


def build_http(services: Services) -> FastAPI:
    app = FastAPI(
        title="Laboratory (LIS)",
        version="1.0",
        description="Orders, specimens and labels, analyzer results, verification, critical values, "
        "QC. Analyzers connect over ASTM (port 5100) or HL7/MLLP (port 2575): see docs/lab.md.",
    )
    app.state.services = services
    for module in (catalogue, orders, results, qc):
        app.include_router(module.router)
    return app
