"""Bulk disclosure and audit of searches: each role searches the patient index by what its work brings
(the cashier, lab technician and radiographer by an exact identifier; nobody by birth year alone or by
one letter), pages are bounded, searches are rate-limited per user, FHIR identifier searches match that
system exactly, and every search's audit record names the patients shown, the purpose of use and the
client's real address."""

from __future__ import annotations

import json

import grpc
import pytest
from sqlalchemy import select

from hospital.admissions.service import DEFINITION
from hospital.chassis.db import audit_log_table
from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for, running_service

PEOPLE = [
    {
        "full_name": "Nguyễn Thị Hồng Nhung",
        "birth_date": "1960-02-11",
        "sex": "female",
        "cccd": "001160001111",
    },
    {"full_name": "Trần Văn Phúc", "birth_date": "1960-07-30", "sex": "male", "phone": "0912000111"},
    {
        "full_name": "Lê Thị Thu",
        "birth_date": "1985-05-05",
        "sex": "female",
        "bhyt_number": "DN4010120878822",
    },
]
EXACT_ROLES = ("cashier", "lab_technician", "radiographer")


async def _register(svc, bodies) -> list[dict]:
    async with http_client(svc, "receptionist") as c:
        out = []
        for body in bodies:
            r = await c.post("/api/v1/patients", json=body)
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


async def _searches(svc) -> list[dict]:
    async with svc.rt.db.session() as s:
        rows = (
            (
                await s.execute(
                    select(audit_log_table)
                    .where(audit_log_table.c.action == "patient.search")
                    .order_by(audit_log_table.c.at)
                )
            )
            .mappings()
            .all()
        )
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


@pytest.mark.parametrize("role", EXACT_ROLES)
async def test_desk_roles_find_by_exact_identifier_only(admissions, role: str) -> None:
    nhung, phuc, thu = await _register(admissions, PEOPLE)
    async with http_client(admissions, role) as c:

        async def ids(q: str) -> list[str]:
            r = await c.get("/api/v1/patients", params={"q": q, "limit": 100})
            assert r.status_code == 200, r.text
            return [p["id"] for p in r.json()["items"]]

        assert await ids(phuc["patient_code"]) == [phuc["id"]]
        assert await ids("001160001111") == [nhung["id"]]
        assert await ids("DN4010120878822") == [thu["id"]]
        for q in ("nguyen", "a", "0912000111", "tran van phuc"):  # browsing: names, phones
            r = await c.get("/api/v1/patients", params={"q": q})
            assert r.status_code == 403 and r.json()["code"] == "search.not_allowed_for_role", (q, r.text)
        r = await c.get("/api/v1/patients", params={"q": "1960"})
        assert r.status_code == 422 and r.json()["code"] == "search.year_needs_name"
        r = await c.get(
            "/fhir/Patient", params={"identifier": f"urn:hospital:patient-code|{thu['patient_code']}"}
        )
        assert r.json()["total"] == 1
    # what each search showed is in its audit record, with the role's purpose of use
    found = [a for a in await _searches(admissions) if a["actor_roles"] == role]
    assert [a["detail"]["shown"] for a in found[:3]] == [[phuc["id"]], [nhung["id"]], [thu["id"]]]
    assert {a["purpose"] for a in found} == {"HPAYMT" if role == "cashier" else "TREAT"}


async def test_browsing_roles_search_names_within_bounds(admissions) -> None:
    made = await _register(
        admissions,
        PEOPLE + [{"full_name": f"Lý Thị Hoa {i}", "birth_date": "1990", "sex": "female"} for i in range(55)],
    )
    async with http_client(admissions, "nurse") as c:
        r = await c.get("/api/v1/patients", params={"q": "ly thi hoa", "limit": 100})
        assert r.status_code == 200 and len(r.json()["items"]) == 50  # a page is at most 50
        shown = [p["id"] for p in r.json()["items"]]
        for q, code in (("1960", "search.year_needs_name"), ("a", "search.too_short")):
            r = await c.get("/api/v1/patients", params={"q": q})
            assert r.status_code == 422 and r.json()["code"] == code
        r = await c.get("/api/v1/patients", params={"q": "nguyen 1960"})  # a year with a name is fine
        assert [p["full_name"] for p in r.json()["items"]] == ["Nguyễn Thị Hồng Nhung"]
        r = await c.get(
            "/api/v1/patients", params={"q": "0912000111"}, headers={"X-Purpose-Of-Use": "etreat"}
        )
        assert [p["id"] for p in r.json()["items"]] == [made[1]["id"]]
        bad = await c.get("/api/v1/patients", params={"q": "phuc"}, headers={"X-Purpose-Of-Use": "TOMO"})
        assert bad.status_code == 400 and bad.json()["code"] == "audit.purpose_unknown"
    audits = [a for a in await _searches(admissions) if a["actor_roles"] == "nurse"]
    assert audits[0]["detail"]["shown"] == shown and audits[0]["detail"]["results"] == 50
    assert audits[0]["purpose"] == "TREAT"
    assert audits[-1]["detail"]["shown"] == [made[1]["id"]] and audits[-1]["purpose"] == "ETREAT"
    assert len(audits) == 3  # refused searches show nothing and write nothing


