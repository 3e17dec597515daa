"""Corrections, several BHYT cards, duplicate detection and merge (identifiers and history move, the
event reaches NATS, everything is audited)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from hospital.chassis.bus import connect
from hospital.chassis.db import audit_log_table
from hospital.contracts.admissions.v1 import events_pb2
from hospital.testing.services import http_client


async def test_update_and_cards(admissions) -> None:
    async with http_client(admissions, "receptionist") as c:
        p = (
            await c.post(
                "/api/v1/patients", json={"full_name": "Lò Văn Páo", "birth_date": "1960", "sex": "male"}
            )
        ).json()
        r = await c.patch(
            f"/api/v1/patients/{p['id']}", json={"birth_date": "1960-05-07", "phone": "+84 912 000 111"}
        )
        assert (
            r.status_code == 200
            and r.json()["birth_date"] == "1960-05-07"
            and r.json()["phone"] == "0912000111"
        )
        assert (await c.patch(f"/api/v1/patients/{p['id']}", json={"sex": "x"})).status_code == 422
        assert (await c.patch(f"/api/v1/patients/{p['id']}", json={})).json()["code"] == "patient.no_changes"
        for number, start, end in [
            ("GD4141234567890", "2024-01-01", "2024-12-31"),
            ("GD4141234567890", "2025-01-01", "2025-12-31"),
        ]:
            r = await c.post(
                f"/api/v1/patients/{p['id']}/cards",
                json={"number": number, "valid_from": start, "valid_to": end},
            )
            assert r.status_code == 200, r.text
        cards = r.json()["insurance_cards"]
        assert [c_["valid_from"] for c_ in cards] == ["2025-01-01", "2024-01-01"]  # newest first
        r = await c.post(f"/api/v1/patients/{p['id']}/cards", json={"number": "GD41412345"})
        assert r.status_code == 422 and r.json()["field"] == "number"


async def test_merge_moves_identifiers_and_history_and_emits_event(admissions, nats_server) -> None:
    nc = await connect(nats_server.url, "test")
    js = nc.jetstream()
    sub = await js.subscribe("admissions.patient.merged", ordered_consumer=True)
    async with http_client(admissions, "receptionist") as c:
        a = (
            await c.post(
                "/api/v1/patients",
                json={
                    "full_name": "Nguyễn Thị Mỹ Duyên",
                    "birth_date": "1988-08-08",
                    "sex": "female",
                    "phone": "0905111222",
                },
            )
        ).json()
        b = (
            await c.post(
                "/api/v1/patients",
                json={
                    "full_name": "Nguyen Thi My Duyen",
                    "birth_date": "1988",
                    "sex": "female",
                    "cccd": "048188001234",
                    "bhyt_number": "HC4480123456789",
                },
            )
        ).json()
        room = (await c.get("/api/v1/rooms")).json()["items"][0]["code"]
        visit = (await c.post("/api/v1/visits", json={"patient_id": b["id"], "room": room})).json()
        dups = (await c.get(f"/api/v1/patients/{a['id']}/duplicates")).json()["items"]
        assert [d["patient"]["id"] for d in dups] == [b["id"]] and "same_name" in dups[0]["reasons"]
        r = await c.post(f"/api/v1/patients/{a['id']}/merge", json={"merged_id": b["id"]})
        assert r.status_code == 200, r.text
        survivor = r.json()
        assert survivor["cccd"] == "048188001234" and survivor["bhyt_number"] == "HC4480123456789"
        assert survivor["phone"] == "0905111222"
        gone = (await c.get(f"/api/v1/patients/{b['id']}")).json()
        assert gone["merged_into"] == a["id"]
        found = (await c.get("/api/v1/patients", params={"q": "048188001234"})).json()["items"]
        assert [p["id"] for p in found] == [a["id"]]
        assert (await c.get(f"/api/v1/visits/{visit['id']}")).json()["patient_id"] == a["id"]
        again = await c.post(f"/api/v1/patients/{a['id']}/merge", json={"merged_id": b["id"]})
        assert again.status_code == 409 and again.json()["code"] == "merge.already_merged"
        assert (
            await c.post(f"/api/v1/patients/{a['id']}/merge", json={"merged_id": a["id"]})
        ).status_code == 422

    async def ours() -> events_pb2.PatientMerged:  # the stream also holds other tests' merges
        while True:
            event = events_pb2.PatientMerged.FromString((await sub.next_msg(timeout=10)).data)
            if event.survivor_id == a["id"]:
                return event

    event = await asyncio.wait_for(ours(), 15)
    assert event.merged_id == b["id"] and event.by.subject == "user:letan.lan"
    await nc.close()
    async with admissions.rt.db.session() as s:
        actions = set(
            (
                await s.execute(
                    select(audit_log_table.c.action).where(
                        audit_log_table.c.patient_id.in_([a["id"], b["id"]])
                    )
                )
            ).scalars()
        )
    assert {"patient.merge", "patient.merged_away", "patient.duplicates"} <= actions


async def test_merge_needs_receptionist_or_admin(admissions) -> None:
    async with http_client(admissions, "nurse") as c:
        r = await c.post("/api/v1/patients/x/merge", json={"merged_id": "y"})
    assert r.status_code == 403
