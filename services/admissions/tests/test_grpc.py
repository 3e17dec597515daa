"""Admissions over gRPC: the calls other services make, authentication and role checks."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hospital.chassis.rpc import call_metadata
from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for


@pytest.fixture
async def stub(admissions):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{admissions.settings.grpc_port}") as ch:
        yield pb_grpc.AdmissionsServiceStub(ch), ch


async def test_register_get_search_and_admissions(admissions, stub) -> None:
    s, _ = stub
    issuer = issuer_for(admissions)
    clerk = call_metadata(issuer.mint_for_role("receptionist"))
    key = str(uuid.uuid4())
    req = pb.RegisterPatientRequest(
        full_name="Đoàn Thị Kim Liên",
        birth_date="2001-12-24",
        sex=pb.SEX_FEMALE,
        cccd="079301004567",
        request_id=key,
    )
    p = await s.RegisterPatient(req, metadata=clerk)
    again = await s.RegisterPatient(req, metadata=clerk)  # idempotent on request_id
    assert again.id == p.id and p.patient_code.startswith("BN")
    billing = call_metadata(issuer.mint_for_service("billing"))
    got = await s.GetPatient(pb.GetPatientRequest(id=p.id), metadata=billing)
    assert (got.full_name, got.birth_date.year, got.birth_date.day, got.sex) == (
        "Đoàn Thị Kim Liên",
        2001,
        24,
        pb.SEX_FEMALE,
    )
    found = await s.SearchPatients(pb.SearchPatientsRequest(query="doan thi kim lien"), metadata=billing)
    assert [x.id for x in found.items] == [p.id]
    async with http_client(admissions, "receptionist") as c:
        room = (await c.get("/api/v1/rooms")).json()["items"][0]["code"]
        visit = (await c.post("/api/v1/visits", json={"patient_id": p.id, "room": room})).json()
    async with http_client(admissions, "nurse") as c:
        bed = (await c.get("/api/v1/beds")).json()["items"][0]["code"]
        stay = (
            await c.post("/api/v1/admissions", json={"patient_id": p.id, "bed": bed, "visit_id": visit["id"]})
        ).json()
    v = await s.GetVisit(pb.GetVisitRequest(id=visit["id"]), metadata=billing)
    assert v.ticket_number == visit["ticket_number"] and v.room_code == room
    active = await s.ListActiveAdmissions(
        pb.ListActiveAdmissionsRequest(ward_code=stay["ward"]), metadata=billing
    )
    assert [a.id for a in active.items] == [stay["id"]]


async def test_errors_map_to_status_codes(admissions, stub) -> None:
    s, _ = stub
    doctor = call_metadata(issuer_for(admissions).mint_for_role("doctor"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.GetPatient(pb.GetPatientRequest(id="no-such-patient"), metadata=doctor)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "patient.not_found" in err.value.details()
    clerk = call_metadata(issuer_for(admissions).mint_for_role("receptionist"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.RegisterPatient(
            pb.RegisterPatientRequest(full_name="Mã Văn Sử", birth_date="1990-02-30", sex=pb.SEX_MALE),
            metadata=clerk,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "birth_date" in err.value.details()


async def test_authentication_and_roles(admissions, stub) -> None:
    s, ch = stub
    issuer = issuer_for(admissions)
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "missing bearer token"),
        (call_metadata("not.a.jwt"), grpc.StatusCode.UNAUTHENTICATED, "invalid token"),
        (
            call_metadata(issuer.mint("user:x", ["doctor"], ttl=-60)),
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid token",
        ),
        (
            call_metadata(issuer.mint("user:x", ["doctor"], audience="elsewhere")),
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid token",
        ),
        (call_metadata(issuer.mint_for_role("auditor")), grpc.StatusCode.PERMISSION_DENIED, "may not call"),
    ]
    for metadata, code, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.GetPatient(pb.GetPatientRequest(id="x"), metadata=metadata)
        assert err.value.code() == code and text in err.value.details(), (code, err.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a doctor reads but does not register
        await s.RegisterPatient(
            pb.RegisterPatientRequest(full_name="Lê Văn Tám", birth_date="1990", sex=1),
            metadata=call_metadata(issuer.mint_for_role("doctor")),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # health needs no token


BHYT_QR = (
    "HT3790123456789|5068e1baa16d205468e1bb8b204e67e1bb8d6320c3816e68|08/08/1988|2|"
    "3132204e677579e1bb856e204875e1bb872c2054502048e1bb93204368c3ad204d696e68|79 - 001|"
    "01/01/2026|31/12/2099|01/01/2026|79123456789012|-|4|01/01/2021|1f2fa22c47f0bd18-7102|$"
)


async def test_reception_scans_a_card_opens_a_visit_and_a_display_watches_the_queue(admissions, stub) -> None:
    """What the web's reception screen and waiting-room displays call."""
    s, _ = stub
    clerk = call_metadata(issuer_for(admissions).mint_for_role("receptionist"))
    rooms = await s.ListRooms(pb.ListRoomsRequest(), metadata=clerk)
    room = next(r for r in rooms.items if r.code == "P106")
    assert room.name and room.department
    scanned = await s.ScanCard(pb.ScanCardRequest(qr=BHYT_QR), metadata=clerk)
    ident = scanned.identity
    assert (ident.kind, ident.full_name, ident.birth_date, ident.sex) == (
        "bhyt",
        "Phạm Thị Ngọc Ánh",
        "1988-08-08",
        pb.SEX_FEMALE,
    )
    assert (ident.bhyt_number, ident.bhyt_valid_to, ident.registered_facility) == (
        "HT3790123456789",
        "2099-12-31",
        "79 - 001",
    )
    assert list(scanned.candidates) == []
    patient = await s.RegisterPatient(
        pb.RegisterPatientRequest(
            full_name=ident.full_name,
            birth_date=ident.birth_date,
            sex=ident.sex,
            bhyt_number=ident.bhyt_number,
            bhyt_valid_from=ident.bhyt_valid_from,
            bhyt_valid_to=ident.bhyt_valid_to,
            bhyt_registered_facility=ident.registered_facility,
            address_line=ident.address,
            request_id=str(uuid.uuid4()),
        ),
        metadata=clerk,
    )
    assert patient.insurance_cards[0].valid_to == "2099-12-31"
    again = await s.ScanCard(pb.ScanCardRequest(qr=BHYT_QR), metadata=clerk)
    assert [(c.patient.id, c.match) for c in again.candidates] == [(patient.id, "bhyt_number")]

    watch = s.WatchQueue(pb.WatchQueueRequest(room_code="P106"), metadata=clerk)
    first = await watch.read()
    assert first.room_code == "P106"
    visit = await s.OpenVisit(
        pb.OpenVisitRequest(
            patient_id=patient.id,
            room_code="P106",
            kind=pb.VISIT_KIND_INSURED,
            insurance_card_number="HT3790123456789",
        ),
        metadata=clerk,
    )
    assert visit.ticket_number >= 1 and visit.kind == pb.VISIT_KIND_INSURED
    changed = await watch.read()
    assert visit.ticket_number in changed.waiting and visit.ticket_number not in first.waiting
    watch.cancel()
    invented = s.WatchQueue(pb.WatchQueueRequest(room_code="PHONG-BIA-1"), metadata=clerk)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invented.read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details().startswith("queue.room_unknown")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.ScanCard(pb.ScanCardRequest(qr="xin chào"), metadata=clerk)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("qr.unknown_format: ")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # only reception opens visits
        await s.OpenVisit(
            pb.OpenVisitRequest(patient_id=patient.id, room_code="P106"),
            metadata=call_metadata(issuer_for(admissions).mint_for_role("cashier")),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_relays_a_display_only_with_its_signed_link(admissions, stub) -> None:
    s, _ = stub
    issuer = issuer_for(admissions)
    web = call_metadata(issuer.mint_for_service("web"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.WatchQueue(pb.WatchQueueRequest(room_code="P107"), metadata=web).read()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details().startswith("display_link.missing")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a cashier may not hand out display links
        await s.CreateDisplayLink(
            pb.CreateDisplayLinkRequest(room_code="P107", valid_days=30),
            metadata=call_metadata(issuer.mint_for_role("cashier")),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    link = await s.CreateDisplayLink(
        pb.CreateDisplayLinkRequest(room_code="P107", valid_days=30),
        metadata=call_metadata(issuer.mint_for_role("receptionist")),
    )
    assert link.room_code == "P107" and link.exp > 0 and link.sig
    watch = s.WatchQueue(
        pb.WatchQueueRequest(room_code="P107", display_exp=link.exp, display_sig=link.sig), metadata=web
    )
    assert (await watch.read()).room_code == "P107"
    watch.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the link is for P107 only
        await s.WatchQueue(
            pb.WatchQueueRequest(room_code="P108", display_exp=link.exp, display_sig=link.sig), metadata=web
        ).read()
    assert err.value.details().startswith("display_link.invalid")


async def test_the_ward_admits_transfers_and_discharges_over_grpc(admissions, stub) -> None:
    """AdmitInpatient / TransferInpatient / DischargeInpatient (the web's ward screen): the same rules as
    the HTTP API (a taken bed is ALREADY_EXISTS bed.occupied naming the field), nurses and doctors only,
    each step audited with the patient."""
    from sqlalchemy import select

    from hospital.chassis.db import audit_log_table

    s, _ = stub
    issuer = issuer_for(admissions)
    clerk = call_metadata(issuer.mint_for_role("receptionist"))
    nurse = call_metadata(issuer.mint_for_role("nurse"))
    patients = [
        await s.RegisterPatient(
            pb.RegisterPatientRequest(
                full_name=name, birth_date=born, sex=pb.SEX_FEMALE, request_id=str(uuid.uuid4())
            ),
            metadata=clerk,
        )
        for name, born in (("Hứa Thị Mỹ Duyên", "1974-05-06"), ("Lâm Ngọc Trâm", "1999-11-30"))
    ]
    beds = (await s.ListBeds(pb.ListBedsRequest(), metadata=nurse)).items
    free = [b for b in beds if not b.occupied]
    other_ward = next(b for b in free if b.ward_code != free[0].ward_code)

    stay = await s.AdmitInpatient(
        pb.AdmitInpatientRequest(patient_id=patients[0].id, bed_code=free[0].code), metadata=nurse
    )
    assert (stay.status, stay.bed_code, stay.ward_code) == ("active", free[0].code, free[0].ward_code)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the bed is taken now
        await s.AdmitInpatient(
            pb.AdmitInpatientRequest(patient_id=patients[1].id, bed_code=free[0].code), metadata=nurse
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.value.details().startswith("bed.occupied:") and err.value.details().endswith("(field bed)")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.AdmitInpatient(pb.AdmitInpatientRequest(patient_id=patients[1].id), metadata=nurse)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "(field bed)" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:  # reception registers, the ward admits
        await s.AdmitInpatient(
            pb.AdmitInpatientRequest(patient_id=patients[1].id, bed_code=free[1].code), metadata=clerk
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    moved = await s.TransferInpatient(
        pb.TransferInpatientRequest(admission_id=stay.id, bed_code=other_ward.code), metadata=nurse
    )
    assert (moved.id, moved.bed_code, moved.ward_code) == (stay.id, other_ward.code, other_ward.ward_code)
    board = {b.code: b for b in (await s.ListBeds(pb.ListBedsRequest(), metadata=nurse)).items}
    assert not board[free[0].code].occupied and board[other_ward.code].patient_id == patients[0].id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.DischargeInpatient(
            pb.DischargeInpatientRequest(admission_id=stay.id, discharge_type="vanished"), metadata=nurse
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "discharge.type" in err.value.details()
    out = await s.DischargeInpatient(
        pb.DischargeInpatientRequest(admission_id=stay.id, discharge_type="recovered"), metadata=nurse
    )
    assert (out.status, out.discharge_type) == ("discharged", "recovered")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.DischargeInpatient(
            pb.DischargeInpatientRequest(admission_id=stay.id, discharge_type="recovered"), metadata=nurse
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "admission.closed" in err.value.details()
    board = {b.code: b for b in (await s.ListBeds(pb.ListBedsRequest(), metadata=nurse)).items}
    assert not board[other_ward.code].occupied

    async with admissions.rt.db.session() as session:
        actions = (
            await session.execute(
                select(audit_log_table.c.action)
                .where(audit_log_table.c.patient_id == patients[0].id)
                .where(audit_log_table.c.action.like("inpatient.%"))
            )
        ).scalars()
        assert sorted(actions) == ["inpatient.admit", "inpatient.discharge", "inpatient.transfer"]


async def test_a_doctor_calls_the_next_ticket_and_the_displays_follow(admissions, stub) -> None:
    s, _ = stub
    issuer = issuer_for(admissions)
    clerk = call_metadata(issuer.mint_for_role("receptionist"))
    doctor = call_metadata(issuer.mint_for_role("doctor"))
    room = "P109"
    tickets = []
    for name in ("Lương Thị Huệ", "Tạ Quang Vinh"):
        p = await s.RegisterPatient(
            pb.RegisterPatientRequest(full_name=name, birth_date="1990", sex=pb.SEX_FEMALE), metadata=clerk
        )
        v = await s.OpenVisit(pb.OpenVisitRequest(patient_id=p.id, room_code=room), metadata=clerk)
        tickets.append((v.ticket_number, v.id, name))
    watch = s.WatchQueue(pb.WatchQueueRequest(room_code=room), metadata=clerk)
    await watch.read()
    first = await s.CallTicket(pb.CallTicketRequest(room_code=room), metadata=doctor)
    assert (first.ticket_number, first.visit_id, first.patient_name, first.status) == (*tickets[0], "called")
    state = await watch.read()
    assert (state.now_serving, state.last_call_action) == (tickets[0][0], "next")
    second = await s.CallTicket(pb.CallTicketRequest(room_code=room, action="next"), metadata=doctor)
    assert second.visit_id == tickets[1][1]
    watch.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as err:  # nobody left
        await s.CallTicket(pb.CallTicketRequest(room_code=room), metadata=doctor)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details().startswith("queue.empty")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a cashier calls nobody
        await s.CallTicket(
            pb.CallTicketRequest(room_code=room), metadata=call_metadata(issuer.mint_for_role("cashier"))
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