async def test_fhir_identifier_matches_only_that_system_exactly(admissions) -> None:
    nhung, phuc, _ = await _register(admissions, PEOPLE)
    async with http_client(admissions, "doctor") as c:

        async def total(identifier: str) -> int:
            r = await c.get("/fhir/Patient", params={"identifier": identifier})
            assert r.status_code == 200, r.text
            return r.json()["total"]

        assert await total("urn:vn:cccd|001160001111") == 1
        assert await total("urn:vn:cccd|1960") == 0  # no fallback to a search for patients born in 1960
        assert await total("urn:vn:cccd|nguyen") == 0
        assert await total(f"urn:vn:cccd|{phuc['patient_code']}") == 0  # a code is not a CCCD
        assert await total("urn:vn:bhyt|001160001111") == 0
        assert await total(f"urn:hospital:patient-code|{nhung['patient_code']}") == 1
        assert await total("urn:hospital:patient-code|BN26") == 0


async def test_searches_are_rate_limited_per_user(database_url, nats_server, tmp_path) -> None:
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=database_url,
        nats_url=nats_server.url,
        search_burst=3,
        search_rate_per_minute=6,
    ) as svc:
        (nhung,) = await _register(svc, PEOPLE[:1])
        issuer = issuer_for(svc)
        async with http_client(svc, "cashier") as cashier:
            codes = [
                (await cashier.get("/api/v1/patients", params={"q": f"BN2600{i:05d}"})).status_code
                for i in range(4)
            ]
            assert codes == [200, 200, 200, 429]
            limited = await cashier.get("/api/v1/patients", params={"q": nhung["patient_code"]})
            assert (
                limited.json()["code"] == "search.rate_limited" and int(limited.headers["Retry-After"]) >= 1
            )
        async with http_client(svc, "doctor") as doctor:  # another user has a bucket of their own
            assert (await doctor.get("/api/v1/patients", params={"q": "nguyen"})).status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
            stub = pb_grpc.AdmissionsServiceStub(ch)
            cashier_md = call_metadata(issuer.mint_for_role("cashier"))
            with pytest.raises(grpc.aio.AioRpcError) as err:  # the same user, through gRPC
                await stub.SearchPatients(
                    pb.SearchPatientsRequest(query=nhung["patient_code"]), metadata=cashier_md
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            lab = call_metadata(issuer.mint_for_service("lab"))  # services are not limited
            for _ in range(5):
                found = await stub.SearchPatients(
                    pb.SearchPatientsRequest(query=nhung["patient_code"]), metadata=lab
                )
                assert [p.id for p in found.items] == [nhung["id"]]


async def test_client_address_from_trusted_proxies_only(database_url, nats_server, tmp_path) -> None:
    """X-Forwarded-For is believed only from a configured proxy; the audit record keeps the real
    client's address."""
    forged = {"X-Forwarded-For": "203.0.113.9"}
    for trusted, expected in (([], "127.0.0.1"), (["127.0.0.0/8"], "203.0.113.9")):
        async with running_service(
            DEFINITION,
            data_dir=tmp_path,
            database_url=database_url,
            nats_url=nats_server.url,
            trusted_proxies=trusted,
        ) as svc:
            async with http_client(svc, "doctor") as c:
                r = await c.get("/api/v1/patients", params={"q": "khong ai"}, headers=forged)
                assert r.status_code == 200
            assert (await _searches(svc))[-1]["source"] == expected


async def test_purpose_of_use_over_grpc(admissions) -> None:
    (nhung,) = await _register(admissions, PEOPLE[:1])
    issuer = issuer_for(admissions)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{admissions.settings.grpc_port}") as ch:
        stub = pb_grpc.AdmissionsServiceStub(ch)
        doctor = call_metadata(issuer.mint_for_role("doctor"))
        await stub.SearchPatients(
            pb.SearchPatientsRequest(query=nhung["patient_code"]),
            metadata=(*doctor, ("x-purpose-of-use", "HQUALIMP")),
        )
        await stub.GetPatient(pb.GetPatientRequest(id=nhung["id"]), metadata=doctor)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetPatient(
                pb.GetPatientRequest(id=nhung["id"]), metadata=(*doctor, ("x-purpose-of-use", "curious"))
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "purpose of use" in err.value.details()
        )
    assert (await _searches(admissions))[-1]["purpose"] == "HQUALIMP"
    async with admissions.rt.db.session() as s:
        reads = (
            await s.execute(
                select(audit_log_table.c.purpose)
                .where(
                    audit_log_table.c.action == "patient.read", audit_log_table.c.patient_id == nhung["id"]
                )
                .order_by(audit_log_table.c.at)
            )
        ).all()
    # the search's own read of the record it returns, then the doctor's read; the refused call read nothing
    assert [r.purpose for r in reads] == ["HQUALIMP", "TREAT"]
