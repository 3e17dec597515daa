"""STOW-RS ingest: one Part 10 file from an HTTP client -> the same checks and durable spool as C-STORE."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.errors import InvalidDicomError

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.domain.header import HeaderError, read_index_attributes
from hospital.imaging.domain.instance_checks import check_received_instance, is_valid_uid
from hospital.imaging.domain.part10 import Part10View, build_file_header

SOURCE = "DICOMWEB"


@dataclass
class StowResult:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    failure: int | None  # DICOM failure reason (PS3.18 Table 10.5.3-1 / PS3.4), None when stored
    reason: str = ""


def stow_one(spool: Spool, data: bytes, expected_study: str | None = None) -> StowResult:
    """Validate and spool one Part 10 file. Nothing is written unless every check passed."""
    fp = BytesIO(data)
    try:
        pydicom.filereader.read_preamble(fp, False)
        meta = pydicom.filereader._read_file_meta_info(fp)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        return StowResult("", "", "", 0xC000, f"not a DICOM Part 10 file: {exc}")
    offset = fp.tell()
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    sop_uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid) and is_valid_uid(syntax)):
        return StowResult(sop_class, sop_uid, "", 0xC000, "file meta information lacks valid UIDs")
    header = build_file_header(
        sop_class_uid=sop_class, sop_instance_uid=sop_uid, transfer_syntax_uid=syntax, source_ae_title=SOURCE
    )
    dataset = memoryview(data)[offset:]
    try:
        with Part10View(header, dataset) as part10:
            index = read_index_attributes(part10)
    except HeaderError as exc:
        return StowResult(sop_class, sop_uid, "", 0xC000, str(exc))
    rejection = check_received_instance(
        index, affected_sop_class_uid=sop_class, affected_sop_instance_uid=sop_uid
    )
    if rejection is not None:
        return StowResult(sop_class, sop_uid, index.study_instance_uid or "", 0xA900, rejection.reason)
    if expected_study and index.study_instance_uid != expected_study:
        return StowResult(
            sop_class,
            sop_uid,
            index.study_instance_uid or "",
            0xA900,
            "StudyInstanceUID differs from the one in the URL",
        )
    with spool.stage() as staged:
        staged.write(header)
        staged.write(dataset)
        staged.commit(sop_uid)
    dataset.release()
    return StowResult(sop_class, sop_uid, str(index.study_instance_uid), None)
