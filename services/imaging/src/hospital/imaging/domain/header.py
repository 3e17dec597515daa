"""Cheap extraction of the attributes the imaging index needs.

Only the listed tags are parsed and reading stops at Pixel Data, so the cost is
independent of image size: the pixel data is neither read nor decoded. Values
are returned as encoded (e.g. DA as ``YYYYMMDD``), with padding stripped; an
empty or malformed optional value becomes ``None`` rather than an error,
because a modality's sloppy Series Number must never cost us the image.

Two readers give the same answer. The fast one (:func:`_fast_index`, ~20x
cheaper than pydicom; it runs for every received image, in the receiver and
again in the pipeline) walks the element headers of a little-endian data set
held in memory up to Pixel Data, skipping values, sequences and items
without decoding them, and converts only the wanted values. It declines
(returns None) on anything it does not handle exactly as pydicom would: big
endian or deflated syntaxes, a meta header without group length, character
sets other than ASCII, UTF-8 and Latin-1 with non-ASCII text, multi-valued or
control-character values, non-decimal IS, unexpected VRs, lengths running past
the end, elements out of order. Then pydicom (``specific_tags``,
``stop_before_pixels``) reads the file, which is also what decides that a
header is unreadable (:class:`HeaderError`).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from hospital.imaging.domain.part10 import Part10Error, Part10View, read_meta

_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "NumberOfFrames",
    "Rows",
    "Columns",
)


class HeaderError(ValueError):
    """The data set header could not be parsed."""


@dataclass(frozen=True, slots=True)
class InstanceIndex:
    """Index attributes of one stored instance (patient / study / series / instance)."""

    patient_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str | None
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_description: str | None
    referring_physician_name: str | None
    #: Source of the study-level ModalitiesInStudy.
    modality: str | None
    series_instance_uid: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    instance_number: int | None
    number_of_frames: int | None
    rows: int | None
    columns: int | None
    transfer_syntax_uid: str
    #: Size in bytes of the Part 10 file.
    size: int


class SeekableReader(Protocol):
    """What pydicom needs from a file object (e.g. an open file or a Part10View)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


Source = str | os.PathLike[str] | bytes | bytearray | memoryview | SeekableReader


def read_index_attributes(source: Source) -> InstanceIndex:
    """Parse the index attributes of a DICOM Part 10 file.

    `source` is a path, the file's bytes, or a seekable binary file object
    (such as :class:`~hospital.imaging.domain.part10.Part10View`).
    Raises :class:`HeaderError` when the file cannot be parsed at all.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        fast = _fast_from_file_bytes(source)
        if fast is not None:
            return fast
        return _read(BytesIO(source), len(source))
    if isinstance(source, Part10View):  # meta header + data set, both in memory
        header, dataset = source.parts()
        fast = _fast_from_parts(header, dataset)
        if fast is not None:
            return fast
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open("rb") as fp:
            return _read(fp, os.fstat(fp.fileno()).st_size)
    start = source.tell()
    size = source.seek(0, os.SEEK_END)
    source.seek(start)
    return _read(source, size)


def _read(fp: SeekableReader, size: int) -> InstanceIndex:
    try:
        ds = pydicom.dcmread(cast(BinaryIO, fp), stop_before_pixels=True, specific_tags=list(_KEYWORDS))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise HeaderError(f"unreadable DICOM header: {exc}") from exc
    except OSError as exc:
        # pydicom reports some malformed encodings (e.g. an unterminated
        # sequence) as a bare OSError; a real I/O error carries an errno.
        if exc.errno is not None:
            raise
        raise HeaderError(f"unreadable DICOM header: {exc}") from exc
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise HeaderError("file meta information has no transfer syntax")
    return InstanceIndex(
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        modality=_text(ds, "Modality"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        instance_number=_int(ds, "InstanceNumber"),
        number_of_frames=_int(ds, "NumberOfFrames"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        transfer_syntax_uid=str(syntax),
        size=size,
    )


def _value(ds: Dataset, keyword: str) -> Any:
    """The element's value, or None if absent, empty or undecodable."""
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError, LookupError, UnicodeError, OverflowError):
        return None
    if value is None or value == "":
        return None
    return value


