"""The asyncio ASTM server and client over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hospital.lab.api.astm import AstmClient, AstmEndpoint, AstmServer, HostOrder
from hospital.lab.api.astm.codec import (
    ACK,
    ENQ,
    EOT,
    NAK,
    Control,
    Frame,
    FrameBuffer,
    LinkEvent,
    build_frames,
)
from hospital.lab.api.astm.message import AstmMessage, parse_message
from hospital.lab.api.astm.records import Record, parse_records
from hospital.lab.simulator import AstmTimers, load_astm_capture, load_astm_captures, send_astm, serve_astm
from hospital.testing.waits import wait_for

if TYPE_CHECKING:
    from conftest import RecordingHandler

MakeEndpoint = Callable[..., AstmEndpoint]

QUERY = [b"H|\\^&|||XN-550^00-24", b"Q|1|^^A1^B||ALL||||||||O", b"L|1|N"]
RESULTS = [
    b"H|\\^&|||XN-550^00-24",
    "P|1||BN0001||Nguyễn^Thị Hoa||19850314|F".encode(),
    b"O|1||^^A1^B",
    b"R|1|^^^^WBC^1|7.20|10*3/uL||N||F",
    b"L|1|N",
]


class RawLink:
    """A hand-driven analyzer socket for byte-exact scenarios."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = FrameBuffer()
        self.events: deque[LinkEvent] = deque()

    @classmethod
    async def connect(cls, port: int) -> RawLink:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes | int) -> None:
        self.writer.write(bytes((data,)) if isinstance(data, int) else data)
        await self.writer.drain()

    async def next(self, timeout: float = 3.0) -> LinkEvent | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.events:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
            assert data, "server closed the connection"
            self.events.extend(self.buffer.feed(data))
        return self.events.popleft()

    async def expect(self, byte: int, timeout: float = 3.0) -> None:
        event = await self.next(timeout)
        assert event == Control(byte), f"expected {byte:#x}, got {event!r}"

    async def transfer(self, wire: list[bytes]) -> None:
        await self.send(ENQ)
        await self.expect(ACK)
        for frame in wire:
            await self.send(frame)
            await self.expect(ACK)
        await self.send(EOT)

    def close(self) -> None:
        self.writer.close()


def specimen_ids(message: object) -> list[str]:
    assert isinstance(message, AstmMessage)
    return [o.order.specimen_id for p in message.patients for o in p.orders if o.order]


async def test_simulator_delivers_every_capture_with_standard_framing(
    astm_server: AstmServer, handler: RecordingHandler, samples: Path
) -> None:
    messages = [m for c in load_astm_captures(samples) for m in c.messages]
    stats = await send_astm("127.0.0.1", astm_server.port, messages)
    assert (stats.messages_sent, stats.messages_failed, stats.naks) == (9, 0, 0)
    assert [raw for raw, _, _ in handler.stored] == [m.text for m in messages]
    assert [specimen_ids(m) for m in handler.messages] == [
        ["S1234"],
        ["T20 10134GA D28"],
        ["CL-PL-24-0370"],
        ["27"],
        ["PX440N"],
        ["PR25A137"],
        ["113"],
        [],
        [
            "130000445",
            "130000445",
            "130000617",
            "130000722",
            "130000724",
            "130000724",
            "130000724",
            "130000741",
            "130000790",
        ],
    ]
    assert all(peer.instrument == "xn-550-khoa-huyet-hoc" for _, _, peer in handler.stored)


async def test_captured_frame_boundaries_including_26_kb_frames_are_accepted(
    astm_server: AstmServer, handler: RecordingHandler, samples: Path
) -> None:
    captures = load_astm_captures(samples)
    messages = [m for c in captures for m in c.messages]
    stats = await send_astm("127.0.0.1", astm_server.port, messages, preserve_frames=True)
    assert stats.messages_sent == 9 and stats.frames_acked == sum(len(m.frames) for m in messages)
    stored = handler.messages
    assert isinstance(stored[4], AstmMessage) and len(stored[4].manufacturer_records[2].raw) > 26_000
    # the Immulite feature expects exactly 27 acknowledgments for its result upload (ENQ + 26 frames)
    results = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature").messages[1]
    single = await send_astm("127.0.0.1", astm_server.port, [results], preserve_frames=True)
    assert single.acks_received == 27


