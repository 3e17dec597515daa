"""The papers a visit produces (QĐ 130/QĐ-BYT XML7, XML13, XML11, XML14): discharge paper, referral paper,
sick-leave certificate and re-visit appointment. Each is saved as a draft on the encounter with its fields
(checked: domain/papers.py), a number and the consultation's diagnoses, and carried by a document of the
same kind that its author signs (app/documents.py: the signature covers the paper's fields; signing
publishes ``emr.paper.signed``). A signed paper is immutable; a correction is a new paper that names the one
it replaces and supersedes it once signed."""

from __future__ import annotations

from typing import Any

from hospital.chassis.caller import Caller
from hospital.chassis.db import next_value, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.security import PermissionDenied
from hospital.emr.adapters.store import Consultations, Documents, Encounters, Orders, Papers, Prescriptions
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context, authorize_read, load_encounter, local_date
from hospital.emr.domain import access
from hospital.emr.domain import papers as rules

LIVE_ORDERS = ("pending", "placed", "partial", "resulted", "completed", "reported", "active")


def paper_model(row: dict[str, Any], encounter: dict[str, Any] | None = None) -> sc.Paper:
    data = {k: v for k, v in row.items() if v is not None and k not in ("data", "request_id", "updated_at")}
    data[rules.FIELD[row["kind"]]] = row["data"]
    if encounter:
        data["department_code"] = encounter.get("department_code") or ""
        data["visit_code"] = encounter.get("visit_code") or ""
    return sc.Paper.model_validate(data)


def paper_content(paper: dict[str, Any]) -> dict[str, Any]:
    """What the author's signature covers of the paper (with the document's own content)."""
    return {
        "id": paper["id"],
        "kind": paper["kind"],
        "number": paper["number"],
        "version": paper["version"],
        "replaces_paper_id": paper["replaces_paper_id"] or "",
        "diagnoses": paper["diagnoses"],
        "data": paper["data"],
    }


def _fail(problem: rules.Problem | None) -> None:
    if problem is not None:
        raise Invalid(problem.code, problem.message, field=problem.field)


