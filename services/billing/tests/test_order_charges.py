"""Charge capture from lab and imaging orders over the real service and NATS, on SQLite and PostgreSQL:
one line per price item, exactly once under redelivered events, reversals on cancellation and MPPS
DISCONTINUED, unknown codes and visit-less orders held for a cashier (never dropped) and priced once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from billing_testkit import eventually, invoice_of, overrides, settled
from nats.js import api as js_api
from sqlalchemy import func, select

from hospital.billing.adapters.tables import charges, clinical_orders, held_charges
from hospital.billing.service import DEFINITION
from hospital.chassis.bus import ensure_streams
from hospital.chassis.db import Database
from hospital.contracts.imaging.v1 import events_pb2 as img_events
from hospital.contracts.imaging.v1 import imaging_pb2 as img
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2 as lab
from hospital.testing.services import http_client, running_service


async def rows(svc, table, *where) -> list[dict]:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return [dict(r) for r in (await s.execute(select(table).where(*where))).mappings().all()]
    finally:
        await db.dispose()


async def count(svc, table, *where) -> int:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())
    finally:
        await db.dispose()


def lab_order(visit_id: str, patient_id: str, tests: list[str], *, name: str = "Đặng Thu Hà") -> lab.Order:
    o = lab.Order(
        id=str(uuid.uuid4()),
        order_number=f"XN2611{uuid.uuid4().int % 10**6:06d}",
        status="active",
        patient=lab.PatientRef(
            id=patient_id,
            patient_code="BN2600001",
            full_name=name,
            sex=lab.SEX_FEMALE,
            birth_date="1990-03-12",
        ),
        visit_id=visit_id,
        ordering_doctor="003456/TB-CCHN",
        items=[
            lab.OrderItem(test_code=t, test_name=t, specimen_barcode="LB2611000011", status="ordered")
            for t in tests
        ],
    )
    o.ordered_at.FromDatetime(datetime.now(UTC))
    return o


def imaging_order(
    patient_id: str, procedure: str, modality: str, description: str, *, visit_ref: str = ""
) -> img.Order:
    o = img.Order(
        id=str(uuid.uuid4()),
        accession_number=f"A{uuid.uuid4().int % 10**9:09d}",
        requested_procedure_id=procedure,
        requested_procedure_description=description,
        modality=modality,
        station_ae_title="CT_HUE",
        patient=img.OrderPatient(patient_ref=patient_id, patient_code="BN2600002", full_name="Hoàng Văn Đức"),
        status=img.ORDER_STATUS_SCHEDULED,
        visit_ref=visit_ref,
    )
    o.scheduled_start.FromDatetime(datetime.now(UTC))
    return o


async def test_lab_order_charges_once_per_price_item_and_cancellation_reverses(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Đặng Thu Hà")
    await invoice_of(billing, vid)
    # a blood count's parameters (one service), glucose, an electrolyte panel (one service), and a code
    # billing has no price for
    order = lab_order(vid, pid, ["WBC", "RBC", "HGB", "PLT", "GLU", "NA", "K", "CL", "PCT"])
    eid = await admissions.publish("lab.order.received", lab_events.OrderReceived(order=order, source="http"))
    await admissions.publish(
        "lab.order.received",
        lab_events.OrderReceived(order=order, source="http"),
        event_id=eid,
        msg_id="redelivered-" + eid,
    )
    inv = await invoice_of(billing, vid, min_lines=4)
    lab_lines = sorted((ln["price_code"], ln["quantity"]) for ln in inv["lines"] if ln["category"] == "lab")
    assert lab_lines == [("XN-CTM", "1"), ("XN-DGD", "1"), ("XN-GLU", "1")], lab_lines
    assert inv["total_amount"] == 42_100 + 46_200 + 29_000 + 21_500
    assert {ln["ordered_by"] for ln in inv["lines"] if ln["category"] == "lab"} == {"003456/TB-CCHN"}
    await settled(billing, admissions.js)
    ref = f"lab:{order.id}"
    assert await count(billing, charges, charges.c.order_ref == ref) == 3
    held = await rows(billing, held_charges, held_charges.c.order_ref == ref)
    assert [(h["code"], h["reason"], h["status"], h["visit_id"]) for h in held] == [
        ("PCT", "unknown_code", "held", vid)
    ]
    async with http_client(billing, "cashier") as c:
        queue = (await c.get("/api/v1/held-charges", params={"visit_id": vid})).json()["items"]
        assert [h["id"] for h in queue] == [held[0]["id"]]

    # the lab cancels the order; the cancellation is delivered twice
    cancel = lab_events.OrderCancelled(order=order, reason="Bệnh nhân từ chối lấy máu")
    ceid = await admissions.publish("lab.order.cancelled", cancel)
    await admissions.publish("lab.order.cancelled", cancel, event_id=ceid, msg_id="redelivered-" + ceid)

    async def reversed_() -> bool:
        return await count(billing, charges, charges.c.order_ref == ref, charges.c.status == "reversal") == 3

    await eventually(reversed_)
    await settled(billing, admissions.js)
    assert await count(billing, charges, charges.c.order_ref == ref) == 6  # 3 originals kept + 3 reversals
    assert await count(billing, charges, charges.c.order_ref == ref, charges.c.status == "reversed") == 3
    inv = await invoice_of(billing, vid)
    assert inv["total_amount"] == 42_100 and [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG"]
    held = await rows(billing, held_charges, held_charges.c.order_ref == ref)
    assert [h["status"] for h in held] == ["dismissed"]


async def test_lab_cancellation_overtaking_its_order_charges_nothing(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Vũ Thị Lan")
    await invoice_of(billing, vid)
    order = lab_order(vid, pid, ["CRE", "MTB"], name="Vũ Thị Lan")
    await admissions.publish(
        "lab.order.cancelled", lab_events.OrderCancelled(order=order, reason="Trùng chỉ định")
    )
    await admissions.publish("lab.order.received", lab_events.OrderReceived(order=order, source="hl7"))

    async def seen() -> bool:
        found = await rows(billing, clinical_orders, clinical_orders.c.order_ref == f"lab:{order.id}")
        return bool(found) and found[0]["status"] == "cancelled"

    await eventually(seen)
    await settled(billing, admissions.js)
    assert await count(billing, charges, charges.c.order_ref == f"lab:{order.id}") == 0
    assert await count(billing, held_charges, held_charges.c.order_ref == f"lab:{order.id}") == 0
    assert (await invoice_of(billing, vid))["total_amount"] == 42_100


async def test_lab_order_before_its_visit_is_known_still_charges(billing, admissions) -> None:
    """The LAB stream may overtake admissions.visit.opened: the visit's record starts from the order."""
    vid, pid = str(uuid.uuid4()), str(uuid.uuid4())
    order = lab_order(vid, pid, ["HBA1C", "CHOL", "TG"])
    await admissions.publish("lab.order.received", lab_events.OrderReceived(order=order, source="http"))
    inv = await invoice_of(billing, vid, min_lines=3)
    assert sorted(ln["price_code"] for ln in inv["lines"]) == ["XN-CHOL", "XN-HBA1C", "XN-TG"]
    assert inv["total_amount"] == 101_000 + 2 * 26_900


