"""The served OpenAPI documents the body of every route's success answer, under the field names kiosks
and integrators already read."""

from __future__ import annotations

from hospital.admissions.service import DEFINITION
from hospital.testing.openapi import undocumented_responses
from hospital.testing.services import http_client, running_service


async def test_every_route_documents_its_answer(nats_server, tmp_path) -> None:
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'admissions.db'}",
            nats_url=nats_server.url,
        ) as svc,
        http_client(svc, "receptionist") as c,
    ):
        doc = (await c.get("/openapi.json")).json()
        assert undocumented_responses(doc) == []
        schemas = doc["components"]["schemas"]
        r = await c.post(
            "/api/v1/patients",
            json={"full_name": "Phạm Thị Lan", "birth_date": "1990-05-02", "sex": "female"},
        )
        assert r.status_code == 201, r.text
        # the answer has exactly the documented fields, dates as the API always wrote them
        assert set(r.json()) == set(schemas["Patient"]["properties"])
        assert r.json()["created_at"].endswith("+00:00")
        r = await c.get("/api/v1/rooms")
        assert set(r.json()["items"][0]) == set(schemas["Room"]["properties"])
    assert {"/api/v1/patients", "/api/v1/visits", "/fhir/Patient/{patient_id}"} <= set(doc["paths"])
