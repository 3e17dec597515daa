"""The analyzer listeners' limits over real TCP (issue "Hardening", items 7 and 1): connection caps per
listener and per address, idle and incomplete-message timeouts, message size, ASTM frames per transfer,
and result values too long to store, through the MLLP and ASTM sockets of the protocol servers and of the
real lab service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from hospital.lab.adapters.tables import raw_messages, results
from hospital.lab.api.astm import AstmServer
from hospital.lab.api.astm.codec import ENQ, EOT, encode_frame
from hospital.lab.api.hl7.mllp import MllpBuffer, MllpEndpoint, MllpServer, Oversized, frame
from hospital.lab.api.tcpserver import ListenerLimits
from hospital.lab.simulator import AstmTimers, send_astm, send_mllp

from .conftest import OML_O21, ORU_R01_MINDRAY, fast_endpoint
from .test_service import count

if TYPE_CHECKING:
    from conftest import RecordingHandler

FAST_TIMERS = AstmTimers(reply_timeout=2.0, receive_timeout=2.0, busy_retry_delay=0.1)


def msa(reply: bytes) -> list[str]:
    line = next(s for s in reply.decode("utf-8").split("\r") if s.startswith("MSA"))
    return line.split("|")


def oru(control_id: str, value: str, barcode: str = "24070512345") -> str:
    return (
        ORU_R01_MINDRAY.replace("|1001|", f"|{control_id}|", 1)
        .replace("||12.5|", f"||{value}|", 1)
        .replace("24070512345", barcode)
    )


def astm_message(value: str = "12.5", barcode: str = "24070599999") -> bytes:
    records = [
        "H|\\^&|||XN-550^00-26^11001^^^^12345||||||||E1394-97",
        "P|1|||||||U",
        f"O|1||^^{barcode}^B|^^^^WBC|||||||N||||||||||||||F",
        f"R|1|^^^^WBC^1|{value}|10*3/uL||N||||||20240705103000",
        "L|1|N",
    ]
    return ("\r".join(records) + "\r").encode()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection (EOF or reset), failing after ``within``."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            try:
                if not await reader.read(65536):
                    break
            except ConnectionError:
                break
    return time.monotonic() - started


@pytest.fixture
def mllp(handler: RecordingHandler) -> Callable[..., MllpServer]:
    def start(**limits: float) -> MllpServer:
        endpoint = MllpEndpoint("mllp", "127.0.0.1", 0, store_timeout=2.0, limits=ListenerLimits(**limits))
        return MllpServer(endpoint, handler)

    return start


# --------------------------------------------------------------------------------------------------- MLLP
def test_buffer_reports_an_oversized_block_once_it_ends_and_keeps_memory_bounded() -> None:
    buffer = MllpBuffer(max_message_bytes=1000)
    assert buffer.feed(b"\x0bMSH|^~\\&|A|B\r" + b"x" * 5000) == []
    assert len(buffer._data) == 0 and buffer.in_block
    (big, nxt) = buffer.feed(b"y" * 5000 + b"\x1c\r" + frame(b"MSH|next"))
    assert isinstance(big, Oversized) and big.size == 10_013 and big.head.startswith(b"MSH|^~\\&|A|B\r")
    assert nxt == b"MSH|next" and not buffer.in_block


async def test_oversized_message_gets_ae_with_the_reason_and_the_connection_goes_on(
    mllp, handler: RecordingHandler
) -> None:
    async with mllp(max_message_bytes=64 * 1024) as server:
        acks = await send_mllp(
            "127.0.0.1", server.port, [oru("BIG1", "9" * 5_000_000), oru("OK2", "12.5")], timeout=20
        )
    assert msa(acks[0])[:3] == ["MSA", "AE", "BIG1"]
    assert "exceeds the limit of 65536 bytes" in msa(acks[0])[3]
    assert msa(acks[1])[:3] == ["MSA", "AA", "OK2"]
    assert handler.store_calls == 1


async def test_slow_sender_is_cut_off_at_the_message_timeout(mllp, handler: RecordingHandler, caplog) -> None:
    """One byte every 50 ms keeps the connection from being idle, but the message never completes: the
    connection is closed once the message has taken longer than the message timeout."""
    async with mllp(message_timeout=0.6, idle_timeout=30) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        data = frame(oru("SLOW", "12.5"))

        async def trickle() -> None:
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await asyncio.sleep(0.05)  # the sender's pace, not a wait for an outcome

        sender = asyncio.create_task(trickle())
        with caplog.at_level(logging.WARNING):
            elapsed = await closed_by_server(reader, within=10)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    assert 0.5 <= elapsed < 5
    assert handler.store_calls == 0
    assert any("incomplete after" in r.getMessage() for r in caplog.records)


async def test_idle_connection_is_closed(mllp, caplog) -> None:
    async with mllp(idle_timeout=0.4) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        with caplog.at_level(logging.WARNING):
            elapsed = await closed_by_server(reader, within=10)
        writer.close()
        assert server.connections == 0
    assert 0.3 <= elapsed < 5
    assert any("idle for" in r.getMessage() for r in caplog.records)


async def test_connection_cap_refuses_the_connection_beyond_it(mllp, caplog) -> None:
    async with mllp(max_connections=2, max_connections_per_host=5) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await _until(lambda: server.connections == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        with caplog.at_level(logging.WARNING):
            await closed_by_server(reader, within=5)
        writer.close()
        assert any("the limit of the listener" in r.getMessage() for r in caplog.records)
        held[0][1].close()
        await _until(lambda: server.connections == 1)
        acks = await send_mllp("127.0.0.1", server.port, [oru("AFTER", "1")], timeout=5)
        assert msa(acks[0])[:3] == ["MSA", "AA", "AFTER"]
        held[1][1].close()
    async with mllp(max_connections=10, max_connections_per_host=1) as server:
        _, first = await asyncio.open_connection("127.0.0.1", server.port)
        await _until(lambda: server.connections == 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await closed_by_server(reader, within=5)
        writer.close()
        first.close()


async def _until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------------- ASTM
async def test_astm_message_over_the_size_limit_is_refused(handler: RecordingHandler) -> None:
    endpoint = fast_endpoint(limits=ListenerLimits(max_message_bytes=2048))
    async with AstmServer(endpoint, handler) as server:
        stats = await send_astm(
            "127.0.0.1", server.port, [astm_message("9" * 5000), astm_message("7.1")], timers=FAST_TIMERS
        )
    assert stats.messages_failed == 1 and stats.messages_sent == 1
    assert handler.store_calls == 1 and b"|7.1|" in handler.stored[0][0]


async def test_astm_transfer_over_the_frame_limit_is_refused(handler: RecordingHandler) -> None:
    endpoint = fast_endpoint(max_frames_per_transfer=6)
    many = astm_message("5.5").replace(b"L|1|N\r", b"C|1|I|" + b"n" * 2000 + b"|G\rL|1|N\r")
    async with AstmServer(endpoint, handler) as server:
        stats = await send_astm("127.0.0.1", server.port, [many, astm_message("7.1")], timers=FAST_TIMERS)
    assert stats.messages_failed == 1 and stats.messages_sent == 1 and stats.naks >= 1
    assert handler.store_calls == 1


async def test_astm_slow_frame_is_cut_off_and_idle_link_closed(handler: RecordingHandler) -> None:
    endpoint = fast_endpoint(limits=ListenerLimits(message_timeout=0.6, idle_timeout=0.5), receive_timeout=30)
    async with AstmServer(endpoint, handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(bytes((ENQ,)))
        assert await reader.readexactly(1) == b"\x06"
        data = encode_frame(1, astm_message())

        async def trickle() -> None:
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await asyncio.sleep(0.05)
            writer.write(bytes((EOT,)))

        sender = asyncio.create_task(trickle())
        elapsed = await closed_by_server(reader, within=10)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        assert 0.5 <= elapsed < 5 and handler.store_calls == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert 0.3 <= await closed_by_server(reader, within=10) < 5
        writer.close()


# ------------------------------------------------------------------------------------- the lab service
async def test_too_long_result_value_is_refused_and_nothing_stored(lab) -> None:
    """A 5 MB OBX-5 (over the 1 MiB message limit) and a 5,000-character one (over the 4,000-character value
    limit) both get AE with the reason; an ASTM R-4 of 5,000 characters is NAKed; nothing of them is
    stored, and a normal message on the same connection is stored."""
    host, mllp_port = "127.0.0.1", lab.settings.mllp_port
    acks = await send_mllp(
        host,
        mllp_port,
        [oru("HUGE", "9" * 5_000_000), oru("LONG", "8" * 5000), oru("FINE", "6.2")],
        timeout=30,
    )
    assert (
        msa(acks[0])[:3] == ["MSA", "AE", "HUGE"] and "exceeds the limit of 1048576 bytes" in msa(acks[0])[3]
    )
    assert msa(acks[1])[:3] == ["MSA", "AE", "LONG"]
    assert "OBX 1 value (OBX-5) of 5000 characters exceeds the limit of 4000" in msa(acks[1])[3]
    assert b"\rERR||OBX^1^5|102^Data type error^HL70357|E" in acks[1]
    assert msa(acks[2])[:3] == ["MSA", "AA", "FINE"]
    long_barcode = await send_mllp(host, mllp_port, [oru("BC", "1", barcode="B" * 80)], timeout=10)
    assert msa(long_barcode[0])[:2] == ["MSA", "AE"] and "specimen ID" in msa(long_barcode[0])[3]
    stats = await send_astm(host, lab.settings.astm_port, [astm_message("7" * 5000)], timers=FAST_TIMERS)
    assert stats.messages_failed == 1
    assert await count(lab, raw_messages) == 1
    assert await count(lab, results) == 3


async def test_results_whose_event_would_be_too_large_are_refused(lab) -> None:
    """Eighty results of 3,900 characters each: every value within its limit, the message within 1 MiB, but
    the lab.result.received event would exceed 256 KiB: AE with the reason (not AR, which would make the
    sender resend it forever), nothing stored."""
    host, port = "127.0.0.1", lab.settings.mllp_port
    (ack,) = await send_mllp(host, port, [OML_O21], timeout=10)
    assert msa(ack)[:2] == ["MSA", "AA"]
    before = await count(lab, raw_messages)
    head = oru("WIDE", "1").replace("24070512345", "24070500077").split("OBX|1|")[0]
    obx = "".join(f"OBX|{i}|ST|6690-2^WBC^LN||{'Tế bào ' * 557}x|10*9/L|||||F\r" for i in range(1, 81))
    (reply,) = await send_mllp(host, port, [head + obx], timeout=20)
    assert msa(reply)[:3] == ["MSA", "AE", "WIDE"] and "event_too_large" in msa(reply)[3]
    assert await count(lab, raw_messages) == before
