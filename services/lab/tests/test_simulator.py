"""The analyzer simulator: capture loaders, synthetic results and the command line against real servers."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from hospital.lab.api.astm import AstmServer, parse_message
from hospital.lab.api.astm.codec import Frame, FrameBuffer
from hospital.lab.api.hl7.messages import ResultMessage, parse_hl7
from hospital.lab.api.hl7.mllp import MllpEndpoint, MllpServer, frame
from hospital.lab.simulator import (
    astm_to_oru,
    generate_specimens,
    hl7_from_capture,
    load_astm_capture,
    load_astm_captures,
    load_hl7_file,
    specimen_to_astm,
    specimen_to_oru,
)

if TYPE_CHECKING:
    from conftest import Hl7Samples, RecordingHandler


def test_every_capture_loads(samples: Path) -> None:
    captures = load_astm_captures(samples)
    assert [c.path.name[:2] for c in captures] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    assert [len(c.messages) for c in captures] == [1, 1, 1, 1, 1, 1, 1, 2]
    assert [len(c.messages[0].frames) for c in captures] == [28, 7, 1, 1, 31, 1, 1, 3]
    assert all(m.text.endswith(b"L|1|N\r") or m.text.endswith(b"L|1\r") for c in captures for m in c.messages)
    feature = captures[-1]
    assert feature.messages[0].has_query and not feature.messages[1].has_query
    assert len(feature.expected_results) == 9 and len(feature.expected_reply) == 9


def test_preserved_frames_are_renumbered_with_valid_checksums(samples: Path) -> None:
    message = load_astm_capture(samples / "05_horiba_yumizen_h500_astm_frames_with_histograms.txt").messages[
        0
    ]
    original = FrameBuffer().feed(
        (samples / "05_horiba_yumizen_h500_astm_frames_with_histograms.txt").read_bytes()
    )
    assert [f.fn for f in original if isinstance(f, Frame)][:8] == [1, 2, 3, 4, 5, 1, 1, 1]  # as captured
    frames = [
        f
        for f in FrameBuffer().feed(b"".join(message.wire_frames(preserve_frames=True)))
        if isinstance(f, Frame)
    ]
    assert [f.fn for f in frames] == [n % 8 for n in range(1, 32)]
    assert all(f.checksum_ok for f in frames)
    assert [f.text for f in frames] == [text for text, _ in message.frames]
    reframed = [f for f in FrameBuffer().feed(b"".join(message.wire_frames())) if isinstance(f, Frame)]
    assert max(len(f.text) for f in reframed) <= 240 and len(reframed) > 31


def test_hl7_files_with_line_feeds_or_mllp_blocks(tmp_path: Path, hl7_samples: Hl7Samples) -> None:
    lines = tmp_path / "two.hl7"
    lines.write_text((hl7_samples.oru_r01 + hl7_samples.oul_r22).replace("\r", "\n"), encoding="utf-8")
    framed = tmp_path / "framed.hl7"
    framed.write_bytes(frame(hl7_samples.oml_o21) + frame(hl7_samples.qbp_q11))
    assert load_hl7_file(lines) == [hl7_samples.oru_r01.encode(), hl7_samples.oul_r22.encode()]
    assert load_hl7_file(framed) == [hl7_samples.oml_o21.encode(), hl7_samples.qbp_q11.encode()]


def test_every_capture_converts_to_an_equivalent_oru(samples: Path) -> None:
    for capture in load_astm_captures(samples):
        for message in capture.messages:
            astm = parse_message(message.text)
            oru = astm_to_oru(astm, "X1")
            if not list(astm.results()):
                assert oru is None
                continue
            assert oru is not None
            parsed = parse_hl7(oru)
            assert isinstance(parsed, ResultMessage)
            observations = [
                (r.specimen_id, o.code.identifier, o.value, o.units, o.abnormal_flags)
                for r in parsed.requests
                for o in r.observations
            ]
            expected = [
                (g.order.specimen_id if g.order else "", r.test.code, r.value, r.units, r.abnormal_flags)
                for _, g, r in astm.results()
            ]
            assert observations == expected, capture.path.name


def test_generated_results_are_deterministic_and_flagged() -> None:
    specimens = generate_specimens(["24070500001", "24070500002"], 4, "chemistry", seed=7)
    assert specimens == generate_specimens(["24070500001", "24070500002"], 4, "chemistry", seed=7)
    assert [s.barcode for s in specimens] == ["24070500001", "24070500002"] * 2
    assert specimens[0].family_name == "Nguyễn" and specimens[0].given_name == "Thị Hoa"
    now = datetime(2024, 7, 5, 9, 30)
    message = parse_message(specimen_to_astm(specimens[0], now))
    results = [r for _, _, r in message.results()]
    assert [r.test.code for r in results] == ["GLU", "URE", "CRE", "AST", "ALT", "CHOL"]
    for result, synthetic in zip(results, specimens[0].results, strict=True):
        assert result.numeric() == synthetic.value and result.abnormal_flags == (synthetic.flag,)
        low, high = (Decimal(x) for x in result.reference_range.split("-"))
        assert synthetic.flag == ("L" if synthetic.value < low else "H" if synthetic.value > high else "N")
    assert message.patients[0].patient is not None and message.patients[0].patient.name == (
        "Nguyễn",
        "Thị Hoa",
    )
    oru = parse_hl7(specimen_to_oru(specimens[1], now, "SIM1"))
    assert isinstance(oru, ResultMessage) and oru.requests[0].specimen_id == "24070500002"
    assert [o.code.identifier for o in oru.requests[0].observations][:2] == ["14749-6", "22664-7"]


async def run_cli(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hospital.lab.simulator",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        return await process.wait()


async def test_cli_replays_every_capture_over_astm(
    astm_server: AstmServer, handler: RecordingHandler, samples: Path
) -> None:
    files = [str(p) for p in sorted(samples.iterdir()) if p.suffix in (".txt", ".feature")]
    assert await run_cli("astm", "--port", str(astm_server.port), "--preserve-frames", *files) == 0
    assert len(handler.stored) == 9
    assert [raw for raw, _, _ in handler.stored] == [
        m.text for c in load_astm_captures(samples) for m in c.messages
    ]


async def test_cli_sends_hl7_files_and_captures_over_mllp(
    handler: RecordingHandler, samples: Path, tmp_path: Path, hl7_samples: Hl7Samples
) -> None:
    hl7_file = tmp_path / "mindray.hl7"
    hl7_file.write_text(hl7_samples.oru_r01 + hl7_samples.oul_r22, encoding="utf-8")
    captures = [str(p) for p in sorted(samples.iterdir()) if p.suffix in (".txt", ".feature")]
    async with MllpServer(MllpEndpoint("mllp", "127.0.0.1", 0), handler) as server:
        assert await run_cli("mllp", "--port", str(server.port), str(hl7_file), *captures) == 0
    stored = handler.messages
    assert len(stored) == 2 + 8  # two HL7 messages, then every capture's result message as ORU^R01
    expected = [parse_hl7(m) for c in load_astm_captures(samples) for m in hl7_from_capture(c)]

    def summary(message: object) -> tuple[str, list[tuple[str, str, str]]]:
        assert isinstance(message, ResultMessage)
        return message.header.control_id, [
            (r.specimen_id, o.code.identifier, o.value) for r in message.requests for o in r.observations
        ]

    assert [summary(m) for m in stored[2:]] == [summary(m) for m in expected]
    assert summary(stored[2])[1][0] == ("S1234", "WBC", "8.5")


async def test_cli_generates_results_over_both_protocols(
    astm_server: AstmServer, handler: RecordingHandler
) -> None:
    barcodes = ["24070500101", "24070500102", "24070500103"]
    assert await run_cli("generate", "--port", str(astm_server.port), "--count", "5", *barcodes) == 0
    async with MllpServer(MllpEndpoint("mllp", "127.0.0.1", 0), handler) as server:
        assert (
            await run_cli(
                "generate",
                "--protocol",
                "mllp",
                "--panel",
                "chemistry",
                "--port",
                str(server.port),
                "--count",
                "2",
                *barcodes,
            )
            == 0
        )
    specimens = [
        o.order.specimen_id
        for m in handler.messages[:5]
        for p in m.patients  # type: ignore[attr-defined]
        for o in p.orders
        if o.order
    ]
    assert specimens == barcodes + barcodes[:2]
    assert all(isinstance(m, ResultMessage) for m in handler.messages[5:]) and len(handler.messages) == 7


async def test_cli_reports_rejected_messages(handler: RecordingHandler, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hl7"
    bad.write_text(
        "MSH|^~\\&|X|Y|||20240705||ADT^A08|A8|P|2.5.1\nPID|1||BN7||Võ^Đức Thắng\n", encoding="utf-8"
    )
    async with MllpServer(MllpEndpoint("mllp", "127.0.0.1", 0), handler) as server:
        assert await run_cli("mllp", "--port", str(server.port), str(bad)) == 1
