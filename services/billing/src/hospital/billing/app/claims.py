"""QĐ130 claim export of a closed insured visit: XML1 from the visit, XML2 (drugs) and XML3 (services,
supplies, bed-days) from the invoice's posted charges and their BHYT split, the papers of an inpatient
stay (XML7, XML8, XML13) from what billing knows (``domain.xml130.assemble``), wrapped in GIAMDINHHS,
signed with the facility certificate and validated against the decision's schemas before it leaves."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.billing.adapters.tables import (
    bed_codes,
    claims,
    department_codes,
    invoices,
    payments,
    stays,
    visit_cards,
    visits,
)
from hospital.billing.app.charges import ensure_visit, price_at
from hospital.billing.app.clinical import clinical_inputs, staff
from hospital.billing.app.common import (
    ROUTE_BY_KIND,
    later_cards,
    local_date,
    posted_charges,
    quantity_of,
    refresh_invoice,
    route_of,
    split_for,
    split_rules,
)
from hospital.billing.config import BillingSettings
from hospital.billing.devcredentials import is_development_certificate
from hospital.billing.domain.insurance import InsuranceCard, InsuranceError
from hospital.billing.domain.pricing import DRUG_GROUPS, SUPPLY_GROUPS
from hospital.billing.domain.xml130 import (
    ChiTietDvkt,
    ChiTietThuoc,
    Xml130Error,
    build_giamdinhhs,
    missing_elements,
    sign,
    validate,
)
from hospital.billing.domain.xml130.assemble import CardUse, ClaimVisit, assemble
from hospital.billing.domain.xml130.codelists import (
    code_problems,
    doituong_table,
    national_code_problem,
    province_code,
)
from hospital.billing.domain.xml130.codes import doituong_kcb
from hospital.chassis.app import Runtime
from hospital.chassis.bus import Event
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.billing.v1 import events_pb2
from hospital.contracts.emr.v1 import events_pb2 as emr_events  # noqa: F401 - registers the types

log = logging.getLogger(__name__)

ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,2})?")


def _code_element(xml_group: int) -> str:
    """The element a price item's national code fills, by MA_NHOM (drugs, supplies, the rest services)."""
    if xml_group in DRUG_GROUPS:
        return "MA_THUOC"
    return "MA_VAT_TU" if xml_group in SUPPLY_GROUPS else "MA_DICH_VU"


# MA_BENH_KT (XML1) and MA_BENH (XML3) are at most 100 characters; QĐ130 allows at most 12 secondary codes
CODES_MAX_CHARS = 100
SECONDARY_MAX = 12


def secondary_within(main: str, secondary: list[str]) -> list[str]:
    """The secondary codes, deduplicated and without the main one, as many as fit the claim's limits
    (in the doctor's order: the first ones are the ones that matter most)."""
    kept: list[str] = []
    for code in dict.fromkeys(secondary):
        if code == main or len(kept) == SECONDARY_MAX:
            continue
        if len(";".join([main, *kept, code])) > CODES_MAX_CHARS:
            break
        kept.append(code)
    return kept


def _recorded_at(msg: Any, event: Event) -> datetime:
    """When the doctor saved the diagnoses: the event's ``recorded_at``, else the envelope's time."""
    ts = msg.recorded_at
    if ts.seconds or ts.nanos:
        return ts.ToDatetime(tzinfo=UTC)
    try:
        return datetime.fromisoformat(event.time)
    except (TypeError, ValueError):
        return utcnow()


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _whole(amount: Decimal | int) -> int:
    """An amount of the claim (2 decimals) in whole VND, for the event's integer fields."""
    return int(Decimal(amount).to_integral_value(ROUND_HALF_UP))


@dataclass(frozen=True)
class ClaimDocument:
    document: bytes
    incomplete: list[str]  # "XML1.LY_DO_VV", ...: empty elements BHXH review needs filled


