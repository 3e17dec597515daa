"""The service is killed (SIGKILL) in the middle of an analyzer transfer and restarted: the analyzer's
retransmission yields exactly one copy of each result — none lost, none doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from hospital.chassis.db import Database
from hospital.lab.adapters.tables import raw_messages, results
from hospital.lab.api.astm.codec import build_frames
from hospital.lab.simulator import load_astm_capture, send_astm
from hospital.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[3]


class LabProcess:
    def __init__(self, database_url: str, nats_url: str, data_dir: Path) -> None:
        self.astm_port = free_port()
        self.env = {
            **os.environ,
            "HOSPITAL_LAB_DATABASE_URL": database_url,
            "HOSPITAL_LAB_NATS_URL": nats_url,
            "HOSPITAL_LAB_DATA_DIR": str(data_dir),
            "HOSPITAL_LAB_ENVIRONMENT": "test",
            "HOSPITAL_LAB_HTTP_PORT": str(free_port()),
            "HOSPITAL_LAB_GRPC_PORT": str(free_port()),
            "HOSPITAL_LAB_ASTM_PORT": str(self.astm_port),
            "HOSPITAL_LAB_MLLP_PORT": str(free_port()),
            "HOSPITAL_LAB_LOG_LEVEL": "WARNING",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "hospital.lab", command],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.proc = self.run("serve")
        for _ in range(600):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.astm_port)
                w.close()
                return
            except OSError:
                assert self.proc.poll() is None, "lab service exited during start-up"
                await asyncio.sleep(0.05)
        raise TimeoutError("lab service did not open its ASTM port")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)


async def counts(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        async with db.session() as s:
            n = (await s.execute(select(func.count()).select_from(results))).scalar_one()
            m = (await s.execute(select(func.count()).select_from(raw_messages))).scalar_one()
            return int(n), int(m)
    finally:
        await db.dispose()


async def test_killed_mid_transfer_then_retransmission_yields_one_result(
    database_url, nats_server, tmp_path, samples: Path
) -> None:
    lab = LabProcess(database_url, nats_server.url, tmp_path)
    assert lab.run("migrate").wait(60) == 0
    message = load_astm_capture(samples / "04_sysmex_xn550_astm_message.txt").messages[0]
    frames = build_frames(message.records)
    expected = 41
    try:
        await lab.start()
        # killed mid-message; then killed right after the last frame, before its ACK reached the analyzer
        for cut in (len(frames) // 2, len(frames)):
            reader, writer = await asyncio.open_connection("127.0.0.1", lab.astm_port)
            writer.write(b"\x05")
            await writer.drain()
            assert await reader.read(1) == b"\x06"
            for i, f in enumerate(frames[:cut]):
                writer.write(f)
                await writer.drain()
                if i < cut - 1:
                    assert await reader.read(1) == b"\x06"
            lab.kill()  # no EOT, the last frame's ACK never read: the analyzer will send it all again
            writer.close()
            await lab.start()
            stats = await send_astm("127.0.0.1", lab.astm_port, [message])
            assert stats.messages_failed == 0
            assert await counts(database_url) == (expected, 1)
        await send_astm("127.0.0.1", lab.astm_port, [message])  # the ACK was lost once more: a third copy
        assert await counts(database_url) == (expected, 1)
    finally:
        lab.stop()