async def test_imaging_order_charge_discontinuation_and_held_procedure(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Hoàng Văn Đức")
    await invoice_of(billing, vid)
    ct = imaging_order(pid, "CT-SN", "CT", "CT sọ não không tiêm thuốc")
    eid = await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=ct))
    await admissions.publish(
        "imaging.order.scheduled",
        img_events.OrderScheduled(order=ct),
        event_id=eid,
        msg_id="redelivered-" + eid,
    )
    inv = await invoice_of(billing, vid, min_lines=2)
    assert [(ln["price_code"], ln["category"]) for ln in inv["lines"]][1:] == [("CDHA-CTSN", "imaging")]
    assert inv["total_amount"] == 42_100 + 522_000

    # the modality stops the procedure: MPPS DISCONTINUED, delivered twice
    done = img_events.ProcedureCompleted(
        order_id=ct.id,
        accession_number=ct.accession_number,
        mpps_instance_uid="1.2.826.0.1.3680043.10.543.1",
        status="DISCONTINUED",
    )
    deid = await admissions.publish("imaging.procedure.completed", done)
    await admissions.publish("imaging.procedure.completed", done, event_id=deid, msg_id="redelivered-" + deid)
    ref = f"imaging:{ct.id}"

    async def reversed_() -> bool:
        return await count(billing, charges, charges.c.order_ref == ref, charges.c.status == "reversal") == 1

    await eventually(reversed_)

    # a procedure billing has no price for is held; the cashier prices it once and remembers the code
    pet = imaging_order(pid, "PET-CT-TB", "PT", "PET/CT toàn thân")
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=pet))

    async def held_line() -> list[dict]:
        return await rows(billing, held_charges, held_charges.c.order_ref == f"imaging:{pet.id}")

    held = (await eventually(held_line))[0]
    assert (held["code"], held["reason"], held["visit_id"]) == ("PET-CT-TB", "unknown_code", vid)
    await settled(billing, admissions.js)
    assert await count(billing, charges, charges.c.order_ref == ref) == 2  # still one reversal
    async with http_client(billing, "cashier") as c:
        r = await c.post(f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "KHONG-CO"})
        assert r.status_code == 422 and r.json()["code"] == "charge.price_code", r.text
        r = await c.post(
            f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "CDHA-MRISN", "remember": True}
        )
        assert r.status_code == 200, r.text
        charge = r.json()["charge"]
        assert charge["price_code"] == "CDHA-MRISN" and charge["visit_id"] == vid
        again = await c.post(f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "CDHA-MRISN"})
        assert again.status_code == 200 and again.json()["charge"]["id"] == charge["id"]  # posted once
        r = await c.post(f"/api/v1/held-charges/{held['id']}/dismiss", json={"reason": "nhầm"})
        assert r.status_code == 409 and r.json()["code"] == "held_charge.priced"
    assert await count(billing, charges, charges.c.order_ref == f"imaging:{pet.id}") == 1
    # the remembered code prices the next order of it by itself
    pet2 = imaging_order(pid, "PET-CT-TB", "PT", "PET/CT toàn thân")
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=pet2))

    async def auto() -> bool:
        return await count(billing, charges, charges.c.order_ref == f"imaging:{pet2.id}") == 1

    await eventually(auto)
    inv = await invoice_of(billing, vid)
    assert inv["total_amount"] == 42_100 + 2 * 1_311_000