async def test_host_query_round_trip_matches_the_immulite_feature(
    astm_server: AstmServer, handler: RecordingHandler, samples: Path
) -> None:
    capture = load_astm_capture(samples / "08_siemens_dpc_immulite_astm_lis.feature")
    (pending,) = capture.pending_orders
    handler.orders[pending["id"]] = [
        HostOrder(
            specimen_id=pending["id"],
            tests=tuple(re.split(r"[,\s]+", pending["test_names"])),
            patient_id=pending["patient_id"],
            family_name=pending["last_name"],
            given_name=pending["first_name"],
        )
    ]
    stats = await send_astm("127.0.0.1", astm_server.port, [capture.messages[0]])
    assert stats.messages_sent == 1 and len(handler.queries) == 1
    (reply,) = stats.replies
    got = parse_records(reply.decode("utf-8"))
    expected = [Record.parse(line) for line in capture.expected_reply]
    assert [r.type for r in got] == [r.type for r in expected] == ["H", "P"] + ["O"] * 6 + ["L"]
    assert (got[0].text(5), got[0].text(10)) == ("LIS", "DPC") == (expected[0].text(5), expected[0].text(10))
    assert (got[1].text(3), got[1].components(6)) == (expected[1].text(3), expected[1].components(6))
    assert [(r.text(3), r.text(5)) for r in got[2:8]] == [(r.text(3), r.text(5)) for r in expected[2:8]]
    assert got[-1].text(3) == expected[-1].text(3) == "N"