class PaperService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def _data(self, s: Any, enc: dict[str, Any], req: sc.SavePaper) -> dict[str, Any]:
        """The kind's fields, checked and completed from the encounter (department, visit code, the
        services and drugs given)."""
        name = rules.FIELD[req.kind]
        body = getattr(req, name)
        if body is None:
            raise Invalid("paper.data", f"{name} is required for a {req.kind}", field=name)
        given = [f for f in rules.FIELD.values() if f != name and getattr(req, f) is not None]
        if given:
            raise Invalid("paper.data", f"a {req.kind} carries {name} only, not {given[0]}", field=given[0])
        today = local_date(utcnow())
        # SO_HOSO / SO_KCB default: the visit code (an inpatient encounter has it from the visit's other one)
        visit_code = (
            enc["visit_code"]
            or (await Encounters(s).visit_code_of(enc["visit_id"]) if enc["visit_id"] else None)
            or ""
        )
        if isinstance(body, sc.DischargePaperIn):
            _fail(
                rules.check_discharge(
                    encounter_kind=enc["kind"],
                    treatment_result=body.treatment_result,
                    outpatient_from=body.outpatient_from,
                    outpatient_to=body.outpatient_to,
                    pregnancy_terminated=body.pregnancy_terminated,
                    termination_reason=body.termination_reason,
                    gestational_weeks=body.gestational_weeks,
                )
            )
            body = body.model_copy(update={"department_code": enc["department_code"]})
        elif isinstance(body, sc.ReferralIn):
            kind, _ = rules.REFERRAL_TYPE[body.reason_code]
            update: dict[str, Any] = {
                "referral_type": kind,
                "record_number": body.record_number or visit_code,
            }
            if not body.services_given:
                update["services_given"] = "; ".join(
                    dict.fromkeys(
                        o["description"]
                        for o in await Orders(s).of_encounter(enc["id"])
                        if o["kind"] in ("lab", "imaging") and o["status"] in LIVE_ORDERS and o["description"]
                    )
                )[:1024]
            if not body.drugs_given:
                drugs = [
                    item.get("drug_name") or item.get("drug_code") or ""
                    for p in await Prescriptions(s).of_encounter(enc["id"])
                    for item in p["items"]
                ] + [
                    o["description"]
                    for o in await Orders(s).of_encounter(enc["id"])
                    if o["kind"] == "medication" and o["status"] == "active"
                ]
                update["drugs_given"] = "; ".join(dict.fromkeys(d for d in drugs if d))[:1024]
            body = body.model_copy(update=update)
            if not body.services_given:
                raise Invalid(
                    "referral.services_given",
                    "ghi các dịch vụ kỹ thuật đã làm (lượt khám chưa có chỉ định nào)",
                    field="referral.services_given",
                )
        elif isinstance(body, sc.SickLeaveIn):
            _fail(
                rules.check_sick_leave(
                    encounter_kind=enc["kind"],
                    service_date=enc["service_date"],
                    from_date=body.from_date,
                    to_date=body.to_date,
                    days=body.days,
                    pregnancy_terminated=body.pregnancy_terminated,
                    termination_reason=body.termination_reason,
                    gestational_weeks=body.gestational_weeks,
                )
            )
            body = body.model_copy(
                update={
                    "days": rules.leave_days(body.from_date, body.to_date),
                    "record_number": body.record_number or visit_code,
                    "form": body.form or "CT07",
                }
            )
        elif isinstance(body, sc.RevisitIn):
            _fail(
                rules.check_revisit(
                    service_date=enc["service_date"], today=today, revisit_date=body.revisit_date
                )
            )
        return body.model_dump(mode="json")

    async def save(self, caller: Caller, encounter_id: str, req: sc.SavePaper) -> sc.Paper:
        async with self.ctx.uow() as uow:
            s = uow.session
            enc = await load_encounter(s, encounter_id, for_update=True)
            access.check_write(caller.principal, self.ctx.departments(caller), enc["department_code"])
            repo = Papers(s)
            if req.request_id and not req.paper_id:
                done = await repo.by_request(req.request_id)
                if done is not None:
                    return paper_model(done, enc)
            data = await self._data(s, enc, req)
            dx = [
                {"icd10_code": d["icd10_code"], "name": d["name"], "main": d["main"], "note": d["note"]}
                for d in await Consultations(s).diagnoses(encounter_id)
            ]
            if not any(d["main"] for d in dx):
                raise Invalid(
                    "paper.no_diagnosis",
                    "cần chẩn đoán chính (ICD-10) của lượt khám trước khi lập giấy",
                    field="encounter_id",
                )
            dx.sort(key=lambda d: not d["main"])
            now = utcnow()
            if req.paper_id:
                row = await repo.get(req.paper_id, for_update=True)
                if row is None or row["encounter_id"] != encounter_id or row["kind"] != req.kind:
                    raise NotFound(
                        "paper.not_found", f"no {req.kind} {req.paper_id} on this encounter", field="paper_id"
                    )
                if row["status"] != "draft":
                    raise Conflict(
                        "paper.signed",
                        "giấy đã ký: không sửa được, hãy lập giấy mới thay thế (replaces_paper_id)",
                        field="paper_id",
                    )
                if row["author"] != caller.subject:
                    raise PermissionDenied("chỉ người lập được sửa bản nháp")
                assigned = {k: row["data"][k] for k in rules.ASSIGNED.get(req.kind, ()) if k in row["data"]}
                await repo.update(req.paper_id, data={**data, **assigned}, diagnoses=dx, updated_at=now)
                pid = req.paper_id
            else:
                pid = await self._create(s, caller, enc, req, data, dx, now)
            uow.audit(caller.audit("paper.save", "Paper", pid, enc["patient_id"], kind=req.kind))
            out = paper_model(await repo.get(pid) or {}, enc)
            await uow.commit()
        return out

    async def _create(
        self,
        s: Any,
        caller: Caller,
        enc: dict[str, Any],
        req: sc.SavePaper,
        data: dict[str, Any],
        dx: list[dict[str, Any]],
        now: Any,
    ) -> str:
        existing = await Papers(s).of_encounter(enc["id"], req.kind)
        draft = next((p for p in existing if p["status"] == "draft"), None)
        if draft is not None:
            raise Conflict(
                "paper.draft_exists",
                f"lượt khám đã có bản nháp {draft['number']}: sửa bản nháp đó (paper_id)",
                field="paper_id",
            )
        current = next((p for p in existing if p["status"] == "signed"), None)
        if current is not None and req.replaces_paper_id != current["id"]:
            raise Conflict(
                "paper.exists",
                f"lượt khám đã có {rules.TITLE[req.kind].lower()} đã ký {current['number']}: "
                "giấy mới phải ghi giấy nó thay thế (replaces_paper_id)",
                field="replaces_paper_id",
            )
        if current is None and req.replaces_paper_id:
            raise Invalid(
                "paper.replaces", "không có giấy đã ký nào như vậy để thay thế", field="replaces_paper_id"
            )
        version = current["version"] + 1 if current else 1
        n = await next_value(s, f"paper.{req.kind}")
        number = rules.number(req.kind, self.ctx.settings.facility_code, n)
        if req.kind == "referral_paper":
            data = {**data, "paper_code": number}
        elif req.kind == "sick_leave":
            data = {**data, "serial": f"{n:07d}"}
        document_id, pid = new_id(), new_id()
        await Documents(s).add(
            {
                "id": document_id,
                "encounter_id": enc["id"],
                "patient_id": enc["patient_id"],
                "kind": req.kind,
                "template_code": None,
                "title": f"{rules.TITLE[req.kind]} {number}",
                "sections": [],
                "status": "draft",
                "version": version,
                "amends_document_id": current["document_id"] if current else None,
                "amended_by_document_id": None,
                "amendment_reason": None,
                "study_instance_uid": None,
                "order_id": None,
                "author": caller.subject,
                "author_name": caller.principal.name,
                "request_id": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        await Papers(s).add(
            {
                "id": pid,
                "encounter_id": enc["id"],
                "patient_id": enc["patient_id"],
                "kind": req.kind,
                "number": number,
                "data": data,
                "diagnoses": dx,
                "status": "draft",
                "version": version,
                "document_id": document_id,
                "replaces_paper_id": current["id"] if current else None,
                "author": caller.subject,
                "author_name": caller.principal.name,
                "request_id": req.request_id or None,
                "created_at": now,
                "updated_at": now,
                "signed_at": None,
            }
        )
        return pid

    async def list(self, caller: Caller, encounter_id: str) -> sc.PaperPage:
        async with self.ctx.uow() as uow:
            enc = await load_encounter(uow.session, encounter_id)
            await authorize_read(self.ctx, uow, caller, enc["patient_id"], encounter_id, None, "paper.list")
            rows = await Papers(uow.session).of_encounter(encounter_id)
            await uow.commit()
        return sc.PaperPage(items=[paper_model(r, enc) for r in rows])
