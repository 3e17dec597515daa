"""Invoices through the API: the BHYT split per benefit level, roles, gRPC, reconciliation against a
bank statement, and the signed QĐ130 export (validates, verifies, breaks after one changed byte)."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

import grpc
import nats
import pytest
from billing_testkit import SEPAY_AUTH, invoice_of, sepay_body
from lxml import etree

from hospital.billing.app.common import LOCAL_TZ
from hospital.billing.domain.xml130 import XmlSignatureError, validate, verify
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.billing.v1 import billing_pb2 as pb
from hospital.contracts.billing.v1 import billing_pb2_grpc as pb_grpc
from hospital.contracts.billing.v1 import events_pb2 as billing_events
from hospital.testing.services import http_client, issuer_for

# card prefix → (fund share of each covered line, computed by hand: 42,100 exam + 522,000 CT)
LEVELS = {
    "CC1": 42_100 + 522_000,  # level 1: 100%
    "CB3": 39_995 + 495_900,  # level 3: 95%
    "HS4": 33_680 + 417_600,  # level 4: 80%
}
UNCOVERED = 10 * 500  # Vitamin C outside the BHYT list: always the patient's


async def test_insurance_split_per_benefit_level(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    async with http_client(svc, "cashier") as c:
        for prefix, fund in LEVELS.items():
            card = f"{prefix}350120878811"
            vid, _, _ = await admissions.open_visit(
                kind=adm.VISIT_KIND_INSURED, card=card, name="Đinh Thị Hồng Nhung"
            )
            await invoice_of(svc, vid)
            for code, qty in (("CDHA-CTSN", "1"), ("T-VITC500", "10")):
                assert (
                    await c.post(f"/api/v1/visits/{vid}/charges", json={"price_code": code, "quantity": qty})
                ).status_code == 201
            inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
            assert inv["total_amount"] == 42_100 + 522_000 + UNCOVERED
            assert inv["insurance_amount"] == fund, (prefix, inv["insurance_amount"])
            assert inv["patient_amount"] == inv["total_amount"] - fund
            level_pct = {"CC1": 100, "CB3": 95, "HS4": 80}[prefix]
            assert [ln["split"]["muc_huong"] for ln in inv["lines"]] == [level_pct, level_pct, 0]
            assert inv["lines"][2]["split"]["t_bntt"] == UNCOVERED
            for ln in inv["lines"]:
                s = ln["split"]
                assert s["t_bhtt"] + s["t_bncct"] + s["t_bntt"] == s["thanh_tien_bv"]
        # below 15% of the base salary (351,000 VND) the fund pays 100% even on an 80% card
        vid, _, _ = await admissions.open_visit(kind=adm.VISIT_KIND_INSURED, card="HS4350120878812")
        inv = await invoice_of(svc, vid)
        assert (
            inv["insurance_amount"] == 42_100
            and inv["patient_amount"] == 0
            and inv["small_visit_rule_applied"]
        )
        # a fee-paying patient pays everything
        vid, _, _ = await admissions.open_visit()
        inv = await invoice_of(svc, vid)
        assert inv["insurance_amount"] == 0 and inv["patient_amount"] == 42_100


async def test_roles_and_grpc(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    vid, _, _ = await admissions.open_visit(name="Ngô Thị Lan Anh")
    inv = await invoice_of(svc, vid)
    url = f"/api/v1/visits/{vid}/charges"
    async with http_client(svc) as anon:
        assert (await anon.get(f"/api/v1/invoices/{inv['id']}")).status_code == 401
    for role, read, write in [
        ("auditor", 200, 403),
        ("doctor", 200, 403),
        ("receptionist", 200, 403),
        ("lab_technician", 403, 403),
        ("admin", 200, 201),
        ("cashier", 200, 201),
    ]:
        async with http_client(svc, role) as c:
            assert (await c.get(f"/api/v1/invoices/{inv['id']}")).status_code == read, role
            assert (await c.post(url, json={"price_code": "XN-GLU"})).status_code == write, role
    async with http_client(svc, "cashier") as c:
        assert (await c.post(f"/api/v1/invoices/{inv['id']}/void", json={"reason": "x"})).status_code == 403
    async with http_client(svc, "admin") as c:
        r = await c.post(f"/api/v1/invoices/{inv['id']}/void", json={"reason": "Đăng ký trùng"})
        assert r.status_code == 200 and r.json()["status"] == "void"
        r = await c.post(url, json={"price_code": "XN-GLU"})
        assert r.status_code == 409 and r.json()["code"] == "invoice.void"
    issuer = issuer_for(svc)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.settings.grpc_port}") as ch:
        stub = pb_grpc.BillingServiceStub(ch)
        md = (("authorization", f"Bearer {issuer.mint_for_role('auditor')}"),)
        got = await stub.GetInvoice(pb.GetInvoiceRequest(number=inv["number"]), metadata=md)
        assert got.id == inv["id"] and got.status == "void" and len(got.lines) == 3
        listed = await stub.ListInvoices(pb.ListInvoicesRequest(visit_id=vid), metadata=md)
        assert [i.number for i in listed.items] == [inv["number"]]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PostManualCharge(
                pb.PostManualChargeRequest(visit_id=vid, price_code="XN-GLU"), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        vid2, _, _ = await admissions.open_visit()
        await invoice_of(svc, vid2)
        cashier = (("authorization", f"Bearer {issuer.mint_for_role('cashier')}"),)
        charge = await stub.PostManualCharge(
            pb.PostManualChargeRequest(visit_id=vid2, price_code="XN-GLU", quantity="1"), metadata=cashier
        )
        assert charge.hospital_unit_price == 21_500 and charge.source == "manual"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PostManualCharge(
                pb.PostManualChargeRequest(visit_id=vid2, price_code="NOPE"), metadata=cashier
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "charge.price_code" in err.value.details()
        )


async def test_daily_reconciliation_lists_differences(billing_sqlite, admissions) -> None:
    svc = billing_sqlite
    vid, _, _ = await admissions.open_visit()
    inv = await invoice_of(svc, vid)
    async with http_client(svc) as bank:
        for n, (amount, text) in enumerate(
            [(42_100, f"TT {inv['number']}"), (200_000, "ung ho"), (50_000, "khac")]
        ):
            r = await bank.post(
                "/api/v1/payments/bank-webhook",
                headers=SEPAY_AUTH,
                json=sepay_body(93_000 + n, amount, text, ref=f"FT2408{n:04d}"),
            )
            assert r.status_code == 200
    today = datetime.now(LOCAL_TZ).date().isoformat()
    statement = (
        "date,reference,amount,description\n"
        f"{today},FT24080000,42100,TT {inv['number']}\n"
        f"{today},FT24080001,210000,ung ho\n"  # the bank says 210,000: we recorded 200,000
        f"{today},FT24089999,75000,khong co webhook\n"
    )  # never reported to us
    async with http_client(svc, "cashier") as c:
        r = await c.post(
            f"/api/v1/reconciliations?date={today}", content=statement, headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        rep = r.json()
        assert [m["reference"] for m in rep["matched"]] == ["FT24080000"]
        assert rep["amount_differs"] == [
            {
                "reference": "FT24080001",
                "statement_amount": 210_000,
                "recorded_amount": 200_000,
                "invoice_number": None,
                "outcome": "unmatched",
            }
        ]
        assert [m["reference"] for m in rep["missing_in_system"]] == ["FT24089999"]
        assert [m["reference"] for m in rep["missing_in_statement"]] == ["FT24080002"]
        assert rep["balanced"] is False and rep["statement"]["total"] == 327_100
        bad = await c.post(f"/api/v1/reconciliations?date={today}", content="ngay,so_tien\n2024-08-02,1\n")
        assert bad.status_code == 422 and bad.json()["code"] == "statement.header"
        bad = await c.post(
            f"/api/v1/reconciliations?date={today}", content=f"date,reference,amount\n{today},X,12a\n"
        )
        assert (
            bad.status_code == 422
            and bad.json()["code"] == "statement.row"
            and "line 2" in bad.json()["detail"]
        )


async def test_xml130_export_validates_and_is_signed(
    billing, admissions, facility_credentials, nats_server
) -> None:
    card = "HS4350120878811"
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED, card=card, name="Trần Thị Bích Ngọc"
    )
    await invoice_of(billing, vid)
    doctor = "003456/TB-CCHN"
    async with http_client(billing, "cashier") as c:
        for code, qty in (("CDHA-SAOB", "1"), ("T-AMOX500", "21"), ("VT-BT5", "2"), ("T-ALBUMIN", "1")):
            r = await c.post(
                f"/api/v1/visits/{vid}/charges",
                json={"price_code": code, "quantity": qty, "ordered_by": doctor},
            )
            assert r.status_code == 201, r.text
        r = await c.get(f"/api/v1/claims/{vid}/xml130")
        assert r.status_code == 409 and r.json()["code"] == "claim.visit_open"
        await admissions.close_visit(vid, pid)

        async def closed() -> bool:
            r = await c.get(f"/api/v1/claims/{vid}/xml130")
            return r.json().get("code") != "claim.visit_open"

        await asyncio.wait_for(_until(closed), 10)
        r = await c.get(f"/api/v1/claims/{vid}/xml130")
        assert r.status_code == 409 and r.json()["code"] == "claim.no_diagnosis"
        assert (await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "sỏi"})).status_code == 422
        assert (
            await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "K80.2", "text": "Sỏi túi mật"})
        ).status_code == 200
        r = await c.get(f"/api/v1/claims/{vid}/xml130")
        assert r.status_code == 409 and r.json()["code"] == "claim.no_doctor"  # the exam line names no doctor
        r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": doctor})
        assert r.status_code == 200, r.text
        doc = r.content
        # what reception and the EMR have not given yet is named (BHXH review needs it filled)
        incomplete = r.headers["Hospital-Claim-Incomplete"].split(",")
        assert {"XML1.LY_DO_VV", "XML1.CHAN_DOAN_VAO", "XML1.MA_TTDV", "XML2.LIEU_DUNG"} <= set(incomplete)
        filled = {"XML1.MA_BN", "XML1.HO_TEN", "XML1.T_BHTT", "XML2.HAM_LUONG", "XML3.MA_BENH"}
        assert not filled & set(incomplete)
        inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
    validate(doc, strict=False)  # every element, in order, with the decision's types and formats
    cert = facility_credentials[1].read_bytes()
    verify(doc, cert)
    root = etree.fromstring(doc)
    files = {
        f.findtext("LOAIHOSO"): base64.b64decode(f.findtext("NOIDUNGFILE")) for f in root.iter("FILEHOSO")
    }
    assert set(files) == {"XML1", "XML2", "XML3"}
    xml1 = etree.fromstring(files["XML1"])
    assert xml1.findtext("MA_THE_BHYT") == card and xml1.findtext("HO_TEN") == "Trần Thị Bích Ngọc"
    assert int(xml1.findtext("T_BHTT")) == inv["insurance_amount"]
    assert int(xml1.findtext("T_BNCCT")) + int(xml1.findtext("T_BNTT")) == inv["patient_amount"]
    drugs = etree.fromstring(files["XML2"]).findall(".//CHI_TIET_THUOC")
    assert len(drugs) == 2 and drugs[0].findtext("HAM_LUONG") == "500mg"  # from the price list
    assert xml1.findtext("MA_LOAI_KCB") == "01" and xml1.findtext("SO_NGAY_DTRI") == "0"
    assert xml1.findtext("NGAY_TTOAN") == ""  # not paid yet
    # one changed byte (a digit of the creation date) and the signature no longer verifies
    i = doc.index(b"<NGAYLAP>") + len(b"<NGAYLAP>") + 3
    tampered = doc[:i] + (b"8" if doc[i : i + 1] != b"8" else b"7") + doc[i + 1 :]
    with pytest.raises(XmlSignatureError):
        verify(tampered, cert)
    nc = await nats.connect(nats_server.url)
    try:

        async def exported() -> bool:
            try:
                m = await nc.jetstream().get_last_msg("BILLING", "billing.claim.exported")
            except Exception:  # noqa: BLE001
                return False
            ev = billing_events.ClaimExported()
            ev.ParseFromString(m.data)
            return ev.visit_id == vid

        await asyncio.wait_for(_until(exported), 10)
    finally:
        await nc.close()
    async with http_client(billing, "auditor") as c:
        assert (await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": doctor})).status_code == 403


async def _until(check) -> None:
    while not await check():
        await asyncio.sleep(0.1)


async def test_inpatient_claim_with_a_transfer(billing_sqlite, admissions) -> None:
    """An insured stay moved from internal medicine to the ICU: XML1 says an inpatient stay (03) with its
    admission time and both departments, bed-days carry the decision's 4-character bed codes, and the
    stay's record summary and discharge paper are in the claim."""
    from datetime import UTC, timedelta

    from hospital.contracts.admissions.v1 import events_pb2 as adm_events

    now = datetime.now(UTC)
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED,
        card="HS4350120878811",
        name="Hoàng Văn Thắng",
        opened_at=now - timedelta(days=3, hours=1),
    )
    stay = adm.Admission(
        id="adm-" + vid[:8], patient_id=pid, visit_id=vid, ward_code="NOI", bed_code="NOI-102-03"
    )
    stay.admitted_at.FromDatetime(now - timedelta(days=3))
    await admissions.publish("admissions.inpatient.admitted", adm_events.InpatientAdmitted(admission=stay))
    moved = adm.Admission()
    moved.CopyFrom(stay)
    moved.ward_code, moved.bed_code = "HSTC", "HSTC-201-02"
    await admissions.publish(
        "admissions.inpatient.transferred",
        adm_events.InpatientTransferred(admission=moved, from_ward_code="NOI", from_bed_code="NOI-102-03"),
    )
    out = adm_events.InpatientDischarged(admission=moved, discharge_type="improved")
    out.discharged_at.FromDatetime(now + timedelta(minutes=5))  # after the transfer (its event time)
    await admissions.publish("admissions.inpatient.discharged", out)
    await invoice_of(billing_sqlite, vid, min_lines=4)
    await admissions.close_visit(vid, pid)
    doctor = "003456/TB-CCHN"
    async with http_client(billing_sqlite, "cashier") as c:
        assert (
            await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "J18.9", "text": "Viêm phổi"})
        ).status_code == 200
        for _ in range(200):
            r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": doctor})
            if r.status_code != 409 or r.json()["code"] != "claim.visit_open":
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
    validate(r.content, strict=False)
    root = etree.fromstring(r.content)
    files = {
        f.findtext("LOAIHOSO"): etree.fromstring(base64.b64decode(f.findtext("NOIDUNGFILE")))
        for f in root.iter("FILEHOSO")
    }
    assert set(files) == {"XML1", "XML3", "XML7", "XML8"}
    xml1 = files["XML1"]
    opened = datetime.fromisoformat(xml1.findtext("NGAY_VAO")[:8]).date()
    closed = datetime.fromisoformat(xml1.findtext("NGAY_RA")[:8]).date()
    assert xml1.findtext("MA_LOAI_KCB") == "03"
    assert xml1.findtext("SO_NGAY_DTRI") == str((closed - opened).days + 1)
    assert xml1.findtext("NGAY_VAO_NOI_TRU") == (now - timedelta(days=3)).astimezone(LOCAL_TZ).strftime(
        "%Y%m%d%H%M"
    )
    # examination (Nội tổng hợp), then the two wards: national department codes (QĐ 5937/QĐ-BYT), the
    # internal-medicine ward sharing its department's K03
    assert xml1.findtext("MA_KHOA").split(";") == ["K03", "K02"]
    beds = {
        (row.findtext("MA_KHOA"), row.findtext("MA_GIUONG"), row.findtext("SO_LUONG"))
        for row in files["XML3"].iter("CHI_TIET_DVKT")
        if row.findtext("MA_GIUONG")
    }
    # NOI-102-03 is the 9th planned bed of internal medicine (6 beds in room 101); HSTC-201-02 the ICU's 2nd
    assert beds == {("K03", "H009", "3"), ("K02", "H002", "0.5")}
    assert files["XML7"].findtext("MA_KHOA_RV") == "K02" and files["XML8"].findtext("KET_QUA_DTRI") == "2"


