"""Analyzer simulator: replays captured traffic to the LIS with the real protocol handshakes.

Command line::

    python -m hospital.lab.simulator astm --host H --port P [--preserve-frames] FILE...
    python -m hospital.lab.simulator astm --listen --port P FILE...      # analyzer listens, LIS connects
    python -m hospital.lab.simulator mllp --host H --port P FILE...
    python -m hospital.lab.simulator generate --protocol astm|mllp --host H --port P \\
        --count N [--panel cbc|chemistry] BARCODE...

``astm`` FILEs are analyzer captures: E1381 frame dumps (``STX FN text ETX CS``, with or without the
CR LF trailer, one frame per record or one reassembled frame) or a Gherkin ``.feature`` whose
docstrings hold frame-number-prefixed records. Each message is sent as analyzers do — ENQ, frames
with checksums, waiting for each ACK, retransmitting on NAK, EOT — and a message carrying a Q record
waits for the LIS's answer. By default records are re-framed to ≤240 bytes; ``--preserve-frames`` keeps
the captured frame boundaries (26 kB Horiba frames included) and only renumbers FNs.

``mllp`` FILEs hold HL7 v2 messages (MLLP-framed or one segment per line); an ASTM capture given to
``mllp`` is converted to ORU^R01, one per result message.

The async functions :func:`send_astm`, :func:`serve_astm` and :func:`send_mllp` and the capture loaders
are the API used by tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from hospital.chassis import aio
from hospital.lab.api.astm.codec import (
    ETX,
    Frame,
    FrameBuffer,
    LinkEvent,
    assemble,
    build_frames,
    encode_frame,
)
from hospital.lab.api.astm.link import (
    BUSY_RETRY_DELAY,
    CONTENTION_RETRY_DELAY,
    RECEIVE_TIMEOUT,
    REPLY_TIMEOUT,
    MessageReceived,
    Receiver,
    ReceiverAction,
    RetryAfter,
    Send,
    Sender,
    SenderOutcome,
    TransferEnded,
)
from hospital.lab.api.astm.message import AstmMessage, parse_message
from hospital.lab.api.astm.records import DEFAULT_DELIMITERS, is_terminator_record
from hospital.lab.api.hl7.messages import (
    CodedElement,
    Observation,
    ObservationRequest,
    Patient,
    build_oru_r01,
)
from hospital.lab.api.hl7.mllp import MllpBuffer, frame

log = logging.getLogger(__name__)

# --- capture loading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One E1394 message: its records (CR-separated) and, for frame dumps, the captured frames."""

    text: bytes
    frames: tuple[tuple[bytes, int], ...] = ()
    """(text, terminator) of each captured frame, in order."""

    @property
    def records(self) -> list[bytes]:
        """The records, without their CR (bytes untouched: no decoding round trip)."""
        return [r.strip(b"\n") for r in self.text.split(b"\r") if r.strip(b"\n").strip()]

    @property
    def has_query(self) -> bool:
        return any(r[:1] in (b"Q", b"q") for r in self.records)

    def wire_frames(self, *, preserve_frames: bool = False) -> list[bytes]:
        """Frames to send: re-framed to ≤240 bytes, or the captured frames renumbered from FN 1."""
        if preserve_frames and self.frames:
            return [encode_frame(fn, text, term) for fn, (text, term) in enumerate(self.frames, start=1)]
        return build_frames(self.records)


@dataclass(frozen=True, slots=True)
class AstmCapture:
    path: Path
    messages: tuple[CapturedMessage, ...]
    pending_orders: tuple[dict[str, str], ...] = ()
    """Feature files: the LIS's pending requests a host query should find."""
    expected_reply: tuple[str, ...] = ()
    """Feature files: records the LIS should answer to the query (frame numbers stripped)."""
    expected_results: tuple[dict[str, str], ...] = ()
    """Feature files: the result table the LIS should have posted."""


def _messages_from_frames(frames: Sequence[Frame]) -> tuple[CapturedMessage, ...]:
    messages: list[CapturedMessage] = []
    current: list[Frame] = []
    for frame_ in frames:
        current.append(frame_)
        if frame_.is_last_of_record and is_terminator_record(assemble(current)):
            messages.append(
                CapturedMessage(assemble(current), tuple((f.text, f.terminator) for f in current))
            )
            current = []
    if current:
        log.warning("capture ends without an L record; keeping the partial message")
        messages.append(CapturedMessage(assemble(current), tuple((f.text, f.terminator) for f in current)))
    return tuple(messages)


