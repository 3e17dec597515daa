"""DICOM Part 10 file framing without decoding the data set.

A Part 10 file is a 128-byte preamble, the magic ``DICM``, the File Meta
Information (group 0002, always Explicit VR Little Endian, starting with its
own group length (0002,0000)) and then the data set, encoded in the transfer
syntax named by (0002,0010).

The PACS gateway writes the meta header by hand and appends the data set bytes
exactly as they arrived on the network, so the stored file is byte-for-byte
what the modality sent. Only group 0002 is ever parsed here; the data set
itself is treated as opaque bytes.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path
from typing import BinaryIO, Self

PREAMBLE = b"\x00" * 128
MAGIC = b"DICM"

#: Our Implementation Class UID, from the UUID-derived ``2.25`` arc (PS3.5 B.2),
#: which needs no registered organisation root.
IMPLEMENTATION_CLASS_UID = "2.25.280393985374586633705897502439286666062"
#: (0002,0013) is SH: at most 16 characters.
IMPLEMENTATION_VERSION_NAME = "HOSPITAL_PACS_01"

_FILE_META_VERSION = b"\x00\x01"
# Explicit VR Little Endian: these VRs carry 2 reserved bytes and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_GROUP_LENGTH_HEADER = struct.Struct("<HH2sHI")  # (0002,0000) UL, length 4, value
_CHUNK = 1 << 20


class Part10Error(ValueError):
    """The bytes are not a Part 10 file this module can frame."""


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """Encode one group-0002 element in Explicit VR Little Endian."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    """UI values are padded to even length with a trailing NUL."""
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    """SH/AE values are padded to even length with a trailing space."""
    raw = value.encode("ascii", errors="replace")
    return raw + b" " if len(raw) % 2 else raw


def build_file_header(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_ae_title: str,
) -> bytes:
    """Return preamble + ``DICM`` + File Meta Information for one instance.

    The data set bytes, encoded in `transfer_syntax_uid`, must follow directly.
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", _FILE_META_VERSION),
            _element(0x0002, b"UI", _uid(sop_class_uid)),
            _element(0x0003, b"UI", _uid(sop_instance_uid)),
            _element(0x0010, b"UI", _uid(transfer_syntax_uid)),
            _element(0x0012, b"UI", _uid(IMPLEMENTATION_CLASS_UID)),
            _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
            _element(0x0016, b"AE", _text(source_ae_title.strip())),
        )
    )
    group_length = _GROUP_LENGTH_HEADER.pack(0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + MAGIC + group_length + body


class Part10View:
    """Read-only, seekable file object over ``file_header + dataset`` without copying them.

    Lets pydicom parse a received instance straight from the network buffer.
    Use it as a context manager: on exit it drops its reference to `dataset`,
    so the owner of that buffer may resize or close it.
    """

    def __init__(self, file_header: bytes, dataset: bytes | memoryview) -> None:
        self._header = file_header
        self._dataset: bytes | memoryview = dataset
        self._size = len(file_header) + len(dataset)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        start = self._pos
        end = self._size if size < 0 else min(self._size, start + size)
        if start >= end:
            return b""
        self._pos = end
        split = len(self._header)
        if end <= split:
            return self._header[start:end]
        if start >= split:
            return bytes(self._dataset[start - split : end - split])
        return self._header[start:] + bytes(self._dataset[: end - split])

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def parts(self) -> tuple[bytes, bytes | memoryview]:
        """``(file header, data set)`` without copying: lets a reader skip the file-object interface."""
        return self._header, self._dataset

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._dataset = b""
        self._size = len(self._header)


def read_framing(fp: BinaryIO) -> tuple[str, int]:
    """Return ``(transfer_syntax_uid, dataset_offset)`` of a Part 10 file.

    Relies on (0002,0000) File Meta Information Group Length, which every file
    this gateway writes carries. `fp` is left positioned at the data set.
    """
    fp.seek(0)
    head = fp.read(len(PREAMBLE) + len(MAGIC) + _GROUP_LENGTH_HEADER.size)
    if len(head) < len(PREAMBLE) + len(MAGIC) + _GROUP_LENGTH_HEADER.size or head[128:132] != MAGIC:
        raise Part10Error("not a DICOM Part 10 file")
    group, element, vr, _, group_length = _GROUP_LENGTH_HEADER.unpack_from(head, 132)
    if (group, element, vr) != (0x0002, 0x0000, b"UL"):
        raise Part10Error("file meta information has no group length")
    meta = fp.read(group_length)
    if len(meta) != group_length:
        raise Part10Error("truncated file meta information")
    transfer_syntax = _find_transfer_syntax(meta)
    return transfer_syntax, fp.tell()


def read_meta(data: bytes | memoryview) -> tuple[str, int, dict[tuple[int, int], bytes]]:
    """``(transfer_syntax_uid, dataset_offset, {tag: raw value})`` of a Part 10 file held in memory."""
    head = len(PREAMBLE) + len(MAGIC) + _GROUP_LENGTH_HEADER.size
    if len(data) < head or bytes(data[128:132]) != MAGIC:
        raise Part10Error("not a DICOM Part 10 file")
    group, element, vr, _, group_length = _GROUP_LENGTH_HEADER.unpack_from(data, 132)
    if (group, element, vr) != (0x0002, 0x0000, b"UL"):
        raise Part10Error("file meta information has no group length")
    meta = bytes(data[head : head + group_length])
    if len(meta) != group_length:
        raise Part10Error("truncated file meta information")
    values: dict[tuple[int, int], bytes] = {}
    offset = 0
    while offset + 8 <= len(meta):
        group, element, vr = struct.unpack_from("<HH2s", meta, offset)
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", meta, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", meta, offset + 6)
            start = offset + 8
        values[(group, element)] = meta[start : start + length]
        offset = start + length
    syntax = values.get((0x0002, 0x0010))
    if syntax is None:
        raise Part10Error("file meta information has no transfer syntax")
    return syntax.rstrip(b"\x00 ").decode("ascii"), head + group_length, values


