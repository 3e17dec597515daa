"""STOW-RS limits through HTTP: a body over the size limit (declared, or streamed without a length) and a
request with too many parts get 413 with the reason and store nothing; a large body streams to disk instead
of memory; /healthz keeps answering while a request with 50,000 parts is refused."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from hospital.testing.services import http_client

sys.path.insert(0, str(Path(__file__).parent))

MiB = 1 << 20


def _ctype(boundary: str) -> str:
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


async def _stream(boundary: str, part_bytes: int, chunk: bytes) -> AsyncIterator[bytes]:
    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    sent = 0
    while sent < part_bytes:
        piece = chunk[: part_bytes - sent]
        sent += len(piece)
        yield piece
    yield f"\r\n--{boundary}--\r\n".encode()


def _spool_files(svc) -> list[Path]:
    return [p for p in svc.settings.spool_path.rglob("*") if p.is_file()]


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_body_and_part_limits_answer_413_with_the_reason(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=1, size=16)
    async with (
        imaging_factory(stow_max_body_bytes=4 * MiB, stow_max_parts=3) as svc,
        http_client(svc, "radiographer") as c,
    ):
        boundary = uuid.uuid4().hex
        # A declared length over the limit: refused before the body is read.
        big = b"".join([piece async for piece in _stream(boundary, 5 * MiB, b"\0" * MiB)])
        r = await c.post("/dicomweb/studies", content=big, headers={"Content-Type": _ctype(boundary)})
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "stow.too_large" and "4194304 bytes" in r.json()["detail"]
        # The same without a length (chunked): refused once the limit is crossed.
        r = await c.post(
            "/dicomweb/studies",
            content=_stream(boundary, 5 * MiB, b"\0" * MiB),
            headers={"Content-Type": _ctype(boundary)},
        )
        assert r.status_code == 413, r.text
        assert "over 4194304 bytes" in r.json()["detail"]
        # Four parts when three are allowed: nothing stored, not even the valid first part.
        part = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + files[0].read_bytes()
        body = (part + b"\r\n") * 4 + f"--{boundary}--\r\n".encode()
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": _ctype(boundary)})
        assert r.status_code == 413, r.text
        assert "more than 3 parts" in r.json()["detail"]
        assert not [p for p in _spool_files(svc) if p.suffix == ".dcm"]
        # Within the limits the same instance is stored.
        body = part + b"\r\n" + f"--{boundary}--\r\n".encode()
        r = await c.post("/dicomweb/studies", content=body, headers={"Content-Type": _ctype(boundary)})
        assert r.status_code == 200, r.text


async def test_a_large_body_streams_to_disk_and_healthz_stays_responsive(imaging) -> None:
    boundary = uuid.uuid4().hex
    size = 256 * MiB
    async with http_client(imaging, "radiographer") as c:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS of this process (the service's)
        before = _peak_rss()
        r = await c.post(
            "/dicomweb/studies",
            content=_stream(boundary, size, b"\x01" * MiB),
            headers={"Content-Type": _ctype(boundary)},
            timeout=120,
        )
        grown = _peak_rss() - before
        assert r.status_code == 409, r.text  # parsed to the end: one part, not DICOM
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
        assert grown < 64 * MiB, f"peak memory grew by {grown // MiB} MiB for a {size // MiB} MiB body"
        assert not _spool_files(imaging)  # the temporary file is gone

        # 50,000 empty parts: refused at the limit (10,000) while /healthz keeps answering promptly.
        empty = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n\r\n".encode()
        body = empty * 50_000 + f"--{boundary}--\r\n".encode()
        stow = asyncio.create_task(
            c.post("/dicomweb/studies", content=body, headers={"Content-Type": _ctype(boundary)})
        )
        slowest = 0.0
        while not stow.done():
            started = time.perf_counter()
            h = await c.get("/healthz")
            assert h.status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
        r = await stow
        assert r.status_code == 413 and "more than 10000 parts" in r.json()["detail"], r.text
        # (the parse costs ~30 ms per 64 KiB chunk here; the bound leaves room for a loaded shared host)
        assert slowest < 1.5, f"/healthz took {slowest:.2f} s during the request"
