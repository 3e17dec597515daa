"""Patient index use cases: register, read (audited), search, scan, update, merge."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.admissions.adapters.tables import idempotency, insurance_cards, patients
from hospital.admissions.app.mapping import patient_dict, patient_proto
from hospital.admissions.domain.identity import (
    BhytIdentity,
    CccdIdentity,
    PartialDate,
    ScanError,
    identity_conflicts,
    parse_bhyt_number,
    parse_scan,
)
from hospital.admissions.domain.names import fold, name_match_score, normalize_name, normalize_phone
from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import sequence_next, utcnow
from hospital.chassis.errors import Conflict, Invalid, NotFound
from hospital.chassis.ids import new_id
from hospital.contracts.admissions.v1 import events_pb2

CCCD_RE = re.compile(r"^\d{12}$")
OLD_ID_RE = re.compile(r"^\d{9}$")
PHONE_RE = re.compile(r"^0\d{9,10}$")


@dataclass
class NewPatient:
    full_name: str
    birth_date: str
    sex: str
    cccd: str | None = None
    old_id_number: str | None = None
    bhyt_number: str | None = None
    bhyt_valid_from: date | None = None
    bhyt_valid_to: date | None = None
    bhyt_registered_facility: str | None = None
    bhyt_five_year_date: date | None = None
    phone: str | None = None
    address_line: str | None = None
    ward: str | None = None
    district: str | None = None
    province_code: str | None = None
    ethnicity: str | None = None
    occupation: str | None = None
    guardian_name: str | None = None
    guardian_phone: str | None = None
    request_id: str | None = None


def _validated(p: NewPatient) -> dict[str, Any]:
    name = normalize_name(p.full_name or "")
    if not name or len(name) < 2:
        raise Invalid("patient.full_name", "full name is required", field="full_name")
    try:
        birth = PartialDate.parse(p.birth_date)
    except (ValueError, TypeError):
        raise Invalid("patient.birth_date", "birth_date must be YYYY-MM-DD or a year YYYY", field="birth_date") from None
    if birth.year < 1900 or (birth.to_date() or date(birth.year, 1, 1)) > date.today():
        raise Invalid("patient.birth_date", "birth_date is out of range", field="birth_date")
    if p.sex not in ("male", "female"):
        raise Invalid("patient.sex", "sex must be 'male' or 'female'", field="sex")
    if p.cccd and not CCCD_RE.match(p.cccd):
        raise Invalid("patient.cccd", "cccd must be 12 digits", field="cccd")
    if p.old_id_number and not OLD_ID_RE.match(p.old_id_number):
        raise Invalid("patient.old_id_number", "old_id_number (CMND) must be 9 digits", field="old_id_number")
    phone = None
    if p.phone:
        phone = normalize_phone(p.phone)
        if not phone or not PHONE_RE.match(phone):
            raise Invalid("patient.phone", "phone must be a Vietnamese phone number", field="phone")
    if p.bhyt_number:
        try:
            parse_bhyt_number(p.bhyt_number)
        except ScanError as exc:
            raise Invalid(exc.code, exc.message, field="bhyt_number") from None
    return {"full_name": name, "birth": birth, "phone": phone}


class PatientService:
    def __init__(self, rt: Runtime, settings: Any) -> None:
        self.rt = rt
        self.settings = settings

    async def register(self, p: NewPatient, caller: Caller) -> dict[str, Any]:
        v = _validated(p)
        async with self.rt.uow() as uow:
            s = uow.session
            if p.request_id:
                prior = (await s.execute(select(idempotency.c.resource_id)
                                         .where(idempotency.c.key == f"patient:{p.request_id}"))).scalar()
                if prior:
                    return await self._load(s, prior)
            if p.cccd:
                other = (await s.execute(select(patients.c.id, patients.c.patient_code).where(
                    patients.c.cccd == p.cccd, patients.c.merged_into.is_(None)))).first()
                if other:
                    raise Conflict("patient.cccd_exists", f"CCCD {p.cccd} belongs to patient {other.patient_code}",
                                   field="cccd")
            if p.bhyt_number:
                other = (await s.execute(select(patients.c.patient_code).join(
                    insurance_cards, insurance_cards.c.patient_id == patients.c.id).where(
                    insurance_cards.c.number == p.bhyt_number.upper(), patients.c.merged_into.is_(None)))).first()
                if other:
                    raise Conflict("patient.bhyt_linked",
                                   f"BHYT card {p.bhyt_number} is linked to patient {other.patient_code}",
                                   field="bhyt_number")
            now = utcnow()
            pid = new_id()
            year = now.year % 100
            seq = await sequence_next(s, "patient_code")
            code = f"{self.settings.patient_code_prefix}{year:02d}{seq:07d}"
            birth: PartialDate = v["birth"]
            row = dict(
                id=pid, patient_code=code, full_name=v["full_name"], name_folded=fold(v["full_name"]),
                birth_year=birth.year, birth_month=birth.month, birth_day=birth.day, sex=p.sex, cccd=p.cccd or None,
                old_id_number=p.old_id_number or None, phone=v["phone"], address_line=p.address_line,
                ward=p.ward, district=p.district, province_code=p.province_code, ethnicity=p.ethnicity,
                occupation=p.occupation, guardian_name=p.guardian_name, guardian_phone=p.guardian_phone,
                merged_into=None, created_at=now, updated_at=now)
            await s.execute(patients.insert().values(**row))
            card_rows = []
            if p.bhyt_number:
                num = parse_bhyt_number(p.bhyt_number)
                card_rows.append(dict(
                    id=new_id(), patient_id=pid, number=num.value, benefit_level=num.benefit_level,
                    benefit_rate=num.benefit_rate, province_code=num.province_code,
                    registered_facility=p.bhyt_registered_facility, valid_from=p.bhyt_valid_from,
                    valid_to=p.bhyt_valid_to, five_year_date=p.bhyt_five_year_date, created_at=now))
                await s.execute(insurance_cards.insert().values(**card_rows[0]))
            if p.request_id:
                await s.execute(idempotency.insert().values(key=f"patient:{p.request_id}", resource_id=pid,
                                                            created_at=now))
            patient = patient_dict(row, card_rows)
            uow.publish("admissions.patient.registered",
                        events_pb2.PatientRegistered(patient=patient_proto(patient), by=caller.actor()))
            uow.audit(caller.audit("patient.register", "Patient", pid, pid, patient_code=code))
            await uow.commit()
            return patient

    async def update(self, pid: str, changes: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Correct demographic fields (the clerk's fix after a scan conflict, a new phone...)."""
        allowed = {"full_name", "birth_date", "sex", "cccd", "old_id_number", "phone", "address_line", "ward",
                   "district", "province_code", "ethnicity", "occupation", "guardian_name", "guardian_phone"}
        unknown = set(changes) - allowed
        if unknown:
            raise Invalid("patient.field", f"cannot change {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
        async with self.rt.uow() as uow:
            s = uow.session
            current = await self._load(s, pid)
            if current["merged_into"]:
                raise Conflict("patient.merged", f"patient was merged into {current['merged_into']}")
            merged = NewPatient(
                full_name=changes.get("full_name", current["full_name"]),
                birth_date=changes.get("birth_date", current["birth_date"]), sex=changes.get("sex", current["sex"]),
                cccd=changes.get("cccd", current["cccd"]), old_id_number=changes.get("old_id_number",
                                                                                    current["old_id_number"]),
                phone=changes.get("phone", current["phone"]))
            v = _validated(merged)
            values: dict[str, Any] = {k: changes[k] for k in changes if k not in ("full_name", "birth_date", "phone")}
            if "full_name" in changes:
                values.update(full_name=v["full_name"], name_folded=fold(v["full_name"]))
            if "birth_date" in changes:
                b: PartialDate = v["birth"]
                values.update(birth_year=b.year, birth_month=b.month, birth_day=b.day)
            if "phone" in changes:
                values["phone"] = v["phone"]
            if values.get("cccd"):
                other = (await s.execute(select(patients.c.patient_code).where(
                    patients.c.cccd == values["cccd"], patients.c.id != pid, patients.c.merged_into.is_(None)))).first()
                if other:
                    raise Conflict("patient.cccd_exists", f"CCCD {values['cccd']} belongs to patient "
                                                          f"{other.patient_code}", field="cccd")
            values["updated_at"] = utcnow()
            await s.execute(patients.update().where(patients.c.id == pid).values(**values))
            patient = await self._load(s, pid)
            uow.publish("admissions.patient.updated",
                        events_pb2.PatientUpdated(patient=patient_proto(patient), by=caller.actor()))
            uow.audit(caller.audit("patient.update", "Patient", pid, pid, fields=sorted(changes)))
            await uow.commit()
        return patient

    async def add_card(self, pid: str, number: str, caller: Caller, valid_from: date | None = None,
                       valid_to: date | None = None, registered_facility: str | None = None,
                       five_year_date: date | None = None) -> dict[str, Any]:
        """Record a (new) BHYT card; a patient has several over the years."""
        try:
            num = parse_bhyt_number(number)
        except ScanError as exc:
            raise Invalid(exc.code, exc.message, field="number") from None
        if valid_from and valid_to and valid_to < valid_from:
            raise Invalid("card.period", "valid_to is before valid_from", field="valid_to")
        async with self.rt.uow() as uow:
            s = uow.session
            await self._load(s, pid)
            other = (await s.execute(select(patients.c.patient_code).join(
                insurance_cards, insurance_cards.c.patient_id == patients.c.id).where(
                insurance_cards.c.number == num.value, patients.c.id != pid,
                patients.c.merged_into.is_(None)))).first()
            if other:
                raise Conflict("patient.bhyt_linked", f"BHYT card {num.value} is linked to patient "
                                                      f"{other.patient_code}", field="number")
            dup = (await s.execute(select(insurance_cards.c.id).where(
                insurance_cards.c.patient_id == pid, insurance_cards.c.number == num.value,
                insurance_cards.c.valid_from == valid_from))).first()
            if dup is None:
                await s.execute(insurance_cards.insert().values(
                    id=new_id(), patient_id=pid, number=num.value, benefit_level=num.benefit_level,
                    benefit_rate=num.benefit_rate, province_code=num.province_code,
                    registered_facility=registered_facility, valid_from=valid_from, valid_to=valid_to,
                    five_year_date=five_year_date, created_at=utcnow()))
                await s.execute(patients.update().where(patients.c.id == pid).values(updated_at=utcnow()))
            patient = await self._load(s, pid)
            uow.publish("admissions.patient.updated",
                        events_pb2.PatientUpdated(patient=patient_proto(patient), by=caller.actor()))
            uow.audit(caller.audit("patient.add_card", "Patient", pid, pid, card=num.value))
            await uow.commit()
        return patient

    async def _load(self, s: AsyncSession, pid: str) -> dict[str, Any]:
        row = (await s.execute(select(patients).where(patients.c.id == pid))).mappings().first()
        if row is None:
            raise NotFound("patient.not_found", f"no patient {pid}")
        cards = (await s.execute(select(insurance_cards).where(insurance_cards.c.patient_id == pid)
                                 .order_by(insurance_cards.c.valid_to.desc()))).mappings().all()
        return patient_dict(row, cards)

    async def get(self, pid: str, caller: Caller) -> dict[str, Any]:
        """Read one patient; every read is written to the audit trail."""
        async with self.rt.uow() as uow:
            patient = await self._load(uow.session, pid)
            uow.audit(caller.audit("patient.read", "Patient", pid, pid))
            await uow.commit()
        return patient

    async def search(self, q: str, caller: Caller, limit: int | None = None) -> list[dict[str, Any]]:
        q = (q or "").strip()
        limit = min(limit or self.settings.search_limit, 100)
        if not q:
            raise Invalid("search.empty", "give a name, CCCD, BHYT number, phone, patient code or birth year",
                          field="q")
        async with self.rt.uow() as uow:
            s = uow.session
            compact = q.replace(" ", "").upper()
            alive = patients.c.merged_into.is_(None)
            if re.fullmatch(r"\d{12}", compact):
                cond = patients.c.cccd == compact
            elif re.fullmatch(r"\d{9}", compact):
                cond = patients.c.old_id_number == compact
            elif re.fullmatch(r"(\+?84|0)\d{9,10}", compact):
                cond = patients.c.phone == normalize_phone(compact)
            elif re.fullmatch(r"[A-Z]{2}\d{13}|[A-Z]{2}\d[0-9]{2}[0-9A-Z]{10}", compact):
                ids = select(insurance_cards.c.patient_id).where(insurance_cards.c.number == compact)
                cond = patients.c.id.in_(ids)
            elif compact.startswith(self.settings.patient_code_prefix) and compact[2:].isdigit():
                cond = patients.c.patient_code == compact
            elif re.fullmatch(r"\d{4}", compact):
                cond = patients.c.birth_year == int(compact)
            else:
                cond = None
            if cond is not None:
                rows = (await s.execute(select(patients).where(and_(cond, alive)).limit(limit))).mappings().all()
                items = [patient_dict(r, ()) for r in rows]
            else:
                items = await self._search_name(s, q, limit)
            uow.audit(caller.audit("patient.search", "Patient", None, None, query=q, results=len(items)))
            await uow.commit()
        return items

    async def _search_name(self, s: AsyncSession, q: str, limit: int) -> list[dict[str, Any]]:
        tokens = fold(q).split()
        year = next((int(t) for t in tokens if re.fullmatch(r"(19|20)\d\d", t)), None)
        tokens = [t for t in tokens if not t.isdigit()]
        if not tokens:
            raise Invalid("search.empty", "the query has no name", field="q")
        folded = " ".join(tokens)
        # Candidates: every token occurs (trigram index on PostgreSQL); whole-name prefixes first.
        conds = [patients.c.name_folded.like(f"%{t}%") for t in tokens]
        stmt = select(patients).where(and_(*conds), patients.c.merged_into.is_(None))
        if year:
            stmt = stmt.where(patients.c.birth_year == year)
        prefix = select(patients).where(patients.c.name_folded.like(f"{folded}%"),
                                        patients.c.merged_into.is_(None))
        if year:
            prefix = prefix.where(patients.c.birth_year == year)
        seen: dict[str, Any] = {}
        for stmt_ in (prefix.order_by(patients.c.name_folded).limit(limit * 3), stmt.limit(limit * 6)):
            for r in (await s.execute(stmt_)).mappings().all():
                seen.setdefault(r["id"], r)
            if len(seen) >= limit * 3:
                break
        # Rank each distinct spelling once (many patients share a name).
        scores = {name: name_match_score(q, name) for name in {r["full_name"] for r in seen.values()}}
        ranked = sorted((r for r in seen.values() if scores[r["full_name"]] > 0),
                        key=lambda r: (-scores[r["full_name"]], r["full_name"], r["patient_code"]))
        return [patient_dict(r, ()) for r in ranked[:limit]]

    async def scan(self, qr: str, caller: Caller) -> dict[str, Any]:
        """Parse a CCCD or BHYT QR; return the identity, match candidates and conflicts to resolve."""
        identity = parse_scan(qr)  # ScanError → 422 with a specific code
        async with self.rt.uow() as uow:
            s = uow.session
            alive = patients.c.merged_into.is_(None)
            conflicts = [c.__dict__ if hasattr(c, "__dict__") else dict(c._asdict()) for c in
                         identity_conflicts(identity if isinstance(identity, CccdIdentity) else None,
                                            identity if isinstance(identity, BhytIdentity) else None,
                                            date.today())]
            candidates: dict[str, tuple[str, Any]] = {}
            if isinstance(identity, CccdIdentity):
                rows = (await s.execute(select(patients).where(patients.c.cccd == identity.cccd, alive))).mappings()
                for r in rows:
                    candidates[r["id"]] = ("cccd", r)
            else:
                ids = select(insurance_cards.c.patient_id).where(insurance_cards.c.number == identity.card_number)
                for r in (await s.execute(select(patients).where(patients.c.id.in_(ids), alive))).mappings():
                    candidates[r["id"]] = ("bhyt_number", r)
            birth = identity.birth_date
            rows = (await s.execute(select(patients).where(
                patients.c.name_folded == fold(identity.full_name), patients.c.birth_year == birth.year,
                patients.c.sex == identity.sex, alive).limit(10))).mappings()
            for r in rows:
                candidates.setdefault(r["id"], ("name_birth_sex", r))
            out = []
            for pid, (reason, r) in candidates.items():
                item = patient_dict(r, ())
                item["match"] = reason
                if (reason == "name_birth_sex" and r["cccd"] and isinstance(identity, CccdIdentity)
                        and r["cccd"] != identity.cccd):
                    conflicts.append({"code": "cccd_differs", "message":
                                      f"patient {r['patient_code']} has another CCCD on file"})
                if reason == "bhyt_number" and fold(r["full_name"]) != fold(identity.full_name):
                    conflicts.append({"code": "card_linked_to_other_patient", "message":
                                      f"card is linked to {r['full_name']} ({r['patient_code']})"})
                out.append(item)
            uow.audit(caller.audit("patient.scan", "Patient", None, None, kind=type(identity).__name__,
                                   candidates=[c["id"] for c in out]))
            await uow.commit()
        return {"kind": "cccd" if isinstance(identity, CccdIdentity) else "bhyt",
                "identity": identity_dict(identity), "candidates": out, "conflicts": conflicts}


def identity_dict(identity: CccdIdentity | BhytIdentity) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in identity.__dict__.items():
        if isinstance(value, PartialDate):
            out[key] = value.iso()
        elif isinstance(value, date):
            out[key] = value.isoformat()
        elif hasattr(value, "__dict__"):
            out[key] = {k: v for k, v in value.__dict__.items()}
        else:
            out[key] = value
    return out

