"""The claim through the running service: national codes for the hospital's own (an unmapped price item
or department stops the export with an error naming it), a card issued during the visit (each line
under the card of its day, every card in the claim), and the rule version chosen by the visit's day
on both sides of the switch's date. Every exported claim is validated against the decision's schemas."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from billing_testkit import eventually, invoice_of, overrides
from lxml import etree
from sqlalchemy import delete, insert, update

from hospital.billing.adapters.tables import department_codes, price_items, visits
from hospital.billing.app.common import LOCAL_TZ, local_date
from hospital.billing.domain.xml130 import validate
from hospital.billing.service import DEFINITION
from hospital.chassis.app import Service
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.testing.services import http_client, running_service

DOCTOR = "003456/TB-CCHN"


def _files(doc: bytes) -> dict[str, etree._Element]:
    validate(doc, strict=False)  # every element, in order, with the decision's types, formats and codes
    root = etree.fromstring(doc)
    return {
        f.findtext("LOAIHOSO"): etree.fromstring(base64.b64decode(f.findtext("NOIDUNGFILE")))
        for f in root.iter("FILEHOSO")
    }


async def _closed_with_diagnosis(svc: Service, admissions, vid: str, pid: str) -> None:
    await admissions.close_visit(vid, pid)
    async with http_client(svc, "cashier") as c:

        async def closed() -> bool:
            r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
            return r.json().get("code") != "claim.visit_open" if r.status_code == 409 else True

        await eventually(closed)
        r = await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "J02.9", "text": "Viêm họng cấp"})
        assert r.status_code == 200, r.text


async def test_unmapped_items_and_departments_stop_the_claim(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    async with svc.rt.db.session() as s:  # the hospital has not mapped its CRP test to a national code
        await s.execute(update(price_items).where(price_items.c.code == "XN-CRP").values(bhyt_code="XN-CRP"))
        await s.commit()
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED,
        card="HS4350120878811",
        name="Võ Thị Thanh Hằng",
        ethnicity="Dân tộc Mường",  # as reception wrote it: the claim takes the national code
        occupation="22120",
    )
    await invoice_of(svc, vid)
    async with http_client(svc, "cashier") as c:
        r = await c.post(f"/api/v1/visits/{vid}/charges", json={"price_code": "XN-CRP", "ordered_by": DOCTOR})
        assert r.status_code == 201, r.text
        crp = r.json()["id"]
    await _closed_with_diagnosis(svc, admissions, vid, pid)
    async with http_client(svc, "cashier") as c:
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 409 and r.json()["code"] == "claim.unmapped_item", r.text
        assert "XN-CRP" in r.json()["detail"] and "MA_DICH_VU" in r.json()["detail"]
        r = await c.post(f"/api/v1/charges/{crp}/cancel", json={"reason": "chưa ánh xạ mã dịch vụ"})
        assert r.status_code == 200, r.text
        async with svc.rt.db.session() as s:  # nor its internal-medicine department
            await s.execute(delete(department_codes).where(department_codes.c.department_code == "NTH"))
            await s.commit()
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 409 and r.json()["code"] == "claim.unmapped_department", r.text
        assert "NTH" in r.json()["detail"]
        async with svc.rt.db.session() as s:
            await s.execute(insert(department_codes).values(department_code="NTH", claim_code="K03"))
            await s.execute(update(visits).where(visits.c.id == vid).values(province_code="35"))
            await s.commit()
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 200, r.text
    xml1 = _files(r.content)["XML1"]
    assert xml1.findtext("MA_KHOA") == "K03" and xml1.findtext("MA_DOITUONG_KCB") == "1.1"
    assert xml1.findtext("MATINH_CU_TRU") == "035"  # Thông tư 07/2016/TT-BCA: 3 digits
    assert (xml1.findtext("MA_DANTOC"), xml1.findtext("MA_NGHE_NGHIEP")) == ("06", "22120")


async def test_a_card_issued_during_the_visit(billing_sqlite, admissions) -> None:
    """Opened three days ago on a level-4 card (80%); a level-3 card (95%) issued today: the exam of the
    first day is paid at 80%, today's CT scan at 95%, and the claim lists both cards."""
    svc = billing_sqlite
    first = "HS4350120878811"
    opened = datetime.now(UTC) - timedelta(days=3)
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED, card=first, name="Trịnh Văn Quyết", opened_at=opened
    )
    await invoice_of(svc, vid)
    today = local_date(datetime.now(UTC))
    new = {
        "number": "HT3350120878811",
        "valid_from": today.isoformat(),
        "valid_to": (today + timedelta(days=365)).isoformat(),
        "registered_facility": "35001",
    }
    async with http_client(svc, "cashier") as c:
        r = await c.post(
            f"/api/v1/visits/{vid}/charges", json={"price_code": "CDHA-CTSN", "ordered_by": DOCTOR}
        )
        assert r.status_code == 201, r.text
        before = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
        # refused: not a card number, a card older than the visit, an unknown visit
        r = await c.post(f"/api/v1/visits/{vid}/cards", json={**new, "number": "HT9350120878811"})
        assert r.status_code == 422 and r.json()["code"] == "card.invalid", r.text
        early = {**new, "valid_from": (local_date(opened) - timedelta(days=1)).isoformat()}
        r = await c.post(f"/api/v1/visits/{vid}/cards", json=early)
        assert r.status_code == 409 and r.json()["code"] == "card.not_during_visit", r.text
        assert (await c.post("/api/v1/visits/nope/cards", json=new)).status_code == 404
        r = await c.post(f"/api/v1/visits/{vid}/cards", json=new)
        assert r.status_code == 200, r.text
        assert [card["number"] for card in r.json()["cards"]] == [first, new["number"]]
        again = await c.post(f"/api/v1/visits/{vid}/cards", json=new)  # recorded once
        assert again.status_code == 200 and again.json() == r.json()
        inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
    async with http_client(svc, "auditor") as c:
        assert (await c.post(f"/api/v1/visits/{vid}/cards", json=new)).status_code == 403
    assert inv["visit"]["cards"] == [first, new["number"]]
    split = {ln["price_code"]: ln["split"] for ln in inv["lines"]}
    assert split["KB-THUONG"]["muc_huong"] == 80 and split["CDHA-CTSN"]["muc_huong"] == 95
    assert split["CDHA-CTSN"]["t_bhtt"] == 522_000 * 95 // 100
    assert inv["insurance_amount"] == before["insurance_amount"] + 522_000 * 15 // 100
    await _closed_with_diagnosis(svc, admissions, vid, pid)
    async with http_client(svc, "cashier") as c:
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 200, r.text
    files = _files(r.content)
    xml1 = files["XML1"]
    assert xml1.findtext("MA_THE_BHYT") == f"{first};{new['number']}"
    assert xml1.findtext("MA_DKBD") == "35001;35001"
    assert xml1.findtext("GT_THE_TU") == f"20240101;{today:%Y%m%d}"
    lines = {
        row.findtext("MA_DICH_VU"): row.findtext("MUC_HUONG") for row in files["XML3"].iter("CHI_TIET_DVKT")
    }
    assert lines == {"02.1896": "80", "18.0070.0001": "95"}