async def test_imaging_order_without_open_visit_is_held_then_priced_on_a_visit(billing, admissions) -> None:
    pid = str(uuid.uuid4())
    xq = imaging_order(pid, "XQ-NGUC", "DX", "X-quang ngực thẳng")
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=xq))

    async def held_line() -> list[dict]:
        return await rows(billing, held_charges, held_charges.c.order_ref == f"imaging:{xq.id}")

    held = (await eventually(held_line))[0]
    assert (held["reason"], held["visit_id"], held["patient_id"]) == ("no_visit", None, pid)
    vid, _, _ = await admissions.open_visit(name="Ngô Thị Mai")
    await invoice_of(billing, vid)
    async with http_client(billing, "cashier") as c:
        r = await c.post(f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "CDHA-XQNGUC"})
        assert r.status_code == 422 and r.json()["field"] == "visit_id", r.text
        r = await c.post(
            f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "CDHA-XQNGUC", "visit_id": vid}
        )
        assert r.status_code == 200 and r.json()["held"]["status"] == "priced", r.text
    async with http_client(billing, "nurse") as c:  # the queue is the cash office's
        assert (await c.get("/api/v1/held-charges")).status_code == 403
    inv = await invoice_of(billing, vid, min_lines=2)
    assert inv["total_amount"] == 42_100 + 65_400


def cancelled(order: img.Order, reason: str = "Bệnh nhân đổi lịch chụp") -> img_events.OrderCancelled:
    o = img.Order()
    o.CopyFrom(order)
    o.status = img.ORDER_STATUS_CANCELLED
    return img_events.OrderCancelled(order=o, reason=reason)


async def test_imaging_order_with_visit_ref_charges_that_visit(billing, admissions) -> None:
    """Two open visits: the order's visit_ref wins over the most recently opened one; a visit_ref billing
    has not heard of yet starts that visit's record, as a lab order does; no visit_ref: today's guess."""
    now = datetime.now(UTC)
    morning, pid, _ = await admissions.open_visit(name="Trịnh Văn Hùng", opened_at=now - timedelta(hours=3))
    later, _, _ = await admissions.open_visit(name="Trịnh Văn Hùng", opened_at=now, patient_id=pid)
    await invoice_of(billing, morning)
    await invoice_of(billing, later)
    ct = imaging_order(pid, "CT-SN", "CT", "CT sọ não không tiêm thuốc", visit_ref=morning)
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=ct))
    inv = await invoice_of(billing, morning, min_lines=2)
    assert [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG", "CDHA-CTSN"]
    guessed = imaging_order(pid, "XQ-NGUC", "DX", "X-quang ngực thẳng")  # no visit_ref: the latest open visit
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=guessed))
    inv = await invoice_of(billing, later, min_lines=2)
    assert [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG", "CDHA-XQNGUC"]
    assert len((await invoice_of(billing, morning))["lines"]) == 2
    (row,) = await rows(billing, clinical_orders, clinical_orders.c.order_ref == f"imaging:{ct.id}")
    assert (row["visit_id"], row["status"]) == (morning, "active")

    # the IMAGING stream overtakes admissions.visit.opened: the visit's record starts from the order
    unknown, other = str(uuid.uuid4()), str(uuid.uuid4())
    us = imaging_order(other, "SA-OB", "US", "Siêu âm ổ bụng tổng quát", visit_ref=unknown.upper())
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=us))
    inv = await invoice_of(billing, unknown)
    assert [ln["price_code"] for ln in inv["lines"]] == ["CDHA-SAOB"] and inv["patient_id"] == other
    assert await count(billing, held_charges, held_charges.c.order_ref == f"imaging:{us.id}") == 0