def _text(ds: Dataset, keyword: str) -> str | None:
    value = _value(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):  # left undecoded, e.g. a text value over 64 KiB written as UN
        charset = ds.get("SpecificCharacterSet") or "ISO_IR 6"
        try:
            encodings = convert_encodings([charset] if isinstance(charset, str) else list(charset))
            value = decode_bytes(bytes(value), encodings, set())
        except (LookupError, ValueError, UnicodeError):
            value = bytes(value).decode("latin-1")
    # Multi-valued strings (VM > 1) keep DICOM's backslash separator.
    text = "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
    text = text.strip(" \x00")
    return text or None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _value(ds, keyword)
    try:
        return int(value) if value is not None else None
    except (ValueError, TypeError, OverflowError):
        return None


# ------------------------------------------------------------------------------------ the fast reader
_TAGS = {
    0x00080005: ("SpecificCharacterSet", b"CS"),
    0x00100020: ("PatientID", b"LO"),
    0x00100010: ("PatientName", b"PN"),
    0x00100030: ("PatientBirthDate", b"DA"),
    0x00100040: ("PatientSex", b"CS"),
    0x0020000D: ("StudyInstanceUID", b"UI"),
    0x00080020: ("StudyDate", b"DA"),
    0x00080030: ("StudyTime", b"TM"),
    0x00080050: ("AccessionNumber", b"SH"),
    0x00081030: ("StudyDescription", b"LO"),
    0x00080090: ("ReferringPhysicianName", b"PN"),
    0x00080060: ("Modality", b"CS"),
    0x0020000E: ("SeriesInstanceUID", b"UI"),
    0x00200011: ("SeriesNumber", b"IS"),
    0x0008103E: ("SeriesDescription", b"LO"),
    0x00180015: ("BodyPartExamined", b"CS"),
    0x00080016: ("SOPClassUID", b"UI"),
    0x00080018: ("SOPInstanceUID", b"UI"),
    0x00200013: ("InstanceNumber", b"IS"),
    0x00280008: ("NumberOfFrames", b"IS"),
    0x00280010: ("Rows", b"US"),
    0x00280011: ("Columns", b"US"),
}
assert {keyword for keyword, _ in _TAGS.values()} == set(_KEYWORDS)
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where pydicom's stop_before_pixels stops
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_CHARSET_VRS = frozenset({b"PN", b"LO", b"SH", b"ST", b"LT", b"UC", b"UT"})
_ENCODINGS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 192": "utf-8", "ISO_IR 100": "latin_1"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_INT = re.compile(rb"[+-]?[0-9]+")
_CONTROL = re.compile(rb"[\x00-\x1f\\\x7f]")  # control characters (incl. ESC) and the VM separator
_TAG_LE = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_IMPLICIT = struct.Struct("<HHI")


class _Decline(Exception):
    """The fast reader cannot vouch for giving pydicom's answer: let pydicom read it."""


def _fast_from_file_bytes(data: bytes | bytearray | memoryview) -> InstanceIndex | None:
    with memoryview(data) as view:
        try:
            syntax, offset, _ = read_meta(view)
        except (Part10Error, struct.error, UnicodeDecodeError):
            return None
        with view[offset:] as dataset:
            return _fast_index(syntax, dataset, len(view))


def _fast_from_parts(header: bytes, dataset: bytes | memoryview) -> InstanceIndex | None:
    try:
        syntax, offset, _ = read_meta(header)
    except (Part10Error, struct.error, UnicodeDecodeError):
        return None
    if offset != len(header):
        return None
    with memoryview(dataset) as view:
        return _fast_index(syntax, view.cast("B") if view.format != "B" else view, len(header) + len(view))


def _fast_index(syntax: str, dataset: memoryview, size: int) -> InstanceIndex | None:
    """The index attributes of a data set encoded in `syntax`, or None to let pydicom decide."""
    try:
        uid = UID(syntax)
        if not uid.is_transfer_syntax or not uid.is_little_endian or uid.is_deflated:
            return None
        raw = _scan(dataset, explicit=not uid.is_implicit_VR)
        return _convert(raw, syntax, size)
    except (_Decline, struct.error, UnicodeDecodeError, ValueError):
        return None