async def test_a_stay_whose_card_changed_pays_its_bed_days_per_card(billing_sqlite, admissions) -> None:
    """Five days in internal medicine; a level-3 card issued on the fourth: the bed-days before it and
    from it are separate lines, each paid under its own card."""
    from hospital.contracts.admissions.v1 import events_pb2 as adm_events

    svc = billing_sqlite
    now = datetime.now(UTC)
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED,
        card="HS4350120878811",
        name="Đoàn Văn Hậu",
        opened_at=now - timedelta(days=4, minutes=30),
    )
    stay = adm.Admission(
        id="adm-" + vid[:8], patient_id=pid, visit_id=vid, ward_code="NOI", bed_code="NOI-102-03"
    )
    stay.admitted_at.FromDatetime(now - timedelta(days=4))
    await admissions.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=stay))
    await invoice_of(svc, vid)
    today = local_date(now)
    changed = today - timedelta(days=1)
    async with http_client(svc, "cashier") as c:
        r = await c.post(
            f"/api/v1/visits/{vid}/cards",
            json={
                "number": "HT3350120878811",
                "valid_from": changed.isoformat(),
                "valid_to": (today + timedelta(days=300)).isoformat(),
                "registered_facility": "35001",
            },
        )
        assert r.status_code == 200, r.text
    out = adm_events.InpatientDischarged(admission=stay, discharge_type="improved")
    out.discharged_at.FromDatetime(now)
    await admissions.publish("admissions.inpatient.discharged", out)
    inv = await invoice_of(svc, vid, min_lines=3)
    beds = sorted(
        (ln["quantity"], ln["split"]["muc_huong"]) for ln in inv["lines"] if ln["category"] == "bed"
    )
    days = (today - local_date(now - timedelta(days=4))).days + 1
    assert beds == sorted([(str(days - 2), 80), ("2", 95)])
    await _closed_with_diagnosis(svc, admissions, vid, pid)
    async with http_client(svc, "cashier") as c:
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 200, r.text
    files = _files(r.content)
    rows = sorted(
        (row.findtext("SO_LUONG"), row.findtext("MUC_HUONG"), row.findtext("NGAY_YL")[:8])
        for row in files["XML3"].iter("CHI_TIET_DVKT")
        if row.findtext("MA_GIUONG")
    )
    assert rows == sorted(
        [(str(days - 2), "80", f"{changed - timedelta(days=1):%Y%m%d}"), ("2", "95", f"{today:%Y%m%d}")]
    )
    assert files["XML1"].findtext("MA_THE_BHYT") == "HS4350120878811;HT3350120878811"


