"""Lab orders name patients that admissions knows (issue "Hardening", item 11; ADR 0103), with a real
admissions service: the lab asks it over gRPC with its own service identity. An unknown patient refuses the
order (HTTP 422/404 with the reason, HL7 ``AE``), nothing written; while admissions cannot be reached the
order is taken as ``unverified`` and checked again once it can."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hospital.admissions.service import DEFINITION as ADMISSIONS
from hospital.chassis.app import Service
from hospital.lab.adapters.tables import orders
from hospital.lab.service import DEFINITION as LAB
from hospital.lab.simulator import send_mllp
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, running_service

from .conftest import OML_O21
from .test_service import count

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)


@pytest.fixture
async def admissions(nats_server, tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(
        ADMISSIONS,
        data_dir=tmp_path / "admissions",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'admissions.db'}",
        nats_url=nats_server.url,
    ) as svc:
        yield svc


def lab_settings(database_url: str, nats_server, tmp_path: Path, admissions_port: int) -> dict:
    # the same data directory as admissions: the development issuer signs both services' tokens
    return {
        "data_dir": tmp_path / "admissions",
        "database_url": database_url,
        "nats_url": nats_server.url,
        "mllp_port": free_port(),
        "astm_port": free_port(),
        "admissions_grpc": f"127.0.0.1:{admissions_port}",
        "admissions_timeout_seconds": 2.0,
        "patient_recheck_seconds": 0.2,
    }


async def register(admissions: Service, name: str) -> dict:
    async with http_client(admissions, "receptionist") as c:
        r = await c.post(
            "/api/v1/patients", json={"full_name": name, "birth_date": "1978-04-02", "sex": "female"}
        )
    assert r.status_code == 201, r.text
    return r.json()


def order_body(patient_id: str, **extra) -> dict:
    return {
        "patient": {"id": patient_id, "full_name": "Đỗ Thị Lan", "sex": "female", "birth_date": "1978-04-02"},
        "tests": ["GLU"],
        **extra,
    }


def msa(reply: bytes) -> list[str]:
    return next(s for s in reply.decode().split("\r") if s.startswith("MSA")).split("|")


async def test_orders_for_unknown_patients_are_refused_and_known_ones_verified(
    admissions: Service, database_url: str, nats_server, tmp_path: Path
) -> None:
    lan = await register(admissions, "Đỗ Thị Lan")
    settings = lab_settings(database_url, nats_server, tmp_path, admissions.settings.grpc_port)
    async with running_service(LAB, **settings) as lab:
        async with http_client(lab, "doctor") as c:
            r = await c.post("/api/v1/orders", json=order_body(lan["id"]))
            assert r.status_code == 201, r.text
            assert r.json()["patient"]["check"] == "verified"
            assert r.json()["patient"]["patient_code"] == lan["patient_code"]
            for bogus in ("' OR 1=1--", "0193a1b2-0000-7000-8000-000000000000"):
                r = await c.post("/api/v1/orders", json=order_body(bogus))
                assert r.status_code == 404, r.text
                assert r.json()["code"] == "order.patient_unknown" and "admissions" in r.json()["detail"]
        assert await count(lab, orders) == 1
        # HL7 OML^O21 from the HIS: PID-3 carries the patient code
        unknown = await send_mllp("127.0.0.1", lab.settings.mllp_port, [OML_O21], timeout=10)
        assert (
            msa(unknown[0])[:3] == ["MSA", "AE", "OML0001"] and "order.patient_unknown" in msa(unknown[0])[3]
        )
        assert b"PID^1^3|204^Unknown key identifier" in unknown[0]
        known = OML_O21.replace("BN240003", lan["patient_code"]).replace("OML0001", "OML0002")
        ok = await send_mllp("127.0.0.1", lab.settings.mllp_port, [known], timeout=10)
        assert msa(ok[0])[:3] == ["MSA", "AA", "OML0002"]
        assert await count(lab, orders) == 3
        assert await count(lab, orders, orders.c.patient_check == "verified") == 3


async def test_orders_taken_while_admissions_is_down_are_checked_later(
    nats_server, database_url: str, tmp_path: Path
) -> None:
    """Admissions unreachable: the lab takes the orders as unverified (the lab is not blocked); once
    admissions answers, the known patient's order becomes verified and the invented one unknown."""
    port = free_port()
    settings = lab_settings(database_url, nats_server, tmp_path, port)
    async with running_service(LAB, **settings) as lab:
        async with http_client(lab, "doctor") as c:
            r1 = await c.post("/api/v1/orders", json=order_body("0193a1b2-1111-7000-8000-000000000001"))
            assert r1.status_code == 201 and r1.json()["patient"]["check"] == "unverified", r1.text
        async with running_service(
            ADMISSIONS,
            data_dir=tmp_path / "admissions",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'admissions.db'}",
            nats_url=nats_server.url,
            grpc_port=port,
        ) as admissions:
            lan = await register(admissions, "Đỗ Thị Lan")
            async with http_client(lab, "doctor") as c:
                r2 = await c.post("/api/v1/orders", json=order_body(lan["id"], request_id="r2"))
                assert r2.status_code == 201
            # each is verified at once or by the re-check, as soon as the lab's channel reaches admissions
            await _until(lambda: count(lab, orders, orders.c.patient_check == "unknown"), 1)
            await _until(lambda: count(lab, orders, orders.c.patient_check == "verified"), 1)
            async with http_client(lab, "doctor") as c:
                r = await c.get(f"/api/v1/orders/{r2.json()['id']}")
            assert r.json()["patient"]["check"] == "verified"
        assert await count(lab, orders, orders.c.patient_check == "unverified") == 0


async def _until(value, expected, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await value() == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {expected} within {timeout} s")