@dataclass(slots=True)
class _Step:
    text: str
    doc: list[str] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)


def _feature_steps(text: str) -> list[_Step]:
    steps: list[_Step] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith('"""') and steps:
            i += 1
            while i < len(lines) and not lines[i].strip().startswith('"""'):
                if lines[i].strip():
                    steps[-1].doc.append(lines[i].strip())
                i += 1
        elif line.startswith("|") and steps:
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([cell.strip() for cell in lines[i].strip().strip("|").split("|")])
                i += 1
            steps[-1].table = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
            continue
        elif line.split(" ", 1)[0] in ("Given", "When", "Then", "And", "But"):
            steps.append(_Step(line))
        i += 1
    return steps


def _strip_fn(line: str) -> str:
    return line[1:] if line[:1].isdigit() else line


def _load_feature(path: Path) -> AstmCapture:
    """A Gherkin feature (levinalex/lis style): "receiving data" docstrings are frames without STX/CS."""
    messages: list[CapturedMessage] = []
    pending: list[dict[str, str]] = []
    reply: list[str] = []
    results: list[dict[str, str]] = []
    for step in _feature_steps(path.read_text(encoding="utf-8")):
        if "receiving data" in step.text:
            records = [(_strip_fn(line) + "\r").encode("utf-8") for line in step.doc]
            messages.append(CapturedMessage(b"".join(records), tuple((r, ETX) for r in records)))
        elif "requests are pending" in step.text:
            pending = step.table
        elif "sent test orders" in step.text:
            reply = [_strip_fn(line) for line in step.doc]
        elif "posted results" in step.text:
            results = step.table
    return AstmCapture(path, tuple(messages), tuple(pending), tuple(reply), tuple(results))


def load_astm_capture(path: Path) -> AstmCapture:
    """Load a capture file: a Gherkin ``.feature`` or an E1381 frame dump."""
    if path.suffix == ".feature":
        return _load_feature(path)
    events = FrameBuffer(max_frame_bytes=16 << 20).feed(path.read_bytes())
    return AstmCapture(path, _messages_from_frames([e for e in events if isinstance(e, Frame)]))


def load_astm_captures(folder: Path) -> list[AstmCapture]:
    """Every ASTM capture (``*.txt``, ``*.feature``) in ``folder``, by file name."""
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".txt", ".feature"))
    return [load_astm_capture(p) for p in paths]


