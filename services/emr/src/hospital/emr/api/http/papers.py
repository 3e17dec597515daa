"""The papers a visit produces (discharge paper, referral paper, sick-leave certificate, re-visit
appointment): saved on the encounter as drafts, signed through their document (POST
/api/v1/documents/{document_id}/sign), listed with their status."""

from __future__ import annotations

from fastapi import APIRouter

from hospital.emr.api.http.deps import Doctor, Reader, Svc
from hospital.emr.app import schemas as sc

router = APIRouter(prefix="/api/v1", tags=["papers"])


@router.post(
    "/encounters/{encounter_id}/papers",
    response_model=sc.Paper,
    status_code=201,
    summary="Save a draft paper (giấy ra viện, chuyển tuyến, nghỉ việc hưởng BHXH, hẹn khám lại)",
)
async def save_paper(encounter_id: str, body: sc.SavePaper, svc: Svc, caller: Doctor) -> sc.Paper:
    return await svc.papers.save(caller, encounter_id, body)


@router.get(
    "/encounters/{encounter_id}/papers", response_model=sc.PaperPage, summary="The encounter's papers"
)
async def list_papers(encounter_id: str, svc: Svc, caller: Reader) -> sc.PaperPage:
    return await svc.papers.list(caller, encounter_id)
