"""Card-less reception against a local stand-in of the insurance agency's portal: a card found from the
CCCD or the social-insurance number (recorded on the visit with its check time and added to the patient,
so an insured visit opens with it), a refusal, an expired card, a portal that does not answer in time
(reception goes on: unavailable), a portal that refuses the hospital's account, and no portal at all."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import uvicorn
from fastapi import FastAPI, Request

from hospital.admissions.service import DEFINITION
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, running_service

USER, PASSWORD = "34001_BV", "mat-khau-cong-bhxh"
OFFICER = ("Đỗ Thị Lan", "034190002345")
CARDS = {
    # identifier -> the portal's answer (KQNhanLichSuKCB2024)
    "034185001234": {
        "maKetQua": "000",
        "ghiChu": "Thông tin thẻ chính xác",
        "maThe": "HS4340120878811",
        "hoTen": "Vũ Thị Mai Anh",
        "ngaySinh": "04/09/1985",
        "maDKBD": "34001",
        "gtTheTu": "01/01/2026",
        "gtTheDen": "31/12/2026",
        "ngayDu5Nam": "01/03/2021",
        "maSoBHXH": "3418001234",
    },
    "3418005678": {
        "maKetQua": "000",
        "ghiChu": "Thông tin thẻ chính xác",
        "maThe": "GD4340135180056",
        "hoTen": "Bùi Văn Quang",
        "ngaySinh": "12/07/1962",
        "maDKBD": "34105",
        "gtTheTu": "01/01/2026",
        "gtTheDen": "31/12/2026",
        "ngayDu5Nam": "",
        "maSoBHXH": "3418005678",
    },
    "034185008888": {
        "maKetQua": "000",
        "ghiChu": "Thông tin thẻ chính xác",
        "maThe": "HT3340120870088",
        "hoTen": "Lương Thị Hoa",
        "maDKBD": "34001",
        "gtTheTu": "01/01/2024",
        "gtTheDen": "31/12/2024",
    },
    "034185009999": {"maKetQua": "050", "ghiChu": "Không thấy thông tin thẻ của người này"},
}
SLOW = "034185007777"


class StandInPortal:
    """A small HTTP server that answers as BHXH's receiving portal does, and records what it was asked."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.asked: list[dict] = []
        self.tokens_given = 0
        self.release = asyncio.Event()
        app = FastAPI()

        @app.post("/api/token/take")
        async def take(body: dict) -> dict:
            if (
                body.get("username") != USER
                or body.get("password") != hashlib.md5(PASSWORD.encode()).hexdigest()
            ):
                return {"maKetQua": "401", "APIKey": {}}
            self.tokens_given += 1
            return {
                "maKetQua": "200",
                "APIKey": {"access_token": f"tok-{self.tokens_given}", "id_token": "idt"},
            }

        @app.post("/api/egw/KQNhanLichSuKCB2024")
        async def lookup(request: Request, body: dict) -> dict:
            assert request.query_params["token"].startswith("tok-")
            self.asked.append(body)
            if body["maThe"] == SLOW:
                await self.release.wait()
            return CARDS.get(body["maThe"], {"maKetQua": "050", "ghiChu": "Không thấy thông tin thẻ"})

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    async def __aenter__(self) -> StandInPortal:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        self.server.should_exit = True
        await self.task


@pytest.fixture
async def portal() -> AsyncIterator[StandInPortal]:
    async with StandInPortal() as p:
        yield p


def portal_settings(portal: StandInPortal, **changes: object) -> dict:
    return {
        "insurance_portal_url": portal.url,
        "insurance_portal_username": USER,
        "insurance_portal_password": PASSWORD,
        "insurance_portal_officer_name": OFFICER[0],
        "insurance_portal_officer_cccd": OFFICER[1],
        "insurance_portal_timeout_seconds": 1.0,
        **changes,
    }


