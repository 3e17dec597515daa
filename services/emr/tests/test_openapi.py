"""The served OpenAPI documents the body of every route's success answer (FHIR resources under their own
media type, the notification stream as server-sent events)."""

from __future__ import annotations

from hospital.testing.openapi import undocumented_responses
from hospital.testing.services import http_client


async def test_every_route_documents_its_answer(emr_sqlite) -> None:
    async with http_client(emr_sqlite, "doctor") as c:
        doc = (await c.get("/openapi.json")).json()
        r = await c.get("/fhir/metadata")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert undocumented_responses(doc) == []
    assert set(doc["paths"]["/fhir/{resource_type}"]["get"]["responses"]["200"]["content"]) == {
        "application/fhir+json"
    }