async def test_imaging_cancellation_reverses_once_and_dismisses_held_lines(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Lý Thị Ngọc Ánh")
    await invoice_of(billing, vid)
    mr = imaging_order(pid, "MR-SN", "MR", "Cộng hưởng từ sọ não", visit_ref=vid)
    pet = imaging_order(pid, "PET-CT-TB", "PT", "PET/CT toàn thân", visit_ref=vid)  # no price: held
    for o in (mr, pet):
        await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=o))
    inv = await invoice_of(billing, vid, min_lines=2)
    assert inv["total_amount"] == 42_100 + 1_311_000

    async def held_pet() -> list[dict]:
        return await rows(billing, held_charges, held_charges.c.order_ref == f"imaging:{pet.id}")

    assert [(h["status"], h["visit_id"]) for h in await eventually(held_pet)] == [("held", vid)]

    # both are cancelled; the MR cancellation is redelivered (same event id) and re-published (new id)
    ceid = await admissions.publish("imaging.order.cancelled", cancelled(mr))
    await admissions.publish(
        "imaging.order.cancelled", cancelled(mr), event_id=ceid, msg_id="redelivered-" + ceid
    )
    await admissions.publish("imaging.order.cancelled", cancelled(mr))
    await admissions.publish("imaging.order.cancelled", cancelled(pet, "Chỉ định trùng"))
    ref = f"imaging:{mr.id}"

    async def reversed_() -> bool:
        return await count(billing, charges, charges.c.order_ref == ref, charges.c.status == "reversal") == 1

    await eventually(reversed_)

    async def dismissed() -> bool:
        return [h["status"] for h in await held_pet()] == ["dismissed"]

    await eventually(dismissed)
    await settled(billing, admissions.js)
    found = await rows(billing, charges, charges.c.order_ref == ref)
    assert sorted((c["status"], c["qty_milli"]) for c in found) == [("reversal", -1000), ("reversed", 1000)]
    reversal = next(c for c in found if c["status"] == "reversal")
    assert reversal["source"] == "imaging.order.cancelled" and reversal["source_event_id"] == ceid
    assert reversal["note"] == f"Huỷ chỉ định CĐHA {mr.accession_number}: Bệnh nhân đổi lịch chụp"
    (held,) = await held_pet()
    assert held["resolved_by"] == "service:imaging" and held["note"].endswith("Chỉ định trùng")
    states = {
        r["order_ref"]: r["status"]
        for r in await rows(billing, clinical_orders, clinical_orders.c.source == "imaging")
    }
    assert states[ref] == states[f"imaging:{pet.id}"] == "cancelled"
    inv = await invoice_of(billing, vid)
    assert inv["total_amount"] == 42_100 and [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG"]
    async with http_client(billing, "cashier") as c:  # a withdrawn order's held line cannot be priced
        r = await c.post(f"/api/v1/held-charges/{held['id']}/price", json={"price_code": "CDHA-MRISN"})
        assert r.status_code == 409, r.text


async def test_imaging_cancellation_overtaking_its_order_charges_nothing(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Đoàn Minh Khôi")
    await invoice_of(billing, vid)
    for visit_ref in (vid, ""):  # the visit named, or guessed
        ct = imaging_order(pid, "CT-BUNG", "CT", "CT ổ bụng có tiêm thuốc cản quang", visit_ref=visit_ref)
        await admissions.publish("imaging.order.cancelled", cancelled(ct, "Bệnh nhân dị ứng thuốc cản quang"))
        await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=ct))
        ref = f"imaging:{ct.id}"

        async def seen(ref: str = ref) -> bool:
            found = await rows(billing, clinical_orders, clinical_orders.c.order_ref == ref)
            return bool(found) and found[0]["status"] == "cancelled"

        await eventually(seen)
        await settled(billing, admissions.js)
        assert await count(billing, charges, charges.c.order_ref == ref) == 0
        assert await count(billing, held_charges, held_charges.c.order_ref == ref) == 0
    assert (await invoice_of(billing, vid))["total_amount"] == 42_100


