"""Analyzer traffic through the real listeners into the lab's database: every sample capture, HL7,
retransmissions, unmatched results, host queries, events on NATS."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import nats
from sqlalchemy import select

from hospital.chassis.db import Database, audit_log_table
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.adapters.tables import raw_messages, results
from hospital.lab.simulator import load_astm_capture, send_astm, send_mllp
from hospital.testing.services import http_client

from .test_service import AN, NAM, count, place

CAPTURE_ORDERS = [  # barcode as the analyzer reports it, tests, patient
    ("S1234", ["CBC"], AN),
    ("T20 10134GA D28", ["ALB"], NAM),
    ("CL-PL-24-0370", ["ALT", "AST", "CRE"], NAM),
    ("27", ["CBC"], NAM),
    ("PX440N", ["CBC"], AN),
    ("PR25A137", ["MTB"], AN),
    ("113", ["CBC"], AN),
]


async def rows(svc, *where) -> list[dict]:
    db = Database(svc.settings.database_url)
    try:
        async with db.session() as s:
            return [dict(r) for r in (await s.execute(select(results).where(*where))).mappings()]
    finally:
        await db.dispose()


def by_code(items: list[dict]) -> dict[str, dict]:
    return {r["test_code"]: r for r in items if r["test_code"]}


async def test_every_capture_ingested_end_to_end(lab, samples: Path) -> None:
    for barcode, tests, patient in CAPTURE_ORDERS:
        await place(lab, tests, patient=patient, barcode=barcode)
    files = sorted(p for p in samples.iterdir() if p.name[:2].isdigit())
    sent = 0
    for path in files:
        capture = load_astm_capture(path)
        stats = await send_astm(
            "127.0.0.1", lab.settings.astm_port, capture.messages, preserve_frames=path.name.startswith("05")
        )
        assert stats.messages_failed == 0 and stats.naks == 0, path.name
        sent += len(capture.messages)
    assert await count(lab, raw_messages) == sent
    got = {bc: by_code(await rows(lab, results.c.barcode_received == bc)) for bc, _, _ in CAPTURE_ORDERS}
    # 01 Horiba Pentra: counts in 10^9/L, the analyzer's "-----" kept as text
    pentra = got["S1234"]
    assert (pentra["WBC"]["value"], pentra["WBC"]["unit"], pentra["WBC"]["instrument"]) == (
        "8.5",
        "10^9/L",
        "pentra-xlr",
    )
    assert pentra["HGB"]["analyzer_value"] == "14.0" and pentra["BAS#"]["value"] == "-----"
    assert pentra["BAS#"]["value_num"] is None and pentra["BAS#"]["status"] == "preliminary"
    # 02 cobas c111: barcode from O-4, albumin g/L
    assert (got["T20 10134GA D28"]["ALB"]["value"], got["T20 10134GA D28"]["ALB"]["flag"]) == ("40.13", "N")
    # 03 cobas c311: Roche test numbers mapped, unmapped ones kept as info
    c311 = got["CL-PL-24-0370"]
    assert {c: c311[c]["value"] for c in ("ALT", "AST", "GLU", "CRE")} == {
        "ALT": "22.4",
        "AST": "15.0",
        "GLU": "5.85",
        "CRE": "34",
    }
    assert c311["CRE"]["flag"] == "L" and c311["GLU"]["note"].endswith("test not ordered on this specimen")
    info = await rows(lab, results.c.barcode_received == "CL-PL-24-0370", results.c.status == "info")
    assert sorted(r["analyzer_code"] for r in info) == ["^^^158/", "^^^712/", "^^^735/"]
    # 04 Sysmex XN-550: g/dL → g/L, Sysmex codes → catalogue, flags by sex and age (male, 37 y)
    xn = got["27"]
    assert (xn["HGB"]["value"], xn["HGB"]["unit"], xn["HGB"]["flag"]) == ("80", "g/L", "L")
    assert (xn["MCHC"]["value"], xn["EOS%"]["value"], xn["EOS%"]["flag"]) == ("352", "22.1", "H")
    assert xn["NEU#"]["value"] == "4.67" and xn["HCT"]["flag"] == "L"
    # 05 Yumizen with 26 kB histogram frames, um3 → fL
    assert (got["PX440N"]["MCV"]["value"], got["PX440N"]["MCV"]["unit"]) == ("90.6", "fL")
    assert got["PX440N"]["PLT"]["value"] == "308"
    # 06 GeneXpert: the MTB call is a catalogue result, the curve data is kept as info
    mtb = got["PR25A137"]["MTB"]
    assert (mtb["value"], mtb["flag"], mtb["instrument"]) == ("NOT DETECTED", "N", "genexpert")
    assert len(await rows(lab, results.c.barcode_received == "PR25A137")) == 84
    # 07 XP-100 space-padded values
    assert (got["113"]["WBC"]["value"], got["113"]["MCHC"]["value"], got["113"]["MCHC"]["flag"]) == (
        "5.5",
        "417",
        "H",
    )
    # 08 Immulite: no order for these tubes → unmatched, never dropped, values as the expected table
    capture = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature")
    unmatched = await rows(lab, results.c.status == "unmatched")
    posted = sorted(
        (
            {
                "id": f"DPC-{r['barcode_received']}",
                "test_name": r["analyzer_code"].lstrip("^"),
                "value": r["analyzer_value"],
                "unit": r["analyzer_unit"],
                "status": r["analyzer_status"],
                "flags": r["analyzer_flags"],
                "result_timestamp": r["observed_at"],
            }
            for r in unmatched
        ),
        key=lambda x: (x["id"], x["test_name"]),
    )
    expected = sorted(
        (
            {**row, "result_timestamp": datetime.fromisoformat(row["result_timestamp"])}
            for row in capture.expected_results
        ),
        key=lambda x: (x["id"], x["test_name"]),
    )
    assert posted == expected
    async with http_client(lab, "lab_technician") as c:
        queue = (await c.get("/api/v1/unmatched")).json()["items"]
    assert {g["barcode_received"] for g in queue} == {
        "130000445",
        "130000617",
        "130000722",
        "130000724",
        "130000741",
        "130000790",
    }
    async with lab.rt.db.session() as s:  # the read of someone's results is audited
        (audited,) = (
            await s.execute(
                select(audit_log_table.c.actor, audit_log_table.c.detail).where(
                    audit_log_table.c.action == "results.unmatched.read"
                )
            )
        ).all()
    assert audited.actor == "user:ktv.xetnghiem.tuan" and json.loads(audited.detail)["groups"] == 6


async def test_retransmission_gives_one_result_and_unmatched_assignment(lab, samples: Path) -> None:
    capture = load_astm_capture(samples / "07_sysmex_xp100_astm_message.txt")
    for _ in range(3):  # the analyzer missed our ACK and sends the same message again
        stats = await send_astm("127.0.0.1", lab.settings.astm_port, capture.messages)
        assert stats.messages_failed == 0
    assert await count(lab, raw_messages) == 1
    first = await rows(lab)
    assert len(first) == 20 and all(r["status"] == "unmatched" for r in first)
    # same results, new header timestamp: recognised per result
    text = capture.messages[0].text.replace(b"20240627", b"20240627", 1)
    altered = text.replace(b"||P|1|", b"||P|1|x", 1) if b"||P|1|" in text else text + b""
    await send_astm("127.0.0.1", lab.settings.astm_port, [altered.replace(b"H|", b"H|", 1)])
    assert len(await rows(lab)) == 20
    order = await place(lab, ["CBC"], patient=NAM)
    barcode = order["specimens"][0]["barcode"]
    async with http_client(lab, "lab_technician") as c:
        r = await c.post(
            "/api/v1/unmatched/assign",
            json={"instrument": "xp-100", "barcode_received": "113", "barcode": barcode},
        )
        assert r.status_code == 200, r.text
        assigned = by_code(r.json()["items"])
        assert assigned["WBC"]["status"] == "preliminary" and assigned["WBC"]["specimen_barcode"] == barcode
        assert (await c.get("/api/v1/unmatched")).json()["items"] == []
        r = await c.post(
            "/api/v1/unmatched/assign",
            json={"instrument": "xp-100", "barcode_received": "113", "barcode": barcode},
        )
        assert r.status_code == 404 and r.json()["code"] == "unmatched.not_found"


async def test_hl7_orders_results_and_events_reach_nats(lab, nats_server, hl7_samples) -> None:
    nc = await nats.connect(nats_server.url)
    seen: list[tuple[str, bytes]] = []

    async def on_msg(m) -> None:  # type: ignore[no-untyped-def]
        seen.append((m.subject, m.data))

    sub = await nc.subscribe("lab.>", cb=on_msg)
    try:
        host, port = "127.0.0.1", lab.settings.mllp_port
        (ack,) = await send_mllp(host, port, [hl7_samples.oml_o21])
        assert b"MSA|AA|OML0001" in ack
        (again,) = await send_mllp(host, port, [hl7_samples.oml_o21])
        assert b"MSA|AA" in again
        async with http_client(lab, "doctor") as c:
            order = (await c.get("/api/v1/specimens/24070500077")).json()
            assert order["patient"]["full_name"] == "Lê Thị Mai" and order["priority"] == "stat"
            assert "WBC" in order["specimens"][0]["tests"]
        from hospital.lab.adapters.tables import orders

        assert await count(lab, orders) == 2
        bad = hl7_samples.oml_o21.replace("58410-2^CBC panel^LN", "99999-9^Nope^LN").replace(
            "OML0001", "OML0002"
        )
        bad = bad.replace("PO-778899", "PO-1").replace("PO-778900", "PO-2")
        (nack,) = await send_mllp(host, port, [bad])
        assert b"MSA|AE" in nack and b"order.unknown_test" in nack
        assert await count(lab, orders) == 2
        oru = hl7_samples.oru_r01.replace("24070512345", "24070500077")
        (ack,) = await send_mllp(host, port, [oru])
        assert b"MSA|AA|1001" in ack
        got = by_code(await rows(lab, results.c.barcode_received == "24070500077"))
        assert (got["WBC"]["value"], got["WBC"]["unit"], got["WBC"]["flag"]) == ("12.5", "10^9/L", "H")
        assert (got["PLT"]["value"], got["PLT"]["flag"], got["PLT"]["critical"]) == ("45", "L", False)
        for _ in range(100):
            if any(s == "lab.result.received" for s, _ in seen):
                break
            await asyncio.sleep(0.05)
        subjects = [s for s, _ in seen]
        assert "lab.order.received" in subjects and "lab.result.received" in subjects
        ev = events_pb2.ResultReceived.FromString(next(d for s, d in seen if s == "lab.result.received"))
        assert ev.specimen_barcode == "24070500077" and {r.test_code for r in ev.results} >= {"WBC", "PLT"}
    finally:
        await sub.unsubscribe()
        await nc.close()


async def test_host_query_answers_the_tests_ordered_for_the_barcode(lab, samples: Path) -> None:
    capture = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature")
    await place(lab, ["THYROID"], patient={**AN, "full_name": "Müller Rudolph"}, barcode="123ABC")
    stats = await send_astm("127.0.0.1", lab.settings.astm_port, capture.messages[:1])
    (reply,) = stats.replies
    records = [r for r in reply.split(b"\r") if r]
    assert records[0].startswith(b"H|") and records[-1] == b"L|1|N"
    assert [r.split(b"|")[4] for r in records if r.startswith(b"O|")] == [b"^^^FT3", b"^^^FT4", b"^^^TSH"]
    assert all(r.split(b"|")[2] == b"123ABC" for r in records if r.startswith(b"O|"))
    stats = await send_astm(
        "127.0.0.1", lab.settings.astm_port, [capture.messages[0].text.replace(b"123ABC", b"NOSUCH")]
    )
    assert [r for r in stats.replies[0].split(b"\r") if r][-1] == b"L|1|I"
