"""Studies in the index, and their deletion (objects and index rows) by administrators."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from google.protobuf.json_format import MessageToDict

from hospital.chassis.fields import Limit
from hospital.chassis.web import client_address
from hospital.imaging.api.http import schemas as sc
from hospital.imaging.api.http.deps import Access, Admin, Reader, Svc
from hospital.imaging.app.access_audit import http_entry

router = APIRouter(prefix="/api/v1", tags=["studies"])


@router.get("/studies/{study_uid}", response_model=sc.Study, response_model_exclude_unset=True)
async def get_study(
    study_uid: str, request: Request, svc: Svc, access: Access, who: Reader
) -> dict[str, Any]:
    """A study's index entry (patient, accession, series, linked order); audited
    ``imaging_study.read`` before it is answered."""
    study = await svc.studies.get(study_uid)
    shown = [{"PatientID": study.patient_code, "StudyInstanceUID": study_uid}]
    await access.record(http_entry(who, client_address(request), "imaging_study.read", study_uid, shown))
    return MessageToDict(study, preserving_proto_field_name=True)


@router.delete(
    "/studies/{study_uid}",
    status_code=202,
    response_model=sc.DeletionJob,
    summary="Delete a study (objects and index rows)",
)
async def delete_study(
    study_uid: str, body: sc.DeleteBody, request: Request, svc: Svc, who: Admin
) -> dict[str, Any]:
    """Administrators only, with a ``reason``. The study leaves the index at once (C-FIND, QIDO-RS,
    WADO-RS, C-MOVE and C-GET no longer find it), ``imaging.study.deleted`` is published and
    ``imaging_study.delete`` audited in the same transaction; its objects are then removed from the
    bucket by the deletion job returned here (``status`` pending, then done; ``GET
    /api/v1/deletions/{id}``), which survives restarts and object-store outages (ADR 0312). 404
    ``study.not_found`` for a study not in the index (already deleted, or never received)."""
    return await svc.deletions.delete_study(study_uid, body.reason, who, client_address(request))


@router.delete(
    "/studies/{study_uid}/series/{series_uid}",
    status_code=202,
    response_model=sc.DeletionJob,
    summary="Delete one series of a study (objects and index rows)",
)
async def delete_series(
    study_uid: str, series_uid: str, body: sc.DeleteBody, request: Request, svc: Svc, who: Admin
) -> dict[str, Any]:
    """As for a study: the series leaves the index at once, the study's counts and modalities are
    updated (the study itself is removed with its last series), ``imaging.series.deleted`` is
    published, ``imaging_series.delete`` audited, and the job removes the objects. 404
    ``series.not_found`` when the series is not in that study."""
    return await svc.deletions.delete_series(study_uid, series_uid, body.reason, who, client_address(request))


@router.get("/deletions", response_model=sc.DeletionPage)
async def list_deletions(
    svc: Svc, _: Admin, status: Literal["pending", "done"] | None = None, limit: Limit = 100
) -> dict[str, Any]:
    """Deletion jobs, newest first: ``pending`` ones still have objects to remove (``last_error`` and
    ``next_attempt_at`` tell why and when the next try is)."""
    return {"items": await svc.deletions.list(status, min(limit, 500))}


@router.get("/deletions/{deletion_id}", response_model=sc.DeletionJob)
async def get_deletion(deletion_id: str, svc: Svc, _: Admin) -> dict[str, Any]:
    return await svc.deletions.get(deletion_id)