async def test_imaging_durable_made_before_cancellations_receives_them(
    database_url, nats_server, tmp_path, facility_credentials, admissions
) -> None:
    """A billing-imaging durable created by the previous release (filtered on the two subjects it handled
    then) is updated to the current handlers when billing starts: cancellations reach it."""
    settings = overrides(facility_credentials)
    durable = settings["imaging_durable"]
    await ensure_streams(admissions.js)
    await admissions.js.add_consumer(
        "IMAGING",
        js_api.ConsumerConfig(
            durable_name=durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            filter_subjects=["imaging.order.scheduled", "imaging.procedure.completed"],
        ),
    )  # order_events_start=all
    async with running_service(
        DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url, **settings
    ) as billing:

        async def updated() -> bool:
            info = await admissions.js.consumer_info("IMAGING", durable)
            return "imaging.order.cancelled" in (info.config.filter_subjects or [])

        await eventually(updated, timeout=10)
        vid, pid, _ = await admissions.open_visit(name="Phan Thị Thuỳ Dương")
        await invoice_of(billing, vid)
        us = imaging_order(pid, "SA-TG", "US", "Siêu âm tuyến giáp", visit_ref=vid)
        await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=us))
        await invoice_of(billing, vid, min_lines=2)
        await admissions.publish("imaging.order.cancelled", cancelled(us))

        async def reversed_() -> bool:
            return (
                await count(
                    billing,
                    charges,
                    charges.c.order_ref == f"imaging:{us.id}",
                    charges.c.status == "reversal",
                )
                == 1
            )

        await eventually(reversed_)
    await admissions.js.delete_consumer("IMAGING", durable)


async def test_imaging_redo_after_discontinued_is_charged_again_once(billing, admissions) -> None:
    """The modality stops a CT (MPPS DISCONTINUED: charge reversed), then performs it again under a new
    MPPS (imaging applies such a redo): its COMPLETED posts the same item again on the same visit, once,
    whether redelivered or followed by yet another COMPLETED."""
    vid, pid, _ = await admissions.open_visit(name="Đặng Thị Ngọc Ánh")
    await invoice_of(billing, vid)
    ct = imaging_order(pid, "CT-SN", "CT", "CT sọ não không tiêm thuốc")
    await admissions.publish("imaging.order.scheduled", img_events.OrderScheduled(order=ct))
    await invoice_of(billing, vid, min_lines=2)
    ref = f"imaging:{ct.id}"
    stopped = img_events.ProcedureCompleted(
        order_id=ct.id,
        accession_number=ct.accession_number,
        mpps_instance_uid="1.2.826.0.1.3680043.10.543.7",
        status="DISCONTINUED",
    )
    await admissions.publish("imaging.procedure.completed", stopped)

    async def reversed_() -> bool:
        return await count(billing, charges, charges.c.order_ref == ref, charges.c.status == "reversal") == 1

    await eventually(reversed_)

    redone = img_events.ProcedureCompleted(
        order_id=ct.id,
        accession_number=ct.accession_number,
        mpps_instance_uid="1.2.826.0.1.3680043.10.543.8",
        status="COMPLETED",
    )
    reid = await admissions.publish("imaging.procedure.completed", redone)
    await admissions.publish(
        "imaging.procedure.completed", redone, event_id=reid, msg_id="redelivered-" + reid
    )
    again = img_events.ProcedureCompleted(
        order_id=ct.id,
        accession_number=ct.accession_number,
        mpps_instance_uid="1.2.826.0.1.3680043.10.543.8",
        status="COMPLETED",
    )
    await admissions.publish("imaging.procedure.completed", again)  # a later, separate COMPLETED event

    async def reposted() -> list[dict]:
        return await rows(billing, charges, charges.c.order_ref == ref, charges.c.status == "posted")

    posted = await eventually(reposted)
    await settled(billing, admissions.js)
    posted = await rows(billing, charges, charges.c.order_ref == ref, charges.c.status == "posted")
    assert [(c["price_code"], c["visit_id"], c["source_event_id"]) for c in posted] == [
        ("CDHA-CTSN", vid, reid)
    ]
    assert (
        await count(billing, charges, charges.c.order_ref == ref) == 3
    )  # original (reversed), reversal, redo
    inv = await invoice_of(billing, vid)
    assert inv["total_amount"] == 42_100 + 522_000