class ClaimService:
    def __init__(self, rt: Runtime[BillingSettings]) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.rules = split_rules(rt.settings)

    async def set_diagnosis(self, visit_id: str, code: str, text: str, caller: Caller) -> dict[str, Any]:
        code = code.strip().upper()
        if not ICD10.fullmatch(code):
            raise Invalid("claim.diagnosis_code", f"{code!r} is not an ICD-10 code like K80.2", field="code")
        async with self.rt.uow() as uow:
            row = (
                (await uow.session.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            )
            if row is None:
                raise NotFound("visit.not_found", f"billing knows no visit {visit_id}")
            await uow.session.execute(
                visits.update()
                .where(visits.c.id == visit_id)
                .values(
                    diagnosis_code=code,
                    diagnosis_text=text.strip()[:500],
                    diagnosis_at=utcnow(),
                    diagnosis_source="cashier",
                )
            )
            uow.audit(caller.audit("visit.diagnosis", "Visit", visit_id, row["patient_id"], code=code))
            await uow.commit()
        return {"visit_id": visit_id, "code": code, "text": text}

    async def record_card(
        self,
        visit_id: str,
        number: str,
        valid_from: date,
        valid_to: date,
        registered_facility: str,
        five_year_date: date | None,
        caller: Caller,
    ) -> dict[str, Any]:
        """A card issued during a visit (new benefit level, registered facility or validity): from its
        first day the visit's lines are paid under it, and the claim lists it after the earlier cards.
        Recording the same card again changes nothing."""
        number = number.strip().upper()
        try:
            InsuranceCard(number, valid_from, valid_to)
        except InsuranceError as exc:
            raise Invalid("card.invalid", str(exc), field="number") from None
        if not re.fullmatch(r"[0-9]{5}", registered_facility):
            raise Invalid(
                "card.registered_facility",
                "the registered facility (MA_DKBD) is 5 digits: province + facility, e.g. 35001",
                field="registered_facility",
            )
        async with self.rt.uow() as uow:
            s = uow.session
            v = (await s.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            if v is None:
                raise NotFound("visit.not_found", f"billing knows no visit {visit_id}")
            if v["kind"] not in ROUTE_BY_KIND or not v["card_number"]:
                raise Conflict("card.not_insured", "the visit was not opened with a BHYT card")
            first_from = v["card_valid_from"]
            end = local_date(v["closed_at"] or utcnow())
            if not local_date(v["opened_at"]) <= valid_from <= end or (
                first_from and valid_from <= first_from
            ):
                raise Conflict(
                    "card.not_during_visit",
                    "a card recorded during a visit starts after the visit's first card and between the "
                    f"visit's first and last day ({local_date(v['opened_at'])} .. {end})",
                    field="valid_from",
                )
            key = (visit_cards.c.visit_id == visit_id) & (visit_cards.c.card_number == number)
            same = (
                (await s.execute(select(visit_cards).where(key, visit_cards.c.valid_from == valid_from)))
                .mappings()
                .first()
            )
            if same is not None:
                if (same["valid_to"], same["registered_facility"]) != (valid_to, registered_facility):
                    raise Conflict("card.recorded", "this card is already recorded with other details")
            else:
                await s.execute(
                    visit_cards.insert().values(
                        visit_id=visit_id,
                        card_number=number,
                        valid_from=valid_from,
                        valid_to=valid_to,
                        registered_facility=registered_facility,
                        five_year_date=five_year_date,
                        recorded_by=caller.subject,
                        recorded_at=utcnow(),
                    )
                )
                inv = (await s.execute(select(invoices.c.id).where(invoices.c.visit_id == visit_id))).first()
                if inv is not None:
                    await refresh_invoice(s, inv.id, self.rules)
                uow.audit(caller.audit("visit.card", "Visit", visit_id, v["patient_id"], card=number))
            later = await later_cards(s, visit_id)
            await uow.commit()
        return {
            "visit_id": visit_id,
            "cards": [
                {
                    "number": v["card_number"],
                    "valid_from": _iso(v["card_valid_from"]),
                    "valid_to": _iso(v["card_valid_to"]),
                },
                *(
                    {
                        "number": c["card_number"],
                        "valid_from": _iso(c["valid_from"]),
                        "valid_to": _iso(c["valid_to"]),
                    }
                    for c in later
                ),
            ],
        }

    async def on_diagnosis_recorded(self, session: AsyncSession, event: Event) -> None:
        """emr.diagnosis.recorded: the doctor's diagnoses of the visit become the claim's MA_BENH_CHINH
        (with its name, CHAN_DOAN_RV) and MA_BENH_KT. The latest recorded wins: a diagnosis recorded
        before the one billing holds (an earlier EMR save, or older than a manual entry at the cash
        desk) changes nothing; a later save by the doctor replaces a manual entry."""
        msg = event.message()
        if not msg.visit_id:
            return  # an encounter without a visit billing could claim
        diagnoses = [d for d in msg.diagnoses if d.icd10_code.strip()]
        main = next((d for d in diagnoses if d.main), diagnoses[0] if diagnoses else None)
        if main is None:
            log.warning("emr.diagnosis.recorded %s for visit %s has no diagnosis", event.id, msg.visit_id)
            return
        code = main.icd10_code.strip().upper()
        if not ICD10.fullmatch(code):
            log.warning("emr.diagnosis.recorded %s: main code %r is not ICD-10; not used", event.id, code)
            return
        others = [d.icd10_code.strip().upper() for d in diagnoses if d is not main]
        secondary = secondary_within(code, [c for c in others if ICD10.fullmatch(c)])
        if len(secondary) < len(set(others) - {code}):
            log.warning(
                "visit %s: secondary diagnoses beyond QĐ130's limits (or not ICD-10) left off the claim: %s",
                msg.visit_id,
                sorted(set(others) - {code} - set(secondary)),
            )
        at = _recorded_at(msg, event)
        await ensure_visit(session, msg.visit_id, msg.patient_id, opened_at=at)
        await session.execute(
            update(visits)
            .where(
                visits.c.id == msg.visit_id,
                visits.c.diagnosis_at.is_(None) | (visits.c.diagnosis_at < at),
            )
            .values(
                diagnosis_code=code,
                diagnosis_text=main.name.strip()[:500],
                diagnosis_secondary=";".join(secondary) or None,
                diagnosis_at=at,
                diagnosis_source="emr",
                consulting_doctor=(msg.by.subject or None) and msg.by.subject[:100],
            )
        )

    def _credentials(self) -> tuple[bytes, bytes]:
        key, cert = self.settings.facility_key_file, self.settings.facility_cert_file
        if not key or not cert or not Path(key).exists() or not Path(cert).exists():
            raise DomainError(
                "claim.no_certificate",
                "the facility signing key and certificate are not configured "
                "(HOSPITAL_BILLING_FACILITY_KEY_FILE, HOSPITAL_BILLING_FACILITY_CERT_FILE)",
                status=503,
            )
        cert_pem = Path(cert).read_bytes()
        if self.settings.environment == "production" and is_development_certificate(cert_pem):
            raise DomainError(
                "claim.development_certificate",
                "the configured facility certificate is the local "
                "stack's development certificate; configure the facility's own certificate",
                status=503,
            )
        return Path(key).read_bytes(), cert_pem

    async def _bed_codes(self, s: Any, rows: list[Any]) -> dict[str, str]:
        """MA_GIUONG (4 characters) of the lines' beds; a bed without a mapping is left out of the claim."""
        local = {r["bed_code"] for r in rows if r["bed_code"]}
        if not local:
            return {}
        found = await s.execute(
            select(bed_codes.c.bed_code, bed_codes.c.claim_code).where(bed_codes.c.bed_code.in_(local))
        )
        return {row.bed_code: row.claim_code for row in found}

    async def _department_codes(self, s: Any, local: list[str]) -> dict[str, str]:
        """MA_KHOA (national department code) of each of the hospital's departments and wards the claim
        names; one without a mapping stops the claim (409 ``claim.unmapped_department``)."""
        wanted = set(local)
        found = await s.execute(
            select(department_codes.c.department_code, department_codes.c.claim_code).where(
                department_codes.c.department_code.in_(wanted)
            )
        )
        mapped = {row.department_code: row.claim_code for row in found}
        missing = sorted(wanted - set(mapped))
        if missing:
            raise Conflict(
                "claim.unmapped_department",
                f"departments without a national department code (QĐ 5937/QĐ-BYT Phụ lục 5): "
                f"{', '.join(missing)}; map them in department_codes",
                field="department_code",
            )
        return mapped

    @staticmethod
    def _check_national_codes(rows: list[Any]) -> None:
        """Every line's price item maps to a national code of its kind (MA_DICH_VU, MA_THUOC, MA_VAT_TU);
        one that does not stops the claim (409 ``claim.unmapped_item``) naming the hospital's item."""
        for r in rows:
            element = _code_element(r["xml_group"])
            problem = national_code_problem(element, r["bhyt_code"] or "")
            if problem:
                raise Conflict(
                    "claim.unmapped_item",
                    f"price item {r['price_code']} ({r['name']}): {problem}; map the hospital's code to "
                    f"the national one in the price list",
                    field="price_code",
                )

    async def _drug_details(self, s: Any, rows: list[Any]) -> dict[str, dict[str, str]]:
        """XML2 details of each drug line's price item in force on its day (strength, route, ...)."""
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            if r["xml_group"] not in DRUG_GROUPS or r["price_code"] in out:
                continue
            item = await price_at(s, r["price_code"], local_date(r["service_at"]))
            if item is not None:
                out[r["price_code"]] = {
                    "ham_luong": item["strength"] or "",
                    "dang_bao_che": item["dosage_form"] or "",
                    "duong_dung": item["route_code"] or "",
                    "so_dang_ky": item["registration_number"] or "",
                    "tt_thau": item["tender"] or "",
                }
        return out

    async def export(self, visit_id: str, caller: Caller, default_doctor: str | None = None) -> ClaimDocument:
        """The signed claim of a closed insured visit. It must pass the decision's structure (every
        element, order, types, sizes, formats); the elements BHXH review needs filled that billing does
        not have yet (the EMR's, reception's) are listed in ``incomplete``."""
        st = self.settings
        key_pem, cert_pem = self._credentials()
        async with self.rt.uow() as uow:
            s = uow.session
            v = (await s.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
            if v is None:
                raise NotFound("visit.not_found", f"billing knows no visit {visit_id}")
            if v["status"] != "closed" or v["closed_at"] is None:
                raise Conflict("claim.visit_open", "only a closed visit can be claimed")
            if v["kind"] not in ROUTE_BY_KIND or not v["card_number"]:
                raise Conflict("claim.not_insured", "the visit was not covered by a BHYT card")
            if not v["diagnosis_code"]:
                raise Conflict(
                    "claim.no_diagnosis",
                    "no main diagnosis (ICD-10) yet: the doctor saves it in the EMR consultation, or "
                    f"record it by hand: PUT /api/v1/visits/{visit_id}/diagnosis",
                )
            rows = await posted_charges(s, visit_id)
            if not rows:
                raise Conflict("claim.empty", "the visit has no charge")
            # MA_BAC_SI: the ordering doctor's health-practitioner identifier (staff reference data), else
            # the consulting doctor's (the EMR consultation), else the one the caller gives
            people = await staff(s)
            consulting = people.identifier(v["consulting_doctor"])

            def doctor_of(line: Any) -> str:
                return people.identifier(line["ordered_by"]) or consulting or (default_doctor or "")

            missing = [r for r in rows if not doctor_of(r)]
            if missing:
                unknown = sorted(
                    {w for w in (*(r["ordered_by"] for r in missing), v["consulting_doctor"]) if w}
                )
                raise Conflict(
                    "claim.no_doctor",
                    "lines without the doctor's health-practitioner identifier (MA_BAC_SI): "
                    f"{missing[0]['name']}...; "
                    + (
                        f"staff without an identifier: {', '.join(unknown)} (PUT /api/v1/staff/...); "
                        if unknown
                        else ""
                    )
                    + "or give ma_bac_si for them",
                    field="ma_bac_si",
                )
            self._check_national_codes(rows)
            khoa = await self._department_codes(s, [r["department_code"] or "KKB" for r in rows])
            later = await later_cards(s, visit_id)
            split = split_for(v, rows, self.rules, places=2, later=later)
            drugs = await self._drug_details(s, rows)
            beds = await self._bed_codes(s, rows)
            ma_lk = v["visit_code"]
            thuoc, dvkt = [], []
            secondary = tuple(c for c in (v["diagnosis_secondary"] or "").split(";") if c)
            codes = ";".join((v["diagnosis_code"], *secondary))
            for r, line in zip(rows, split.lines, strict=True):
                common = dict(
                    ma_lk=ma_lk,
                    ma_nhom=r["xml_group"],
                    don_vi_tinh=r["unit"],
                    so_luong=quantity_of(r["qty_milli"]),
                    ma_khoa=khoa[r["department_code"] or "KKB"],
                    ma_bac_si=doctor_of(r),
                    ngay_yl=r["service_at"],
                    ngay_th_yl=r["service_at"],
                    **line.xml_fields(),
                )
                if r["xml_group"] in DRUG_GROUPS:
                    drug = drugs.get(r["price_code"], {})
                    thuoc.append(
                        ChiTietThuoc(
                            stt=len(thuoc) + 1,
                            ma_thuoc=r["bhyt_code"],
                            ten_thuoc=r["name"],
                            don_gia=r["hospital_unit_price"],
                            **drug,
                            **common,
                        )
                    )
                else:
                    supply = r["xml_group"] in SUPPLY_GROUPS
                    dvkt.append(
                        ChiTietDvkt(
                            stt=len(dvkt) + 1,
                            ma_dich_vu="" if supply else r["bhyt_code"],
                            ma_vat_tu=r["bhyt_code"] if supply else "",
                            ten_dich_vu="" if supply else r["name"],
                            ten_vat_tu=r["name"] if supply else "",
                            don_gia_bv=r["hospital_unit_price"],
                            don_gia_bh=r["insurance_unit_price"],
                            ma_giuong=beds.get(r["bed_code"] or "", ""),
                            ma_benh=codes,
                            **common,
                        )
                    )
            today = local_date(utcnow())
            facility = re.sub(r"[^0-9]", "", v["card_facility"] or "")
            birth: date | int = (
                date(v["birth_year"], v["birth_month"], v["birth_day"])
                if v["birth_year"] and v["birth_month"] and v["birth_day"]
                else (v["birth_year"] or 1900)
            )
            admitted = (
                await s.execute(select(func.min(stays.c.admitted_at)).where(stays.c.visit_id == visit_id))
            ).scalar()
            paid_at = (
                await s.execute(
                    select(func.max(payments.c.received_at))
                    .select_from(payments.join(invoices, payments.c.invoice_id == invoices.c.id))
                    .where(invoices.c.visit_id == visit_id, invoices.c.status == "paid")
                )
            ).scalar()
            departments = tuple(
                dict.fromkeys(khoa[r["department_code"]] for r in rows if r["department_code"])
            )
            cards = (
                CardUse(
                    v["card_number"],
                    facility if len(facility) == 5 else "",
                    v["card_valid_from"],
                    v["card_valid_to"],
                    v["card_five_year_date"],
                ),
                *(
                    CardUse(
                        c["card_number"],
                        c["registered_facility"],
                        c["valid_from"],
                        c["valid_to"],
                        c["five_year_date"],
                    )
                    for c in later
                ),
            )
            visit_day = local_date(v["opened_at"])
            law51 = visit_day >= st.law51_from
            ma_doituong = doituong_kcb(
                route_of(v, st.facility_code).value,
                inpatient=v["inpatient"],
                law51=law51,
                level=st.facility_level,
                former_tier=st.facility_former_tier,
            )
            inputs, facts = await clinical_inputs(s, visit_id, ma_lk, people)
            visit = ClaimVisit(
                ma_lk=ma_lk,
                facility_code=st.facility_code,
                facility_head_id=st.facility_head_id,
                patient_code=v["patient_code"] or v["patient_id"],
                full_name=v["patient_name"] or "Không rõ",
                birth=birth,
                sex=v["sex"],
                cccd=v["cccd"] or "",
                cards=cards,
                ma_doituong_kcb=ma_doituong,
                opened_at=v["opened_at"],
                closed_at=v["closed_at"],
                diagnosis_code=v["diagnosis_code"],
                diagnosis_text=v["diagnosis_text"] or "",
                secondary_codes=secondary,
                inpatient=v["inpatient"],
                admitted_at=admitted,
                discharge_type=v["discharge_type"],
                departments=departments,
                phone=v["phone"] or "",
                address=v["address"] or "",
                province_code=province_code(v["province_code"] or ""),
                referral_paper=v["referral_code"] or "",
                referred_to=facts.get("referred_to", ""),
                paid_at=paid_at,
                claim_year=today.year,
                claim_month=today.month,
            )
            # what reception recorded, in the national lists' codes
            inputs = dataclasses.replace(
                inputs,
                ma_dantoc=v["ethnicity_code"] or inputs.ma_dantoc,
                ma_nghe_nghiep=v["occupation_code"] or inputs.ma_nghe_nghiep,
            )
            in_force = doituong_table(visit_day, st.law51_from)
            try:
                hoso = assemble(visit, thuoc, dvkt, inputs)
                wrong = code_problems(hoso, doituong=in_force)
                if wrong:
                    raise Conflict(
                        "claim.code_list",
                        f"the claim has codes outside the national lists: {'; '.join(wrong)}",
                    )
                unsigned = build_giamdinhhs([hoso], ma_cskcb=st.facility_code, ngay_lap=today)
                signed = sign(unsigned, key_pem, cert_pem)
                validate(signed, strict=False)
            except Xml130Error as exc:
                raise Conflict("claim.invalid", f"the claim does not pass QĐ130 checks: {exc}") from exc
            incomplete = missing_elements(signed)
            digest = hashlib.sha256(signed).hexdigest()
            cid, now = new_id(), utcnow()
            await s.execute(
                claims.insert().values(
                    id=cid,
                    visit_id=visit_id,
                    ma_lk=ma_lk,
                    sha256=digest,
                    document=signed.decode("utf-8"),
                    exported_by=caller.subject,
                    exported_at=now,
                )
            )
            msg = events_pb2.ClaimExported(
                claim_id=cid,
                visit_id=visit_id,
                ma_lk=ma_lk,
                sha256=digest,
                t_tongchi_bv=_whole(split.t_tongchi_bv),
                t_bhtt=_whole(split.t_bhtt),
            )
            msg.exported_at.FromDatetime(now)
            uow.publish("billing.claim.exported", msg)
            uow.audit(caller.audit("claim.export", "Visit", visit_id, v["patient_id"], sha256=digest))
            await uow.commit()
        return ClaimDocument(signed, incomplete)
