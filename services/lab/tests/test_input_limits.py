"""Lab's HTTP inputs are bounded: NaN and Infinity never reach a QC lot or result (such a lot made every
later result a 500 and wrote Infinity into the audit), text fields refuse NUL bytes and oversized values,
each with a 422 naming the field and nothing written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
from sqlalchemy import func, select

from hospital.chassis.db import audit_log_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.contracts.lab.v1 import lab_pb2_grpc as pb_grpc
from hospital.lab.adapters.tables import orders, qc_lots
from hospital.lab.simulator import send_astm
from hospital.testing.services import http_client, issuer_for

LOT = {
    "instrument_id": "simulator",
    "test_code": "GLU",
    "lot_number": "BR-2025-L1",
    "level": "1",
    "material": "Bio-Rad Multiqual 1",
    "sample_id": "QC-GLU-L1",
    "mean": 5.0,
    "sd": 0.2,
}
AN = {
    "id": "p-tran-thi-hoa",
    "patient_code": "BN250000077",
    "full_name": "Trần Thị Hoa",
    "sex": "female",
    "birth_date": "1980",
}


async def count(svc, table) -> int:
    async with svc.rt.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def test_qc_takes_only_finite_numbers(lab) -> None:
    async with http_client(lab, "lab_technician") as c:
        for field, raw in (
            ("sd", "Infinity"),
            ("sd", "NaN"),
            ("mean", "-Infinity"),
            ("mean", "NaN"),
            ("sd", "1e400"),
            ("mean", "1e300"),
        ):
            body = dict(LOT)
            body.pop(field)
            text = (
                '{"'
                + field
                + '": '
                + raw
                + ", "
                + ", ".join(f'"{k}": {v!r}'.replace("'", '"') for k, v in body.items())
                + "}"
            )
            r = await c.post(
                "/api/v1/qc/lots", content=text.encode(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 422 and r.json()["field"] == field, (field, raw, r.text)
        assert await count(lab, qc_lots) == 0
        r = await c.post("/api/v1/qc/lots", json=LOT)
        assert r.status_code == 201, r.text
        lot = r.json()
        for raw in ("Infinity", "NaN", "-1e999"):
            r = await c.post(
                f"/api/v1/qc/lots/{lot['id']}/results",
                content=f'{{"value": {raw}}}'.encode(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422 and r.json()["field"] == "value", r.text
        r = await c.post(f"/api/v1/qc/lots/{lot['id']}/results", json={"value": 5.1})
        assert r.status_code == 201 and r.json()["accepted"] is True, r.text
        assert (await c.get(f"/api/v1/qc/lots/{lot['id']}/levey-jennings")).status_code == 200
    async with lab.rt.db.session() as s:
        details = (await s.execute(select(audit_log_table.c.detail))).scalars().all()
    assert not any("Infinity" in str(d) or "NaN" in str(d) for d in details)


async def test_order_text_is_bounded_and_clean(lab) -> None:
    async with http_client(lab, "doctor") as c:
        for body, field in (
            ({"patient": {**AN, "full_name": "Trần\x00 Thị Hoa"}, "tests": ["GLU"]}, "patient.full_name"),
            ({"patient": AN, "tests": ["GLU"], "clinical_note": "x" * 2001}, "clinical_note"),
            ({"patient": AN, "tests": ["GLU"], "ordering_doctor": "BS\x00"}, "ordering_doctor"),
            ({"patient": AN, "tests": ["G" * 21]}, "tests.0"),
            ({"patient": AN, "tests": ["GLU"] * 101}, "tests"),
        ):
            r = await c.post("/api/v1/orders", json=body)
            assert r.status_code == 422 and r.json()["field"] == field, (field, r.text)
        assert await count(lab, orders) == 0
        r = await c.post(
            "/api/v1/orders",
            json={"patient": AN, "tests": ["GLU"], "clinical_note": "  Đái tháo đường type 2\r\ntheo dõi  "},
        )
        assert r.status_code == 201, r.text
    async with http_client(lab, "lab_technician") as c:
        r = await c.get("/api/v1/worklist", params={"limit": str(2**63)})
        assert r.status_code == 422 and r.json()["field"] == "query.limit"


def qc_message(sample: str, value: str) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|QC||",
        f"O|1|{sample}||^^^GLU|R||||||Q||||||||||||||F",
        f"R|1|^^^GLU|{value}|mmol/L||N||F||SIM|{stamp}|{stamp}|SIM",
        "L|1|N",
    ]
    return ("\r".join(records) + "\r").encode()


async def test_analyzer_qc_values_that_are_not_finite_are_not_recorded(lab) -> None:
    async with http_client(lab, "lab_technician") as c:
        r = await c.post("/api/v1/qc/lots", json=LOT)
        assert r.status_code == 201, r.text
        lot = r.json()
        for value in ("INF", "nan", "1e999"):
            await wait_accepting(lab.settings.astm_port)
            await send_astm("127.0.0.1", lab.settings.astm_port, [qc_message(LOT["sample_id"], value)])
        await send_astm("127.0.0.1", lab.settings.astm_port, [qc_message(LOT["sample_id"], "5.1")])

        async def points() -> list:
            return (await c.get(f"/api/v1/qc/lots/{lot['id']}/levey-jennings")).json()["points"]

        deadline = asyncio.get_running_loop().time() + 20
        while not await points():
            assert asyncio.get_running_loop().time() < deadline, "the finite QC value was never recorded"
            await asyncio.sleep(0.05)
        assert [p["value"] for p in await points()] == [5.1]
    async with lab.rt.db.session() as s:
        details = (await s.execute(select(audit_log_table.c.detail))).scalars().all()
    assert not any("Infinity" in str(d) or "NaN" in str(d) for d in details)


async def wait_accepting(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on {port}")


async def test_grpc_orders_and_critical_calls_are_bounded_too(lab) -> None:
    token = issuer_for(lab).mint_for_role("doctor")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
        stub = pb_grpc.LabServiceStub(ch)
        request = pb.PlaceOrderRequest(tests=["GLU"], clinical_note="x" * 2001)
        request.patient.id, request.patient.full_name = "p-grpc-1", "Lý Thị Thu"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PlaceOrder(request, metadata=call_metadata(token))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "clinical_note" in err.value.details()
        request.clinical_note = ""
        request.patient.full_name = "Lý Thị\x00 Thu"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PlaceOrder(request, metadata=call_metadata(token))
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "control character" in err.value.details()
        )
        tech = issuer_for(lab).mint_for_role("lab_technician")
        call = pb.RecordCriticalCallRequest(
            result_id="r-1", notified_person="B" * 201, notified_role="bác sĩ"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordCriticalCall(call, metadata=call_metadata(tech))
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "notified_person" in err.value.details()
        )
    assert await count(lab, orders) == 0
