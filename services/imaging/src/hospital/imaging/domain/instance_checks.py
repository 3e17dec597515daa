"""Acceptance rules for an instance received over C-STORE.

An instance is only worth storing if it can be filed: it must name its study,
series and instance, and the instance it names must be the one the C-STORE
request announced (PS3.4 B.2.3: a data set that does not match the request is
a failure, not something to repair silently).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from hospital.imaging.domain.header import InstanceIndex

# PS3.5 9.1: digits and dots, at most 64 characters. Leading zeros inside a
# component are tolerated (seen in the wild); anything else, notably '/', is not,
# which also makes a valid UID safe to use as a file name.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_MAX_UID_LENGTH = 64


class Problem(enum.Enum):
    """Why an instance is refused."""

    #: Identifying attributes are missing or contradict the request.
    MISMATCH = "mismatch"
    #: A UID is not a syntactically valid DICOM UID.
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Rejection:
    problem: Problem
    reason: str


def is_valid_uid(value: str) -> bool:
    return len(value) <= _MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def check_received_instance(
    index: InstanceIndex,
    *,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
) -> Rejection | None:
    """Return why the instance must be refused, or None if it can be stored."""
    required = {
        "SOPInstanceUID": index.sop_instance_uid,
        "StudyInstanceUID": index.study_instance_uid,
        "SeriesInstanceUID": index.series_instance_uid,
        "SOPClassUID": index.sop_class_uid,
    }
    missing = [keyword for keyword, value in required.items() if value is None]
    if missing:
        return Rejection(Problem.MISMATCH, f"missing {', '.join(missing)}")
    malformed = [keyword for keyword, value in required.items() if value and not is_valid_uid(value)]
    if malformed:
        return Rejection(Problem.MALFORMED, f"invalid UID in {', '.join(malformed)}")
    if index.sop_instance_uid != affected_sop_instance_uid:
        return Rejection(
            Problem.MISMATCH,
            f"SOPInstanceUID {index.sop_instance_uid} != request {affected_sop_instance_uid}",
        )
    if index.sop_class_uid != affected_sop_class_uid:
        return Rejection(
            Problem.MISMATCH,
            f"SOPClassUID {index.sop_class_uid} != request {affected_sop_class_uid}",
        )
    return check_index_limits(index)


# Index attributes become keys, query results and event fields: they are held to the index's column widths
# (characters) so that no value a modality sends can fail the index transaction (stalling the pipeline) or
# swell an event. The stored file keeps every value as sent.
KEY_LIMITS = {"patient_id": 64, "accession_number": 64}
TEXT_LIMITS = {
    "patient_name": 200,
    "patient_birth_date": 8,
    "patient_sex": 16,
    "study_date": 8,
    "study_time": 16,
    "study_description": 200,
    "referring_physician_name": 200,
    "modality": 16,
    "series_description": 200,
    "body_part_examined": 64,
}
INT_FIELDS = ("series_number", "instance_number", "number_of_frames", "rows", "columns")
_INT32 = 2**31 - 1


def check_index_limits(index: InstanceIndex) -> Rejection | None:
    """An identifying attribute too long to be a key (PatientID and AccessionNumber: 64 characters; LO
    allows 64, SH 16) is refused: cutting it would file the image under another patient or order."""
    for name, limit in KEY_LIMITS.items():
        value = getattr(index, name)
        if value is not None and len(value) > limit:
            keyword = "PatientID" if name == "patient_id" else "AccessionNumber"
            return Rejection(Problem.MALFORMED, f"{keyword} longer than {limit} characters ({len(value)})")
    return None


def bounded_index(index: InstanceIndex) -> InstanceIndex:
    """`index` with descriptive text cut to the index's widths and integers outside int32 dropped."""
    changes: dict[str, object] = {}
    for name, limit in {**TEXT_LIMITS, **KEY_LIMITS}.items():
        value = getattr(index, name)
        if value is not None and len(value) > limit:
            changes[name] = value[:limit]
    for name in INT_FIELDS:
        value = getattr(index, name)
        if value is not None and not -_INT32 <= value <= _INT32:
            changes[name] = None
    return replace(index, **changes) if changes else index
