"""OML^O21 cancellations (ORC-1 CA → ORL^O22), analyzer corrections (ASTM R-9 / HL7 OBX-11 ``C``) of
verified results, and Westgard R-4s across two control levels of one run — through the real listeners."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats
import pytest

from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.adapters.tables import orders, raw_messages
from hospital.lab.app.ingest import CORRECTION_HOLD
from hospital.lab.domain import westgard
from hospital.lab.simulator import send_astm, send_mllp
from hospital.testing.services import http_client

from .test_service import NAM, count, place

CANCEL = (
    "MSH|^~\\&|HIS|BVDK_TINH|LIS|LAB|20240705090000||OML^O21^OML_O21|{cid}|P|2.5.1|||AL|AL||UNICODE UTF-8\r"
    "PID|1||BN240003^^^BVDK^MR||Lê^Thị Mai||19920520|F\r"
    "ORC|CA|{placer}||||||||||||||BN-HUY^Bác sĩ hủy chỉ định\r"
    "OBR|1|{placer}||58410-2^CBC panel^LN\r"
)


async def listening(*ports: int) -> None:
    """The listeners start as tasks once the service reports started: wait until they accept."""
    for port in ports:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break


def cancel(placer: str, cid: str) -> str:
    return CANCEL.format(placer=placer, cid=cid)


def msa(reply: bytes) -> list[str]:
    return next(s for s in reply.decode().split("\r") if s.startswith("MSA")).split("|")


def orc(reply: bytes) -> list[str]:
    return [s for s in reply.decode().split("\r") if s.startswith("ORC")]


async def test_oml_cancellation_cancels_the_order_and_its_specimens(lab, hl7_samples) -> None:
    host, port = "127.0.0.1", lab.settings.mllp_port
    await listening(port)
    (ack,) = await send_mllp(host, port, [hl7_samples.oml_o21])  # PO-778899 (CBC) and PO-778900 (CMP)
    assert msa(ack)[1] == "AA"
    (reply,) = await send_mllp(host, port, [cancel("PO-778899", "CA0001")])
    assert "ORL^O22" in reply.decode() and msa(reply)[1:3] == ["AA", "CA0001"]
    assert orc(reply) == ["ORC|CR|PO-778899|"]
    async with http_client(lab, "doctor") as c:
        order = (await c.get("/api/v1/specimens/24070500077")).json()
        assert order["status"] == "cancelled" and order["cancel_reason"] == "Bác sĩ hủy chỉ định"
        assert {s["status"] for s in order["specimens"]} == {"cancelled"}
        assert {i["status"] for i in order["items"]} == {"cancelled"}
        other = (await c.get("/api/v1/specimens/24070500078")).json()
        assert other["status"] == "active"  # the other order of the message is untouched
    # the same cancellation again (a new message): still "cancelled as requested", nothing else changes
    (again,) = await send_mllp(host, port, [cancel("PO-778899", "CA0002")])
    assert msa(again)[1] == "AA" and orc(again) == ["ORC|CR|PO-778899|"]
    stored = await count(lab, raw_messages)
    # unknown order: AE with the reason, ORC|UC, and nothing stored
    (unknown,) = await send_mllp(host, port, [cancel("PO-NO-SUCH", "CA0003")])
    assert (
        msa(unknown)[1] == "AE"
        and "order.not_found" in msa(unknown)[3]
        and orc(unknown) == ["ORC|UC|PO-NO-SUCH|"]
    )
    assert "|204^" in unknown.decode()
    # an order with results cannot be cancelled: AE, the order stays active
    oru = hl7_samples.oul_r22.replace("24070500042", "24070500078")
    (ok,) = await send_mllp(host, port, [oru])
    assert msa(ok)[1] == "AA"
    stored = await count(lab, raw_messages)
    (refused,) = await send_mllp(host, port, [cancel("PO-778900", "CA0004")])
    assert msa(refused)[1] == "AE" and "order.has_results" in msa(refused)[3]
    assert orc(refused) == ["ORC|UC|PO-778900|"]
    assert await count(lab, raw_messages) == stored
    assert await count(lab, orders, orders.c.status == "cancelled") == 1
    # a cancellation naming no order is a content error
    (blank,) = await send_mllp(host, port, [cancel("", "CA0005")])
    assert msa(blank)[1] == "AE" and "ORC-2" in msa(blank)[3]


def astm_result(barcode: str, code: str, value: str, unit: str, status: str, stamp: str) -> bytes:
    records = [
        f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}",
        "P|1|BN1||",
        f"O|1|{barcode}||^^^ALL|R||||||N||||||||||||||F",
        f"R|1|^^^{code}|{value}|{unit}||N||{status}||SIM|{stamp}|{stamp}|SIM",
        "L|1|N",
    ]
    return ("\r".join(records) + "\r").encode()


def oru(barcode: str, value: str, status: str, control_id: str) -> str:
    return (
        f"MSH|^~\\&|BS-240|Mindray|||20250706090000||ORU^R01|{control_id}|P|2.3.1||||||UNICODE\r"
        f"PID|1||BN250000002||Trần^Văn Nam||19700101|M\r"
        f"OBR|1||{barcode}|00002^Chemistry^99MRC|||20250706085500\r"
        f"OBX|1|NM|14749-6^Glucose^LN||{value}|mmol/L|3.9-6.4||||{status}|||20250706085900\r"
    )


async def test_analyzer_corrections_of_verified_results_are_held_and_amend_on_verification(
    lab, nats_server
) -> None:
    nc = await nats.connect(nats_server.url)
    amended: list[events_pb2.ResultAmended] = []

    async def on_amended(m) -> None:  # type: ignore[no-untyped-def]
        amended.append(events_pb2.ResultAmended.FromString(m.data))

    sub = await nc.subscribe("lab.result.amended", cb=on_amended)
    await listening(lab.settings.astm_port, lab.settings.mllp_port)
    tech = http_client(lab, "lab_technician")
    try:
        # ASTM: a verified glucose, then the analyzer's correction (R-9 = C)
        o1 = await place(lab, ["GLU"])
        bc = o1["specimens"][0]["barcode"]
        port = lab.settings.astm_port
        assert (
            await send_astm(
                "127.0.0.1", port, [astm_result(bc, "GLU", "5.0", "mmol/L", "F", "20250706081500")]
            )
        ).messages_failed == 0
        first = (await tech.get(f"/api/v1/orders/{o1['id']}/results")).json()["results"][0]
        assert (await tech.post(f"/api/v1/results/{first['id']}/verify")).status_code == 200
        assert (await tech.put("/api/v1/settings/autoverify", json={"enabled": True})).status_code == 200
        assert (
            await send_astm(
                "127.0.0.1", port, [astm_result(bc, "GLU", "5.6", "mmol/L", "C", "20250706083000")]
            )
        ).messages_failed == 0
        items = (await tech.get(f"/api/v1/orders/{o1['id']}/results")).json()["results"]
        held = next(x for x in items if x["id"] != first["id"])
        assert (held["value"], held["status"], held["hold_reason"]) == ("5.6", "preliminary", CORRECTION_HOLD)
        assert next(x for x in items if x["id"] == first["id"])["status"] == "verified"  # still on the chart
        r = await tech.post(f"/api/v1/results/{held['id']}/verify")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["revision"], r.json()["value"]) == ("verified", 2, "5.6")
        full = (await tech.get(f"/api/v1/results/{held['id']}")).json()
        assert [(h["revision"], h["value"], h["status"]) for h in full["history"]] == [(1, "5.0", "verified")]
        assert "correction" in full["history"][0]["reason"]
        assert (await tech.get(f"/api/v1/results/{first['id']}")).json()["status"] == "superseded"
        items = (await tech.get(f"/api/v1/orders/{o1['id']}/results")).json()["results"]
        assert [(x["value"], x["status"]) for x in items] == [("5.6", "verified")]
        # HL7: OBX-11 = C for a verified result, the same way
        o2 = await place(lab, ["GLU"], patient=NAM)
        bc2 = o2["specimens"][0]["barcode"]
        (ack,) = await send_mllp("127.0.0.1", lab.settings.mllp_port, [oru(bc2, "7.1", "F", "K1")])
        assert b"MSA|AA" in ack
        first2 = (await tech.get(f"/api/v1/orders/{o2['id']}/results")).json()["results"][0]
        assert (await tech.post(f"/api/v1/results/{first2['id']}/verify")).status_code == 200
        (ack,) = await send_mllp("127.0.0.1", lab.settings.mllp_port, [oru(bc2, "6.9", "C", "K2")])
        assert b"MSA|AA" in ack
        items = (await tech.get(f"/api/v1/orders/{o2['id']}/results")).json()["results"]
        held2 = next(x for x in items if x["id"] != first2["id"])
        assert (held2["status"], held2["hold_reason"]) == ("preliminary", CORRECTION_HOLD)
        assert (
            await tech.post("/api/v1/results/verify", json={"result_ids": [held2["id"]]})
        ).status_code == 200
        for _ in range(100):
            if len(amended) >= 2:
                break
            await asyncio.sleep(0.05)
        assert sorted((e.previous_value, e.result.value, e.reason) for e in amended) == [
            ("5.0", "5.6", "analyzer correction verified"),
            ("7.1", "6.9", "analyzer correction verified"),
        ]
    finally:
        await tech.aclose()
        await sub.unsubscribe()
        await nc.close()


@pytest.mark.parametrize(
    ("zs", "peers", "expected"),
    [
        ([2.5], [-2.3], ["R-4s"]),  # level 1 above +2 SD, level 2 below −2 SD in the same run
        ([-2.1], [2.2], ["R-4s"]),
        ([2.5], [-1.5], ["1-2s"]),  # a range of 4 SD but level 2 within 2 SD: only a warning
        ([0.5], [-2.5], []),  # the other level's excursion is judged on that level
        ([2.5], [], ["1-2s"]),
    ],
)
def test_westgard_r4s_across_control_levels(zs, peers, expected) -> None:
    violations = westgard.evaluate(zs, peers)
    assert [v.rule for v in violations] == expected
    assert westgard.accepted(violations) == (expected in ([], ["1-2s"]))


def qc_message(values: dict[str, str], when: datetime) -> bytes:
    stamp = when.strftime("%Y%m%d%H%M%S")
    records = [f"H|\\^&|||SIM-ANALYZER^1.0|||||LIS||P|LIS2-A2|{stamp}", "P|1|QC||"]
    for n, (sample, value) in enumerate(values.items(), start=1):
        records += [
            f"O|{n}|{sample}||^^^GLU|R||||||Q||||||||||||||F",
            f"R|1|^^^GLU|{value}|mmol/L||N||F||SIM|{stamp}|{stamp}|SIM",
        ]
    records.append("L|1|N")
    return ("\r".join(records) + "\r").encode()


async def test_r4s_rejects_a_run_whose_two_levels_straddle_the_targets(lab) -> None:
    await listening(lab.settings.astm_port)
    tech = http_client(lab, "lab_technician")
    try:
        lots = {}
        for level, mean in (("1", 5.0), ("2", 15.0)):
            r = await tech.post(
                "/api/v1/qc/lots",
                json={
                    "instrument_id": "simulator",
                    "test_code": "GLU",
                    "lot_number": f"BR-2025-L{level}",
                    "level": level,
                    "material": f"Bio-Rad Multiqual {level}",
                    "sample_id": f"QC-GLU-L{level}",
                    "mean": mean,
                    "sd": 0.2,
                },
            )
            assert r.status_code == 201, r.text
            lots[level] = r.json()
        earlier = datetime.now(UTC) - timedelta(hours=5)
        # an earlier run, both levels on target
        stats = await send_astm(
            "127.0.0.1",
            lab.settings.astm_port,
            [qc_message({"QC-GLU-L1": "5.0", "QC-GLU-L2": "15.0"}, earlier)],
        )
        assert stats.messages_failed == 0
        status = {s["test_code"]: s for s in (await tech.get("/api/v1/qc/status")).json()["items"]}
        assert status["GLU"]["accepted"] is True
        # this run: level 1 at +2.5 SD (alone a 1-2s warning), level 2 at −2.5 SD → R-4s: the run is rejected
        stats = await send_astm(
            "127.0.0.1",
            lab.settings.astm_port,
            [qc_message({"QC-GLU-L1": "5.5", "QC-GLU-L2": "14.5"}, datetime.now(UTC))],
        )
        assert stats.messages_failed == 0
        lj1 = (await tech.get(f"/api/v1/qc/lots/{lots['1']['id']}/levey-jennings")).json()
        lj2 = (await tech.get(f"/api/v1/qc/lots/{lots['2']['id']}/levey-jennings")).json()
        assert [p["violations"] for p in lj1["points"]] == [[], ["1-2s"]]
        assert [p["violations"] for p in lj2["points"]] == [[], ["R-4s"]]
        status = {s["test_code"]: s for s in (await tech.get("/api/v1/qc/status")).json()["items"]}
        assert status["GLU"]["accepted"] is False and status["GLU"]["violations"] == ["R-4s"]
        # level 2 re-run by hand, on target: within 4 SD of level 1's +2.5 → accepted again
        r = await tech.post(f"/api/v1/qc/lots/{lots['2']['id']}/results", json={"value": 15.0})
        assert r.json()["accepted"] is True and r.json()["violations"] == []
        # level 1 back on target: level 2 at −2.5 SD on its own is only a warning
        r = await tech.post(f"/api/v1/qc/lots/{lots['1']['id']}/results", json={"value": 5.0})
        r = await tech.post(f"/api/v1/qc/lots/{lots['2']['id']}/results", json={"value": 14.5})
        assert r.json()["violations"] == [{"rule": "1-2s", "rejection": False}]
    finally:
        await tech.aclose()