async def test_a_high_cost_service_is_capped_on_the_invoice(
    nats_server, tmp_path, admissions, facility_credentials
) -> None:
    """A price item flagged high-cost: the level-4 card's fund share of one use stops at 40 months of the
    base salary (set to 10,000 here so that a CT scan reaches the cap: 400,000)."""
    from billing_testkit import overrides
    from sqlalchemy import update

    from hospital.billing.adapters.tables import price_items
    from hospital.billing.service import DEFINITION
    from hospital.chassis.db import Database
    from hospital.testing.services import running_service

    url = f"sqlite+aiosqlite:///{tmp_path}/capped.db"
    async with running_service(
        DEFINITION,
        data_dir=tmp_path,
        database_url=url,
        nats_url=nats_server.url,
        base_salary_vnd=10_000,
        **overrides(facility_credentials),
    ) as svc:
        db = Database(url)
        try:
            async with db.session() as s:
                await s.execute(
                    update(price_items).where(price_items.c.code == "CDHA-CTSN").values(high_cost=True)
                )
                await s.commit()
        finally:
            await db.dispose()
        vid, _, _ = await admissions.open_visit(
            kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Lý Thị Thu Trang"
        )
        await invoice_of(svc, vid)
        async with http_client(svc, "cashier") as c:
            r = await c.post(
                f"/api/v1/visits/{vid}/charges", json={"price_code": "CDHA-CTSN", "quantity": "1"}
            )
            assert r.status_code == 201, r.text
            inv = (await c.get(f"/api/v1/visits/{vid}/invoice")).json()
    ct = next(ln for ln in inv["lines"] if ln["price_code"] == "CDHA-CTSN")
    assert ct["split"]["thanh_tien_bh"] == 522_000
    assert ct["split"]["t_bhtt"] == 400_000 * 80 // 100  # the cap, at the card's 80%
    assert ct["split"]["t_bncct"] == 522_000 - 320_000
