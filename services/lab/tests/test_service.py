"""The lab service end to end: orders and specimens, analyzer ingestion over the real listeners,
validation, verification, critical values, QC, roles and audit."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hospital.chassis.db import Database
from hospital.testing.services import http_client

AN = {
    "id": "p-nguyen-thi-hoa",
    "patient_code": "BN250000001",
    "full_name": "Nguyễn Thị Hoa",
    "sex": "female",
    "birth_date": "1985-03-14",
}
NAM = {
    "id": "p-tran-van-nam",
    "patient_code": "BN250000002",
    "full_name": "Trần Văn Nam",
    "sex": "male",
    "birth_date": "1970-01-01",
}


async def place(svc, tests, patient=AN, **extra) -> dict:
    async with http_client(svc, "doctor") as c:
        r = await c.post("/api/v1/orders", json={"patient": patient, "tests": tests, **extra})
        assert r.status_code == 201, r.text
        return r.json()


async def count(svc, table, *where) -> int:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())
    finally:
        await db.dispose()


def astm(svc) -> tuple[str, int]:
    return "127.0.0.1", svc.settings.astm_port


async def test_order_specimens_barcodes_label_and_lifecycle(lab) -> None:
    order = await place(lab, ["CBC", "GLU", "CRE", "UA"], ordering_doctor="BS. Lê Văn Tâm", request_id="rq-1")
    assert order["status"] == "active" and order["order_number"].startswith("XN")
    tubes = {s["tube"]: s for s in order["specimens"]}
    assert len(tubes) == 4  # EDTA, fluoride, serum, urine
    barcodes = [s["barcode"] for s in order["specimens"]]
    assert len(set(barcodes)) == 4 and all(len(b) == 12 and b.isdigit() for b in barcodes)
    assert {i["test_code"] for i in order["items"]} >= {"WBC", "HGB", "PLT", "GLU", "CRE", "U-PRO"}
    again = await place(lab, ["CBC"], request_id="rq-1")
    assert again["id"] == order["id"]  # idempotent
    other = await place(lab, ["GLU"], patient=NAM)
    assert not set(barcodes) & {s["barcode"] for s in other["specimens"]}
    edta = tubes["Ống EDTA (nắp tím)"]["barcode"]
    async with http_client(lab, "nurse") as c:
        r = await c.get(f"/api/v1/specimens/{edta}/label.png")
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
        r = await c.post(f"/api/v1/specimens/{edta}/collect")
        assert r.status_code == 200 and r.json()["status"] == "collected"
        assert (await c.post(f"/api/v1/specimens/{edta}/receive")).status_code == 403
    async with http_client(lab, "lab_technician") as c:
        r = await c.post(f"/api/v1/specimens/{edta}/receive")
        assert r.json()["status"] == "received"
        r = await c.get(f"/api/v1/specimens/{edta}")
        assert r.json()["id"] == order["id"]
    async with http_client(lab, "doctor") as c:
        r = await c.post(f"/api/v1/orders/{other['id']}/cancel", json={"reason": "Bác sĩ đổi chỉ định"})
        assert r.json()["status"] == "cancelled" and r.json()["specimens"][0]["status"] == "cancelled"


@pytest.mark.parametrize(
    "body,code,field",
    [
        ({"patient": AN, "tests": ["XYZ"]}, "order.unknown_test", "tests"),
        (
            {"patient": {**AN, "birth_date": "1985-13-01"}, "tests": ["GLU"]},
            "order.birth_date",
            "patient.birth_date",
        ),
        ({"patient": AN, "tests": ["CBC", "GLU"], "barcode": "PRE-0001"}, "order.barcode", "barcode"),
        ({"patient": {**AN, "full_name": " "}, "tests": ["GLU"]}, "order.patient_name", "patient.full_name"),
    ],
)
async def test_bad_orders_get_specific_errors_and_write_nothing(lab, body, code, field) -> None:
    async with http_client(lab, "doctor") as c:
        r = await c.post("/api/v1/orders", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json().get("field") == field
    from hospital.lab.adapters.tables import orders, specimens

    assert await count(lab, orders) == 0 and await count(lab, specimens) == 0