def load_hl7_file(path: Path) -> list[bytes]:
    """HL7 messages from a file: MLLP blocks, or segments one per line with each message starting at MSH."""
    data = path.read_bytes()
    if bytes((0x0B,)) in data:
        return MllpBuffer().feed(data)
    segments = [s for s in data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r") if s.strip()]
    messages: list[list[bytes]] = []
    for segment in segments:
        if segment.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(segment)
    return [b"\r".join(m) + b"\r" for m in messages]


def astm_to_oru(message: AstmMessage, control_id: str) -> bytes | None:
    """An ORU^R01 carrying the results of an ASTM message (None when it has no results)."""
    patient: Patient | None = None
    requests: list[ObservationRequest] = []
    for group in message.patients:
        p = group.patient
        if p is not None and patient is None:
            ids = tuple(i for i in (p.practice_id, p.laboratory_id, p.patient_id) if i)
            family, given = ([*list(p.name), "", ""])[:2]
            patient = Patient(ids, family, given, p.birth_date, p.sex)
        for order_group in group.orders:
            specimen = order_group.order.specimen_id if order_group.order else ""
            observations = [
                Observation(
                    set_id=r.sequence,
                    value_type="NM" if r.numeric() is not None else "ST",
                    code=CodedElement(r.test.code, r.test.key, "99" + (message.header.sender_name or "LAB")),
                    sub_id=r.sequence,
                    value=r.value,
                    units=r.units,
                    reference_range=r.reference_range,
                    abnormal_flags=r.abnormal_flags,
                    status=r.status or "F",
                    observed_at=r.completed_at,
                    equipment=r.instrument,
                    notes=[c.text for c in r.comments],
                )
                for r in order_group.results
            ]
            if observations:
                requests.append(
                    ObservationRequest(
                        set_id=str(len(requests) + 1),
                        placer_order_number="",
                        filler_order_number=specimen,
                        service=CodedElement(message.header.sender_name or "PANEL"),
                        observed_at=None,
                        result_status="F",
                        specimen_id=specimen,
                        observations=observations,
                        notes=[c.text for c in order_group.comments],
                    )
                )
    if not requests:
        return None
    text = build_oru_r01(
        sending_application=message.header.sender_name or "ANALYZER",
        control_id=control_id,
        patient=patient,
        requests=requests,
        now=message.header.timestamp or datetime.now(),
    )
    return text.encode("utf-8")


def hl7_from_capture(capture: AstmCapture) -> list[bytes]:
    """The capture's result messages as ORU^R01."""
    converted = (
        astm_to_oru(parse_message(m.text), f"{capture.path.stem[:12]}-{i}")
        for i, m in enumerate(capture.messages, start=1)
    )
    return [m for m in converted if m is not None]


# --- ASTM instrument side -----------------------------------------------------------------------------


@dataclass(slots=True)
class AstmSendStats:
    messages_sent: int = 0
    messages_failed: int = 0
    enq_sent: int = 0
    acks_received: int = 0
    frames_sent: int = 0
    frames_acked: int = 0
    naks: int = 0
    replies: list[bytes] = field(default_factory=list)
    """Messages the LIS sent back (host-query answers), as CR-separated records."""
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class AstmTimers:
    reply_timeout: float = REPLY_TIMEOUT
    receive_timeout: float = RECEIVE_TIMEOUT
    busy_retry_delay: float = BUSY_RETRY_DELAY
    contention_retry_delay: float = CONTENTION_RETRY_DELAY
    query_answer_timeout: float = 30.0
    """How long to wait for the LIS to start answering a host query after our EOT."""


class _InstrumentLink:
    """The analyzer end of one connection: sends transfers and receives host-query answers."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timers: AstmTimers
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timers = timers
        self._buffer = FrameBuffer(max_frame_bytes=16 << 20)
        self._events: deque[LinkEvent] = deque()

    async def _next_event(self, timeout: float) -> LinkEvent | None:
        deadline = time.monotonic() + timeout
        while not self._events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    data = await self._reader.read(65536)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("LIS closed the connection")
            self._events.extend(self._buffer.feed(data))
        return self._events.popleft()

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def send(self, frames: Sequence[bytes]) -> Sender:
        t = self._timers
        sender = Sender(
            frames,
            yields_on_contention=False,
            busy_retry_delay=t.busy_retry_delay,
            contention_retry_delay=t.contention_retry_delay,
        )
        actions = sender.start()
        while True:
            follow_up = []
            for action in actions:
                if isinstance(action, Send):
                    await self._write(action.data)
                elif isinstance(action, RetryAfter):
                    await asyncio.sleep(action.delay)
                    self._events.clear()
                    follow_up = sender.retry()
            if sender.outcome is not None:
                return sender
            if follow_up:
                actions = follow_up
                continue
            event = await self._next_event(t.reply_timeout)
            actions = sender.on_timeout() if event is None else sender.handle(event)

    async def receive(self) -> list[bytes]:
        """Receive one transfer from the LIS (acknowledging everything), or nothing if it never bids."""
        receiver = Receiver()
        messages: list[bytes] = []
        while True:
            timeout = (
                self._timers.receive_timeout if receiver.expects_frame else self._timers.query_answer_timeout
            )
            event = await self._next_event(timeout)
            if event is None and not receiver.expects_frame:
                return messages
            actions: list[ReceiverAction] = receiver.on_timeout() if event is None else receiver.handle(event)
            while actions:
                action = actions.pop(0)
                if isinstance(action, Send):
                    await self._write(action.data)
                elif isinstance(action, MessageReceived):
                    messages.append(action.raw)
                    actions += receiver.stored()
                elif isinstance(action, TransferEnded):
                    return messages


AstmOutgoing = bytes | CapturedMessage
"""A message to send: CR-separated records (framed ≤240 bytes), or a captured message."""


async def _run_instrument(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    messages: Iterable[AstmOutgoing],
    preserve_frames: bool,
    timers: AstmTimers,
) -> AstmSendStats:
    stats = AstmSendStats()
    started = time.monotonic()
    link = _InstrumentLink(reader, writer, timers)
    try:
        for item in messages:
            captured = item if isinstance(item, CapturedMessage) else CapturedMessage(item)
            sender = await link.send(captured.wire_frames(preserve_frames=preserve_frames))
            stats.enq_sent += sender.enq_sent
            stats.acks_received += sender.acks_received
            stats.frames_sent += sender.frames_sent
            stats.frames_acked += sender.frames_acked
            stats.naks += sender.naks
            if sender.outcome is SenderOutcome.COMPLETED:
                stats.messages_sent += 1
                if captured.has_query:
                    stats.replies += await link.receive()
            else:
                stats.messages_failed += 1
    finally:
        writer.close()
        stats.elapsed = time.monotonic() - started
    return stats


async def send_astm(
    host: str,
    port: int,
    messages: Iterable[AstmOutgoing],
    *,
    preserve_frames: bool = False,
    timers: AstmTimers = AstmTimers(),
) -> AstmSendStats:
    """Connect to the LIS as an analyzer and send ``messages``, one transfer each."""
    reader, writer = await asyncio.open_connection(host, port)
    return await _run_instrument(reader, writer, messages, preserve_frames, timers)


async def serve_astm(
    host: str,
    port: int,
    messages: Iterable[AstmOutgoing],
    *,
    preserve_frames: bool = False,
    timers: AstmTimers = AstmTimers(),
    on_listening: Callable[[int], None] | None = None,
) -> AstmSendStats:
    """Listen as an analyzer, wait for the LIS to connect, send ``messages`` and stop listening.

    ``on_listening`` receives the bound port (useful with ``port=0``).
    """
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connected.done():
            writer.close()
        else:
            connected.set_result((reader, writer))

    server = await asyncio.start_server(accept, host, port)
    try:
        if on_listening is not None:
            on_listening(int(server.sockets[0].getsockname()[1]))
        reader, writer = await connected
    finally:
        server.close()
    return await _run_instrument(reader, writer, messages, preserve_frames, timers)


# --- HL7 ----------------------------------------------------------------------------------------------


async def send_mllp(
    host: str, port: int, messages: Iterable[bytes | str], *, timeout: float = 30.0
) -> list[bytes]:
    """Send each message in an MLLP block and wait for its acknowledgment; returns the replies."""
    reader, writer = await asyncio.open_connection(host, port)
    buffer = MllpBuffer()
    replies: deque[bytes] = deque()
    acks: list[bytes] = []
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            while not replies:
                async with asyncio.timeout(timeout):
                    data = await reader.read(65536)
                if not data:
                    raise ConnectionError("LIS closed the MLLP connection")
                replies.extend(buffer.feed(data))
            acks.append(replies.popleft())
    finally:
        writer.close()
    return acks


# --- synthetic results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analyte:
    code: str
    loinc: str
    units: str
    low: float
    high: float
    decimals: int


CBC_PANEL = (
    Analyte("WBC", "6690-2", "10*3/uL", 4.0, 10.0, 2),
    Analyte("RBC", "789-8", "10*6/uL", 3.8, 5.8, 2),
    Analyte("HGB", "718-7", "g/dL", 12.0, 17.0, 1),
    Analyte("HCT", "4544-3", "%", 36.0, 50.0, 1),
    Analyte("MCV", "787-2", "fL", 80.0, 100.0, 1),
    Analyte("MCH", "785-6", "pg", 27.0, 33.0, 1),
    Analyte("MCHC", "786-4", "g/dL", 32.0, 36.0, 1),
    Analyte("PLT", "777-3", "10*3/uL", 150.0, 400.0, 0),
)
CHEMISTRY_PANEL = (
    Analyte("GLU", "14749-6", "mmol/L", 3.9, 6.4, 1),
    Analyte("URE", "22664-7", "mmol/L", 2.5, 7.5, 1),
    Analyte("CRE", "14682-9", "umol/L", 62.0, 106.0, 0),
    Analyte("AST", "1920-8", "U/L", 0.0, 37.0, 0),
    Analyte("ALT", "1742-6", "U/L", 0.0, 40.0, 0),
    Analyte("CHOL", "14647-2", "mmol/L", 3.9, 5.2, 2),
)
PANELS = {"cbc": CBC_PANEL, "chemistry": CHEMISTRY_PANEL}

_PATIENTS = (
    ("Nguyễn", "Thị Hoa", "F"),
    ("Trần", "Văn Nam", "M"),
    ("Lê", "Thị Mai", "F"),
    ("Phạm", "Minh Tuấn", "M"),
    ("Hoàng", "Thị Lan", "F"),
    ("Võ", "Đức Thắng", "M"),
    ("Đặng", "Thu Hằng", "F"),
    ("Bùi", "Quốc Việt", "M"),
)


@dataclass(frozen=True, slots=True)
class SyntheticResult:
    analyte: Analyte
    value: Decimal
    flag: str


@dataclass(frozen=True, slots=True)
class SyntheticSpecimen:
    barcode: str
    patient_id: str
    family_name: str
    given_name: str
    sex: str
    birth_date: date
    results: tuple[SyntheticResult, ...]


def generate_specimens(
    barcodes: Sequence[str], count: int, panel: str = "cbc", seed: int = 0
) -> list[SyntheticSpecimen]:
    """``count`` specimens cycling through ``barcodes``, with plausible values (~15 % out of range)."""
    if not barcodes:
        raise ValueError("at least one barcode is needed")
    rng = random.Random(seed)
    specimens = []
    for i in range(count):
        family, given, sex = _PATIENTS[i % len(_PATIENTS)]
        results = []
        for analyte in PANELS[panel]:
            span = analyte.high - analyte.low
            raw = max(0.0, rng.gauss(analyte.low + span / 2, span / 3.5))
            value = Decimal(str(round(raw, analyte.decimals)))
            flag = (
                "L"
                if value < Decimal(str(analyte.low))
                else "H"
                if value > Decimal(str(analyte.high))
                else "N"
            )
            results.append(SyntheticResult(analyte, value, flag))
        specimens.append(
            SyntheticSpecimen(
                barcode=barcodes[i % len(barcodes)],
                patient_id=f"BN{100000 + i}",
                family_name=family,
                given_name=given,
                sex=sex,
                birth_date=date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
                results=tuple(results),
            )
        )
    return specimens


def specimen_to_astm(specimen: SyntheticSpecimen, now: datetime, instrument: str = "SIM-ANALYZER") -> bytes:
    """The specimen's results as an E1394 message (CR-separated records, UTF-8)."""
    d = DEFAULT_DELIMITERS
    stamp = now.strftime("%Y%m%d%H%M%S")
    tests = d.join_repeats(d.join_components(["", "", "", r.analyte.code]) for r in specimen.results)
    records = [
        f"H{d.definition}|||{d.join_components([instrument, '1.0'])}|||||LIS||P|LIS2-A2|{stamp}",
        (
            f"P|1|{specimen.patient_id}|||{d.join_components([specimen.family_name, specimen.given_name])}||"
            f"{specimen.birth_date:%Y%m%d}|{specimen.sex}"
        ),
        f"O|1|{d.join_components([specimen.barcode])}||{tests}|R||||||N||||||||||||||F",
    ]
    for n, r in enumerate(specimen.results, start=1):
        a = r.analyte
        records.append(
            f"R|{n}|^^^{a.code}|{r.value}|{a.units}|{a.low}-{a.high}|{r.flag}||F||SIM|{stamp}|{stamp}|"
            f"{instrument}"
        )
    records.append("L|1|N")
    return ("\r".join(records) + "\r").encode("utf-8")


def specimen_to_oru(specimen: SyntheticSpecimen, now: datetime, control_id: str) -> bytes:
    """The specimen's results as an ORU^R01 with LOINC-coded OBX segments."""
    observations = [
        Observation(
            set_id=str(n),
            value_type="NM",
            code=CodedElement(r.analyte.loinc, r.analyte.code, "LN"),
            sub_id="",
            value=str(r.value),
            units=r.analyte.units,
            reference_range=f"{r.analyte.low}-{r.analyte.high}",
            abnormal_flags=(r.flag,),
            status="F",
            observed_at=now,
            equipment="SIM-ANALYZER",
        )
        for n, r in enumerate(specimen.results, start=1)
    ]
    request = ObservationRequest(
        set_id="1",
        placer_order_number="",
        filler_order_number=specimen.barcode,
        service=CodedElement("PANEL"),
        observed_at=now,
        result_status="F",
        specimen_id=specimen.barcode,
        observations=observations,
    )
    patient = Patient(
        (specimen.patient_id,), specimen.family_name, specimen.given_name, specimen.birth_date, specimen.sex
    )
    return build_oru_r01(
        sending_application="SIM-ANALYZER",
        control_id=control_id,
        patient=patient,
        requests=[request],
        now=now,
    ).encode("utf-8")


# --- command line -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hospital.lab.simulator", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    astm = sub.add_parser("astm", help="replay ASTM captures with the E1381 handshake")
    astm.add_argument("--host", default="127.0.0.1")
    astm.add_argument("--port", type=int, required=True)
    astm.add_argument("--listen", action="store_true", help="listen as the analyzer; the LIS connects")
    astm.add_argument("--preserve-frames", action="store_true", help="keep captured frame boundaries")
    astm.add_argument("files", nargs="+", type=Path)
    mllp = sub.add_parser("mllp", help="send HL7 messages (or ASTM captures as ORU^R01) over MLLP")
    mllp.add_argument("--host", default="127.0.0.1")
    mllp.add_argument("--port", type=int, required=True)
    mllp.add_argument("files", nargs="+", type=Path)
    gen = sub.add_parser("generate", help="send synthetic CBC/chemistry results for barcodes")
    gen.add_argument("--protocol", choices=("astm", "mllp"), default="astm")
    gen.add_argument("--host", default="127.0.0.1")
    gen.add_argument("--port", type=int, required=True)
    gen.add_argument("--count", type=int, default=1)
    gen.add_argument("--panel", choices=sorted(PANELS), default="cbc")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("barcodes", nargs="+")
    return parser


def _is_astm_capture(path: Path) -> bool:
    return path.suffix == ".feature" or bytes((0x02,)) in path.read_bytes()[:64]


def _mllp_messages(paths: Sequence[Path]) -> list[bytes]:
    messages: list[bytes] = []
    for path in paths:
        messages += (
            hl7_from_capture(load_astm_capture(path)) if _is_astm_capture(path) else load_hl7_file(path)
        )
    return messages


def _report_acks(acks: Sequence[bytes]) -> int:
    rejected = [a for a in acks if b"MSA|AA" not in a]
    log.info("MLLP: %d messages acknowledged, %d not accepted", len(acks) - len(rejected), len(rejected))
    for ack in rejected:
        log.warning("reply: %s", ack.decode("utf-8", "replace").replace("\r", " | "))
    return 1 if rejected else 0


def _report_astm(stats: AstmSendStats) -> int:
    log.info(
        "ASTM: %d messages sent, %d failed, %d/%d frames acknowledged, %d NAKs, %d replies in %.2f s",
        stats.messages_sent,
        stats.messages_failed,
        stats.frames_acked,
        stats.frames_sent,
        stats.naks,
        len(stats.replies),
        stats.elapsed,
    )
    return 1 if stats.messages_failed else 0


async def _main(args: argparse.Namespace) -> int:
    if args.mode == "astm":
        messages = [m for path in args.files for m in load_astm_capture(path).messages]
        if args.listen:
            stats = await serve_astm(args.host, args.port, messages, preserve_frames=args.preserve_frames)
        else:
            stats = await send_astm(args.host, args.port, messages, preserve_frames=args.preserve_frames)
        return _report_astm(stats)
    if args.mode == "mllp":
        return _report_acks(await send_mllp(args.host, args.port, _mllp_messages(args.files)))
    specimens = generate_specimens(args.barcodes, args.count, args.panel, args.seed)
    now = datetime.now()
    if args.protocol == "astm":
        return _report_astm(
            await send_astm(args.host, args.port, [specimen_to_astm(s, now) for s in specimens])
        )
    oru = [specimen_to_oru(s, now, f"SIM{n:08d}") for n, s in enumerate(specimens, start=1)]
    return _report_acks(await send_mllp(args.host, args.port, oru))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return aio.run(_main(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
