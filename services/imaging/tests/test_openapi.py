"""The served OpenAPI documents the body of every route's success answer: the review and ops routes'
JSON under the names their screens and tooling already read, DICOMweb's DICOM JSON and multipart media."""

from __future__ import annotations

import pytest

from hospital.testing.openapi import undocumented_responses
from hospital.testing.services import http_client

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)


async def test_every_route_documents_its_answer(imaging) -> None:
    async with http_client(imaging, "admin") as c:
        doc = (await c.get("/openapi.json")).json()
        assert undocumented_responses(doc) == []
        schemas = doc["components"]["schemas"]
        r = await c.get("/api/v1/pipeline")
        assert r.status_code == 200, r.text
        assert set(r.json()) == set(schemas["Pipeline"]["properties"])
    qido = doc["paths"]["/dicomweb/studies"]["get"]["responses"]
    assert set(qido["200"]["content"]) == {"application/dicom+json"} and "204" in qido
    rendered = doc["paths"]["/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered"]["get"]
    assert set(rendered["responses"]["200"]["content"]) == {"image/jpeg", "image/png"}
