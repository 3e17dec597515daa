"""Is the Pixel Data of a received data set whole? Checked before an instance is acknowledged.

A modality deletes its copy once it is told "stored", so an image cut short on the way (a truncated file, a
broken transfer) must be refused then, not found out when someone opens it. Without decoding anything:

* native (uncompressed) transfer syntaxes: the Pixel Data value must hold at least
  Rows × Columns × Number of Frames × Samples per Pixel × Bits Allocated bits (PS3.5 8.1.1, rounded up to
  whole bytes; YBR_FULL_422 and the like keep fewer samples), and must not run past the end of the data set;
* encapsulated (compressed) ones: Pixel Data has undefined length and is a sequence of items (PS3.5 A.4):
  the Basic Offset Table item, then at least one fragment per frame, each item inside the data set,
  closed by a Sequence Delimitation Item.

The walk reads only element headers up to Pixel Data (the values of five attributes of the Image Pixel
module) and, for encapsulated data, each item's 8-byte header: a few microseconds per image. It returns
``None`` (no opinion) for what it does not parse exactly: big endian and deflated syntaxes, elements out of
order, lengths it cannot follow. Then the instance is stored as before.
"""

from __future__ import annotations

import struct

from pydicom.uid import UID

_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_IMPLICIT = struct.Struct("<HHI")
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_SAMPLES, _PHOTOMETRIC, _FRAMES = 0x00280002, 0x00280004, 0x00280008
_ROWS, _COLUMNS, _BITS = 0x00280010, 0x00280011, 0x00280100
_WANTED = frozenset({_SAMPLES, _PHOTOMETRIC, _FRAMES, _ROWS, _COLUMNS, _BITS})
#: Samples per pixel, in halves, of subsampled native colour (PS3.3 C.7.6.3.1.2): 4:2:2 keeps two samples
#: per pixel (Y Y Cb Cr for two pixels), 4:2:0 one and a half.
_SUBSAMPLED_HALVES = {b"YBR_FULL_422": 4, b"YBR_PARTIAL_422": 4, b"YBR_PARTIAL_420": 3}


class _Decline(Exception):
    pass


def check_pixel_data(transfer_syntax_uid: str, dataset: bytes | bytearray | memoryview) -> str | None:
    """Why the data set's Pixel Data is broken (a short reason), or None if it is whole or not checked."""
    try:
        uid = UID(transfer_syntax_uid)
        if not uid.is_transfer_syntax or not uid.is_little_endian or uid.is_deflated:
            return None
        with memoryview(dataset) as view:
            data = view.cast("B") if view.format != "B" else view
            try:
                return _check(data, explicit=not uid.is_implicit_VR, encapsulated=uid.is_encapsulated)
            finally:
                if data is not view:
                    data.release()
    except (_Decline, struct.error, ValueError):
        return None


def _check(data: memoryview, *, explicit: bool, encapsulated: bool) -> str | None:
    values: dict[int, bytes] = {}
    end, offset, previous = len(data), 0, -1
    while True:
        if offset >= end:
            return None  # no Pixel Data (SR, presentation state, ...): nothing to check
        if offset + 8 > end:
            raise _Decline("element header past the end")
        group, element = _TAG.unpack_from(data, offset)
        tag = group << 16 | element
        if tag <= previous:
            raise _Decline("elements out of order")
        previous = tag
        vr, length, offset = _header(data, offset, explicit, end)
        if tag == _PIXEL_DATA:
            break
        if length == _UNDEFINED:
            offset = _skip_sequence(data, offset, explicit and vr != b"UN", end)
            continue
        if offset + length > end:
            raise _Decline("value past the end")
        if tag in _WANTED:
            values[tag] = bytes(data[offset : offset + length])
        offset += length
    if encapsulated:
        return _check_fragments(data, offset, length, end, _frames(values))
    if length == _UNDEFINED:
        return "Pixel Data has undefined length in a native transfer syntax"
    rows, columns = _us(values, _ROWS), _us(values, _COLUMNS)
    samples, bits = _us(values, _SAMPLES) or 1, _us(values, _BITS)
    if not rows or not columns or not bits:
        return "Pixel Data without Rows, Columns or Bits Allocated"
    frames = _frames(values)
    photometric = values.get(_PHOTOMETRIC, b"").strip(b" \x00")
    halves = _SUBSAMPLED_HALVES.get(photometric, samples * 2)
    expected_bits = rows * columns * frames * bits * halves // 2
    expected = (expected_bits + 7) // 8
    if offset + length > end:
        return f"Pixel Data cut short: {end - offset} of {length} bytes in the data set"
    if length < expected:
        return (
            f"Pixel Data {length} bytes, expected {expected} ({rows}x{columns}x{frames}fr x{samples}x{bits}b)"
        )
    return None


def _check_fragments(data: memoryview, offset: int, length: int, end: int, frames: int) -> str | None:
    if length != _UNDEFINED:
        return "encapsulated Pixel Data must have undefined length"
    items = 0
    while True:
        if offset + 8 > end:
            return f"encapsulated Pixel Data cut short after {max(items - 1, 0)} fragment(s)"
        group, element, item_length = _IMPLICIT.unpack_from(data, offset)
        tag = group << 16 | element
        offset += 8
        if tag == _SEQUENCE_END:
            break
        if tag != _ITEM or item_length == _UNDEFINED:
            return f"encapsulated Pixel Data: item {items} is not a fragment ({tag:08X})"
        if offset + item_length > end:
            return f"encapsulated Pixel Data cut short in fragment {items}"
        offset += item_length
        items += 1
    fragments = items - 1  # the first item is the Basic Offset Table
    if fragments < max(frames, 1):
        return f"encapsulated Pixel Data has {max(fragments, 0)} fragment(s) for {frames} frame(s)"
    return None


def _header(data: memoryview, offset: int, explicit: bool, end: int) -> tuple[bytes, int, int]:
    if not explicit:
        _, _, length = _IMPLICIT.unpack_from(data, offset)
        return b"", length, offset + 8
    _, _, vr, length = _SHORT.unpack_from(data, offset)
    if vr in _LONG_VRS:
        if offset + 12 > end:
            raise _Decline("element header past the end")
        _, _, vr, length = _LONG.unpack_from(data, offset)
        return vr, length, offset + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _Decline("not a VR")
    return vr, length, offset + 8


def _skip_sequence(data: memoryview, offset: int, explicit: bool, end: int) -> int:
    while True:
        if offset + 8 > end:
            raise _Decline("sequence past the end")
        group, element, length = _IMPLICIT.unpack_from(data, offset)
        tag = group << 16 | element
        offset += 8
        if tag == _SEQUENCE_END:
            return offset
        if tag != _ITEM:
            raise _Decline("not an item")
        if length != _UNDEFINED:
            offset += length
            continue
        while True:
            if offset + 8 > end:
                raise _Decline("item past the end")
            group, element = _TAG.unpack_from(data, offset)
            if (group << 16 | element) == _ITEM_END:
                offset += 8
                break
            vr, length, offset = _header(data, offset, explicit, end)
            offset = (
                _skip_sequence(data, offset, explicit and vr != b"UN", end)
                if length == _UNDEFINED
                else (offset + length)
            )


def _us(values: dict[int, bytes], tag: int) -> int | None:
    raw = values.get(tag)
    if raw is None or len(raw) < 2:
        return None
    return int(struct.unpack_from("<H", raw)[0])


def _frames(values: dict[int, bytes]) -> int:
    raw = values.get(_FRAMES, b"").strip(b" \x00")
    try:
        return max(int(raw), 1) if raw else 1
    except ValueError:
        return 1
