"""HTTP API: DICOMweb (/dicomweb), studies, orders, the review queues and routing (OpenAPI at /docs): one
router per module, a response model (or a documented DICOM media type) on every route."""

from __future__ import annotations

from fastapi import FastAPI

from hospital.imaging.api.dicomweb import build_dicomweb
from hospital.imaging.api.http import orders, review, routing, studies
from hospital.imaging.app.access_audit import AccessAudit
from hospital.imaging.app.services import Services


def build_http(services: Services) -> FastAPI:
    app = FastAPI(title="Hospital imaging (PACS gateway)", version="1")
    app.state.services = services
    app.state.access = AccessAudit(services.rt)
    # STOW-RS bodies are instances: the chassis's default request limit does not apply there.
    app.state.body_limits = {"/dicomweb/studies": None}
    app.include_router(build_dicomweb(services))
    for module in (studies, orders, review, routing):
        app.include_router(module.router)
    return app
