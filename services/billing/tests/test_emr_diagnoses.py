"""The claim's diagnoses from the EMR over the real service and NATS, on SQLite and PostgreSQL: the
doctor's saved consultation (emr.diagnosis.recorded) gives XML1's MA_BENH_CHINH, CHAN_DOAN_RV and
MA_BENH_KT; a redelivered or older event changes nothing; a later save replaces the earlier one; a
manual entry at the cash desk is kept against older EMR events and replaced by a later one."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from billing_testkit import eventually, invoice_of, settled
from lxml import etree
from sqlalchemy import select

from hospital.billing.adapters.tables import visits
from hospital.chassis.db import Database
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.emr.v1 import emr_pb2
from hospital.contracts.emr.v1 import events_pb2 as emr_events
from hospital.testing.services import http_client

DOCTOR = "003456/TB-CCHN"


def recorded(
    vid: str, pid: str, at: datetime, main: tuple[str, str], *secondary: tuple[str, str]
) -> emr_events.DiagnosisRecorded:
    ev = emr_events.DiagnosisRecorded(
        encounter_id=f"enc-{vid}",
        patient_id=pid,
        visit_id=vid,
        diagnoses=[emr_pb2.Diagnosis(icd10_code=main[0], name=main[1], main=True)]
        + [emr_pb2.Diagnosis(icd10_code=c, name=n) for c, n in secondary],
    )
    ev.recorded_at.FromDatetime(at)
    return ev


async def diagnosis_row(svc, vid: str) -> tuple:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            r = (await s.execute(select(visits).where(visits.c.id == vid))).mappings().one()
    finally:
        await db.dispose()
    return r["diagnosis_code"], r["diagnosis_text"], r["diagnosis_secondary"], r["diagnosis_source"]


async def xml1_of(c, vid: str) -> etree._Element:
    r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    files = {f.findtext("LOAIHOSO"): f.findtext("NOIDUNGFILE") for f in root.iter("FILEHOSO")}
    return etree.fromstring(base64.b64decode(files["XML1"]))


async def test_the_claim_takes_the_doctors_latest_diagnoses(billing, admissions) -> None:
    vid, pid, _ = await admissions.open_visit(
        kind=adm.VISIT_KIND_INSURED, card="HS4350120878811", name="Lê Thị Hồng Nhung"
    )
    await invoice_of(billing, vid)
    now = datetime.now(UTC)
    async with http_client(billing, "cashier") as c:
        r = await c.post(
            f"/api/v1/visits/{vid}/charges",
            json={"price_code": "CDHA-SAOB", "quantity": "1", "ordered_by": DOCTOR},
        )
        assert r.status_code == 201, r.text
        await admissions.close_visit(vid, pid)
        first = recorded(
            vid,
            pid,
            now - timedelta(minutes=10),
            ("J18.9", "Viêm phổi, không đặc hiệu"),
            ("E11.9", "Đái tháo đường typ 2"),
            ("I10", "Tăng huyết áp vô căn"),
            ("J18.9", "Viêm phổi, không đặc hiệu"),  # the main one again: not a secondary code
        )
        eid = await admissions.publish("emr.diagnosis.recorded", first)

        async def claimable() -> bool:
            r = await c.get(f"/api/v1/claims/{vid}/xml130", params={"ma_bac_si": DOCTOR})
            return r.status_code == 200

        await eventually(claimable)
        xml1 = await xml1_of(c, vid)
        assert xml1.findtext("MA_BENH_CHINH") == "J18.9"
        assert xml1.findtext("MA_BENH_KT") == "E11.9;I10"
        assert xml1.findtext("CHAN_DOAN_RV") == "Viêm phổi, không đặc hiệu"
        held = ("J18.9", "Viêm phổi, không đặc hiệu", "E11.9;I10", "emr")
        assert await diagnosis_row(billing, vid) == held

        # the same event again (a redelivery) and a save older than it: nothing changes
        await admissions.publish("emr.diagnosis.recorded", first, event_id=eid, msg_id=f"again-{eid}")
        older = recorded(vid, pid, now - timedelta(minutes=20), ("A09", "Tiêu chảy"))
        await admissions.publish("emr.diagnosis.recorded", older)
        await settled(billing, admissions.js)
        assert await diagnosis_row(billing, vid) == held

        # the doctor corrects the consultation: the later save replaces the earlier one
        later = recorded(
            vid, pid, now - timedelta(minutes=5), ("J15.9", "Viêm phổi do vi khuẩn"), ("I10", "")
        )
        await admissions.publish("emr.diagnosis.recorded", later)

        async def replaced() -> bool:
            return (await diagnosis_row(billing, vid))[0] == "J15.9"

        await eventually(replaced)
        assert await diagnosis_row(billing, vid) == ("J15.9", "Viêm phổi do vi khuẩn", "I10", "emr")

        # a manual entry at the cash desk is not overwritten by an EMR save older than it...
        r = await c.put(f"/api/v1/visits/{vid}/diagnosis", json={"code": "K80.2", "text": "Sỏi túi mật"})
        assert r.status_code == 200, r.text
        stale = recorded(vid, pid, now - timedelta(minutes=1), ("J20.9", "Viêm phế quản cấp"))
        await admissions.publish("emr.diagnosis.recorded", stale)
        await settled(billing, admissions.js)
        assert await diagnosis_row(billing, vid) == ("K80.2", "Sỏi túi mật", "I10", "cashier")

        # ...and is replaced by the doctor's next save
        newest = recorded(
            vid,
            pid,
            datetime.now(UTC),
            ("J20.9", "Viêm phế quản cấp"),
            ("I10", ""),
            ("E78.5", "Rối loạn lipid"),
        )
        await admissions.publish("emr.diagnosis.recorded", newest)

        async def from_the_doctor() -> bool:
            return (await diagnosis_row(billing, vid))[3] == "emr"

        await eventually(from_the_doctor)
        xml1 = await xml1_of(c, vid)
        assert xml1.findtext("MA_BENH_CHINH") == "J20.9"
        assert xml1.findtext("MA_BENH_KT") == "I10;E78.5"
        assert xml1.findtext("CHAN_DOAN_RV") == "Viêm phế quản cấp"
