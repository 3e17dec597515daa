"""What the EMR and the lab give the claim (ADR 0208): the signed papers of a visit (emr.paper.signed →
XML7 giấy ra viện, XML13 giấy chuyển tuyến, XML11 giấy chứng nhận nghỉ việc hưởng BHXH, XML14 giấy hẹn
khám lại), the clinical course from signed notes (emr.note.signed → XML5), verified lab results
(lab.result.verified|amended) and signed imaging reports (emr.report.signed) → XML4, and the staff
identifiers written as MA_BAC_SI. Events are stored as they come (each handler runs in the consumer's
transaction, applied once by the chassis inbox; a later paper, revision or amendment replaces an earlier
one); the claim export reads them (:func:`clinical_inputs`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from google.protobuf import json_format
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import (
    charges,
    claim_course,
    claim_papers,
    claim_results,
    clinical_orders,
    code_map,
    staff_identifiers,
)
from hospital.billing.app.charges import ensure_visit, price_at, upsert
from hospital.billing.app.common import LOCAL_TZ, local_date
from hospital.billing.domain.xml130 import ChiTietCls, ChiTietDienBienBenh
from hospital.billing.domain.xml130.assemble import (
    ClinicalInputs,
    DischargePaper,
    ReferralPaper,
    Revisit,
    SickLeave,
)
from hospital.chassis.bus import Event
from hospital.chassis.db import utcnow
from hospital.contracts.emr.v1 import events_pb2 as _emr_events  # noqa: F401 - registers the types
from hospital.contracts.lab.v1 import events_pb2 as _lab_events  # noqa: F401

log = logging.getLogger(__name__)

#: the paper kinds and the Paper field that carries each one's data (emr.proto)
PAPER_FIELD = {
    "discharge_paper": "discharge",
    "referral_paper": "referral",
    "sick_leave": "sick_leave",
    "revisit": "revisit",
}
#: MA_LYDO_CT → MA_LOAI_RV (2 chuyển tuyến theo yêu cầu chuyên môn, 5 theo yêu cầu người bệnh)
REFERRAL_LOAI_RV = {1: 2, 2: 5}
#: the sections of a signed note that make its clinical course (DIEN_BIEN_LS) and the disease stage
#: (GIAI_DOAN_BENH), by note kind (the EMR's templates, Circular 32/2023/TT-BYT forms)
COURSE_SECTIONS = {
    "progress_note": ("course", "examination"),
    "admission_note": ("reason", "history", "examination", "summary"),
    "outpatient_note": ("reason", "history", "examination"),
}
STAGE_SECTIONS = {
    "progress_note": (),
    "admission_note": ("diagnosis", "prognosis"),
    "outpatient_note": ("diagnosis",),
}
# the decision's sizes of XML4's bounded elements
TEN_CHI_SO_MAX, GIA_TRI_MAX, DON_VI_MAX, MA_CHI_SO_MAX = 255, 50, 50, 50


def _ts(value: Any) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=UTC)


def _event_time(event: Event) -> datetime:
    try:
        return datetime.fromisoformat(event.time)
    except (TypeError, ValueError):
        return utcnow()


def _sections(document: Any, codes: tuple[str, ...]) -> str:
    """The document's sections of these codes, in the template's order, "Title: text" per line."""
    by_code = {s.code: s for s in document.sections if s.text.strip()}
    out = []
    for code in codes:
        section = by_code.get(code)
        if section is not None:
            out.append(f"{section.title}: {section.text.strip()}" if section.title else section.text.strip())
    return "\n".join(out)


def _raw(document: Any, code: str) -> str:
    return "\n".join(s.text.strip() for s in document.sections if s.code == code and s.text.strip())


class ClinicalRecords:
    """Event handlers storing what the claim's clinical tables need."""

    async def on_paper_signed(self, session: AsyncSession, event: Event) -> None:
        """emr.paper.signed: the visit's paper of that kind; a paper signed later replaces it (a
        correction names the paper it replaces), an older one arriving late changes nothing."""
        msg = event.message()
        paper = msg.paper
        if not msg.visit_id or paper.kind not in PAPER_FIELD:
            log.warning("emr.paper.signed %s: no visit or unknown kind %r; not used", event.id, paper.kind)
            return
        data = json_format.MessageToDict(
            getattr(paper, PAPER_FIELD[paper.kind]), preserving_proto_field_name=True
        )
        signed_at = _ts(paper.signed_at) or _event_time(event)
        await ensure_visit(session, msg.visit_id, msg.patient_id, opened_at=signed_at)
        row = {
            "visit_id": msg.visit_id,
            "kind": paper.kind,
            "paper_id": paper.id,
            "number": paper.number[:50],
            "data": data,
            "diagnoses": [
                {"icd10_code": d.icd10_code, "name": d.name, "main": d.main} for d in paper.diagnoses
            ],
            "department_code": (data.get("department_code") or msg.department_code or None),
            "signer": msg.by.subject[:100],
            "signer_name": (msg.by.display or paper.author_name)[:200],
            "signed_at": signed_at,
            "source_event_id": event.id[:100],
        }
        await self._keep_paper(session, row)

    async def _keep_paper(self, session: AsyncSession, row: dict[str, Any]) -> None:
        stmt = upsert(session)(claim_papers).values(**row)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["visit_id", "kind"],
                set_={k: stmt.excluded[k] for k in row if k not in ("visit_id", "kind")},
                where=claim_papers.c.signed_at < stmt.excluded.signed_at,
            )
        )

    async def on_note_signed(self, session: AsyncSession, event: Event) -> None:
        """emr.note.signed: a clinical note's course (XML5 DIEN_BIEN_LS) at the time it was signed; an
        amendment replaces the version it amends."""
        msg = event.message()
        doc = msg.document
        if not msg.visit_id or doc.kind not in COURSE_SECTIONS:
            return
        course = _sections(doc, COURSE_SECTIONS[doc.kind])
        reason, diagnosis = _raw(doc, "reason"), _raw(doc, "diagnosis")
        at = _ts(doc.signature.signed_at) or _ts(doc.updated_at) or _event_time(event)
        if doc.amends_document_id:
            await session.execute(
                update(claim_course)
                .where(claim_course.c.id == doc.amends_document_id)
                .values(replaced_by=doc.id)
            )
        if not (course or reason or diagnosis):
            return  # nothing the claim carries was written
        await ensure_visit(session, msg.visit_id, doc.patient_id, opened_at=at)
        stmt = upsert(session)(claim_course).values(
            id=doc.id,
            visit_id=msg.visit_id,
            kind=doc.kind,
            course=course,
            stage=_sections(doc, STAGE_SECTIONS[doc.kind]),
            reason=reason,
            diagnosis=diagnosis,
            at=at,
            performer=(msg.by.subject or doc.author)[:100],
            replaced_by=None,
        )
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

    async def on_discharge_signed(self, session: AsyncSession, event: Event) -> None:
        """emr.discharge.signed: the signed discharge summary (XML8 QT_BENHLY, TOMTAT_KQ, PP_DIEUTRI), kept
        as the visit's ``discharge_summary``; a later signed version (an amendment) replaces it."""
        msg = event.message()
        doc = msg.document
        if not msg.visit_id:
            return
        signed_at = _ts(doc.signature.signed_at) or _event_time(event)
        await ensure_visit(session, msg.visit_id, msg.patient_id, opened_at=signed_at)
        row = {
            "visit_id": msg.visit_id,
            "kind": "discharge_summary",
            "paper_id": doc.id,
            "number": "",
            "data": {s.code: s.text.strip() for s in doc.sections if s.text.strip()},
            "diagnoses": [
                {"icd10_code": d.icd10_code, "name": d.name, "main": d.main} for d in msg.discharge.diagnoses
            ],
            "department_code": None,
            "signer": msg.by.subject[:100],
            "signer_name": (msg.by.display or doc.author_name)[:200],
            "signed_at": signed_at,
            "source_event_id": event.id[:100],
        }
        await self._keep_paper(session, row)

    async def on_report_signed(self, session: AsyncSession, event: Event) -> None:
        """emr.report.signed: a radiology report (findings MO_TA, conclusion KET_LUAN) for XML4; an
        amended report (a later version) replaces the earlier one."""
        msg = event.message()
        doc = msg.document
        if not msg.study_instance_uid:
            return
        findings = _sections(doc, ("technique", "findings"))
        conclusion = _raw(doc, "conclusion")
        row = {
            "id": f"report:{msg.study_instance_uid}"[:120],
            "source": "imaging",
            "visit_id": msg.visit_id or None,
            "order_ref": None,
            "accession": msg.accession_number[:40] or None,
            "test_code": "",
            "test_name": doc.title[:300],
            "value": "",
            "unit": "",
            "description": findings,
            "conclusion": conclusion,
            "result_at": _ts(doc.signature.signed_at) or _event_time(event),
            "read_by": (msg.by.subject or doc.author)[:100],
            "revision": doc.version,
        }
        await self._keep_latest(session, row)

    async def on_lab_result(self, session: AsyncSession, event: Event) -> None:
        """lab.result.verified / lab.result.amended: the verified value (the highest revision wins) for
        XML4; the visit is the one of the lab order billing charged."""
        msg = event.message()
        r = msg.result
        by = getattr(msg, "by", None)
        order_ref = f"lab:{r.order_id}" if r.order_id else None
        visit = None
        if order_ref:
            visit = (
                await session.execute(
                    select(clinical_orders.c.visit_id).where(clinical_orders.c.order_ref == order_ref)
                )
            ).scalar()
        reference = f"Khoảng tham chiếu: {r.reference_range}" if r.reference_range else ""
        row = {
            "id": f"lab:{r.id}"[:120],
            "source": "lab",
            "visit_id": visit,
            "order_ref": order_ref,
            "accession": None,
            "test_code": r.test_code.strip().upper()[:64],
            "test_name": (r.test_name or r.test_code)[:300],
            "value": r.value,
            "unit": r.unit[:50],
            "description": reference,
            "conclusion": "",
            "result_at": _ts(r.verified_at) or _ts(r.observed_at) or _event_time(event),
            "read_by": (r.verified_by or (by.subject if by is not None else ""))[:100],
            "revision": r.revision,
        }
        await self._keep_latest(session, row)

    async def _keep_latest(self, session: AsyncSession, row: dict[str, Any]) -> None:
        stmt = upsert(session)(claim_results).values(**row)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={k: stmt.excluded[k] for k in row if k != "id"},
                where=claim_results.c.revision <= stmt.excluded.revision,
            )
        )


