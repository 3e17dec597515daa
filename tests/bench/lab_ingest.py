"""Lab ingestion benchmark on PostgreSQL: analyzer results over ASTM and over HL7/MLLP, several
concurrent connections, from the wire to the durable store + ACK + ``lab.result.received`` on NATS.

Every message carries one specimen's CBC (8 results) for its own ordered barcode, so each is matched,
range-flagged, delta-checked and published. Reported: results/s (first byte sent → last ACK), and
p50/p99 latency from the last byte of a message leaving the analyzer to its ``lab.result.received``
event reaching a NATS subscriber. The load generator runs in the same process and event loop as the
service (a conservative setup on a small machine).
"""
from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import nats

from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.api.astm.codec import build_frames
from hospital.lab.api.hl7.mllp import MllpBuffer, frame
from hospital.lab.service import DEFINITION
from hospital.lab.simulator import generate_specimens, specimen_to_astm, specimen_to_oru
from hospital.testing.servers import NatsServer, PostgresServer, free_port
from hospital.testing.services import http_client, running_service

MESSAGES = 1200          # specimens (8 results each)
ASTM_CONNECTIONS = 4
MLLP_CONNECTIONS = 4


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


async def astm_link(port: int, messages: list[tuple[str, bytes]], sent_at: dict[str, float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for barcode, text in messages:
            writer.write(b"\x05")
            await writer.drain()
            assert await reader.readexactly(1) == b"\x06"
            frames = build_frames(r for r in text.split(b"\r") if r)
            for i, f in enumerate(frames):
                writer.write(f)
                await writer.drain()
                if i == len(frames) - 1:
                    sent_at[barcode] = time.perf_counter()
                reply = await reader.readexactly(1)
                assert reply == b"\x06", f"NAK for {barcode}"
            writer.write(b"\x04")
            await writer.drain()
    finally:
        writer.close()


async def mllp_link(port: int, messages: list[tuple[str, bytes]], sent_at: dict[str, float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buffer = MllpBuffer()
    try:
        for barcode, text in messages:
            writer.write(frame(text))
            await writer.drain()
            sent_at[barcode] = time.perf_counter()
            acks: list[bytes] = []
            while not acks:
                acks = buffer.feed(await reader.read(65536))
            assert b"MSA|AA" in acks[0], acks[0][:200]
    finally:
        writer.close()


async def run(pg_url: str, nats_url: str, data_dir: Path) -> dict:
    async with running_service(DEFINITION, data_dir=data_dir, database_url=pg_url, nats_url=nats_url,
                               mllp_port=free_port(), astm_port=free_port(), database_pool_size=12,
                               log_level="WARNING") as svc:
        barcodes: list[str] = []
        async with http_client(svc, "doctor") as c:
            async def order(i: int) -> None:
                r = await c.post("/api/v1/orders", json={
                    "patient": {"id": f"bench-{i % 300}", "full_name": "Nguyễn Văn Bình", "sex": "male",
                                "birth_date": "1980"}, "tests": ["CBC"]})
                assert r.status_code == 201, r.text
                barcodes.append(r.json()["specimens"][0]["barcode"])
            for start in range(0, MESSAGES, 50):
                await asyncio.gather(*(order(i) for i in range(start, min(MESSAGES, start + 50))))
        specimens = generate_specimens(barcodes, MESSAGES, "cbc", seed=7)
        now = datetime.now()
        astm_msgs, mllp_msgs = [], []
        for i, s in enumerate(specimens):
            at = now + timedelta(seconds=i)
            if i % 2 == 0:
                astm_msgs.append((s.barcode, specimen_to_astm(s, at)))
            else:
                mllp_msgs.append((s.barcode, specimen_to_oru(s, at, f"B{i}")))
        results_per_message = len(specimens[0].results)
        event_at: dict[str, float] = {}
        done = asyncio.Event()
        nc = await nats.connect(nats_url)

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            ev = events_pb2.ResultReceived.FromString(msg.data)
            event_at.setdefault(ev.specimen_barcode, time.perf_counter())
            if len(event_at) >= MESSAGES:
                done.set()

        sub = await nc.subscribe("lab.result.received", cb=on_event)
        sent_at: dict[str, float] = {}
        t0 = time.perf_counter()
        links = [astm_link(svc.settings.astm_port, astm_msgs[k::ASTM_CONNECTIONS], sent_at)
                 for k in range(ASTM_CONNECTIONS)]
        links += [mllp_link(svc.settings.mllp_port, mllp_msgs[k::MLLP_CONNECTIONS], sent_at)
                  for k in range(MLLP_CONNECTIONS)]
        t_astm = t_mllp = 0.0

        async def timed(coro, kind: str) -> None:  # type: ignore[no-untyped-def]
            nonlocal t_astm, t_mllp
            await coro
            elapsed = time.perf_counter() - t0
            if kind == "astm":
                t_astm = max(t_astm, elapsed)
            else:
                t_mllp = max(t_mllp, elapsed)

        await asyncio.gather(*(timed(link, "astm" if i < ASTM_CONNECTIONS else "mllp")
                               for i, link in enumerate(links)))
        acked = time.perf_counter() - t0
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            await sub.unsubscribe()
            await nc.close()
        latencies = [(event_at[b] - sent_at[b]) * 1000 for b in sent_at if b in event_at]
        astm_lat = [(event_at[b] - sent_at[b]) * 1000 for b, _ in astm_msgs if b in event_at]
        mllp_lat = [(event_at[b] - sent_at[b]) * 1000 for b, _ in mllp_msgs if b in event_at]
        total_results = MESSAGES * results_per_message
        return {
            "messages": MESSAGES, "results": total_results, "results_per_message": results_per_message,
            "connections": {"astm": ASTM_CONNECTIONS, "mllp": MLLP_CONNECTIONS},
            "acked_seconds": round(acked, 3),
            "results_per_second_total": round(total_results / acked, 1),
            "results_per_second_astm": round(len(astm_msgs) * results_per_message / t_astm, 1),
            "results_per_second_mllp": round(len(mllp_msgs) * results_per_message / t_mllp, 1),
            "events_received": len(event_at),
            "latency_ms_last_byte_to_event": {"p50": round(pct(latencies, 50), 1), "p99": round(pct(latencies, 99), 1),
                                              "max": round(max(latencies), 1)},
            "latency_ms_astm": {"p50": round(pct(astm_lat, 50), 1), "p99": round(pct(astm_lat, 99), 1)},
            "latency_ms_mllp": {"p50": round(pct(mllp_lat, 50), 1), "p99": round(pct(mllp_lat, 99), 1)},
            "goal": {"results_per_second": 2000, "p99_ms": 250},
        }


async def main() -> dict:
    base = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own OS user
    pg = PostgresServer(base / "pg").start()
    nats_srv = NatsServer(base / "nats").start()
    try:
        url = await pg.create_database(f"lab_bench_{uuid.uuid4().hex[:8]}")
        result = await run(url, nats_srv.url, base / "data")
        result["database"] = "postgresql"
        return result
    finally:
        nats_srv.stop()
        pg.stop()


if __name__ == "__main__":
    import json
    print(json.dumps(asyncio.run(main()), indent=2))
