"""STOW-RS ingest: Part 10 files from an HTTP client -> the same checks and durable spool as C-STORE.

The request body is parsed as it streams in (:class:`StowBody`): each part is appended to one unlinked
temporary file next to the spool, so memory stays flat whatever the body's size; the body size and the
number of parts are capped (:class:`StowTooLarge`, answered 413 with the reason) before anything is
stored. Once the body is complete, each part is checked and spooled from a memory map of that file.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.domain.header import HeaderError, read_index_attributes
from hospital.imaging.domain.instance_checks import check_received_instance, is_valid_uid
from hospital.imaging.domain.part10 import Part10View, build_file_header
from hospital.imaging.domain.pixel_checks import check_pixel_data

SOURCE = "DICOMWEB"
#: The file meta information is read from at most this many leading bytes of a part (it is small).
_META_WINDOW = 1 << 16


@dataclass
class StowResult:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    failure: int | None  # DICOM failure reason (PS3.18 Table 10.5.3-1 / PS3.4), None when stored
    reason: str = ""
    patient_id: str = ""
    series_instance_uid: str = ""


class StowTooLarge(Exception):
    """The request exceeds a STOW-RS limit (body size or part count); nothing was stored."""


class StowMalformed(Exception):
    """The multipart body cannot be parsed; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Part:
    content_type: str
    offset: int
    length: int


