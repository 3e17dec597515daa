"""Admissions over HTTP: registration, search, scanning, visits and queues, beds, roles and audit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from hospital.chassis.audit import verify_chain
from hospital.chassis.db import audit_log_table
from hospital.testing.services import http_client

PATIENTS = [
    {
        "full_name": "Nguyễn Văn An",
        "birth_date": "1985-09-04",
        "sex": "male",
        "cccd": "001085012345",
        "bhyt_number": "DN4010120878811",
        "phone": "0912345678",
    },
    {"full_name": "Nguyễn Văn Ân", "birth_date": "1990-01-15", "sex": "male"},
    {"full_name": "Trần Thị Bích Ngọc", "birth_date": "1972", "sex": "female", "phone": "0987654321"},
    {
        "full_name": "Lê Việt Hưng",
        "birth_date": "1985-09-04",
        "sex": "male",
        "bhyt_number": "DN4010131900313",
    },
    {
        "full_name": "Đặng Thị Đào",
        "birth_date": "2019-03-02",
        "sex": "female",
        "guardian_name": "Đặng Văn Bình",
    },
]


async def register_all(svc) -> list[dict]:
    async with http_client(svc, "receptionist") as c:
        out = []
        for p in PATIENTS:
            r = await c.post("/api/v1/patients", json=p)
            assert r.status_code == 201, r.text
            out.append(r.json())
        return out


async def test_register_then_read_and_search(admissions) -> None:
    created = await register_all(admissions)
    an = created[0]
    assert an["full_name"] == "Nguyễn Văn An" and an["patient_code"].startswith("BN")
    assert an["bhyt_number"] == "DN4010120878811" and an["insurance_cards"][0]["benefit_rate"] == 80
    assert len({p["patient_code"] for p in created}) == len(created)
    async with http_client(admissions, "doctor") as c:
        r = await c.get(f"/api/v1/patients/{an['id']}")
        assert r.status_code == 200 and r.json()["cccd"] == "001085012345"
        for q, expected in [
            ("nguyen van an", "Nguyễn Văn An"),
            ("Nguyễn Văn Ân", "Nguyễn Văn Ân"),
            ("ngoc", "Trần Thị Bích Ngọc"),
            ("dang thi dao", "Đặng Thị Đào"),
            ("001085012345", "Nguyễn Văn An"),
            ("DN4010131900313", "Lê Việt Hưng"),
            ("0987654321", "Trần Thị Bích Ngọc"),
            (an["patient_code"], "Nguyễn Văn An"),
            ("ngoc 1972", "Trần Thị Bích Ngọc"),
        ]:
            r = await c.get("/api/v1/patients", params={"q": q})
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert items and items[0]["full_name"] == expected, (q, [i["full_name"] for i in items])
            assert {"id", "patient_code", "full_name", "birth_date"} <= set(items[0])
        # both Ans are found without diacritics, and the exact spelling wins with them
        names = [
            i["full_name"]
            for i in (await c.get("/api/v1/patients", params={"q": "nguyen van"})).json()["items"]
        ]
        assert {"Nguyễn Văn An", "Nguyễn Văn Ân"} <= set(names)


@pytest.mark.parametrize(
    "body,code,field",
    [
        (
            {"full_name": "Phạm Minh Tuấn", "birth_date": "1990-13-01", "sex": "male"},
            "patient.birth_date",
            "birth_date",
        ),
        (
            {"full_name": "Phạm Minh Tuấn", "birth_date": "1990-01-01", "sex": "other"},
            "request.invalid",
            "sex",
        ),
        (
            {"full_name": "Phạm Minh Tuấn", "birth_date": "1990-01-01", "sex": "male", "cccd": "12345"},
            "patient.cccd",
            "cccd",
        ),
        (
            {"full_name": "Phạm Minh Tuấn", "birth_date": "1990-01-01", "sex": "male", "bhyt_number": "XX9"},
            "bhyt.bad_card_number",
            "bhyt_number",
        ),
        (
            {"full_name": "Phạm Minh Tuấn", "birth_date": "1990-01-01", "sex": "male", "phone": "12"},
            "patient.phone",
            "phone",
        ),
    ],
)
async def test_bad_input_gets_specific_error_and_writes_nothing(admissions, body, code, field) -> None:
    async with http_client(admissions, "receptionist") as c:
        r = await c.post("/api/v1/patients", json=body)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert problem["code"] == code and (
            problem.get("field") == field or any(e["field"] == field for e in problem.get("errors", []))
        )
        r = await c.get("/api/v1/patients", params={"q": "pham minh tuan"})
    assert r.json()["items"] == []


async def test_duplicate_cccd_and_card_conflict(admissions) -> None:
    await register_all(admissions)
    async with http_client(admissions, "receptionist") as c:
        r = await c.post(
            "/api/v1/patients",
            json={
                "full_name": "Hồ Thị Lan",
                "birth_date": "1999-01-01",
                "sex": "female",
                "cccd": "001085012345",
            },
        )
        assert r.status_code == 409 and r.json()["code"] == "patient.cccd_exists"
        r = await c.post(
            "/api/v1/patients",
            json={
                "full_name": "Hồ Thị Lan",
                "birth_date": "1999-01-01",
                "sex": "female",
                "bhyt_number": "DN4010120878811",
            },
        )
        assert r.status_code == 409 and r.json()["code"] == "patient.bhyt_linked"


async def test_idempotent_registration(admissions) -> None:
    body = {
        "full_name": "Vũ Thị Hằng",
        "birth_date": "1993-05-05",
        "sex": "female",
        "request_id": "kiosk-7-0001",
    }
    async with http_client(admissions, "receptionist") as c:
        a, b = await c.post("/api/v1/patients", json=body), await c.post("/api/v1/patients", json=body)
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]


BHYT_QR = (
    "DN401AA31900313|4cc3aa205669e1bb87742048c6b06e67|04/09/1985|1|"
    "5068c6b0e1bb9d6e67204e677579e1bb856e205472c3a3692c205468c3a06e68207068e1bb912048c3a0204ee1bb9969|"
    "01 - 043|01/07/2017|31/12/2017|21/07/2017|01059710639215|-|4|01/07/2022|1f2fa22c47f0bd18-7102|$"
)


async def test_scan_bhyt_finds_candidate_and_flags_expiry(admissions) -> None:
    async with http_client(admissions, "receptionist") as c:
        await c.post(
            "/api/v1/patients", json={"full_name": "Lê Việt Hưng", "birth_date": "1985-09-04", "sex": "male"}
        )
        r = await c.post("/api/v1/patients/scan", json={"qr": BHYT_QR})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "bhyt" and body["identity"]["full_name"] == "Lê Việt Hưng"
        assert [c_["match"] for c_ in body["candidates"]] == ["name_birth_sex"]
        assert "bhyt_expired" in {x["code"] for x in body["conflicts"]}
        r = await c.post("/api/v1/patients/scan", json={"qr": "001085012345|Nguyễn Văn An"})
        assert r.status_code == 422 and r.json()["code"].startswith(("qr.", "cccd."))


async def test_fifty_concurrent_tickets_are_consecutive(admissions) -> None:
    async with http_client(admissions, "receptionist") as c:
        rooms = (await c.get("/api/v1/rooms")).json()["items"]
        assert rooms and {"code", "name", "department"} <= set(rooms[0])
        room = rooms[0]["code"]
        ids = []
        for i in range(50):
            r = await c.post(
                "/api/v1/patients",
                json={
                    "full_name": f"Bệnh Nhân Số {i}",
                    "birth_date": "1980",
                    "sex": "male" if i % 2 else "female",
                },
            )
            ids.append(r.json()["id"])
        results = await asyncio.gather(
            *(c.post("/api/v1/visits", json={"patient_id": pid, "room": room}) for pid in ids)
        )
    assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201][:2]
    assert sorted(r.json()["ticket_number"] for r in results) == list(range(1, 51))
    async with http_client(admissions, "doctor") as c:
        called = [(await c.post(f"/api/v1/queues/{room}/next")).json()["ticket_number"] for _ in range(3)]
        assert called == [1, 2, 3]
        recall = await c.post(f"/api/v1/queues/{room}/next", json={"action": "recall"})
        assert recall.json()["ticket_number"] == 3
        state = (await c.get(f"/api/v1/queues/{room}")).json()
        assert state["now_serving"] == 3 and state["waiting"][0] == 4


async def test_twenty_concurrent_admissions_into_one_bed(admissions) -> None:
    async with http_client(admissions, "receptionist") as c:
        ids = [
            (
                await c.post(
                    "/api/v1/patients",
                    json={"full_name": f"Người Bệnh {i}", "birth_date": "1970", "sex": "female"},
                )
            ).json()["id"]
            for i in range(20)
        ]
    async with http_client(admissions, "nurse") as c:
        bed = (await c.get("/api/v1/beds")).json()["items"][0]["code"]
        results = await asyncio.gather(
            *(c.post("/api/v1/admissions", json={"patient_id": pid, "bed": bed}) for pid in ids)
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201] + [409] * 19, codes
        winner = next(r.json() for r in results if r.status_code == 201)
        board = {
            b["code"]: b
            for b in (await c.get("/api/v1/beds", params={"ward": winner["ward"]})).json()["items"]
        }
        assert board[bed]["occupied"] and board[bed]["patient_id"] == winner["patient_id"]
        other_bed = next(code for code, b in board.items() if not b["occupied"])
        r = await c.post(f"/api/v1/admissions/{winner['id']}/transfer", json={"bed": other_bed})
        assert r.status_code == 200 and r.json()["bed"] == other_bed
        r = await c.post(f"/api/v1/admissions/{winner['id']}/discharge", json={"discharge_type": "recovered"})
        assert r.status_code == 200 and r.json()["status"] == "discharged"
        board = {
            b["code"]: b
            for b in (await c.get("/api/v1/beds", params={"ward": winner["ward"]})).json()["items"]
        }
        assert not board[bed]["occupied"] and not board[other_bed]["occupied"]


async def test_roles_and_authentication(admissions) -> None:
    async with http_client(admissions) as anon:
        r = await anon.get("/api/v1/patients", params={"q": "an"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    async with http_client(admissions, token="garbage") as bad:
        assert (await bad.get("/api/v1/rooms")).status_code == 401
    async with http_client(admissions, "doctor") as doctor:
        r = await doctor.post("/api/v1/patients", json=PATIENTS[2])
        assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
    async with http_client(admissions, "auditor") as auditor:
        assert (await auditor.get("/api/v1/patients", params={"q": "an"})).status_code == 403


async def test_every_read_is_audited(admissions) -> None:
    an = (await register_all(admissions))[0]
    async with http_client(admissions, "doctor") as c:
        await c.get(f"/api/v1/patients/{an['id']}")
        r = await c.get(f"/fhir/Patient/{an['id']}")
        assert r.status_code == 200, r.text
    db = admissions.rt.db
    async with db.session() as s:
        rows = (
            (
                await s.execute(
                    select(audit_log_table)
                    .where(audit_log_table.c.patient_id == an["id"])
                    .order_by(audit_log_table.c.at, audit_log_table.c.seq)  # seq counts per audit chain
                )
            )
            .mappings()
            .all()
        )
        report = await verify_chain(s)
    actions = [(r["action"], r["actor"]) for r in rows]
    assert actions == [
        ("patient.register", "user:letan.lan"),
        ("patient.read", "user:bs.minh"),
        ("patient.read", "user:bs.minh"),
    ]
    assert rows[1]["source"] == "127.0.0.1" and report.ok


async def test_fhir_patient_and_encounter(admissions) -> None:
    an = (await register_all(admissions))[0]
    async with http_client(admissions, "receptionist") as c:
        room = (await c.get("/api/v1/rooms")).json()["items"][0]["code"]
        visit = (
            await c.post("/api/v1/visits", json={"patient_id": an["id"], "room": room, "kind": "insured"})
        ).json()
        assert visit["insurance_card_number"] == "DN4010120878811"
    async with http_client(admissions, "doctor") as c:
        r = await c.get(f"/fhir/Patient/{an['id']}")
        assert r.headers["content-type"].startswith("application/fhir+json")
        res = r.json()
        assert res["resourceType"] == "Patient" and res["name"][0]["family"] == "Nguyễn"
        assert {"system": "urn:vn:cccd", "value": "001085012345"} in res["identifier"]
        bundle = (await c.get("/fhir/Patient", params={"identifier": "urn:vn:cccd|001085012345"})).json()
        assert bundle["total"] == 1 and bundle["entry"][0]["resource"]["id"] == an["id"]
        enc = (await c.get(f"/fhir/Encounter/{visit['id']}")).json()
        assert enc["subject"]["reference"] == f"Patient/{an['id']}" and enc["status"] == "in-progress"
