"""The served OpenAPI documents the body of every route's success answer, under the field names the
wards, the bench screens and integrators already read."""

from __future__ import annotations

from hospital.lab.service import DEFINITION
from hospital.testing.openapi import undocumented_responses
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, running_service


async def test_every_route_documents_its_answer(nats_server, tmp_path) -> None:
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'lab.db'}",
            nats_url=nats_server.url,
            mllp_port=free_port(),
            astm_port=free_port(),
            admissions_grpc=f"127.0.0.1:{free_port()}",  # nothing listens: orders are taken as unverified
        ) as svc,
        http_client(svc, "doctor") as c,
    ):
        doc = (await c.get("/openapi.json")).json()
        assert undocumented_responses(doc) == []
        schemas = doc["components"]["schemas"]
        r = await c.post(
            "/api/v1/orders",
            json={
                "patient": {"id": "p-openapi-1", "full_name": "Võ Thị Mai", "sex": "female"},
                "tests": ["GLU"],
            },
        )
        assert r.status_code == 201, r.text
        order = r.json()
        # the answer has exactly the documented fields, dates as the API always wrote them
        assert set(order) == set(schemas["Order"]["properties"])
        assert set(order["specimens"][0]) == set(schemas["OrderSpecimen"]["properties"])
        assert order["ordered_at"].endswith("+00:00")
        r = await c.get("/api/v1/catalogue")
        assert set(r.json()["tests"][0]) == set(schemas["TestInfo"]["properties"])
    assert doc["paths"]["/api/v1/specimens/{barcode}/label.png"]["get"]["responses"]["200"]["content"] == {
        "image/png": {"schema": {"type": "string", "format": "binary"}}
    }