# ------------------------------------------------------------------------------------------- export
@dataclass(frozen=True)
class Staff:
    """Sign-in subjects → health-practitioner identifiers (reference data ``staff_identifiers``)."""

    ids: dict[str, str]

    def identifier(self, value: str | None) -> str:
        """MA_BAC_SI of a subject (``user:bs.minh``); a value that is no subject (a cashier typed the
        identifier itself) is taken as it is; a subject without an identifier gives ""."""
        if not value:
            return ""
        if value in self.ids:
            return self.ids[value]
        return "" if ":" in value else value


async def staff(session: AsyncSession) -> Staff:
    rows = await session.execute(select(staff_identifiers.c.subject, staff_identifiers.c.practitioner_id))
    return Staff({r.subject: r.practitioner_id for r in rows})


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _signed_day(row: Any) -> date:
    return local_date(row["signed_at"])


async def _service_codes(session: AsyncSession, rows: list[Any]) -> dict[str, str]:
    """MA_DICH_VU of each result: a lab test's price item (the lab code map, in force on the result's
    day), an imaging report's charged service (the charge of the order with that accession number)."""
    out: dict[str, str] = {}
    lab_codes = {r["test_code"] for r in rows if r["source"] == "lab"}
    if lab_codes:
        mapped = dict(
            (
                await session.execute(
                    select(code_map.c.code, code_map.c.price_code).where(
                        code_map.c.source == "lab", code_map.c.code.in_(lab_codes)
                    )
                )
            ).all()
        )
        for r in rows:
            if r["source"] == "lab" and r["test_code"] in mapped:
                item = await price_at(session, mapped[r["test_code"]], local_date(r["result_at"]))
                if item is not None:
                    out[r["id"]] = item["bhyt_code"]
    for r in rows:
        if r["source"] == "imaging" and r["accession"]:
            code = (
                await session.execute(
                    select(charges.c.bhyt_code)
                    .select_from(
                        charges.join(clinical_orders, charges.c.order_ref == clinical_orders.c.order_ref)
                    )
                    .where(
                        clinical_orders.c.source == "imaging",
                        clinical_orders.c.order_number == r["accession"],
                        charges.c.status == "posted",
                    )
                    .limit(1)
                )
            ).scalar()
            if code:
                out[r["id"]] = code
    return out