class StowBody:
    """The parts of one multipart/related body (RFC 2046 5.1), gathered into an unlinked temporary file as
    chunks arrive. Delimiters are found with ``bytes.find``, so a body of many small parts costs little
    on the event loop; a part's bytes are written out as they come (only a delimiter's length is held)."""

    _MAX_HEADERS = 16 * 1024

    def __init__(self, boundary: bytes, directory: Path, *, max_bytes: int, max_parts: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close(), after the parts are stored
        self.max_bytes, self.max_parts = max_bytes, max_parts
        self.parts: list[Part] = []
        self.received = 0
        self._dash_boundary = b"--" + boundary
        self._marker = b"\r\n--" + boundary  # ends a part's data
        self._buf = bytearray()
        self._state = "preamble"  # preamble -> (headers -> data -> delimiter)* -> end
        self._written = 0
        self._start = 0
        self._ctype = ""

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise StowTooLarge(f"request body over {self.max_bytes} bytes (split it)")
        self._buf += chunk
        self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while True:
            if self._state == "preamble":
                at = buf.find(self._dash_boundary)
                if at < 0 or (at > 0 and buf[at - 2 : at] != b"\r\n"):
                    if len(buf) > self._MAX_HEADERS:
                        raise StowMalformed("malformed multipart body: no opening boundary")
                    return
                del buf[:at]
                self._state = "delimiter"
            elif self._state == "delimiter":  # buf starts with --boundary
                rest = len(self._dash_boundary)
                line_end = buf.find(b"\r\n", rest)
                if buf[rest : rest + 2] == b"--":
                    self._state = "end"
                    buf.clear()
                    return
                if line_end < 0:
                    if len(buf) > rest + 256:
                        raise StowMalformed("malformed multipart body: bad boundary line")
                    return
                if buf[rest:line_end].strip(b" \t"):
                    raise StowMalformed("malformed multipart body: bad boundary line")
                del buf[: line_end + 2]
                if len(self.parts) >= self.max_parts:
                    raise StowTooLarge(f"more than {self.max_parts} parts in one request (split it)")
                self._state = "headers"
            elif self._state == "headers":
                at = buf.find(b"\r\n\r\n")
                if buf.startswith(b"\r\n"):
                    at, skip = 0, 2  # a part with no header fields
                else:
                    skip = 4
                if at < 0:
                    if len(buf) > self._MAX_HEADERS:
                        raise StowMalformed("malformed multipart body: part headers too long")
                    return
                self._ctype = "application/dicom"
                for line in bytes(buf[:at]).decode("latin-1").split("\r\n"):
                    name, sep, value = line.partition(":")
                    if sep and name.strip().lower() == "content-type":
                        self._ctype = value.split(";")[0].strip().lower()
                del buf[: at + skip]
                self._start = self._written
                self._state = "data"
            elif self._state == "data":
                at = buf.find(self._marker)
                if at < 0:
                    keep = len(self._marker) - 1
                    if len(buf) > keep:
                        self._write(buf[: len(buf) - keep])
                        del buf[: len(buf) - keep]
                    return
                self._write(buf[:at])
                del buf[: at + 2]
                self.parts.append(Part(self._ctype, self._start, self._written - self._start))
                self._state = "delimiter"
            else:  # end: an epilogue is ignored
                buf.clear()
                return

    def _write(self, data: bytearray | memoryview) -> None:
        if data:
            self.file.write(data)
            self._written += len(data)

    def finish(self) -> list[Part]:
        if self._state != "end":
            raise StowMalformed("the multipart body has no closing boundary (truncated request?)")
        self.file.flush()
        return self.parts

    def views(self) -> Iterator[tuple[Part, memoryview]]:
        """Each part's bytes, from a read-only memory map of the file (released before the next one)."""
        if self._written == 0:
            for part in self.parts:
                yield part, memoryview(b"")
            return
        with mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as whole:
            for part in self.parts:
                with whole[part.offset : part.offset + part.length] as view:
                    yield part, view

    def close(self) -> None:
        self.file.close()


def stow_parts(spool: Spool, body: StowBody, expected_study: str | None) -> list[StowResult]:
    """Check and spool every part of a complete body (blocking: run it in a thread)."""
    results = []
    for part, view in body.views():
        if part.content_type != "application/dicom":
            results.append(StowResult("", "", "", 0xC000, f"unsupported part type {part.content_type}"))
            continue
        results.append(stow_one(spool, view, expected_study, (body.file.fileno(), part.offset)))
    return results


def _meta(data: memoryview) -> tuple[dict[str, str], int]:
    """(file meta attributes, offset of the data set) from the start of a Part 10 file; only the meta
    information's own bytes are read (its group length says how many), never the whole file."""
    if len(data) < 132 or bytes(data[128:132]) != b"DICM":
        raise InvalidDicomError("no DICM prefix after the 128-byte preamble")
    window = _META_WINDOW
    if len(data) >= 144 and bytes(data[132:138]) == b"\x02\x00\x00\x00UL":
        window = 144 + int.from_bytes(data[140:144], "little")
    fp = BytesIO(bytes(data[: min(window, len(data))]))
    pydicom.filereader.read_preamble(fp, False)
    meta = pydicom.filereader._read_file_meta_info(fp)
    keys = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    return {k: str(meta.get(k, "") or "") for k in keys}, fp.tell()


def stow_one(
    spool: Spool,
    data: bytes | memoryview,
    expected_study: str | None = None,
    source: tuple[int, int] | None = None,
) -> StowResult:
    """Validate and spool one Part 10 file. Nothing is written unless every check passed.

    `source` = (file descriptor, offset of `data` in it) when `data` maps a file: the data set is then
    copied file to file by the kernel, so a large instance's pixels never pass through this process."""
    with memoryview(data) as whole:
        try:
            meta, offset = _meta(whole)
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
            return StowResult("", "", "", 0xC000, f"not a DICOM Part 10 file: {exc}")
        sop_class = meta["MediaStorageSOPClassUID"]
        sop_uid = meta["MediaStorageSOPInstanceUID"]
        syntax = meta["TransferSyntaxUID"]
        if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid) and is_valid_uid(syntax)):
            return StowResult(sop_class, sop_uid, "", 0xC000, "file meta information lacks valid UIDs")
        header = build_file_header(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_uid,
            transfer_syntax_uid=syntax,
            source_ae_title=SOURCE,
        )
        with whole[offset:] as dataset:
            try:
                with Part10View(header, dataset) as part10:
                    index = read_index_attributes(part10)
            except HeaderError as exc:
                return StowResult(sop_class, sop_uid, "", 0xC000, str(exc))
            study = index.study_instance_uid or ""
            rejection = check_received_instance(
                index, affected_sop_class_uid=sop_class, affected_sop_instance_uid=sop_uid
            )
            if rejection is not None:
                return StowResult(sop_class, sop_uid, study, 0xA900, rejection.reason)
            if expected_study and index.study_instance_uid != expected_study:
                return StowResult(
                    sop_class, sop_uid, study, 0xA900, "StudyInstanceUID differs from the one in the URL"
                )
            broken = check_pixel_data(syntax, dataset)
            if broken is not None:
                return StowResult(sop_class, sop_uid, study, 0xC000, broken)
            with spool.stage() as staged:
                staged.write(header)
                if source is None:
                    staged.write(dataset)
                else:
                    staged.copy_from(source[0], source[1] + offset, len(dataset))
                staged.commit(sop_uid)
        return StowResult(
            sop_class,
            sop_uid,
            study,
            None,
            patient_id=index.patient_id or "",
            series_instance_uid=index.series_instance_uid or "",
        )
