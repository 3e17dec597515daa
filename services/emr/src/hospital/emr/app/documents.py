"""Clinical documents and their signatures: notes from templates, discharge summaries, radiology reports and
prescriptions are drafts until their author signs them; a signed version is immutable; an amendment is a
new version that points to the one it amends and supersedes it once signed; verification says who signed
what and whether the stored content still matches the signature."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.security import PermissionDenied
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.emr.v1 import emr_pb2, events_pb2
from hospital.emr.adapters.store import (
    Documents,
    Encounters,
    Orders,
    Papers,
    Prescriptions,
    SigningKeys,
    Studies,
    studies_waiting_for_report,
)
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, authorize_read, load_encounter
from hospital.emr.app.eprescription import queue_national
from hospital.emr.app.notifications import notify
from hospital.emr.app.papers import paper_content, paper_model
from hospital.emr.app.prescriptions import prescription_model
from hospital.emr.domain import access, signing, templates
from hospital.emr.domain.order_status import imaging_status
from hospital.emr.domain.papers import KINDS as PAPER_KINDS

NOTE_SUBJECT = {
    "outpatient_note": "emr.note.signed",
    "admission_note": "emr.note.signed",
    "progress_note": "emr.note.signed",
}


def document_model(row: dict[str, Any]) -> sc.Document:
    data = {k: v for k, v in row.items() if v is not None}
    if row.get("jws"):
        data["signature"] = sc.Signature(
            signer=row["signer"],
            signer_name=row["signer_name"] or "",
            key_id=row["key_id"],
            algorithm=row["algorithm"],
            provider=row["provider"],
            jws=row["jws"],
            content_sha256=row["content_sha256"],
            signed_at=row["signed_at"],
        )
    return sc.Document.model_validate(data)


def content(
    doc: dict[str, Any],
    prescription: dict[str, Any] | None,
    signer: str,
    signed_at: datetime,
    paper: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a signature covers: the document as the author saw it, who signs and when."""
    out: dict[str, Any] = {
        "document_id": doc["id"],
        "kind": doc["kind"],
        "patient_id": doc["patient_id"],
        "encounter_id": doc["encounter_id"],
        "title": doc["title"],
        "version": doc["version"],
        "sections": [
            {"code": s["code"], "title": s.get("title", ""), "text": s.get("text", "")}
            for s in doc["sections"]
        ],
        "amends_document_id": doc["amends_document_id"] or "",
        "study_instance_uid": doc["study_instance_uid"] or "",
        "author": doc["author"],
        "signer": signer,
        "signed_at": signed_at.isoformat(),
    }
    if prescription is not None:
        out["prescription"] = {
            "code": prescription["code"],
            "type": prescription["type"],
            "items": prescription["items"],
            "diagnoses": prescription["diagnoses"],
            "advice": prescription["advice"],
            "revisit_date": prescription["revisit_date"].isoformat() if prescription["revisit_date"] else "",
            "overrides": prescription["overrides"],
        }
    if paper is not None:
        out["paper"] = paper_content(paper)
    return out


