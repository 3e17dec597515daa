"""Acceptance rules for an instance received over C-STORE.

An instance is only worth storing if it can be filed: it must name its study,
series and instance, and the instance it names must be the one the C-STORE
request announced (PS3.4 B.2.3: a data set that does not match the request is
a failure, not something to repair silently).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

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
    return None
