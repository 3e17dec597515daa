"""Every HTTP input of admissions is bounded and clean: an oversized or dirty value is refused with 422 naming
the field, nothing is written and no event is raised, and the events of the next registrations still reach
the bus (before and after a restart)."""

from __future__ import annotations

import asyncio
import json
import unicodedata

import grpc
import pytest
from sqlalchemy import func, select

from hospital.admissions.adapters.tables import patients
from hospital.admissions.service import DEFINITION
from hospital.chassis.bus import connect, ensure_streams
from hospital.chassis.db import outbox_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc
from hospital.contracts.admissions.v1 import events_pb2
from hospital.testing.services import http_client, issuer_for, running_service

HUGE = "Số 1 đường Trần Phú " + "x" * (1100 * 1024)


async def counts(svc) -> tuple[int, int]:
    async with svc.rt.db.session() as s:
        n_patients = (await s.execute(select(func.count()).select_from(patients))).scalar_one()
        n_outbox = (await s.execute(select(func.count()).select_from(outbox_table))).scalar_one()
    return n_patients, n_outbox


async def registered_event(sub, patient_id: str) -> events_pb2.PatientRegistered:
    async def ours() -> events_pb2.PatientRegistered:  # the stream also holds other tests' registrations
        while True:
            event = events_pb2.PatientRegistered.FromString((await sub.next_msg(timeout=15)).data)
            if event.patient.id == patient_id:
                return event

    return await asyncio.wait_for(ours(), 20)


async def test_oversized_address_is_refused_and_the_next_event_still_flows(
    database_url, nats_server, tmp_path
) -> None:
    nc = await connect(nats_server.url, "test")
    await ensure_streams(nc.jetstream())
    sub = await nc.jetstream().subscribe("admissions.patient.registered", ordered_consumer=True)
    try:
        async with running_service(
            DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url
        ) as svc:
            before = await counts(svc)
            async with http_client(svc, "receptionist") as c:
                r = await c.post(
                    "/api/v1/patients",
                    json={
                        "full_name": "Hoàng Văn Dũng",
                        "birth_date": "1979",
                        "sex": "male",
                        "address_line": HUGE,
                    },
                )
                assert r.status_code == 413 and r.json()["code"] == "request.too_large", r.text
                # Under the body limit, each field has its own.
                for field in (
                    "address_line",
                    "ward",
                    "district",
                    "ethnicity",
                    "occupation",
                    "guardian_name",
                    "guardian_phone",
                    "bhyt_registered_facility",
                    "full_name",
                    "phone",
                    "cccd",
                ):
                    r = await c.post(
                        "/api/v1/patients",
                        json={
                            "full_name": "Hoàng Văn Dũng",
                            "birth_date": "1979",
                            "sex": "male",
                            field: "x" * 50_000,
                        },
                    )
                    assert r.status_code == 422, (field, r.text)
                    assert r.json()["errors"][0]["field"] == field and r.json()["code"] == "request.invalid"
                assert await counts(svc) == before  # nothing written, no event waiting
                r = await c.post(
                    "/api/v1/patients",
                    json={
                        "full_name": "Hoàng Văn Dũng",
                        "birth_date": "1979",
                        "sex": "male",
                        "address_line": "Số 1 đường Trần Phú",
                    },
                )
                assert r.status_code == 201, r.text
                first = r.json()
            event = await registered_event(sub, first["id"])
            assert event.patient.address.line == "Số 1 đường Trần Phú"
        # After a restart the service publishes the next registration too.
        async with running_service(
            DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url
        ) as svc:
            async with http_client(svc, "receptionist") as c:
                r = await c.post(
                    "/api/v1/patients",
                    json={
                        "full_name": "Vi Thị Mai",
                        "birth_date": "1991",
                        "sex": "female",
                        "ethnicity": "Tày",
                    },
                )
                assert r.status_code == 201, r.text
            event = await registered_event(sub, r.json()["id"])
            assert event.patient.full_name == "Vi Thị Mai"
    finally:
        await nc.close()


async def test_nul_bytes_surrogates_and_whitespace(admissions) -> None:
    async with http_client(admissions, "receptionist") as c:
        before = await counts(admissions)
        for body in (
            {"full_name": "Lê\x00Văn Tám", "birth_date": "1990", "sex": "male"},
            {"full_name": "Lê Văn Tám", "birth_date": "1990", "sex": "male", "occupation": "nông\x00dân"},
        ):
            r = await c.post("/api/v1/patients", json=body)
            assert r.status_code == 422 and "control character" in r.json()["detail"], r.text
        raw = '{"full_name": "L\\ud800 V\\u0103n T\\u00e1m", "birth_date": "1990", "sex": "male"}'
        r = await c.post(
            "/api/v1/patients", content=raw.encode(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "full_name", r.text
        assert await counts(admissions) == before
        # Whitespace is collapsed and text normalised to NFC (as typed on a keyboard sending combining marks).
        name = unicodedata.normalize("NFD", "Lê   Văn  Tám ")
        r = await c.post(
            "/api/v1/patients",
            json={
                "full_name": name,
                "birth_date": "1990",
                "sex": "male",
                "address_line": "  Thôn   Bản Phố\t",
                "ward": "Xã  Bản Phố",
            },
        )
        assert r.status_code == 201, r.text
        p = r.json()
        assert (
            p["full_name"] == "Lê Văn Tám"
            and p["address"]["line"] == "Thôn Bản Phố"
            and p["address"]["ward"] == "Xã Bản Phố"
        )
        # A correction with a NUL byte changes nothing.
        for patch in (
            {"full_name": "Lê Văn\x00 Tám"},
            {"address_line": "a\x00"},
            {"guardian_name": "x" * 201},
        ):
            r = await c.patch(f"/api/v1/patients/{p['id']}", json=patch)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == next(iter(patch)), r.text
        assert (await c.get(f"/api/v1/patients/{p['id']}")).json()["full_name"] == "Lê Văn Tám"
        r = await c.get(f"/api/v1/patients/{p['id']}%00")
        assert r.status_code == 400 and r.json()["code"] == "request.control_character"


async def test_queue_ticket_number_is_bounded(admissions) -> None:
    async with http_client(admissions, "doctor") as c:
        for ticket in (2**63, 10**30, 0, -5):
            r = await c.post(
                "/api/v1/queues/P101/next",
                content=json.dumps({"action": "recall", "ticket_number": ticket}),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ticket_number", r.text


async def test_401_is_generic(admissions) -> None:
    async with http_client(admissions, token="not.a.jwt") as c:
        r = await c.get("/api/v1/rooms")
    assert r.status_code == 401 and r.json()["detail"] == "invalid token", r.text
    async with http_client(admissions) as c:
        r = await c.get("/api/v1/rooms")
    assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"


async def test_grpc_registration_is_bounded_too(admissions) -> None:
    clerk = call_metadata(issuer_for(admissions).mint_for_role("receptionist"))
    before = await counts(admissions)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{admissions.settings.grpc_port}") as ch:
        stub = pb_grpc.AdmissionsServiceStub(ch)
        for extra, field in (
            ({"address_line": "x" * (1100 * 1024)}, "address_line"),
            ({"full_name": "Mã\x00 Văn Sử"}, "full_name"),
            ({"bhyt_registered_facility": "01 - 043" * 10}, "bhyt_registered_facility"),
        ):
            request = pb.RegisterPatientRequest(
                **{"full_name": "Mã Văn Sử", "birth_date": "1990", "sex": pb.SEX_MALE, **extra}
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RegisterPatient(request, metadata=clerk)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details(), (
                field
            )
    assert await counts(admissions) == before