def _scan(data: memoryview, *, explicit: bool) -> dict[int, tuple[bytes, bytes]]:
    """{wanted tag: (VR, value)} from the top level of the data set, up to Pixel Data."""
    found: dict[int, tuple[bytes, bytes]] = {}
    end, offset, previous = len(data), 0, -1
    while offset < end:
        if offset + 8 > end:
            raise _Decline("element header past the end")
        group, element = _TAG_LE.unpack_from(data, offset)
        tag = group << 16 | element
        if tag <= previous:
            raise _Decline("elements out of order")
        previous = tag
        if tag in _PIXEL_TAGS:
            break
        vr, length, offset = _element_header(data, offset, explicit, end)
        if length == _UNDEFINED:
            if tag in _TAGS:
                raise _Decline("undefined length on a wanted element")
            offset = _skip_sequence(data, offset, explicit and vr != b"UN", end)
            continue
        if offset + length > end:
            raise _Decline("value past the end")
        if tag in _TAGS:
            found[tag] = (vr or _TAGS[tag][1], bytes(data[offset : offset + length]))
        offset += length
    return found


def _element_header(data: memoryview, offset: int, explicit: bool, end: int) -> tuple[bytes, int, int]:
    """(VR or b"" when implicit, value length, offset of the value)."""
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
    """Offset after an undefined-length sequence starting at `offset` (its first item)."""
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
        while True:  # an undefined-length item: its elements up to the item delimiter
            if offset + 8 > end:
                raise _Decline("item past the end")
            group, element = _TAG_LE.unpack_from(data, offset)
            if (group << 16 | element) == _ITEM_END:
                offset += 8
                break
            vr, length, offset = _element_header(data, offset, explicit, end)
            if length == _UNDEFINED:
                offset = _skip_sequence(data, offset, explicit and vr != b"UN", end)
            else:
                offset += length
        if offset > end:
            raise _Decline("item past the end")


def _convert(raw: dict[int, tuple[bytes, bytes]], syntax: str, size: int) -> InstanceIndex:
    charset = raw.get(0x00080005, (b"CS", b""))[1].strip(b" \x00").decode("ascii")
    encoding = _ENCODINGS.get(charset)
    values: dict[str, str | int | None] = {}
    for tag, (keyword, expected_vr) in _TAGS.items():
        item = raw.get(tag)
        if item is None:
            values[keyword] = None
            continue
        vr, value = item
        if vr != expected_vr:
            raise _Decline("unexpected VR")
        if vr == b"US":
            if len(value) not in (0, 2):
                raise _Decline("US with VM > 1")
            values[keyword] = struct.unpack("<H", value)[0] if value else None
            continue
        # Padding (space, NUL) is stripped as the pydicom path strips it; in UTF-8 and Latin-1 these bytes
        # are always the characters themselves, so stripping before decoding is the same.
        value = value.strip(b" \x00")
        if _CONTROL.search(value):
            raise _Decline("multi-valued or control characters")
        if vr == b"IS":
            text = value
            if text and not _INT.fullmatch(text):
                raise _Decline("IS that is not a plain integer")
            values[keyword] = int(text) if text else None
            continue
        if not value.isascii() and (vr not in _CHARSET_VRS or encoding is None or encoding == "ascii"):
            raise _Decline("non-ASCII text in an unhandled character set")
        values[keyword] = value.decode(encoding or "ascii") or None
    return InstanceIndex(
        patient_id=values["PatientID"],
        patient_name=values["PatientName"],  # type: ignore[arg-type]
        patient_birth_date=values["PatientBirthDate"],
        patient_sex=values["PatientSex"],  # type: ignore[arg-type]
        study_instance_uid=values["StudyInstanceUID"],
        study_date=values["StudyDate"],  # type: ignore[arg-type]
        study_time=values["StudyTime"],
        accession_number=values["AccessionNumber"],  # type: ignore[arg-type]
        study_description=values["StudyDescription"],  # type: ignore[arg-type]
        referring_physician_name=values["ReferringPhysicianName"],  # type: ignore[arg-type]
        modality=values["Modality"],
        series_instance_uid=values["SeriesInstanceUID"],  # type: ignore[arg-type]
        series_number=values["SeriesNumber"],
        series_description=values["SeriesDescription"],  # type: ignore[arg-type]
        body_part_examined=values["BodyPartExamined"],
        sop_class_uid=values["SOPClassUID"],  # type: ignore[arg-type]
        sop_instance_uid=values["SOPInstanceUID"],
        instance_number=values["InstanceNumber"],  # type: ignore[arg-type]
        number_of_frames=values["NumberOfFrames"],
        rows=values["Rows"],  # type: ignore[arg-type]
        columns=values["Columns"],
        transfer_syntax_uid=syntax,
        size=size,  # type: ignore[arg-type]
    )
