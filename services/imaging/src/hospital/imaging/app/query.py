"""One query engine for C-FIND (Patient Root / Study Root), QIDO-RS and retrieval (C-MOVE, C-GET, WADO-RS).

Filters are DICOM keywords with DICOM matching semantics (single value, wildcard, UID list, date range,
universal); each level reads one table joined to its parents, so every key of a higher level is both
a usable filter and a returnable attribute.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select

from hospital.imaging.adapters import tables as t
from hospital.imaging.domain.matching import date_range, fold, has_wildcard, like_pattern, uid_list

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# keyword -> (column, kind); kinds: uid, date, name, text, int, modalities
_PATIENT = {
    "PatientID": (t.patients.c.patient_id, "text"),
    "PatientName": (t.patients.c.name_folded, "name"),
    "PatientBirthDate": (t.patients.c.birth_date, "date"),
    "PatientSex": (t.patients.c.sex, "text"),
}
_STUDY = {
    "StudyInstanceUID": (t.studies.c.study_instance_uid, "uid"),
    "PatientID": (t.studies.c.patient_id, "text"),
    "PatientName": (t.studies.c.name_folded, "name"),
    "PatientBirthDate": (t.studies.c.patient_birth_date, "date"),
    "PatientSex": (t.studies.c.patient_sex, "text"),
    "StudyDate": (t.studies.c.study_date, "date"),
    "StudyTime": (t.studies.c.study_time, "text"),
    "AccessionNumber": (t.studies.c.accession_number, "text"),
    "StudyDescription": (t.studies.c.study_description, "text"),
    "ReferringPhysicianName": (t.studies.c.referring_physician, "text"),
    "ModalitiesInStudy": (t.studies.c.modalities, "modalities"),
    "NumberOfStudyRelatedSeries": (t.studies.c.series_count, "int"),
    "NumberOfStudyRelatedInstances": (t.studies.c.instance_count, "int"),
}
_SERIES = {
    "SeriesInstanceUID": (t.series.c.series_instance_uid, "uid"),
    "Modality": (t.series.c.modality, "text"),
    "SeriesNumber": (t.series.c.series_number, "int"),
    "SeriesDescription": (t.series.c.series_description, "text"),
    "BodyPartExamined": (t.series.c.body_part, "text"),
    "NumberOfSeriesRelatedInstances": (t.series.c.instance_count, "int"),
}
_IMAGE = {
    "SOPInstanceUID": (t.instances.c.sop_instance_uid, "uid"),
    "SOPClassUID": (t.instances.c.sop_class_uid, "uid"),
    "InstanceNumber": (t.instances.c.instance_number, "int"),
    "Rows": (t.instances.c.rows, "int"),
    "Columns": (t.instances.c.columns, "int"),
    "NumberOfFrames": (t.instances.c.frames, "int"),
}
KEYS: dict[str, dict[str, tuple[Any, str]]] = {
    "PATIENT": _PATIENT,
    "STUDY": _STUDY,
    "SERIES": {**_STUDY, **_SERIES},
    "IMAGE": {**_STUDY, **_SERIES, **_IMAGE},
}
# Display columns for names (matching uses the folded ones).
_DISPLAY = {"PATIENT": t.patients.c.patient_name, "STUDY": t.studies.c.patient_name}


class QueryError(ValueError):
    """A query the index cannot answer (bad level or bad value)."""


def _base(level: str) -> Select[Any]:
    if level == "PATIENT":
        return select().select_from(t.patients)
    if level == "STUDY":
        return select().select_from(t.studies)
    if level == "SERIES":
        return select().select_from(
            t.series.join(t.studies, t.studies.c.study_instance_uid == t.series.c.study_instance_uid)
        )
    if level == "IMAGE":
        return select().select_from(
            t.instances.join(
                t.series, t.series.c.series_instance_uid == t.instances.c.series_instance_uid
            ).join(t.studies, t.studies.c.study_instance_uid == t.instances.c.study_instance_uid)
        )
    raise QueryError(f"unsupported query level {level!r}")


def _condition(column: Any, kind: str, value: str) -> Any:
    value = value.strip()
    if kind == "uid":
        uids = uid_list(value)
        return column == uids[0] if len(uids) == 1 else column.in_(uids)
    if kind == "date":
        rng = date_range(value)
        if rng is None:
            return column == value
        low, high = rng
        parts = []
        if low:
            parts.append(column >= low)
        if high:
            parts.append(column <= high)
        return and_(*parts)
    if kind == "int":  # IS: a 32-bit signed integer (PS3.5 6.2)
        try:
            number = int(value)
        except ValueError:
            raise QueryError(f"not a number: {value!r}") from None
        if not -(2**31) <= number < 2**31:
            raise QueryError(f"out of range for an integer string (IS): {value!r}")
        return column == number
    if kind == "modalities":
        return or_(
            *[
                or_(column == m, column.like(f"{m}\\%"), column.like(f"%\\{m}"), column.like(f"%\\{m}\\%"))
                for m in uid_list(value)
            ]
        )
    if kind == "name":
        value = fold(value) or ""
        if not has_wildcard(value):
            value += "*"  # PN: 'NGUYEN' matches 'NGUYEN^VAN AN' (family name prefix)
    if has_wildcard(value):
        return column.like(like_pattern(value), escape="\\")
    return column == value


async def find(
    db: Any,
    level: str,
    filters: dict[str, str],
    *,
    limit: int,
    offset: int = 0,
    extra_columns: tuple[Any, ...] = (),
) -> list[dict[str, Any]]:
    """Rows (dicts keyed by keyword) at `level` matching the non-empty, non-'*' `filters`."""
    level = level.upper()
    if level not in KEYS:
        raise QueryError(f"unsupported query level {level!r}")
    keys = KEYS[level]
    display = _DISPLAY["PATIENT" if level == "PATIENT" else "STUDY"]
    columns = [(display if kw == "PatientName" else col).label(kw) for kw, (col, _) in keys.items()]
    q = _base(level).add_columns(*columns, *extra_columns)
    for keyword, value in filters.items():
        if keyword not in keys or value is None or str(value).strip() in ("", "*"):
            continue
        col, kind = keys[keyword]
        q = q.where(_condition(col, kind, str(value)))
    order = {
        "PATIENT": t.patients.c.patient_id,
        "STUDY": t.studies.c.study_instance_uid,
        "SERIES": t.series.c.series_number,
        "IMAGE": t.instances.c.instance_number,
    }[level]
    q = q.order_by(order).limit(limit).offset(offset)
    async with db.session() as s:
        return [dict(r._mapping) for r in (await s.execute(q)).all()]


async def instances_for(db: Any, filters: dict[str, str], limit: int = 100_000) -> list[dict[str, Any]]:
    """Instances to retrieve, with their object keys and transfer syntaxes (C-MOVE, C-GET, WADO-RS)."""
    if not any(
        str(filters.get(k) or "").strip() not in ("", "*")
        for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    ):
        raise QueryError("a retrieve needs PatientID, StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID")
    return await find(
        db,
        "IMAGE",
        filters,
        limit=limit,
        extra_columns=(
            t.instances.c.object_key.label("object_key"),
            t.instances.c.transfer_syntax_uid.label("transfer_syntax_uid"),
            t.instances.c.size.label("size"),
            t.instances.c.digest.label("digest"),
        ),
    )


async def indexed_instances(db: Any, uids: set[str]) -> set[str]:
    """Which of these SOP Instance UIDs are indexed (and so queryable and retrievable)."""
    if not uids:
        return set()
    async with db.session() as s:
        rows = await s.execute(
            select(t.instances.c.sop_instance_uid).where(t.instances.c.sop_instance_uid.in_(uids))
        )
        return {r[0] for r in rows.all()}
