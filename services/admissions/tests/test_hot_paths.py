"""Registration and search under concurrency (on PostgreSQL the single guarded statement of
adapters/pgwrite.py; on SQLite the unit of work): every registration lands with its audit record and its
event, the audit chains stay intact while concurrent writers race for them, the unique indexes answer
CCCD and retry races with the usual answers, and name search finds prefixes, later words and scattered
words."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from hospital.admissions.adapters.pgwrite import GuardedWriter, driver_connection
from hospital.admissions.adapters.tables import idempotency, patients
from hospital.chassis.audit import CHAINS, AuditEntry, append_audit, verify_chain
from hospital.chassis.bus import connect
from hospital.chassis.db import audit_log_table
from hospital.contracts.admissions.v1 import events_pb2
from hospital.testing.services import http_client

GIVEN = ["An", "Bình", "Cường", "Dũng", "Hà", "Hạnh", "Hương", "Lan", "Minh", "Ngọc"]


async def test_concurrent_registrations_each_audited_and_published(admissions, nats_server) -> None:
    nc = await connect(nats_server.url, "test-hot-paths")
    sub = await nc.jetstream().subscribe("admissions.patient.registered", ordered_consumer=True)
    try:
        async with http_client(admissions, "receptionist") as c:
            bodies = [
                {
                    "full_name": f"Phạm Văn {GIVEN[i % 10]} {i}",
                    "birth_date": f"19{50 + i}-03-0{1 + i % 9}",
                    "sex": "male",
                    "phone": f"09{i:08d}",
                }
                for i in range(40)
            ]
            answers = await asyncio.gather(*(c.post("/api/v1/patients", json=b) for b in bodies))
        assert [r.status_code for r in answers] == [201] * 40, [
            r.text for r in answers if r.status_code != 201
        ]
        made = {r.json()["id"]: r.json() for r in answers}
        assert len(made) == 40 and len({p["patient_code"] for p in made.values()}) == 40
        assert {p["full_name"] for p in made.values()} == {b["full_name"] for b in bodies}
        async with admissions.rt.db.session() as s:
            audited = (
                (
                    await s.execute(
                        select(audit_log_table.c.patient_id).where(
                            audit_log_table.c.action == "patient.register",
                            audit_log_table.c.patient_id.in_(list(made)),
                        )
                    )
                )
                .scalars()
                .all()
            )
            report = await verify_chain(s)
        assert sorted(audited) == sorted(made) and report.ok, report
        seen: set[str] = set()
        while seen != set(made):
            msg = await sub.next_msg(timeout=10)
            event = events_pb2.PatientRegistered.FromString(msg.data)
            if event.patient.id in made:
                assert event.patient.patient_code == made[event.patient.id]["patient_code"]
                assert event.by.subject == "user:letan.lan"
                seen.add(event.patient.id)
    finally:
        await nc.close()


async def test_racing_duplicates_get_the_usual_answers(admissions) -> None:
    same_cccd = {
        "full_name": "Trương Thị Mai",
        "birth_date": "1979-11-02",
        "sex": "female",
        "cccd": "052179000777",
    }
    retried = {
        "full_name": "Quách Văn Tùng",
        "birth_date": "1964",
        "sex": "male",
        "request_id": "kiosk-3-4242",
    }
    async with http_client(admissions, "receptionist") as c:
        cccd = await asyncio.gather(*(c.post("/api/v1/patients", json=same_cccd) for _ in range(8)))
        retries = await asyncio.gather(*(c.post("/api/v1/patients", json=retried) for _ in range(8)))
        bad = await c.post("/api/v1/patients", json={**same_cccd, "cccd": "052179000778", "phone": "12"})
    assert sorted(r.status_code for r in cccd) == [201] + [409] * 7
    owner = next(r.json() for r in cccd if r.status_code == 201)
    for r in cccd:
        if r.status_code == 409:
            assert r.json()["code"] == "patient.cccd_exists" and r.json()["field"] == "cccd"
            assert owner["patient_code"] in r.json()["detail"]
    assert {r.status_code for r in retries} == {201} and len({r.json()["id"] for r in retries}) == 1
    assert bad.status_code == 422 and bad.json()["code"] == "patient.phone"
    async with admissions.rt.db.session() as s:
        n_cccd = (
            await s.execute(
                select(func.count()).select_from(patients).where(patients.c.cccd == "052179000777")
            )
        ).scalar_one()
        n_retried = (
            await s.execute(
                select(func.count()).select_from(patients).where(patients.c.full_name == "Quách Văn Tùng")
            )
        ).scalar_one()
        n_keys = (
            await s.execute(
                select(func.count())
                .select_from(idempotency)
                .where(idempotency.c.key == "patient:kiosk-3-4242")
            )
        ).scalar_one()
        n_bad = (
            await s.execute(
                select(func.count()).select_from(patients).where(patients.c.cccd == "052179000778")
            )
        ).scalar_one()
        assert (await verify_chain(s)).ok
    assert (n_cccd, n_retried, n_keys, n_bad) == (1, 1, 1, 0)


async def test_name_search_stages(admissions) -> None:
    people = [
        ("Tạ Thị Thu Trang", "1990"),
        ("Tạ Thị Thu Thảo", "1992"),
        ("Nguyễn Tạ Thu Trang", "1988"),
        ("Lê Thu Trang", "2001"),
        ("Đỗ Văn Nam", "1975"),
    ]
    async with http_client(admissions, "receptionist") as c:
        for name, year in people:
            r = await c.post(
                "/api/v1/patients", json={"full_name": name, "birth_date": year, "sex": "female"}
            )
            assert r.status_code == 201, r.text

        async def names(q: str) -> list[str]:
            r = await c.get("/api/v1/patients", params={"q": q})
            assert r.status_code == 200, r.text
            return [i["full_name"] for i in r.json()["items"]]

        assert await names("ta thi thu tr") == ["Tạ Thị Thu Trang"]  # whole-name prefix
        assert await names("ta thi thu") == ["Tạ Thị Thu Thảo", "Tạ Thị Thu Trang"]
        # a later word starts the query (phrase inside the name)
        assert set(await names("thu trang")) == {"Nguyễn Tạ Thu Trang", "Lê Thu Trang", "Tạ Thị Thu Trang"}
        # words scattered over the name, in order: only when nothing matches as a prefix or phrase
        assert await names("nguyen trang") == ["Nguyễn Tạ Thu Trang"]
        assert await names("do nam 1975") == ["Đỗ Văn Nam"]
        assert await names("do nam 1976") == []
        assert await names("50%_x") == []  # LIKE wildcards typed by the user match themselves


async def test_audit_head_moved_by_another_writer(admissions) -> None:
    """Searches append their audit record after the head the process saw last; when another writer
    (another process) appended in between, the guarded statement writes nothing, returns the new head
    and is retried after it: the chains stay intact and nothing is written twice."""
    db = admissions.rt.db
    writer = admissions.rt.extras["guarded_writer"]
    async with http_client(admissions, "doctor") as c:
        for i in range(3 * CHAINS):  # let the process see (and remember) the heads of the chains
            assert (await c.get("/api/v1/patients", params={"q": f"khong co ai {i}"})).status_code == 200

        def poke() -> AuditEntry:
            return AuditEntry(actor="user:other", action="test.poke", resource_type="Test")

        if db.is_sqlite:  # one writer at a time there: the unit of work appends to random chains
            for _ in range(3 * CHAINS):
                async with db.session() as s, s.begin():
                    await append_audit(s, [poke()])
        else:  # a writer with its own memory of the heads, as another serve process has
            other = GuardedWriter("admissions", db.audit_keyring)
            async with driver_connection(db) as conn:
                for chain in range(CHAINS):
                    await other.write(conn, chain, [], [], [poke()])
        retries = writer.retries
        found = [
            (await c.get("/api/v1/patients", params={"q": f"van khong co ai {i}"})).status_code
            for i in range(CHAINS)
        ]
    assert found == [200] * CHAINS
    if not db.is_sqlite:
        assert writer.retries > retries
    async with db.session() as s:
        report = await verify_chain(s)
        searches = (
            await s.execute(
                select(func.count())
                .select_from(audit_log_table)
                .where(audit_log_table.c.action == "patient.search")
            )
        ).scalar_one()
        pokes = (
            await s.execute(
                select(func.count())
                .select_from(audit_log_table)
                .where(audit_log_table.c.action == "test.poke")
            )
        ).scalar_one()
    assert report.ok, report
    assert (searches, pokes) == (4 * CHAINS, CHAINS if not db.is_sqlite else 3 * CHAINS)
