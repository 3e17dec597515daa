"""QC and analyzer status over gRPC (the web bench's QC screen): lots, a lot's Levey-Jennings series with
its Westgard flags, and each analyzer's last message, connection state and QC per test."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from hospital.chassis.rpc import call_metadata
from hospital.contracts.lab.v1 import lab_pb2 as pb
from hospital.contracts.lab.v1 import lab_pb2_grpc as pb_grpc
from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for

from .test_bench_flow import send


async def test_qc_lots_levey_jennings_and_analyzer_status(lab) -> None:
    issuer = issuer_for(lab)
    tech = call_metadata(issuer.mint_for_role("lab_technician"))
    async with http_client(lab, "lab_technician") as c:
        r = await c.post(
            "/api/v1/qc/lots",
            json={
                "instrument_id": "simulator",
                "test_code": "GLU",
                "lot_number": "BR-2026-L1",
                "level": "1",
                "material": "Bio-Rad Multiqual 1",
                "sample_id": "QC-GLU-L1",
                "mean": 5.0,
                "sd": 0.2,
            },
        )
        assert r.status_code == 201, r.text
        lot = r.json()
        for value in (5.1, 5.5, 5.7):  # on target; +2.5 SD (warning); +3.5 SD after +2.5 (reject)
            r = await c.post(f"/api/v1/qc/lots/{lot['id']}/results", json={"value": value})
            assert r.status_code == 201, r.text

    async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
        stub = pb_grpc.LabServiceStub(ch)
        lots = (await stub.ListQcLots(pb.ListQcLotsRequest(), metadata=tech)).items
        (mine,) = [x for x in lots if x.id == lot["id"]]
        assert (mine.instrument_id, mine.test_code, mine.level, mine.mean, mine.sd) == (
            "simulator",
            "GLU",
            "1",
            5.0,
            0.2,
        )
        assert mine.test_name and mine.unit

        lj = await stub.GetLeveyJennings(pb.GetLeveyJenningsRequest(lot_id=lot["id"]), metadata=tech)
        assert [round(p.z, 1) for p in lj.points] == [0.5, 2.5, 3.5]
        assert [[(v.rule, v.rejection) for v in p.violations] for p in lj.points] == [
            [],
            [("1-2s", False)],
            [("1-3s", True), ("2-2s", True)],
        ]
        assert [p.accepted for p in lj.points] == [True, True, False]
        assert all(p.source == "manual" and p.measured_at.seconds for p in lj.points)
        latest = await stub.GetLeveyJennings(
            pb.GetLeveyJenningsRequest(lot_id=lot["id"], limit=2), metadata=tech
        )
        assert [p.value for p in latest.points] == [5.5, 5.7]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetLeveyJennings(pb.GetLeveyJenningsRequest(lot_id="no-such-lot"), metadata=tech)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "qc.lot_not_found" in err.value.details()

        async def simulator() -> pb.AnalyzerStatus:
            items = (await stub.ListAnalyzers(pb.ListAnalyzersRequest(), metadata=tech)).items
            return next(a for a in items if a.id == "simulator")

        before = await simulator()
        assert (before.messages, before.last_message_at.seconds, before.connected) == (0, 0, False)
        assert [(q.test_code, q.accepted, list(q.violations)) for q in before.qc] == [
            ("GLU", False, ["1-3s", "2-2s"])
        ]
        await send(lab, "XN-KHONG-CO-ONG", {"NA": ("139", "mmol/L")})
        after = await simulator()
        assert (after.messages, after.last_message_kind, after.connected) == (1, "results", False)
        assert after.last_peer.startswith("127.0.0.1:") and after.last_message_at.seconds > 0
        # an analyzer that stays connected (a link kept open from its address)
        _reader, writer = await asyncio.open_connection("127.0.0.1", lab.settings.astm_port)
        try:
            await wait_for(lambda: _connected(simulator), what="the open connection")
        finally:
            writer.close()
            await writer.wait_closed()
        await wait_for(lambda: _connected(simulator, False), what="the connection closed")

        with pytest.raises(grpc.aio.AioRpcError) as err:  # the bench's screen, not the doctors'
            await stub.ListAnalyzers(
                pb.ListAnalyzersRequest(), metadata=call_metadata(issuer.mint_for_role("doctor"))
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _connected(status, expected: bool = True) -> bool:
    return (await status()).connected is expected