@pytest.fixture
async def billing_law51_2026(nats_server, tmp_path, facility_credentials) -> AsyncIterator[Service]:
    """A hospital that applies Law 51/2024's rules to visits from 1 July 2026 (the switch is a setting)."""
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/law51.db",
        nats_url=nats_server.url,
        law51_from=date(2026, 7, 1),
        **overrides(facility_credentials),
    ) as svc:
        yield svc


@pytest.mark.parametrize(
    ("day", "fund", "code", "muc_huong"),
    [
        (date(2026, 6, 30), 0, "3", "0"),  # the earlier rules: a self-referred outpatient is not paid
        (date(2026, 7, 1), 42_100 * 40 // 100, "1.14", "40"),  # Law 51: 50% of the card's 80%
    ],
)
async def test_the_rules_of_the_visits_day(
    billing_law51_2026, admissions, day: date, fund: int, code: str, muc_huong: str
) -> None:
    """A patient whose card is registered at another facility comes without a referral (self-referred)
    to the outpatient clinic, the day before the switch and on its day."""
    svc = billing_law51_2026
    at = datetime(day.year, day.month, day.day, 8, 30, tzinfo=LOCAL_TZ)
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED,
        card="HS4010120878811",
        name="Lê Thị Ngọc Ánh",
        opened_at=at,
        registered_facility="01 - 043",
    )
    inv = await invoice_of(svc, vid)
    assert inv["insurance_amount"] == fund and inv["total_amount"] == 42_100
    await _closed_with_diagnosis(svc, admissions, vid, pid)
    async with http_client(svc, "cashier") as c:
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 200, r.text
    files = _files(r.content)
    assert files["XML1"].findtext("MA_DOITUONG_KCB") == code
    assert files["XML1"].findtext("MA_DKBD") == "01043"
    assert files["XML3"].findtext(".//MUC_HUONG") == muc_huong


async def test_a_unit_price_with_decimals_from_the_price_list_to_the_claim(billing, admissions) -> None:
    """A tender drug price of 1,234.567 đồng, exact on PostgreSQL and SQLite: on the charge and in the
    claim (DON_GIA with its 3 decimals, THANH_TIEN_BV rounded to 2), the invoice in whole đồng."""
    from decimal import Decimal

    svc = billing
    async with svc.rt.db.session() as s:
        await s.execute(
            update(price_items)
            .where(price_items.c.code == "T-OME20")
            .values(hospital_price=Decimal("1234.567"), insurance_price=Decimal("1234.567"))
        )
        await s.commit()
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Phan Thị Kim Oanh"
    )
    await invoice_of(svc, vid)
    async with http_client(svc, "cashier") as c:
        for code, qty in (("T-OME20", "3"), ("CDHA-CTSN", "1")):
            r = await c.post(
                f"/api/v1/visits/{vid}/charges",
                json={"price_code": code, "quantity": qty, "ordered_by": DOCTOR},
            )
            assert r.status_code == 201, r.text
        inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
        prices = {p["code"]: p["hospital_price"] for p in (await c.get("/api/v1/prices")).json()["items"]}
    assert Decimal(str(prices["T-OME20"])) == Decimal("1234.567") and prices["KB-THUONG"] == 42_100
    drug = next(ln for ln in inv["lines"] if ln["price_code"] == "T-OME20")
    assert Decimal(str(drug["hospital_unit_price"])) == Decimal("1234.567")
    assert drug["split"]["thanh_tien_bv"] == 3704  # 3,703.701 in whole đồng
    assert inv["insurance_amount"] + inv["patient_amount"] == inv["total_amount"]
    await _closed_with_diagnosis(svc, admissions, vid, pid)
    async with http_client(svc, "cashier") as c:
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
        assert r.status_code == 200, r.text
    row = _files(r.content)["XML2"].find(".//CHI_TIET_THUOC")
    assert (row.findtext("DON_GIA"), row.findtext("SO_LUONG")) == ("1234.567", "3")
    assert Decimal(row.findtext("THANH_TIEN_BV")) == Decimal("3703.70") and row.findtext("MUC_HUONG") == "80"