async def clinical_inputs(
    session: AsyncSession, visit_id: str, ma_lk: str, people: Staff
) -> tuple[ClinicalInputs, dict[str, Any]]:
    """The claim's clinical inputs of a visit, and the visit facts the papers give (``referred_to``)."""
    papers = {
        r["kind"]: r
        for r in (
            await session.execute(select(claim_papers).where(claim_papers.c.visit_id == visit_id))
        ).mappings()
    }
    extra: dict[str, Any] = {}
    visit_facts: dict[str, Any] = {}
    if (p := papers.get("discharge_paper")) is not None:
        d = p["data"]
        terminated = bool(d.get("pregnancy_terminated"))
        extra["discharge"] = DischargePaper(
            so_luu_tru=p["number"],
            ma_bs=people.identifier(p["signer"]),
            ten_bs=p["signer_name"],
            ghi_chu=d.get("note", ""),
            pp_dieutri=d.get("treatment_method", ""),
            ma_dinh_chi_thai=1 if terminated else None,
            nguyennhan_dinhchi=d.get("termination_reason", ""),
            thoigian_dinhchi=datetime.fromisoformat(d["terminated_at"].replace("Z", "+00:00"))
            if d.get("terminated_at")
            else None,
            tuoi_thai=d.get("gestational_weeks") or None,
            ma_cha=d.get("father_id", ""),
            ma_me=d.get("mother_id", ""),
            ma_the_tam=d.get("temporary_card", ""),
            ho_ten_cha=d.get("father_name", ""),
            ho_ten_me=d.get("mother_name", ""),
            so_ngay_nghi=d.get("leave_days") or None,
            ngoaitru_tungay=_date(d.get("outpatient_from")),
            ngoaitru_denngay=_date(d.get("outpatient_to")),
            ngay_ct=_signed_day(p),
        )
        extra["pp_dieu_tri"] = d.get("treatment_method", "")
        extra["ghi_chu"] = d.get("note", "")
        extra["ket_qua_dtri"] = d.get("treatment_result") or None
        extra["ma_loai_rv"] = d.get("discharge_type") or None
    if (p := papers.get("referral_paper")) is not None:
        d = p["data"]
        extra["referral"] = ReferralPaper(
            so_hoso=d.get("record_number", ""),
            so_chuyentuyen=p["number"],
            giay_chuyen_tuyen=d.get("paper_code", "") or p["number"],
            dau_hieu_ls=d.get("clinical_signs", ""),
            qt_benhly=d.get("course", ""),
            tomtat_kq=d.get("results_summary", ""),
            ma_lydo_ct=d.get("reason_code") or None,
            huong_dieu_tri=d.get("treatment_direction", ""),
            phuongtien_vc=d.get("transport", ""),
            hoten_nguoi_ht=d.get("escort", ""),
            chucdanh_nguoi_ht=d.get("escort_title", ""),
            ma_bac_si=people.identifier(p["signer"]),
            ten_dich_vu=d.get("services_given", ""),
            ten_thuoc=d.get("drugs_given", ""),
            pp_dieutri=d.get("treatment_given", ""),
        )
        visit_facts["referred_to"] = d.get("to_facility_code", "")
        extra.setdefault("pp_dieu_tri", d.get("treatment_given", ""))
        if "ma_loai_rv" not in extra or extra["ma_loai_rv"] in (None, 1):
            extra["ma_loai_rv"] = REFERRAL_LOAI_RV.get(d.get("reason_code") or 0)
            extra["ket_qua_dtri"] = d.get("treatment_result") or extra.get("ket_qua_dtri")
        extra["qt_benhly"] = d.get("course", "")
        extra["tomtat_kq"] = d.get("results_summary", "")
    if (p := papers.get("sick_leave")) is not None:
        d = p["data"]
        terminated = bool(d.get("pregnancy_terminated"))
        extra["sick_leave"] = SickLeave(
            so_ct=p["number"],
            so_seri=d.get("serial", ""),
            so_ngay_nghi=int(d.get("days") or 0),
            tu_ngay=date.fromisoformat(d["from_date"]),
            den_ngay=date.fromisoformat(d["to_date"]),
            ma_bhxh=d.get("social_insurance_number", ""),
            don_vi=d.get("employer", ""),
            ma_bs=people.identifier(p["signer"]),
            so_kcb=d.get("record_number", ""),
            pp_dieutri=d.get("treatment_method", ""),
            ma_dinh_chi_thai=1 if terminated else None,
            nguyennhan_dinhchi=d.get("termination_reason", ""),
            tuoi_thai=d.get("gestational_weeks") or None,
            ho_ten_cha=d.get("father_name", ""),
            ho_ten_me=d.get("mother_name", ""),
            ma_the_tam=d.get("temporary_card", ""),
            mau_so=d.get("form", "") or "CT07",
            ngay_ct=_signed_day(p),
        )
        extra.setdefault("pp_dieu_tri", d.get("treatment_method", ""))
    if (p := papers.get("revisit")) is not None:
        d = p["data"]
        extra["revisit"] = Revisit(
            so_giayhen_kl=p["number"],
            ngay_hen_kl=datetime.combine(date.fromisoformat(d["revisit_date"]), time(0, 0), tzinfo=LOCAL_TZ),
            ma_bac_si=people.identifier(p["signer"]),
            ngay_ct=_signed_day(p),
        )
    # XML4: lab results of the visit's lab orders and its imaging reports
    lab_refs = select(clinical_orders.c.order_ref).where(
        clinical_orders.c.visit_id == visit_id, clinical_orders.c.source == "lab"
    )
    rows = [
        dict(r)
        for r in (
            await session.execute(
                select(claim_results)
                .where(
                    or_(
                        claim_results.c.visit_id == visit_id,
                        and_(claim_results.c.source == "lab", claim_results.c.order_ref.in_(lab_refs)),
                    )
                )
                .order_by(claim_results.c.result_at, claim_results.c.id)
            )
        ).mappings()
    ]
    codes = await _service_codes(session, rows)
    extra["results"] = tuple(
        ChiTietCls(
            ma_lk=ma_lk,
            stt=n,
            ma_dich_vu=codes.get(r["id"], ""),
            ma_chi_so=r["test_code"][:MA_CHI_SO_MAX],
            ten_chi_so=r["test_name"][:TEN_CHI_SO_MAX],
            gia_tri=r["value"][:GIA_TRI_MAX],
            don_vi_do=r["unit"][:DON_VI_MAX],
            mo_ta=r["description"],
            ket_luan=r["conclusion"],
            ngay_kq=r["result_at"],
            ma_bs_doc_kq=people.identifier(r["read_by"]),
        )
        for n, r in enumerate(rows, start=1)
    )
    if (p := papers.get("discharge_summary")) is not None:  # XML8 (and XML1 when no paper said it)
        d = p["data"]
        for key, section in (("qt_benhly", "course"), ("tomtat_kq", "paraclinical")):
            if d.get(section):
                extra[key] = d[section]
        extra.setdefault("pp_dieu_tri", d.get("treatment", ""))
        extra.setdefault("ghi_chu", d.get("advice", ""))
    # XML5: the signed notes' course, oldest first; an amended note counts in its latest version
    notes = [
        dict(r)
        for r in (
            await session.execute(
                select(claim_course)
                .where(claim_course.c.visit_id == visit_id, claim_course.c.replaced_by.is_(None))
                .order_by(claim_course.c.at, claim_course.c.id)
            )
        ).mappings()
    ]
    # the reason for the visit (LY_DO_VV), for the admission (LY_DO_VNT) and the admission diagnosis
    # (CHAN_DOAN_VAO) as the first notes state them: the admission note's for a stay
    admission = [r for r in notes if r["kind"] == "admission_note"]
    first = next((r["reason"] for r in notes if r["reason"]), "")
    if first:
        extra["ly_do_vv"] = first
    if reason := next((r["reason"] for r in admission if r["reason"]), ""):
        extra["ly_do_vnt"] = reason
    if diagnosis := next((r["diagnosis"] for r in [*admission, *notes] if r["diagnosis"]), ""):
        extra["chan_doan_vao"] = diagnosis
    course = [r for r in notes if r["course"]]
    extra["clinical_course"] = tuple(
        ChiTietDienBienBenh(
            ma_lk=ma_lk,
            stt=n,
            dien_bien_ls=r["course"],
            giai_doan_benh=r["stage"],
            thoi_diem_dbls=r["at"],
            nguoi_thuc_hien=people.identifier(r["performer"]),
        )
        for n, r in enumerate(course, start=1)
    )
    extra = {k: v for k, v in extra.items() if v not in (None, "")}
    return ClinicalInputs(**extra), visit_facts
