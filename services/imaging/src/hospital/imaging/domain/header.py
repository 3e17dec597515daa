"""Cheap extraction of the attributes the imaging index needs.

Only the listed tags are parsed (``specific_tags``) and reading stops at Pixel
Data (``stop_before_pixels``), so the cost is independent of image size: the
pixel data is neither read nor decoded. Values are returned as encoded (e.g.
DA as ``YYYYMMDD``), with padding stripped; an empty or malformed optional
value becomes ``None`` rather than an error, because a modality's sloppy
Series Number must never cost us the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

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
        return _read(BytesIO(source), len(source))
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