def _find_transfer_syntax(meta: bytes) -> str:
    offset = 0
    while offset + 8 <= len(meta):
        group, element, vr = struct.unpack_from("<HH2s", meta, offset)
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", meta, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", meta, offset + 6)
            start = offset + 8
        if (group, element) == (0x0002, 0x0010):
            return meta[start : start + length].rstrip(b"\x00 ").decode("ascii")
        offset = start + length
    raise Part10Error("file meta information has no transfer syntax")


def same_dataset(a: Path, b: Path) -> bool:
    """True when two Part 10 files hold the same transfer syntax and data set bytes.

    The file meta may legitimately differ (e.g. another Source AE Title), so it
    is not compared.
    """
    with a.open("rb") as fa, b.open("rb") as fb:
        syntax_a, offset_a = read_framing(fa)
        syntax_b, offset_b = read_framing(fb)
        if syntax_a != syntax_b:
            return False
        if a.stat().st_size - offset_a != b.stat().st_size - offset_b:
            return False
        while chunk := fa.read(_CHUNK):
            if chunk != fb.read(len(chunk)):
                return False
        return True


def same_dataset_bytes(a: bytes | memoryview, b: bytes | memoryview) -> bool:
    """:func:`same_dataset` for two Part 10 files held in memory."""
    syntax_a, offset_a, _ = read_meta(a)
    syntax_b, offset_b, _ = read_meta(b)
    if syntax_a != syntax_b or len(a) - offset_a != len(b) - offset_b:
        return False
    with memoryview(a) as va, memoryview(b) as vb:
        return va[offset_a:] == vb[offset_b:]


def dataset_digest(path: Path) -> str:
    """SHA-256 (hex) over the transfer syntax UID and the data set bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        syntax, _ = read_framing(fp)
        digest.update(syntax.encode("ascii") + b"\x00")
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
