"""The served OpenAPI documents the body of every route's success answer, under the field names the cash
desk, the web front end and integrators already read."""

from __future__ import annotations

from billing_testkit import invoice_of

from hospital.testing.openapi import undocumented_responses
from hospital.testing.services import http_client


async def test_every_route_documents_its_answer(billing_sqlite, admissions) -> None:
    async with http_client(billing_sqlite, "cashier") as c:
        doc = (await c.get("/openapi.json")).json()
    assert undocumented_responses(doc) == []
    schemas = doc["components"]["schemas"]
    visit_id, _, _ = await admissions.open_visit(name="Hoàng Văn Dũng")
    invoice = await invoice_of(billing_sqlite, visit_id)
    # the answer has exactly the documented fields, amounts and times as the API always wrote them
    assert set(invoice) == set(schemas["Invoice"]["properties"])
    assert set(invoice["lines"][0]) == set(schemas["InvoiceLine"]["properties"])
    assert isinstance(invoice["total_amount"], int) and invoice["created_at"].endswith("+00:00")
    assert set(
        doc["paths"]["/api/v1/invoices/{invoice_id}/vietqr"]["post"]["responses"]["200"]["content"]
    ) == {
        "application/json",
        "image/png",
    }
