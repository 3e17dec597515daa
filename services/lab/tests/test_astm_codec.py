"""E1381 framing and E1394 record layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from hospital.lab.api.astm.codec import (
    ACK,
    ENQ,
    EOT,
    ETB,
    ETX,
    NAK,
    STX,
    Control,
    Frame,
    FrameBuffer,
    assemble,
    build_frames,
    checksum,
    encode_frame,
)
from hospital.lab.api.astm.records import (
    Delimiters,
    Record,
    escape,
    is_terminator_record,
    parse_records,
    split_records,
    unescape,
)

FRAME_FILES = [
    "01_horiba_pentra_xlr_astm_frames.txt",
    "02_roche_cobas_c111_astm_frames.txt",
    "03_roche_cobas_c311_astm_message.txt",
    "04_sysmex_xn550_astm_message.txt",
    "05_horiba_yumizen_h500_astm_frames_with_histograms.txt",
    "06_cepheid_genexpert_astm_message.txt",
    "07_sysmex_xp100_astm_message.txt",
]
FRAME_COUNTS = [28, 7, 1, 1, 31, 1, 1]


def frames_of(events: list[Control | Frame]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def test_checksum_matches_the_worked_example() -> None:
    # STX "4L|1|N" CR ETX "07" CR LF: 52+76+124+49+124+78+13+3 = 519 = 0x207
    assert checksum(b"4L|1|N\r\x03") == b"07"
    assert encode_frame(4, b"L|1|N\r") == b"\x024L|1|N\r\x0307\r\n"


@pytest.mark.parametrize(("name", "count"), list(zip(FRAME_FILES, FRAME_COUNTS, strict=True)))
def test_every_captured_frame_has_a_valid_checksum(samples: Path, name: str, count: int) -> None:
    frames = frames_of(FrameBuffer().feed((samples / name).read_bytes()))
    assert len(frames) == count
    assert all(f.checksum_ok and f.fn is not None for f in frames)


@pytest.mark.parametrize("name", FRAME_FILES)
def test_byte_by_byte_feeding_yields_the_same_frames(samples: Path, name: str) -> None:
    data = (samples / name).read_bytes()
    whole = FrameBuffer().feed(data)
    buffer = FrameBuffer()
    trickled = [event for i in range(len(data)) for event in buffer.feed(data[i : i + 1])]
    assert trickled == whole
    assert not buffer.in_frame


def test_lf_without_cr_trailer_is_tolerated(samples: Path) -> None:
    data = (samples / FRAME_FILES[0]).read_bytes()
    assert b"\r\n" not in data.split(b"\x03", 1)[1][:4]  # the Pentra dump has CS + LF only
    frames = frames_of(FrameBuffer().feed(data))
    assert [f.fn for f in frames[:9]] == [1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert frames[0].text.startswith(b"H|\\^&|||ABX")


def test_oversized_horiba_frames_are_accepted(samples: Path) -> None:
    frames = frames_of(FrameBuffer().feed((samples / FRAME_FILES[4]).read_bytes()))
    largest = max(frames, key=lambda f: len(f.text))
    assert len(largest.text) > 26_000 and largest.checksum_ok
    assert largest.text.startswith(b"M|3|MATRIX|LMNE")


def test_frames_beyond_the_size_cap_are_rejected() -> None:
    big = encode_frame(1, b"R|1|" + b"x" * 5000 + b"\r")
    events = FrameBuffer(max_frame_bytes=1000).feed(big + encode_frame(2, b"L|1|N\r"))
    first, second = frames_of(events)
    assert first.oversized and not first.checksum_ok
    assert second.checksum_ok and second.text == b"L|1|N\r"


def test_several_frames_and_control_bytes_in_one_read() -> None:
    stream = (
        bytes((ENQ,))
        + encode_frame(1, b"H|\\^&\r")
        + bytes((ACK,))
        + encode_frame(2, b"L|1|N\r")
        + bytes((NAK, EOT))
    )
    events = FrameBuffer().feed(stream)
    assert [type(e).__name__ for e in events] == [
        "Control",
        "Frame",
        "Control",
        "Frame",
        "Control",
        "Control",
    ]
    assert [e.name for e in events if isinstance(e, Control)] == ["ENQ", "ACK", "NAK", "EOT"]


def test_bad_checksum_is_flagged_and_lowercase_checksum_accepted() -> None:
    good = encode_frame(1, b"P|1\r")
    bad = good[:-4] + b"00\r\n"
    lower = good[:-4] + good[-4:-2].lower() + b"\r\n"
    results = frames_of(FrameBuffer().feed(bad + lower))
    assert [f.checksum_ok for f in results] == [False, True]


def test_frame_interrupted_by_eot_is_dropped() -> None:
    events = FrameBuffer().feed(b"\x021H|\\^&|||hal" + bytes((EOT,)) + encode_frame(1, b"H|\\^&\r"))
    assert isinstance(events[0], Control) and events[0].byte == EOT
    assert frames_of(events)[0].text == b"H|\\^&\r"


def test_non_digit_frame_number_is_reported_as_none() -> None:
    body = b"XH|\\^&\r\x03"
    frame = frames_of(FrameBuffer().feed(bytes((STX,)) + body + checksum(body) + b"\r\n"))[0]
    assert frame.fn is None


def test_builder_splits_long_records_and_cycles_frame_numbers() -> None:
    long_record = ("R|1|^^^HISTO|" + "A" * 600).encode()
    short = [f"R|{i}|^^^T{i}|{i}".encode() for i in range(2, 10)]
    wire = build_frames([long_record, *short])
    frames = frames_of(FrameBuffer().feed(b"".join(wire)))
    assert all(len(f.text) <= 240 and f.checksum_ok for f in frames)
    assert [f.terminator for f in frames[:3]] == [ETB, ETB, ETX]
    assert [f.fn for f in frames] == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    assert assemble(frames) == b"\r".join([long_record, *short]) + b"\r"


def test_builder_keeps_multibyte_text_intact_across_frames() -> None:
    record = ("P|1|BN001||Nguyễn^Thị Hoa|" + "ễ" * 200).encode("utf-8")
    frames = frames_of(FrameBuffer().feed(b"".join(build_frames([record]))))
    assert len(frames) > 1
    assert assemble(frames).decode("utf-8") == record.decode("utf-8") + "\r"


def test_etx_frame_without_record_cr_still_separates_records() -> None:
    frames = frames_of(FrameBuffer().feed(encode_frame(1, b"H|\\^&") + encode_frame(2, b"L|1|N")))
    assert split_records(assemble(frames).decode()) == ["H|\\^&", "L|1|N"]
    assert is_terminator_record(assemble(frames))


def test_delimiters_are_read_from_the_header() -> None:
    assert Delimiters.from_header("H|\\^&|||ABX") == Delimiters("|", "\\", "^", "&")
    assert Delimiters.from_header("H|@^\\|URM-8lT4abZA-06") == Delimiters("|", "@", "^", "\\")
    assert Delimiters.from_header("H|\\^||PASSWORD|DPC") == Delimiters("|", "\\", "^", None)


def test_escape_sequences_are_resolved_after_splitting() -> None:
    d = Delimiters()
    record = Record.parse("R|1|^^^X|a&F&b&S&c&R&d&E&e^second", d)
    assert record.components(4) == ["a|b^c\\d&e", "second"]
    assert unescape(escape("a|b^c\\d&e", d), d) == "a|b^c\\d&e"
    genexpert = Delimiters("|", "@", "^", "\\")
    assert unescape("x\\R\\y\\S\\z", genexpert) == "x@y^z"


def test_records_use_the_declared_delimiters() -> None:
    records = parse_records("H|@^\\|||Xpert\rR|1|^A^^B@^C|v1@v2\rL|1|N\r")
    assert [r.type for r in records] == ["H", "R", "L"]
    assert records[1].repeats(3) == [["", "A", "", "B"], ["", "C"]]
    assert records[1].repeats(4) == [["v1"], ["v2"]]
    assert records[1].component(3, 4) == "B" and records[1].component(3, 9) == ""
