"""MLLP framing and the asyncio MLLP server over real TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from hospital.lab.api.astm import HostOrder
from hospital.lab.api.hl7.messages import OrderMessage, ResultMessage, SpecimenQuery
from hospital.lab.api.hl7.mllp import MllpBuffer, MllpEndpoint, MllpServer, Oversized, frame
from hospital.lab.simulator import send_mllp

if TYPE_CHECKING:
    from conftest import Hl7Samples, RecordingHandler


def msa(reply: bytes) -> list[str]:
    line = next(s for s in reply.decode("utf-8").split("\r") if s.startswith("MSA"))
    return line.split("|")


def test_buffer_reassembles_byte_by_byte_and_splits_concatenated_blocks() -> None:
    stream = b"noise" + frame(b"MSH|a\rPID|1") + b"\r\n" + frame("MSH|b\rPID|Nguyễn") + frame(b"MSH|c")
    buffer = MllpBuffer()
    trickled = [m for i in range(len(stream)) for m in buffer.feed(stream[i : i + 1])]
    assert trickled == [b"MSH|a\rPID|1", "MSH|b\rPID|Nguyễn".encode(), b"MSH|c"]
    assert MllpBuffer().feed(stream) == trickled


def test_buffer_drops_a_block_restarted_by_vt_and_oversized_blocks() -> None:
    buffer = MllpBuffer(max_message_bytes=100)
    assert buffer.feed(b"\x0bMSH|lost" + frame(b"MSH|kept")) == [b"MSH|kept"]
    assert buffer.feed(b"\x0b" + b"x" * 200) == []
    assert buffer.feed(b"more\x1c\r" + frame(b"MSH|next")) == [Oversized(b"x" * 200, 204), b"MSH|next"]


def test_buffer_accepts_fs_without_cr() -> None:
    assert MllpBuffer().feed(b"\x0bMSH|1\x1c\x0bMSH|2\x1c\r") == [b"MSH|1", b"MSH|2"]


@pytest.fixture
async def mllp_server(handler: RecordingHandler) -> AsyncIterator[MllpServer]:
    endpoint = MllpEndpoint("mindray-bc5380", "127.0.0.1", 0, application="LIS-BVDK", store_timeout=1.0)
    async with MllpServer(endpoint, handler) as server:
        yield server


async def test_results_are_stored_before_the_ack(
    mllp_server: MllpServer, handler: RecordingHandler, hl7_samples: Hl7Samples
) -> None:
    handler.gate = asyncio.Event()
    reader, writer = await asyncio.open_connection("127.0.0.1", mllp_server.port)
    writer.write(frame(hl7_samples.oru_r01)[:40])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(frame(hl7_samples.oru_r01)[40:])
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await reader.read(1)  # no ACK while the store is pending
    assert handler.store_calls == 1 and handler.stored == []
    handler.gate.set()
    async with asyncio.timeout(3):
        reply = MllpBuffer().feed(await reader.readuntil(b"\x1c\r"))[0]
    writer.close()
    assert msa(reply) == ["MSA", "AA", "1001"]
    ((raw, message, peer),) = handler.stored
    assert raw == hl7_samples.oru_r01.encode("utf-8") and peer.instrument == "mindray-bc5380"
    assert isinstance(message, ResultMessage)
    assert message.requests[0].observations[0].value == "12.5"


async def test_every_supported_type_gets_its_reply(
    mllp_server: MllpServer, handler: RecordingHandler, hl7_samples: Hl7Samples
) -> None:
    handler.orders["24070500077"] = [HostOrder("24070500077", ("58410-2",), "BN240003", "Lê", "Thị Mai")]
    unknown = hl7_samples.qbp_q11.replace("24070500077", "99999").replace("QBP0001", "QBP0002")
    acks = await send_mllp(
        "127.0.0.1",
        mllp_server.port,
        [hl7_samples.oru_r01, hl7_samples.oul_r22, hl7_samples.oml_o21, hl7_samples.qbp_q11, unknown],
    )
    texts = [a.decode("utf-8") for a in acks]
    assert [msa(a)[1:3] for a in acks] == [
        ["AA", "1001"],
        ["AA", "OUL0001"],
        ["AA", "OML0001"],
        ["AA", "QBP0001"],
        ["AA", "QBP0002"],
    ]
    assert "ACK^R22^ACK" in texts[1] and "|LIS-BVDK|" in texts[1]
    assert "ORL^O22" in texts[2] and "\rORC|OK|PO-778899|FO-2024-0001" in texts[2]
    assert "\rQAK|Q0001|OK|" in texts[3] and "\rQAK|Q0001|NF|" in texts[4]
    kinds = [type(m) for m in handler.messages]
    assert kinds == [ResultMessage, ResultMessage, OrderMessage, SpecimenQuery, SpecimenQuery]
    assert [q.specimen_ids for q in handler.queries] == [("24070500077",), ("99999",)]


async def test_malformed_messages_get_ae_or_ar_with_a_reason(
    mllp_server: MllpServer, handler: RecordingHandler, hl7_samples: Hl7Samples
) -> None:
    no_obx3 = hl7_samples.oru_r01.replace("OBX|2|NM|718-7^HGB^LN|", "OBX|2|NM||")
    adt = "MSH|^~\\&|HIS|BV|LIS|LAB|20240705||ADT^A01|ADT1|P|2.5.1\rPID|1||BN1||Phạm^Minh Tuấn\r"
    acks = await send_mllp("127.0.0.1", mllp_server.port, [no_obx3, adt, b"this is not HL7"])
    assert msa(acks[0])[:3] == ["MSA", "AE", "1001"] and "OBX-3" in msa(acks[0])[3]
    assert b"\rERR||OBX^2^3|101^Required field missing^HL70357|E" in acks[0]
    assert msa(acks[1])[:3] == ["MSA", "AR", "ADT1"] and "ADT\\S\\A01" in msa(acks[1])[3]
    assert msa(acks[2])[:3] == ["MSA", "AR", ""] and "MSH" in msa(acks[2])[3]
    assert handler.store_calls == 0


async def test_store_failure_is_rejected_for_resending(
    mllp_server: MllpServer, handler: RecordingHandler, hl7_samples: Hl7Samples
) -> None:
    handler.failures_left = 1
    acks = await send_mllp("127.0.0.1", mllp_server.port, [hl7_samples.oru_r01, hl7_samples.oru_r01])
    assert msa(acks[0])[:2] == ["MSA", "AR"] and "resend" in msa(acks[0])[3]
    assert msa(acks[1])[:3] == ["MSA", "AA", "1001"]
    assert len(handler.stored) == 1


async def test_store_failure_keeps_the_reply_type(
    mllp_server: MllpServer, handler: RecordingHandler, hl7_samples: Hl7Samples
) -> None:
    handler.failures_left = 2
    orl, rsp = await send_mllp("127.0.0.1", mllp_server.port, [hl7_samples.oml_o21, hl7_samples.qbp_q11])
    assert "ORL^O22" in orl.decode() and msa(orl)[1] == "AR" and b"\rORC|UA|PO-778899" in orl
    assert "RSP^K11" in rsp.decode() and msa(rsp)[1] == "AR" and b"\rQAK|Q0001|AR|" in rsp
    assert handler.queries == []  # nothing is looked up for a query that was not stored
