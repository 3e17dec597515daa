"""Encounters follow admissions events: a visit opens an outpatient encounter, an admission an inpatient one
in the ward's department; a transfer moves it, a discharge and a closed visit close them, a merge moves the
merged record's chart to the survivor. emr.encounter.opened / closed are published."""

from __future__ import annotations

import nats
from emr_testkit import Admissions, client, eventually, wait_encounter

from hospital.contracts.emr.v1 import events_pb2


async def test_admission_transfer_discharge_and_close(emr, admissions: Admissions, nats_server) -> None:
    nc = await nats.connect(nats_server.url)
    opened = await nc.jetstream().subscribe("emr.encounter.opened", ordered_consumer=True)
    closed = await nc.jetstream().subscribe("emr.encounter.closed", ordered_consumer=True)
    try:
        visit_id, patient = await admissions.open_visit()
        await wait_encounter(emr, patient.id)
        admission_id = await admissions.admit(visit_id, patient.id, ward="NOI", bed="NOI-101-02")
        encs = await wait_encounter(emr, patient.id, n=2)
        inpatient = next(e for e in encs if e["kind"] == "inpatient")
        assert inpatient["admission_id"] == admission_id and inpatient["department_code"] == "NTH"
        assert inpatient["ward_code"] == "NOI" and inpatient["bed_code"] == "NOI-101-02"
        assert inpatient["visit_code"]  # copied from the visit's encounter

        await admissions.transfer(admission_id, patient.id, ward="TIM", bed="TIM-210-01")
        async with client(emr) as doctor:

            async def moved() -> dict | None:
                e = (
                    await doctor.get(
                        f"/api/v1/encounters/{inpatient['id']}",
                        params={"break_glass_reason": "theo dõi bệnh nhân chuyển khoa"},
                    )
                ).json()
                return e if e["ward_code"] == "TIM" else None

            e = await eventually(moved)
        assert e["department_code"] == "NTM" and e["bed_code"] == "TIM-210-01"

        await admissions.discharge(admission_id, patient.id, "recovered")
        await admissions.close_visit(visit_id, patient.id)
        encs = await eventually(lambda: _all_closed(emr, patient.id))
        assert {e["kind"]: e["status"] for e in encs} == {"inpatient": "closed", "outpatient": "closed"}
        assert next(e for e in encs if e["kind"] == "inpatient")["discharge_type"] == "recovered"

        async def events(sub, n: int) -> list:
            got = []
            while len(got) < n:
                msg = await sub.next_msg(timeout=10)
                kind = events_pb2.EncounterOpened if "opened" in msg.subject else events_pb2.EncounterClosed
                ev = kind.FromString(msg.data)
                if ev.encounter.patient_id == patient.id:
                    got.append(ev)
            return got

        assert sorted(ev.encounter.kind for ev in await events(opened, 2)) == ["inpatient", "outpatient"]
        assert sorted(ev.encounter.kind for ev in await events(closed, 2)) == ["inpatient", "outpatient"]
    finally:
        await nc.close()


async def _all_closed(emr, patient_id: str) -> list | None:
    async with client(emr) as c:
        r = await c.get(
            "/api/v1/encounters", params={"patient_id": patient_id, "break_glass_reason": "kiểm tra ra viện"}
        )
        items = r.json()["items"]
        return items if items and all(e["status"] == "closed" for e in items) else None


async def test_merge_moves_the_chart_to_the_survivor(emr_sqlite, admissions: Admissions) -> None:
    emr = emr_sqlite
    _, survivor = await admissions.open_visit(patient=Admissions.patient("Trần Văn Bình"))
    _, duplicate = await admissions.open_visit(patient=Admissions.patient("Tran Van Binh"))
    dup_enc = (await wait_encounter(emr, duplicate.id))[0]
    async with client(emr) as doctor:
        r = await doctor.put(
            f"/api/v1/encounters/{dup_enc['id']}/consultation",
            json={
                "chief_complaint": "Đau bụng",
                "diagnoses": [{"icd10_code": "K29.7", "main": True}],
                "allergies_set": True,
                "allergies": [{"substance": "Aspirin", "ingredient_code": "aspirin"}],
            },
        )
        assert r.status_code == 200, r.text
    await admissions.merge(survivor.id, duplicate.id)
    encs = await wait_encounter(emr, survivor.id, n=2)
    assert dup_enc["id"] in {e["id"] for e in encs}
    async with client(emr) as doctor:
        chart = (
            await doctor.get(f"/api/v1/patients/{survivor.id}/chart", params={"encounter_id": dup_enc["id"]})
        ).json()
        gone = await doctor.get("/api/v1/encounters", params={"patient_id": duplicate.id})
    assert chart["consultation"]["diagnoses"][0]["icd10_code"] == "K29.7"
    assert [a["substance"] for a in chart["allergies"]] == ["Aspirin"]
    assert gone.json()["items"] == []
