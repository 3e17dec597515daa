"""Charge capture over the real service: admissions events from NATS (exactly once under redelivery),
bed-days, manual charges and their reversal, bad input refused without a trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing_testkit import invoice_of, settled
from sqlalchemy import func, select

from hospital.billing.adapters.tables import charges, invoices
from hospital.chassis.db import Database
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import events_pb2 as adm_events
from hospital.testing.services import http_client


async def count(svc, table, *where) -> int:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return int((await s.execute(select(func.count()).select_from(table).where(*where))).scalar_one())
    finally:
        await db.dispose()


async def test_visit_opened_charges_the_examination_exactly_once(billing, admissions) -> None:
    """The same event delivered twice (same event id, different Nats-Msg-Id, so JetStream keeps both)."""
    vid, _, eid = await admissions.open_visit(name="Trần Thị Bích Ngọc")
    await admissions.open_visit(event_id=eid, visit_id=vid, name="Trần Thị Bích Ngọc")  # redelivery
    inv = await invoice_of(billing, vid)
    assert inv["number"].startswith("HD") and len(inv["number"]) == 8 and inv["status"] == "open"
    assert [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG"]
    assert inv["lines"][0]["source_event_id"] == eid and inv["total_amount"] == 42_100
    await settled(billing, admissions.js)  # the second copy applied too: the database is final
    assert await count(billing, charges, charges.c.visit_id == vid) == 1
    assert await count(billing, invoices, invoices.c.visit_id == vid) == 1


async def test_bed_days_follow_admission_transfer_and_discharge(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(name="Lê Việt Hưng")
    stay = adm.Admission(
        id="adm-" + vid[:8], patient_id=pid, visit_id=vid, ward_code="NOI", bed_code="NOI-101-01"
    )
    stay.admitted_at.FromDatetime(datetime.now(UTC) - timedelta(days=3))
    await admissions.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=stay))
    moved = adm.Admission()
    moved.CopyFrom(stay)
    moved.ward_code, moved.bed_code = "HSTC", "HSTC-201-01"
    transfer_id = await admissions.publish(
        "admissions.inpatient.transferred",
        adm_events.InpatientTransferred(admission=moved, from_ward_code="NOI", from_bed_code="NOI-101-01"),
    )
    await admissions.publish(
        "admissions.inpatient.transferred",
        adm_events.InpatientTransferred(admission=moved, from_ward_code="NOI", from_bed_code="NOI-101-01"),
        event_id=transfer_id,
        msg_id="redelivered-" + transfer_id,
    )
    out = adm_events.InpatientDischarged(admission=moved, discharge_type="improved")
    out.discharged_at.FromDatetime(datetime.now(UTC))
    await admissions.publish("admissions.inpatient.discharged", out)
    inv = await invoice_of(billing, vid, min_lines=3)
    beds = [(ln["price_code"], ln["quantity"]) for ln in inv["lines"] if ln["category"] == "bed"]
    # 3 days in internal medicine, then the transfer day (= discharge day): half at the ICU, half at
    # internal medicine, the dearest and the cheapest bed of that day
    assert sorted(beds) == [("GB-HSTC", "0.5"), ("GB-NOI2", "0.5"), ("GB-NOI2", "3")], beds
    assert inv["visit"]["inpatient"] is True
    assert inv["total_amount"] == 42_100 + 3 * 220_300 + 738_500 // 2 + 220_300 // 2


async def test_manual_charge_cancel_and_bad_input(billing, admissions) -> None:
    vid, _, _ = await admissions.open_visit(name="Phạm Minh Tuấn")
    await invoice_of(billing, vid)
    async with http_client(billing, "cashier") as c:
        r = await c.post(
            f"/api/v1/visits/{vid}/charges",
            json={"price_code": "XN-CTM", "quantity": "2", "request_id": "req-ctm-1"},
        )
        assert r.status_code == 201, r.text
        charge = r.json()
        again = await c.post(
            f"/api/v1/visits/{vid}/charges",
            json={"price_code": "XN-CTM", "quantity": "2", "request_id": "req-ctm-1"},
        )
        assert again.json()["id"] == charge["id"]  # a retried request posts nothing new
        for body, code, field in [
            ({"price_code": "KHONG-CO"}, "charge.price_code", "price_code"),
            ({"price_code": "XN-CTM", "quantity": "0"}, "charge.quantity", "quantity"),
            ({"price_code": "XN-CTM", "quantity": "1.2345"}, "charge.quantity", "quantity"),
            ({"price_code": "XN-CTM", "quantity": "abc"}, "charge.quantity", "quantity"),
        ]:
            r = await c.post(f"/api/v1/visits/{vid}/charges", json=body)
            assert r.status_code == 422 and r.json()["code"] == code and r.json()["field"] == field, r.text
        r = await c.post("/api/v1/visits/no-such-visit/charges", json={"price_code": "XN-CTM"})
        assert r.status_code == 404 and r.json()["code"] == "visit.not_found"
        inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
        assert inv["total_amount"] == 42_100 + 2 * 46_200 and len(inv["lines"]) == 2
        r = await c.post(f"/api/v1/charges/{charge['id']}/cancel", json={"reason": "Chỉ định nhầm"})
        assert (
            r.status_code == 200
            and r.json()["quantity"] == "-2"
            and r.json()["reverses_charge_id"] == charge["id"]
        )
        r = await c.post(f"/api/v1/charges/{charge['id']}/cancel", json={"reason": "lần hai"})
        assert r.status_code == 409 and r.json()["code"] == "charge.reversed"
        inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
        assert inv["total_amount"] == 42_100 and len(inv["lines"]) == 1
        assert {x["status"] for x in inv["cancelled"]} == {"reversed", "reversal"}  # kept, never deleted
    assert await count(billing, charges, charges.c.visit_id == vid) == 3


async def test_transfer_day_is_billed_half_at_the_dearest_and_half_at_the_cheapest_ward(
    billing, admissions
) -> None:
    """ICU for 3 days, then internal medicine for 2 more: the transfer day is one bed-day, 0.5 at the ICU
    (the dearest bed of that day) and 0.5 in internal medicine (the cheapest), not a day at each."""
    from hospital.billing.app.common import local_date

    vid, pid, _ = await admissions.open_visit(name="Trịnh Văn Khải")
    now = datetime.now(UTC)
    stay = adm.Admission(
        id="adm-" + vid[:8], patient_id=pid, visit_id=vid, ward_code="HSTC", bed_code="HSTC-201-02"
    )
    stay.admitted_at.FromDatetime(now - timedelta(days=3))
    await admissions.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=stay))
    moved = adm.Admission()
    moved.CopyFrom(stay)
    moved.ward_code, moved.bed_code = "NOI", "NOI-105-03"
    await admissions.publish(
        "admissions.inpatient.transferred",
        adm_events.InpatientTransferred(admission=moved, from_ward_code="HSTC", from_bed_code="HSTC-201-02"),
    )
    out = adm_events.InpatientDischarged(admission=moved, discharge_type="improved")
    out.discharged_at.FromDatetime(now + timedelta(days=2))
    await admissions.publish("admissions.inpatient.discharged", out)
    inv = await invoice_of(billing, vid, min_lines=4)
    beds = [(ln["price_code"], ln["quantity"]) for ln in inv["lines"] if ln["category"] == "bed"]
    icu_days = (local_date(now) - local_date(now - timedelta(days=3))).days  # 3
    noi_days = (local_date(now + timedelta(days=2)) - local_date(now)).days  # 2
    assert sorted(beds) == sorted(
        [("GB-HSTC", str(icu_days)), ("GB-HSTC", "0.5"), ("GB-NOI2", "0.5"), ("GB-NOI2", str(noi_days))]
    ), beds
    total_days = (local_date(now + timedelta(days=2)) - local_date(now - timedelta(days=3))).days + 1
    assert icu_days + 0.5 + 0.5 + noi_days == total_days  # still discharge day − admission day + 1
    half_days = [ln for ln in inv["lines"] if ln["quantity"] == "0.5"]
    assert {ln["department_code"] for ln in half_days} == {"NOI"}  # posted with the segment they open


async def test_stay_under_four_hours_is_charged_no_bed_day(billing, admissions) -> None:
    from hospital.billing.app.common import local_date

    now = datetime.now(UTC)
    for hours, name in ((3.5, "Mai Văn Toàn"), (5, "Đỗ Thị Hằng")):
        vid, pid, _ = await admissions.open_visit(name=name)
        stay = adm.Admission(
            id=f"adm-{vid[:8]}", patient_id=pid, visit_id=vid, ward_code="NOI", bed_code="NOI-1"
        )
        stay.admitted_at.FromDatetime(now - timedelta(hours=hours))
        await admissions.publish(
            "admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=stay)
        )
        out = adm_events.InpatientDischarged(admission=stay, discharge_type="improved")
        out.discharged_at.FromDatetime(now)
        await admissions.publish("admissions.inpatient.discharged", out)
        if hours < 4:
            await settled(billing, admissions.js)  # both events applied
            inv = await invoice_of(billing, vid)
            assert inv["visit"]["inpatient"] is True
            assert [ln["price_code"] for ln in inv["lines"]] == ["KB-THUONG"]
        else:
            inv = await invoice_of(billing, vid, min_lines=2)
            days = (local_date(now) - local_date(now - timedelta(hours=hours))).days + 1
            assert [(ln["price_code"], ln["quantity"]) for ln in inv["lines"] if ln["category"] == "bed"] == [
                ("GB-NOI2", str(days))
            ]
