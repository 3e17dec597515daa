"""Clinical documents (notes from templates, discharge summaries, radiology reports, prescriptions), their
signatures, amendments and verification; the radiology worklist; note templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hospital.chassis.caller import Caller
from hospital.emr.api.http.deps import Reader, Svc, caller_for
from hospital.emr.app import schemas as sc
from hospital.emr.domain import templates

router = APIRouter(prefix="/api/v1", tags=["documents"])
Author = Annotated[Caller, caller_for("doctor", "radiologist")]


@router.get("/note-templates", response_model=sc.NoteTemplates)
async def note_templates(_: Reader) -> sc.NoteTemplates:
    return sc.NoteTemplates(
        items=[
            {
                "code": t.code,
                "title": t.title,
                "sections": [{"code": c, "title": title, "text": ""} for c, title in t.sections],
            }
            for t in templates.TEMPLATES.values()
        ]
    )


@router.post(
    "/encounters/{encounter_id}/documents",
    response_model=sc.Document,
    status_code=201,
    summary="Create a draft document (sections default to the template's)",
)
async def create_document(encounter_id: str, body: sc.SaveDocument, svc: Svc, caller: Author) -> sc.Document:
    return await svc.documents.save(caller, encounter_id, body)


@router.post(
    "/radiology/reports",
    response_model=sc.Document,
    status_code=201,
    summary="Create a draft radiology report for a study (kind radiology_report)",
)
async def create_report(body: sc.SaveDocument, svc: Svc, caller: Author) -> sc.Document:
    return await svc.documents.save(caller, None, body.model_copy(update={"kind": "radiology_report"}))


@router.get("/radiology/worklist", response_model=sc.StudyPage, summary="Studies waiting for a signed report")
async def worklist(
    svc: Svc,
    caller: Author,
    modality: str | None = None,
    include_reported: bool = False,
    limit: int = Query(100, ge=1, le=500),
) -> sc.StudyPage:
    return await svc.documents.worklist(caller, modality, include_reported, limit, svc.results.study_model)


@router.get("/documents/{document_id}", response_model=sc.Document)
async def get_document(document_id: str, svc: Svc, caller: Reader) -> sc.Document:
    return await svc.documents.get(caller, document_id)


@router.put(
    "/documents/{document_id}", response_model=sc.Document, summary="Change a draft (409 once signed)"
)
async def update_document(document_id: str, body: sc.UpdateDocument, svc: Svc, caller: Author) -> sc.Document:
    return await svc.documents.update(caller, document_id, body)


@router.post(
    "/documents/{document_id}/sign",
    response_model=sc.Document,
    summary="Sign a draft as its author (Ed25519 JWS over the canonical content)",
)
async def sign_document(document_id: str, svc: Svc, caller: Author) -> sc.Document:
    return await svc.documents.sign(caller, document_id)


@router.post(
    "/documents/{document_id}/amend",
    response_model=sc.Document,
    status_code=201,
    summary="A new draft version amending a signed document",
)
async def amend_document(document_id: str, body: sc.AmendDocument, svc: Svc, caller: Author) -> sc.Document:
    return await svc.documents.amend(caller, document_id, body)


@router.get(
    "/documents/{document_id}/verify",
    response_model=sc.VerifyResult,
    summary="Who signed it, and whether the stored content still matches the signature",
)
async def verify_document(document_id: str, svc: Svc, caller: Reader) -> sc.VerifyResult:
    return await svc.documents.verify(caller, document_id)