class DocumentService:
    def __init__(self, ctx: Context, provider: signing.SigningProvider) -> None:
        self.ctx = ctx
        self.provider = provider

    def _check_write(self, caller: Caller, kind: str, department: str) -> None:
        if kind == "radiology_report":
            if not (caller.principal.is_service or caller.principal.has_any(("radiologist",))):
                raise PermissionDenied("chỉ bác sĩ chẩn đoán hình ảnh viết kết quả chẩn đoán hình ảnh")
            return
        access.check_write(caller.principal, self.ctx.departments(caller), department)

    async def save(self, caller: Caller, encounter_id: str | None, req: sc.SaveDocument) -> sc.Document:
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Documents(s)
            if req.request_id:
                done = await repo.by_request(req.request_id)
                if done is not None:
                    return document_model(done)
            order_id = None
            if req.kind == "radiology_report":
                study = await Studies(s).get(req.study_instance_uid) if req.study_instance_uid else None
                if study is None or not study.get("encounter_id"):
                    raise Invalid(
                        "report.study",
                        "kết quả CĐHA cần một ca chụp đã gắn với chỉ định",
                        field="study_instance_uid",
                    )
                encounter_id, order_id = study["encounter_id"], study["order_id"]
            if not encounter_id:
                raise Invalid("document.encounter", "encounter_id is required", field="encounter_id")
            enc = await load_encounter(s, encounter_id)
            self._check_write(caller, req.kind, enc["department_code"])
            template = templates.TEMPLATES.get(req.template_code or req.kind)
            sections = [x.model_dump() for x in req.sections] or (
                [{"code": c, "title": t, "text": ""} for c, t in template.sections] if template else []
            )
            if template:
                titles = dict(template.sections)
                sections = [{**x, "title": x["title"] or titles.get(x["code"], "")} for x in sections]
            now = utcnow()
            row = {
                "id": new_id(),
                "encounter_id": encounter_id,
                "patient_id": enc["patient_id"],
                "kind": req.kind,
                "template_code": template.code if template else None,
                "title": req.title or (template.title if template else req.kind),
                "sections": sections,
                "status": "draft",
                "version": 1,
                "amends_document_id": None,
                "amended_by_document_id": None,
                "amendment_reason": None,
                "study_instance_uid": req.study_instance_uid or None,
                "order_id": order_id,
                "author": caller.subject,
                "author_name": caller.principal.name,
                "request_id": req.request_id or None,
                "created_at": now,
                "updated_at": now,
            }
            await repo.add(row)
            uow.audit(
                caller.audit("document.create", "Document", row["id"], enc["patient_id"], kind=req.kind)
            )
            await uow.commit()
        return document_model(row)

    async def update(self, caller: Caller, document_id: str, req: sc.UpdateDocument) -> sc.Document:
        async with self.ctx.uow() as uow:
            repo = Documents(uow.session)
            doc = await self._load(uow.session, document_id, for_update=True)
            if doc["author"] != caller.subject:
                raise PermissionDenied("chỉ tác giả được sửa bản nháp")
            values: dict[str, Any] = {"updated_at": utcnow()}
            if req.title:
                values["title"] = req.title
            if req.sections:
                values["sections"] = [x.model_dump() for x in req.sections]
            if not await repo.update_draft(document_id, **values):
                raise Conflict(
                    "document.signed",
                    "văn bản đã ký: không sửa được, hãy tạo bản bổ sung (amend)",
                    field="document_id",
                )
            uow.audit(caller.audit("document.update", "Document", document_id, doc["patient_id"]))
            out = document_model(await repo.get(document_id) or doc)
            await uow.commit()
        return out

    async def _load(self, s: AsyncSession, document_id: str, *, for_update: bool = False) -> dict[str, Any]:
        doc = await Documents(s).get(document_id, for_update=for_update)
        if doc is None:
            raise NotFound("document.not_found", f"no document {document_id}", field="document_id")
        return doc

    async def get(self, caller: Caller, document_id: str) -> sc.Document:
        async with self.ctx.uow() as uow:
            doc = await self._load(uow.session, document_id)
            await authorize_read(
                self.ctx, uow, caller, doc["patient_id"], doc["encounter_id"], None, "document.read"
            )
            await uow.commit()
        return document_model(doc)

    async def sign(self, caller: Caller, document_id: str) -> sc.Document:
        async with self.ctx.uow() as uow:
            s = uow.session
            repo = Documents(s)
            doc = await self._load(s, document_id, for_update=True)
            if doc["status"] != "draft":
                raise Conflict("document.already_signed", "văn bản đã được ký", field="document_id")
            if doc["author"] != caller.subject:
                raise PermissionDenied("văn bản chỉ được ký bởi tác giả của nó")
            prescription = await self._prescription(s, doc)
            paper = await self._paper(s, doc)
            now = utcnow()
            payload = signing.canonical(content(doc, prescription, caller.subject, now, paper))
            jws, key = signing.sign_detached(
                self.provider, caller.subject, payload, {"iat": int(now.timestamp())}
            )
            await SigningKeys(s).ensure(
                {
                    "key_id": key.key_id,
                    "subject": caller.subject,
                    "public_jwk": key.jwk,
                    "provider": key.provider,
                    "created_at": now,
                    "revoked_at": None,
                }
            )
            await repo.update_draft(
                document_id,
                status="signed",
                canonical=payload.decode(),
                content_sha256=hashlib.sha256(payload).hexdigest(),
                jws=jws,
                key_id=key.key_id,
                algorithm=signing.ALGORITHM,
                provider=key.provider,
                signer=caller.subject,
                signer_name=caller.principal.name,
                signed_at=now,
                updated_at=now,
            )
            if doc["amends_document_id"] and not await repo.supersede(doc["amends_document_id"], document_id):
                raise Conflict(
                    "document.amended", "bản trước đã được bổ sung bởi một bản khác", field="document_id"
                )
            signed = await repo.get(document_id)
            assert signed is not None
            await self._publish(uow, caller, signed, prescription, now, paper)
            uow.audit(
                caller.audit(
                    "document.sign",
                    "Document",
                    document_id,
                    doc["patient_id"],
                    kind=doc["kind"],
                    key_id=key.key_id,
                    content_sha256=signed["content_sha256"],
                )
            )
            await uow.commit()
        return document_model(signed)

    async def _prescription(self, s: AsyncSession, doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc["kind"] != "prescription":
            return None
        rows = [
            p
            for p in await Prescriptions(s).of_encounter(doc["encounter_id"])
            if p["document_id"] == doc["id"]
        ]
        if not rows:
            raise NotFound("prescription.not_found", "no prescription for this document", field="document_id")
        return rows[0]

    async def _paper(self, s: AsyncSession, doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc["kind"] not in PAPER_KINDS:
            return None
        paper = await Papers(s).by_document(doc["id"])
        if paper is None:
            raise NotFound("paper.not_found", "no paper for this document", field="document_id")
        return paper

    async def _publish(
        self,
        uow: UnitOfWork,
        caller: Caller,
        doc: dict[str, Any],
        prescription: dict[str, Any] | None,
        now: datetime,
        paper: dict[str, Any] | None = None,
    ) -> None:
        s = uow.session
        enc = await Encounters(s).get(doc["encounter_id"]) or {}
        model = sc.to_proto(document_model(doc), emr_pb2.Document)
        visit = enc.get("visit_id") or ""
        if doc["kind"] in NOTE_SUBJECT:
            uow.publish(
                "emr.note.signed", events_pb2.NoteSigned(document=model, visit_id=visit, by=caller.actor())
            )
        elif doc["kind"] == "radiology_report":
            order = await Orders(s).get(doc["order_id"]) if doc["order_id"] else None
            uow.publish(
                "emr.report.signed",
                events_pb2.ReportSigned(
                    document=model,
                    study_instance_uid=doc["study_instance_uid"] or "",
                    accession_number=(order or {}).get("accession_number") or "",
                    order_id=doc["order_id"] or "",
                    visit_id=visit,
                    by=caller.actor(),
                ),
            )
            if order is not None:
                current = await Orders(s).lock(order["id"]) or order
                status = imaging_status(current["status"], report_signed=True)
                if status != current["status"]:
                    await Orders(s).update(order["id"], status=status, updated_at=utcnow())
                await notify(
                    s,
                    [order["ordered_by"]],
                    "report",
                    f"Đã có kết quả CĐHA: {order['description']}",
                    patient_id=doc["patient_id"],
                    encounter_id=doc["encounter_id"],
                )
        elif doc["kind"] == "discharge_summary":
            discharge = emr_pb2.Discharge(
                encounter_id=doc["encounter_id"],
                summary_document_id=doc["id"],
                discharge_type=enc.get("discharge_type") or "",
            )
            # the encounter's signed papers complete it (outcome, advice, re-visit, referral, sick leave)
            signed = {
                p["kind"]: paper_model(p, enc)
                for p in await Papers(s).of_encounter(doc["encounter_id"])
                if p["status"] == "signed"
            }
            if (dp := signed.get("discharge_paper")) is not None and dp.discharge is not None:
                discharge.treatment_result = str(dp.discharge.treatment_result)
                discharge.advice = dp.discharge.note
            if (rv := signed.get("revisit")) is not None and rv.revisit is not None:
                discharge.revisit_date = rv.revisit.revisit_date.isoformat()
            if (rf := signed.get("referral_paper")) is not None and rf.referral is not None:
                discharge.referral.CopyFrom(sc.to_proto(rf.referral, emr_pb2.Referral))
            if (sl := signed.get("sick_leave")) is not None and sl.sick_leave is not None:
                discharge.sick_leave.CopyFrom(sc.to_proto(sl.sick_leave, emr_pb2.SickLeave))
            main = next(iter(signed.values()), None)
            if main is not None:
                discharge.diagnoses.extend(sc.to_proto(d, emr_pb2.Diagnosis) for d in main.diagnoses)
            uow.publish(
                "emr.discharge.signed",
                events_pb2.DischargeSigned(
                    discharge=discharge,
                    patient_id=doc["patient_id"],
                    visit_id=visit,
                    admission_id=enc.get("admission_id") or "",
                    document=model,
                    by=caller.actor(),
                ),
            )
        elif paper is not None:
            papers = Papers(s)
            await papers.update(paper["id"], status="signed", signed_at=now, updated_at=now)
            if paper["replaces_paper_id"]:
                await papers.update(paper["replaces_paper_id"], status="superseded", updated_at=now)
            signed = await papers.get(paper["id"])
            assert signed is not None
            uow.publish(
                "emr.paper.signed",
                events_pb2.PaperSigned(
                    paper=sc.to_proto(paper_model(signed, enc), emr_pb2.Paper),
                    visit_id=visit,
                    admission_id=enc.get("admission_id") or "",
                    patient_id=doc["patient_id"],
                    document=model,
                    by=caller.actor(),
                    department_code=enc.get("department_code") or "",
                    encounter_kind=enc.get("kind") or "",
                ),
            )
        elif prescription is not None:
            await Prescriptions(s).update(prescription["id"], status="signed", signed_at=now)
            # the national e-prescription queue row is written in this transaction (ADR 0510)
            await queue_national(s, prescription["id"], self.ctx.settings.facility_code[:5], now)
            p = await Prescriptions(s).get(prescription["id"])
            assert p is not None
            uow.publish(
                "emr.prescription.signed",
                events_pb2.PrescriptionSigned(
                    prescription=sc.to_proto(prescription_model(p), emr_pb2.Prescription),
                    visit_id=visit,
                    by=caller.actor(),
                    signature=model.signature,
                ),
            )

    async def amend(self, caller: Caller, document_id: str, req: sc.AmendDocument) -> sc.Document:
        async with self.ctx.uow() as uow:
            s = uow.session
            old = await self._load(s, document_id, for_update=True)
            if old["status"] != "signed":
                raise Conflict(
                    "document.not_signed",
                    "chỉ bổ sung được văn bản đã ký (bản hiện hành)",
                    field="document_id",
                )
            if old["kind"] == "prescription":
                raise Conflict(
                    "document.prescription", "đơn thuốc đã ký không sửa được: kê đơn mới", field="document_id"
                )
            if old["kind"] in PAPER_KINDS:
                raise Conflict(
                    "document.paper",
                    "giấy đã ký không sửa được: lập giấy mới thay thế nó (replaces_paper_id)",
                    field="document_id",
                )
            enc = await load_encounter(s, old["encounter_id"])
            self._check_write(caller, old["kind"], enc["department_code"])
            now = utcnow()
            row = {
                **{
                    k: old[k]
                    for k in (
                        "encounter_id",
                        "patient_id",
                        "kind",
                        "template_code",
                        "study_instance_uid",
                        "order_id",
                    )
                },
                "id": new_id(),
                "title": req.title or old["title"],
                "sections": [x.model_dump() for x in req.sections],
                "status": "draft",
                "version": old["version"] + 1,
                "amends_document_id": document_id,
                "amended_by_document_id": None,
                "amendment_reason": req.reason,
                "author": caller.subject,
                "author_name": caller.principal.name,
                "request_id": None,
                "created_at": now,
                "updated_at": now,
            }
            try:
                await Documents(s).add(row)
            except Exception as exc:  # the unique amends_document_id: someone amended it already
                raise Conflict(
                    "document.amended", "văn bản này đã có bản bổ sung", field="document_id"
                ) from exc
            uow.audit(
                caller.audit(
                    "document.amend",
                    "Document",
                    row["id"],
                    old["patient_id"],
                    amends=document_id,
                    reason=req.reason,
                )
            )
            await uow.commit()
        return document_model(row)

    async def verify(self, caller: Caller, document_id: str) -> sc.VerifyResult:
        async with self.ctx.uow() as uow:
            s = uow.session
            doc = await self._load(s, document_id)
            await authorize_read(
                self.ctx, uow, caller, doc["patient_id"], doc["encounter_id"], None, "document.verify"
            )
            base = {
                "document_id": document_id,
                "version": doc["version"],
                "amends_document_id": doc["amends_document_id"] or "",
                "amended_by_document_id": doc["amended_by_document_id"] or "",
            }
            if not doc["jws"]:
                await uow.commit()
                return sc.VerifyResult(**base, signed=False, valid=False, reason="chưa ký")
            key = await SigningKeys(s).get(doc["key_id"])
            prescription = await self._prescription(s, doc)
            paper = await self._paper(s, doc)
            await uow.commit()
        model = document_model(doc)
        if key is None:
            return sc.VerifyResult(
                **base, signed=True, valid=False, reason="không tìm thấy khóa ký", signature=model.signature
            )
        stored = doc["canonical"].encode()
        valid, reason = signing.verify_detached(doc["jws"], stored, key["public_jwk"])
        if valid and hashlib.sha256(stored).hexdigest() != doc["content_sha256"]:
            valid, reason = False, "mã băm nội dung không khớp"
        rebuilt = content(doc, prescription, doc["signer"], doc["signed_at"], paper)
        if valid and signing.canonical(rebuilt) != stored:
            valid, reason = False, "nội dung lưu trữ đã bị thay đổi sau khi ký"
        return sc.VerifyResult(**base, signed=True, valid=valid, reason=reason, signature=model.signature)

    async def worklist(
        self, caller: Caller, modality: str | None, include_reported: bool, limit: int, study_model: Any
    ) -> sc.StudyPage:
        async with self.ctx.uow() as uow:
            rows = await studies_waiting_for_report(
                uow.session, modality, include_reported, max(1, min(limit or 100, 500))
            )
            reports = await Documents(uow.session).reports_of_studies([r["study_instance_uid"] for r in rows])
            uow.audit(caller.audit("radiology.worklist", "ImagingStudy", None, None, count=len(rows)))
            await uow.commit()
        items = []
        for r in rows:
            m = study_model(r)
            rep = reports.get(r["study_instance_uid"])
            if rep:
                m.report_document_id, m.report_status = rep["id"], rep["status"]
            items.append(m)
        return sc.StudyPage(items=items)