async def test_unknown_specimen_is_answered_with_no_information(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    stats = await send_astm("127.0.0.1", astm_server.port, [b"\r".join(QUERY) + b"\r"])
    (reply,) = stats.replies
    assert [r.raw for r in parse_records(reply.decode())][1:] == ["L|1|I"]
    assert handler.queries[0].specimen_ids == ("A1",)


async def test_final_ack_is_sent_only_after_the_store_completes(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    handler.gate = asyncio.Event()
    link = await RawLink.connect(astm_server.port)
    *body, last = build_frames(RESULTS)
    await link.send(ENQ)
    await link.expect(ACK)
    for frame in body:
        await link.send(frame)
        await link.expect(ACK)
    await link.send(last)
    assert await link.next(timeout=0.3) is None  # nothing until storage confirms
    assert handler.store_calls == 1 and handler.stored == []
    handler.gate.set()
    await link.expect(ACK)
    assert len(handler.stored) == 1
    await link.send(EOT)
    link.close()


async def test_store_failure_naks_and_the_retransmission_is_stored_once(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    handler.failures_left = 1
    link = await RawLink.connect(astm_server.port)
    *body, last = build_frames(RESULTS)
    await link.send(ENQ)
    await link.expect(ACK)
    for frame in body:
        await link.send(frame)
        await link.expect(ACK)
    await link.send(last)
    await link.expect(NAK)
    await link.send(last)
    await link.expect(ACK)
    await link.send(EOT)
    link.close()
    assert handler.store_calls == 2 and len(handler.stored) == 1
    assert specimen_ids(handler.messages[0]) == ["A1"]


async def test_slow_store_times_out_into_a_nak(handler: RecordingHandler, endpoint: MakeEndpoint) -> None:
    handler.gate = asyncio.Event()
    async with AstmServer(endpoint(store_timeout=0.2), handler) as server:
        link = await RawLink.connect(server.port)
        *body, last = build_frames(RESULTS)
        await link.transfer(body)
        await link.send(ENQ)
        await link.expect(ACK)
        for frame in body:
            await link.send(frame)
            await link.expect(ACK)
        await link.send(last)
        await link.expect(NAK, timeout=1.0)
        link.close()
    assert handler.stored == []


async def test_simulator_retransmits_until_stored(astm_server: AstmServer, handler: RecordingHandler) -> None:
    handler.failures_left = 2
    stats = await send_astm("127.0.0.1", astm_server.port, [b"\r".join(RESULTS) + b"\r"])
    assert (stats.messages_sent, stats.naks, len(handler.stored)) == (1, 2, 1)


async def test_sender_gives_up_after_six_naks(astm_server: AstmServer, handler: RecordingHandler) -> None:
    handler.failures_left = 100
    stats = await send_astm("127.0.0.1", astm_server.port, [b"\r".join(RESULTS) + b"\r"])
    assert (stats.messages_sent, stats.messages_failed, stats.naks) == (0, 1, 6)
    assert handler.stored == [] and handler.store_calls == 6


async def test_bad_checksum_and_wrong_frame_number_are_naked(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    wire = build_frames(RESULTS)
    link = await RawLink.connect(astm_server.port)
    await link.send(ENQ)
    await link.expect(ACK)
    await link.send(wire[0][:-4] + b"00\r\n")
    await link.expect(NAK)
    await link.send(wire[0])
    await link.expect(ACK)
    await link.send(wire[2])  # FN 3 where 2 is due
    await link.expect(NAK)
    for frame in wire[1:]:
        await link.send(frame)
        await link.expect(ACK)
    await link.send(EOT)
    link.close()
    await asyncio.wait_for(handler.stored_event.wait(), 3)
    assert len(handler.stored) == 1


async def test_eot_mid_message_discards_the_partial_message(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    wire = build_frames(RESULTS)
    link = await RawLink.connect(astm_server.port)
    await link.transfer(wire[:3])
    await link.transfer(wire)
    link.close()
    await asyncio.wait_for(handler.stored_event.wait(), 3)
    assert [raw for raw, _, _ in handler.stored] == [b"\r".join(RESULTS) + b"\r"]


async def test_receive_timeout_abandons_the_transfer(
    handler: RecordingHandler, endpoint: MakeEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    wire = build_frames(RESULTS)
    async with AstmServer(endpoint(receive_timeout=0.2), handler) as server:
        link = await RawLink.connect(server.port)
        await link.send(ENQ)
        await link.expect(ACK)
        await link.send(wire[0])
        await link.expect(ACK)
        await wait_for(  # no frame for 0.2 s: the server gives the transfer up
            lambda: any("discarded: receive timeout" in r.getMessage() for r in caplog.records),
            5,
            what="the partial message discarded on the receive timeout",
        )
        await link.send(wire[1])
        assert await link.next(timeout=0.3) is None  # the transfer is gone: frames are ignored
        await link.transfer(wire)
        await asyncio.wait_for(handler.stored_event.wait(), 3)
        link.close()
    assert [raw for raw, _, _ in handler.stored] == [b"\r".join(RESULTS) + b"\r"]


async def test_contention_the_analyzer_wins_and_the_lis_answers_afterwards(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    handler.orders["A1"] = [HostOrder("A1", ("WBC", "RBC"), "BN0001", "Nguyễn", "Thị Hoa", sex="F")]
    link = await RawLink.connect(astm_server.port)
    await link.transfer(build_frames(QUERY))
    await link.expect(ENQ)  # the LIS bids to send its answer ...
    await link.send(ENQ)  # ... while the analyzer bids too (the ENQs cross on the wire)
    assert await link.next(timeout=0.3) is None  # the LIS yields and stays silent
    await link.transfer(build_frames(RESULTS))  # the analyzer re-sends ENQ and transfers first
    await link.expect(ENQ, timeout=1.0)  # after the analyzer's EOT the LIS tries again
    await link.send(ACK)
    texts = []
    while (event := await link.next()) != Control(EOT):
        assert isinstance(event, Frame) and event.checksum_ok
        texts.append(event.payload)
        await link.send(ACK)
    link.close()
    answer = parse_message(b"".join(texts))
    (order,) = [o.order for p in answer.patients for o in p.orders if o.order]
    assert order.specimen_id == "A1"
    assert [t.components for t in order.tests] == [("", "", "", "", "WBC"), ("", "", "", "", "RBC")]  # Sysmex
    assert answer.patients[0].patient is not None and answer.patients[0].patient.name == ("Nguyễn", "Thị Hoa")
    assert len(handler.stored) == 2


async def test_astm_client_connects_to_a_listening_analyzer(
    handler: RecordingHandler, endpoint: MakeEndpoint, samples: Path
) -> None:
    capture = load_astm_capture(samples / "07_sysmex_xp100_astm_message.txt")
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    analyzer = asyncio.create_task(serve_astm("127.0.0.1", 0, capture.messages, on_listening=port.set_result))
    async with AstmClient(endpoint(port=await port, reconnect_delay=0.1), handler):
        stats = await asyncio.wait_for(analyzer, 5)
    assert stats.messages_sent == 1
    assert specimen_ids(handler.messages[0]) == ["113"]


async def test_simulator_aborts_when_the_lis_never_answers() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        stats = await send_astm(
            "127.0.0.1", port, [b"\r".join(RESULTS) + b"\r"], timers=AstmTimers(reply_timeout=0.2)
        )
    assert (stats.messages_sent, stats.messages_failed, stats.enq_sent) == (0, 1, 1)