async def test_card_less_reception(portal, database_url, nats_server, tmp_path) -> None:
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=database_url,
            nats_url=nats_server.url,
            **portal_settings(portal),
        ) as svc,
        http_client(svc, "receptionist") as c,
    ):
        r = await c.post(
            "/api/v1/patients",
            json={
                "full_name": "Vũ Thị Mai Anh",
                "birth_date": "1985-09-04",
                "sex": "female",
                "cccd": "034185001234",
            },
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        room = (await c.get("/api/v1/rooms")).json()["items"][0]["code"]
        visit = (await c.post("/api/v1/visits", json={"patient_id": pid, "room": room})).json()

        # by the CCCD of the visit's patient: recorded on the visit with its check time, added to the patient
        before = datetime.now().astimezone()
        r = await c.post("/api/v1/insurance/lookups", json={"visit_id": visit["id"]})
        assert r.status_code == 200, r.text
        found = r.json()
        assert (found["status"], found["result_code"], found["card_added"]) == ("valid", "000", True)
        assert found["card"] == {
            "number": "HS4340120878811",
            "benefit_level": 4,
            "registered_facility": "34001",
            "valid_from": "2026-01-01",
            "valid_to": "2026-12-31",
            "five_year_date": "2021-03-01",
        }
        assert datetime.fromisoformat(found["checked_at"]) >= before
        assert found["checked_by"].startswith("user:")
        asked = portal.asked[-1]
        assert asked == {
            "maThe": "034185001234",
            "hoTen": "Vũ Thị Mai Anh",
            "ngaySinh": "04/09/1985",
            "hoTenCb": OFFICER[0],
            "cccdCb": OFFICER[1],
        }
        checks = (await c.get(f"/api/v1/visits/{visit['id']}/insurance-checks")).json()["items"]
        assert [x["id"] for x in checks] == [found["id"]]
        # the clerk can now open an insured visit with the card found
        patient = (await c.get(f"/api/v1/patients/{pid}")).json()
        assert "HS4340120878811" in str(patient)
        insured = await c.post(
            "/api/v1/visits",
            json={
                "patient_id": pid,
                "room": room,
                "kind": "insured",
                "insurance_card_number": "HS4340120878811",
            },
        )
        assert insured.status_code == 201 and insured.json()["insurance_card_number"] == "HS4340120878811"

        # by the 10-digit social-insurance number, for someone not registered yet: no card added
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={"identifier": "3418005678", "full_name": "Bùi Văn Quang", "birth_date": "1962-07-12"},
        )
        assert (r.json()["status"], r.json()["card"]["number"], r.json()["card_added"]) == (
            "valid",
            "GD4340135180056",
            False,
        )
        assert r.json()["identifier_kind"] == "social_insurance_number"

        # refused, and an expired card
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={"identifier": "034185009999", "full_name": "Hà Văn Nam", "birth_date": "1990"},
        )
        assert (r.json()["status"], r.json()["result_code"], r.json()["card"]) == ("refused", "050", None)
        assert "Không thấy thông tin thẻ" in r.json()["message"] and portal.asked[-1]["ngaySinh"] == "1990"
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={"identifier": "034185008888", "full_name": "Lương Thị Hoa", "birth_date": "1970-01-01"},
        )
        assert r.json()["status"] == "expired" and r.json()["card"]["valid_to"] == "2024-12-31"

        # a portal that does not answer in time: reception is answered within the timeout and goes on
        started = time.monotonic()
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={
                "identifier": "034185007777",
                "full_name": "Trương Văn Tú",
                "birth_date": "1975-05-05",
                "visit_id": visit["id"],
            },
        )
        assert r.status_code == 200 and r.json()["status"] == "unavailable"
        assert "did not answer within 1 s" in r.json()["message"] and "fee-paying" in r.json()["message"]
        assert time.monotonic() - started < 3
        portal.release.set()
        checks = (await c.get(f"/api/v1/visits/{visit['id']}/insurance-checks")).json()["items"]
        assert [x["status"] for x in checks] == ["valid", "unavailable"]

        # one token serves many look-ups
        assert portal.tokens_given == 1
        for body, field in (
            ({"identifier": "12345"}, "identifier"),
            ({"identifier": "034185001234"}, "full_name"),
            ({"visit_id": "00000000-0000-4000-8000-000000000000"}, "visit_id"),
        ):
            r = await c.post("/api/v1/insurance/lookups", json=body)
            assert r.status_code in (404, 422) and r.json()["field"] == field, r.text
        async with http_client(svc, "auditor") as auditor:
            denied = await auditor.post("/api/v1/insurance/lookups", json={"identifier": "034185001234"})
            assert denied.status_code == 403


async def test_a_portal_that_refuses_the_account_or_is_absent(portal, nats_server, tmp_path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/a.db"
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=db,
            nats_url=nats_server.url,
            **portal_settings(portal, insurance_portal_password="sai-mat-khau"),
        ) as svc,
        http_client(svc, "receptionist") as c,
    ):
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={
                "identifier": "034185001234",
                "full_name": "Vũ Thị Mai Anh",
                "birth_date": "1985-09-04",
            },
        )
        assert r.json()["status"] == "unavailable" and "credentials" in r.json()["message"]
    closed = free_port()  # nothing listens there
    async with (
        running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=db,
            nats_url=nats_server.url,
            **portal_settings(portal, insurance_portal_url=f"http://127.0.0.1:{closed}"),
        ) as svc,
        http_client(svc, "receptionist") as c,
    ):
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={
                "identifier": "034185001234",
                "full_name": "Vũ Thị Mai Anh",
                "birth_date": "1985-09-04",
            },
        )
        assert r.json()["status"] == "unavailable" and "unreachable" in r.json()["message"]
    async with (
        running_service(DEFINITION, data_dir=tmp_path, database_url=db, nats_url=nats_server.url) as svc,
        http_client(svc, "receptionist") as c,
    ):
        r = await c.post(
            "/api/v1/insurance/lookups",
            json={
                "identifier": "034185001234",
                "full_name": "Vũ Thị Mai Anh",
                "birth_date": "1985-09-04",
            },
        )
        assert r.json()["status"] == "not_configured"
