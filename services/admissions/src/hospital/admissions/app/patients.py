"""Patient index use cases: register, read (audited), search, scan, update, merge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.admissions.adapters.pgwrite import GuardedWriter, Head, driver_connection
from hospital.admissions.adapters.tables import idempotency, insurance_cards, patients
from hospital.admissions.app.mapping import patient_dict, patient_proto
from hospital.admissions.config import AdmissionsSettings
from hospital.admissions.domain import search_policy
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
from hospital.chassis.db import audit_head_table, sequence_name, sequence_next, utcnow
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.fields import clean_text
from hospital.chassis.ids import new_id
from hospital.chassis.ratelimit import TokenBucket
from hospital.contracts.admissions.v1 import events_pb2

CCCD_RE = re.compile(r"^\d{12}$")
_COLS = ", ".join(c.name for c in patients.c)
# PostgreSQL hot path (statements prepared once per connection; adapters/pgwrite.py). The head of the
# audit chain, the next patient code and the owner of the BHYT card in one round trip:
_REGISTER_HEAD_SQL = (
    f"SELECT h.id, h.last_seq, h.last_hash, h.head_mac, nextval('{sequence_name('patient_code')}'), "
    "(SELECT p.patient_code FROM insurance_cards c JOIN patients p ON p.id = c.patient_id "
    " WHERE c.number = $2 AND p.merged_into IS NULL LIMIT 1) "
    f"FROM {audit_head_table.name} h WHERE h.id = $1"
)
_ALIVE = "merged_into IS NULL"
_EXACT_SQL = {
    "cccd": f"SELECT {_COLS} FROM patients WHERE cccd = $1 AND {_ALIVE} LIMIT $2",
    "old_id_number": f"SELECT {_COLS} FROM patients WHERE old_id_number = $1 AND {_ALIVE} LIMIT $2",
    "phone": f"SELECT {_COLS} FROM patients WHERE phone = $1 AND {_ALIVE} LIMIT $2",
    "bhyt": f"SELECT {_COLS} FROM patients "
    f"WHERE id IN (SELECT patient_id FROM insurance_cards WHERE number = $1) AND {_ALIVE} LIMIT $2",
    "patient_code": f"SELECT {_COLS} FROM patients WHERE patient_code = $1 AND {_ALIVE} LIMIT $2",
    "birth_year": f"SELECT {_COLS} FROM patients WHERE birth_year = $1::int4 AND {_ALIVE} LIMIT $2",
}
# Whole-name prefix as a range on the byte-ordered ("C") btree: plannable once, for every prefix.
_PREFIX_SQL = (
    f"SELECT {_COLS} FROM patients WHERE name_folded >= $1 AND name_folded < $2 AND {_ALIVE} "
    "{year}ORDER BY name_folded LIMIT $3"
)
_LIKE_SQL = f"SELECT {_COLS} FROM patients WHERE {{likes}} AND {_ALIVE} {{year}}LIMIT $1"
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


# Longest value each free-text field takes (the HTTP models say the same; this also guards gRPC callers):
# a patient's fields travel in every patient event, which must stay far below the bus's message limit.
TEXT_LIMITS = {
    "full_name": 200,
    "birth_date": 10,
    "cccd": 20,
    "old_id_number": 20,
    "bhyt_number": 20,
    "bhyt_registered_facility": 20,
    "phone": 20,
    "address_line": 300,
    "ward": 100,
    "district": 100,
    "province_code": 2,
    "ethnicity": 100,
    "occupation": 100,
    "guardian_name": 200,
    "guardian_phone": 20,
    "request_id": 100,
}


def check_text(values: dict[str, Any]) -> None:
    """Refuse (422, naming the field) a text value that is too long or holds control characters."""
    for name, limit in TEXT_LIMITS.items():
        value = values.get(name)
        if isinstance(value, str):
            clean_text(value, field=name, max_length=limit, error_code=f"patient.{name}")


def _validated(p: NewPatient) -> dict[str, Any]:
    check_text(vars(p))
    name = normalize_name(p.full_name or "")
    if not name or len(name) < 2:
        raise Invalid("patient.full_name", "full name is required", field="full_name")
    try:
        birth = PartialDate.parse(p.birth_date)
    except (ValueError, TypeError):
        raise Invalid(
            "patient.birth_date", "birth_date must be YYYY-MM-DD or a year YYYY", field="birth_date"
        ) from None
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
    def __init__(self, rt: Runtime[AdmissionsSettings]) -> None:
        self.rt = rt
        self.settings = settings = rt.settings
        self.writer = GuardedWriter(settings.service, rt.db.audit_keyring)
        self.search_rate = TokenBucket(settings.search_rate_per_minute, settings.search_burst)

    @property
    def on_postgres(self) -> bool:
        return self.rt.db.url.startswith("postgresql")

    def _new_rows(
        self, p: NewPatient, v: dict[str, Any], pid: str, code: str, now: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        birth: PartialDate = v["birth"]
        row = {
            "id": pid,
            "patient_code": code,
            "full_name": v["full_name"],
            "name_folded": fold(v["full_name"]),
            "birth_year": birth.year,
            "birth_month": birth.month,
            "birth_day": birth.day,
            "sex": p.sex,
            "cccd": p.cccd or None,
            "old_id_number": p.old_id_number or None,
            "phone": v["phone"],
            "address_line": p.address_line,
            "ward": p.ward,
            "district": p.district,
            "province_code": p.province_code,
            "ethnicity": p.ethnicity,
            "occupation": p.occupation,
            "guardian_name": p.guardian_name,
            "guardian_phone": p.guardian_phone,
            "merged_into": None,
            "created_at": now,
            "updated_at": now,
        }
        card_rows = []
        if p.bhyt_number:
            num = parse_bhyt_number(p.bhyt_number)
            card_rows.append(
                {
                    "id": new_id(),
                    "patient_id": pid,
                    "number": num.value,
                    "benefit_level": num.benefit_level,
                    "benefit_rate": num.benefit_rate,
                    "province_code": num.province_code,
                    "registered_facility": p.bhyt_registered_facility,
                    "valid_from": p.bhyt_valid_from,
                    "valid_to": p.bhyt_valid_to,
                    "five_year_date": p.bhyt_five_year_date,
                    "created_at": now,
                }
            )
        return row, card_rows

    def _code(self, seq: int, now: Any) -> str:
        return f"{self.settings.patient_code_prefix}{now.year % 100:02d}{seq:07d}"

    async def register(self, p: NewPatient, caller: Caller) -> dict[str, Any]:
        v = _validated(p)
        if self.on_postgres:
            return await self._register_pg(p, v, caller)
        async with self.rt.uow() as uow:
            s = uow.session
            if p.request_id:
                prior = (
                    await s.execute(
                        select(idempotency.c.resource_id).where(
                            idempotency.c.key == f"patient:{p.request_id}"
                        )
                    )
                ).scalar()
                if prior:
                    return await self._load(s, prior)
            if p.cccd:
                other = (
                    await s.execute(
                        select(patients.c.id, patients.c.patient_code).where(
                            patients.c.cccd == p.cccd, patients.c.merged_into.is_(None)
                        )
                    )
                ).first()
                if other:
                    raise Conflict(
                        "patient.cccd_exists",
                        f"CCCD {p.cccd} belongs to patient {other.patient_code}",
                        field="cccd",
                    )
            if p.bhyt_number:
                other = (
                    await s.execute(
                        select(patients.c.patient_code)
                        .join(insurance_cards, insurance_cards.c.patient_id == patients.c.id)
                        .where(
                            insurance_cards.c.number == p.bhyt_number.upper(),
                            patients.c.merged_into.is_(None),
                        )
                    )
                ).first()
                if other:
                    raise Conflict(
                        "patient.bhyt_linked",
                        f"BHYT card {p.bhyt_number} is linked to patient {other.patient_code}",
                        field="bhyt_number",
                    )
            now = utcnow()
            pid = new_id()
            code = self._code(await sequence_next(s, "patient_code"), now)
            row, card_rows = self._new_rows(p, v, pid, code, now)
            await s.execute(patients.insert(), row)
            if card_rows:
                await s.execute(insurance_cards.insert(), card_rows)
            if p.request_id:
                await s.execute(
                    idempotency.insert().values(
                        key=f"patient:{p.request_id}", resource_id=pid, created_at=now
                    )
                )
            patient = patient_dict(row, card_rows)
            uow.publish(
                "admissions.patient.registered",
                events_pb2.PatientRegistered(patient=patient_proto(patient), by=caller.actor()),
            )
            uow.audit(caller.audit("patient.register", "Patient", pid, pid, patient_code=code))
            await uow.commit()
            return patient

    async def _register_pg(self, p: NewPatient, v: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Two statements: (1) the audit chain's head, the next patient code and whoever holds the BHYT
        card; (2) patient, card, idempotency key, outbox event and audit record written together. The
        unique indexes decide CCCD and request-id races (mapped to the same answers as the checks)."""
        import asyncpg

        key = f"patient:{p.request_id}" if p.request_id else None
        card = parse_bhyt_number(p.bhyt_number).value if p.bhyt_number else None
        async with driver_connection(self.rt.db) as conn:
            if key and (
                prior := await conn.fetchval("SELECT resource_id FROM idempotency_keys WHERE key = $1", key)
            ):
                return await self._load_pg(conn, prior)
            try:
                async with self.writer.chain() as chain:
                    _, last_seq, last_hash, head_mac, seq, card_owner = await conn.fetchrow(
                        _REGISTER_HEAD_SQL, chain, card
                    )
                    if card_owner:
                        raise Conflict(
                            "patient.bhyt_linked",
                            f"BHYT card {p.bhyt_number} is linked to patient {card_owner}",
                            field="bhyt_number",
                        )
                    now = utcnow()
                    pid = new_id()
                    code = self._code(seq, now)
                    row, card_rows = self._new_rows(p, v, pid, code, now)
                    rows = [(patients, row), *((insurance_cards, c) for c in card_rows)]
                    if key:
                        rows.append((idempotency, {"key": key, "resource_id": pid, "created_at": now}))
                    patient = patient_dict(row, card_rows)
                    event = events_pb2.PatientRegistered(patient=patient_proto(patient), by=caller.actor())
                    audit = caller.audit("patient.register", "Patient", pid, pid, patient_code=code)
                    await self.writer.write(
                        conn,
                        chain,
                        rows,
                        [("admissions.patient.registered", event)],
                        [audit],
                        Head(chain, last_seq, last_hash, head_mac),
                    )
            except asyncpg.UniqueViolationError as exc:
                if key and (
                    prior := await conn.fetchval(
                        "SELECT resource_id FROM idempotency_keys WHERE key = $1", key
                    )
                ):
                    return await self._load_pg(conn, prior)  # the same request, registered in parallel
                if exc.constraint_name == "ix_patients_cccd":
                    owner = await conn.fetchval(
                        f"SELECT patient_code FROM patients WHERE cccd = $1 AND {_ALIVE}", p.cccd
                    )
                    raise Conflict(
                        "patient.cccd_exists", f"CCCD {p.cccd} belongs to patient {owner}", field="cccd"
                    ) from None
                raise
        self._committed()
        return patient

    def _committed(self) -> None:
        if self.rt.relay is not None:
            self.rt.relay.notify()

    async def _load_pg(self, conn: Any, pid: str) -> dict[str, Any]:
        row = await conn.fetchrow(f"SELECT {_COLS} FROM patients WHERE id = $1", pid)
        if row is None:
            raise NotFound("patient.not_found", f"no patient {pid}")
        cards = await conn.fetch(
            "SELECT * FROM insurance_cards WHERE patient_id = $1 ORDER BY valid_to DESC", pid
        )
        return patient_dict(row, cards)

    async def update(self, pid: str, changes: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Correct demographic fields (the clerk's fix after a scan conflict, a new phone...)."""
        allowed = {
            "full_name",
            "birth_date",
            "sex",
            "cccd",
            "old_id_number",
            "phone",
            "address_line",
            "ward",
            "district",
            "province_code",
            "ethnicity",
            "occupation",
            "guardian_name",
            "guardian_phone",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise Invalid("patient.field", f"cannot change {', '.join(sorted(unknown))}", field=min(unknown))
        check_text(changes)
        async with self.rt.uow() as uow:
            s = uow.session
            current = await self._load(s, pid)
            if current["merged_into"]:
                raise Conflict("patient.merged", f"patient was merged into {current['merged_into']}")
            merged = NewPatient(
                full_name=changes.get("full_name", current["full_name"]),
                birth_date=changes.get("birth_date", current["birth_date"]),
                sex=changes.get("sex", current["sex"]),
                cccd=changes.get("cccd", current["cccd"]),
                old_id_number=changes.get("old_id_number", current["old_id_number"]),
                phone=changes.get("phone", current["phone"]),
            )
            v = _validated(merged)
            values: dict[str, Any] = {
                k: changes[k] for k in changes if k not in ("full_name", "birth_date", "phone")
            }
            if "full_name" in changes:
                values.update(full_name=v["full_name"], name_folded=fold(v["full_name"]))
            if "birth_date" in changes:
                b: PartialDate = v["birth"]
                values.update(birth_year=b.year, birth_month=b.month, birth_day=b.day)
            if "phone" in changes:
                values["phone"] = v["phone"]
            if values.get("cccd"):
                other = (
                    await s.execute(
                        select(patients.c.patient_code).where(
                            patients.c.cccd == values["cccd"],
                            patients.c.id != pid,
                            patients.c.merged_into.is_(None),
                        )
                    )
                ).first()
                if other:
                    raise Conflict(
                        "patient.cccd_exists",
                        f"CCCD {values['cccd']} belongs to patient {other.patient_code}",
                        field="cccd",
                    )
            values["updated_at"] = utcnow()
            await s.execute(patients.update().where(patients.c.id == pid).values(**values))
            patient = await self._load(s, pid)
            uow.publish(
                "admissions.patient.updated",
                events_pb2.PatientUpdated(patient=patient_proto(patient), by=caller.actor()),
            )
            uow.audit(caller.audit("patient.update", "Patient", pid, pid, fields=sorted(changes)))
            await uow.commit()
        return patient

    async def add_card(
        self,
        pid: str,
        number: str,
        caller: Caller,
        valid_from: date | None = None,
        valid_to: date | None = None,
        registered_facility: str | None = None,
        five_year_date: date | None = None,
    ) -> dict[str, Any]:
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
            other = (
                await s.execute(
                    select(patients.c.patient_code)
                    .join(insurance_cards, insurance_cards.c.patient_id == patients.c.id)
                    .where(
                        insurance_cards.c.number == num.value,
                        patients.c.id != pid,
                        patients.c.merged_into.is_(None),
                    )
                )
            ).first()
            if other:
                raise Conflict(
                    "patient.bhyt_linked",
                    f"BHYT card {num.value} is linked to patient {other.patient_code}",
                    field="number",
                )
            dup = (
                await s.execute(
                    select(insurance_cards.c.id).where(
                        insurance_cards.c.patient_id == pid,
                        insurance_cards.c.number == num.value,
                        insurance_cards.c.valid_from == valid_from,
                    )
                )
            ).first()
            if dup is None:
                await s.execute(
                    insurance_cards.insert().values(
                        id=new_id(),
                        patient_id=pid,
                        number=num.value,
                        benefit_level=num.benefit_level,
                        benefit_rate=num.benefit_rate,
                        province_code=num.province_code,
                        registered_facility=registered_facility,
                        valid_from=valid_from,
                        valid_to=valid_to,
                        five_year_date=five_year_date,
                        created_at=utcnow(),
                    )
                )
                await s.execute(patients.update().where(patients.c.id == pid).values(updated_at=utcnow()))
            patient = await self._load(s, pid)
            uow.publish(
                "admissions.patient.updated",
                events_pb2.PatientUpdated(patient=patient_proto(patient), by=caller.actor()),
            )
            uow.audit(caller.audit("patient.add_card", "Patient", pid, pid, card=num.value))
            await uow.commit()
        return patient

    async def _load(self, s: AsyncSession, pid: str) -> dict[str, Any]:
        row = (await s.execute(select(patients).where(patients.c.id == pid))).mappings().first()
        if row is None:
            raise NotFound("patient.not_found", f"no patient {pid}")
        cards = (
            (
                await s.execute(
                    select(insurance_cards)
                    .where(insurance_cards.c.patient_id == pid)
                    .order_by(insurance_cards.c.valid_to.desc())
                )
            )
            .mappings()
            .all()
        )
        return patient_dict(row, cards)

    async def get(self, pid: str, caller: Caller) -> dict[str, Any]:
        """Read one patient; every read is written to the audit trail."""
        if self.on_postgres:
            async with driver_connection(self.rt.db) as conn:
                patient = await self._load_pg(conn, pid)
                async with self.writer.chain() as chain:
                    await self.writer.write(
                        conn, chain, [], [], [caller.audit("patient.read", "Patient", pid, pid)]
                    )
            return patient
        async with self.rt.uow() as uow:
            patient = await self._load(uow.session, pid)
            uow.audit(caller.audit("patient.read", "Patient", pid, pid))
            await uow.commit()
        return patient

    def _classify(self, q: str) -> tuple[str, Any] | None:
        """The identifier a query is (kind, value), or None for a name."""
        compact = q.replace(" ", "").upper()
        if re.fullmatch(r"\d{12}", compact):
            return "cccd", compact
        if re.fullmatch(r"\d{9}", compact):
            return "old_id_number", compact
        if re.fullmatch(r"(\+?84|0)\d{9,10}", compact):
            return "phone", normalize_phone(compact)
        if re.fullmatch(r"[A-Z]{2}\d{13}|[A-Z]{2}\d[0-9]{2}[0-9A-Z]{10}", compact):
            return "bhyt", compact
        if compact.startswith(self.settings.patient_code_prefix) and compact[2:].isdigit():
            return "patient_code", compact
        if re.fullmatch(r"\d{4}", compact):
            return "birth_year", int(compact)
        return None

    async def search(
        self, q: str, caller: Caller, limit: int | None = None, *, only: str | None = None
    ) -> list[dict[str, Any]]:
        """Patients matching ``q``, within what the caller's role may search by (domain/search_policy.py)
        and its page size, rate-limited per user; audited with the ids shown. ``only``: the identifier
        kind ``q`` must be (FHIR ``identifier=system|value``): anything else finds nobody."""
        q = (q or "").strip()
        roles = caller.principal.roles
        kinds = search_policy.allowed_kinds(roles)
        if not kinds:
            raise DomainError("search.not_allowed", "this role does not search the patient index", status=403)
        limit = min(limit or self.settings.search_limit, search_policy.page_limit(roles))
        if not q:
            raise Invalid("search.empty", f"give a {search_policy.describe(kinds)}", field="q")
        if not caller.principal.is_service:
            self.search_rate.check(caller.subject, "search.rate_limited", "patient searches")
        kind = self._classify(q)
        if only is not None:
            if only not in kinds:
                raise DomainError(
                    "search.not_allowed_for_role",
                    f"this role searches by {search_policy.describe(kinds)} only",
                    status=403,
                )
            if kind is None or kind[0] != only:
                await self._audit_search(caller, q, "identifier:" + only, [])
                return []
        elif kind is not None and kind[0] == "birth_year":
            raise Invalid(
                "search.year_needs_name",
                "a birth year finds patients only together with a name, e.g. 'nguyen van an 1960'",
                field="q",
            )
        if (kind[0] if kind else "name") not in kinds:
            raise DomainError(
                "search.not_allowed_for_role",
                f"this role searches by {search_policy.describe(kinds)} only (exact values)",
                status=403,
            )
        name = None if kind else _name_query(q)
        if name is not None and len(name[0].replace(" ", "")) < search_policy.MIN_NAME_LETTERS:
            raise Invalid(
                "search.too_short",
                f"type at least {search_policy.MIN_NAME_LETTERS} letters of the name",
                field="q",
            )
        shown_kind = kind[0] if kind else "name"
        if self.on_postgres:
            async with driver_connection(self.rt.db) as conn:
                if kind:
                    items = [
                        patient_dict(r, ()) for r in await conn.fetch(_EXACT_SQL[kind[0]], kind[1], limit)
                    ]
                else:
                    assert name is not None
                    items = _rank(q, await _name_candidates_pg(conn, *name, limit), limit)
                async with self.writer.chain() as chain:
                    await self.writer.write(
                        conn,
                        chain,
                        [],
                        [],
                        [_search_audit(caller, q, shown_kind, items)],
                    )
            return items
        async with self.rt.uow() as uow:
            s = uow.session
            if kind:
                cond = (
                    patients.c.id.in_(
                        select(insurance_cards.c.patient_id).where(insurance_cards.c.number == kind[1])
                    )
                    if kind[0] == "bhyt"
                    else patients.c[kind[0]] == kind[1]
                )
                rows = (
                    (
                        await s.execute(
                            select(patients).where(and_(cond, patients.c.merged_into.is_(None))).limit(limit)
                        )
                    )
                    .mappings()
                    .all()
                )
                items = [patient_dict(r, ()) for r in rows]
            else:
                assert name is not None
                items = _rank(q, await _name_candidates(s, *name, limit), limit)
            uow.audit(_search_audit(caller, q, shown_kind, items))
            await uow.commit()
        return items

    async def _audit_search(self, caller: Caller, q: str, kind: str, items: list[dict[str, Any]]) -> None:
        async with self.rt.uow() as uow:
            uow.audit(_search_audit(caller, q, kind, items))
            await uow.commit()

    async def scan(self, qr: str, caller: Caller) -> dict[str, Any]:
        """Parse a CCCD or BHYT QR; return the identity, match candidates and conflicts to resolve."""
        identity = parse_scan(qr)  # ScanError → 422 with a specific code
        async with self.rt.uow() as uow:
            s = uow.session
            alive = patients.c.merged_into.is_(None)
            conflicts = [
                c.__dict__ if hasattr(c, "__dict__") else dict(c._asdict())
                for c in identity_conflicts(
                    identity if isinstance(identity, CccdIdentity) else None,
                    identity if isinstance(identity, BhytIdentity) else None,
                    date.today(),
                )
            ]
            candidates: dict[str, tuple[str, Any]] = {}
            if isinstance(identity, CccdIdentity):
                rows = (
                    await s.execute(select(patients).where(patients.c.cccd == identity.cccd, alive))
                ).mappings()
                for r in rows:
                    candidates[r["id"]] = ("cccd", r)
            else:
                ids = select(insurance_cards.c.patient_id).where(
                    insurance_cards.c.number == identity.card_number
                )
                for r in (await s.execute(select(patients).where(patients.c.id.in_(ids), alive))).mappings():
                    candidates[r["id"]] = ("bhyt_number", r)
            birth = identity.birth_date
            rows = (
                await s.execute(
                    select(patients)
                    .where(
                        patients.c.name_folded == fold(identity.full_name),
                        patients.c.birth_year == birth.year,
                        patients.c.sex == identity.sex,
                        alive,
                    )
                    .limit(10)
                )
            ).mappings()
            for r in rows:
                candidates.setdefault(r["id"], ("name_birth_sex", r))
            out = []
            for reason, r in candidates.values():
                item = patient_dict(r, ())
                item["match"] = reason
                if (
                    reason == "name_birth_sex"
                    and r["cccd"]
                    and isinstance(identity, CccdIdentity)
                    and r["cccd"] != identity.cccd
                ):
                    conflicts.append(
                        {
                            "code": "cccd_differs",
                            "message": f"patient {r['patient_code']} has another CCCD on file",
                        }
                    )
                if reason == "bhyt_number" and fold(r["full_name"]) != fold(identity.full_name):
                    conflicts.append(
                        {
                            "code": "card_linked_to_other_patient",
                            "message": f"card is linked to {r['full_name']} ({r['patient_code']})",
                        }
                    )
                out.append(item)
            uow.audit(
                caller.audit(
                    "patient.scan",
                    "Patient",
                    None,
                    None,
                    kind=type(identity).__name__,
                    candidates=[c["id"] for c in out],
                )
            )
            await uow.commit()
        return {
            "kind": "cccd" if isinstance(identity, CccdIdentity) else "bhyt",
            "identity": identity_dict(identity),
            "candidates": out,
            "conflicts": conflicts,
        }


def _search_audit(caller: Caller, q: str, kind: str, items: list[dict[str, Any]]) -> Any:
    """A search's audit record: the query, what it was taken as, and which patients were shown."""
    return caller.audit(
        "patient.search",
        "Patient",
        None,
        None,
        query=q,
        kind=kind,
        results=len(items),
        shown=[p["id"] for p in items],
    )


def _name_query(q: str) -> tuple[str, int | None]:
    """The folded name words of a query and the birth year typed with them ("nguyen van an 1985")."""
    tokens = fold(q).split()
    year = next((int(t) for t in tokens if re.fullmatch(r"(19|20)\d\d", t)), None)
    tokens = [t for t in tokens if not t.isdigit()]
    if not tokens:
        raise Invalid("search.empty", "the query has no name", field="q")
    return " ".join(tokens), year


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Name candidates, cheapest first, each stage only when the ones before found too few:
# 1. the whole name starts with the query ("nguyen van h"): a range on the byte-ordered btree; enough
#    when it fills the page, or found anything for a query of several words (a name typed from its
#    start: the same words later in other names are other people);
# 2. the query starts a later word ("ngoc", "thu trang"): trigram index; enough when it found anything;
# 3. nothing yet: every query word anywhere in the name ("nguyen an"), trigram index.
def _stages(folded: str, limit: int) -> list[tuple[str, Any, int]]:
    upper = folded[:-1] + chr(ord(folded[-1]) + 1)
    tokens = folded.split()
    return [
        ("prefix", (folded, upper), 3 * limit),
        ("phrase", ["% " + _like_escape(folded) + "%"], 3 * limit),
        ("words", ["%" + _like_escape(t) + "%" for t in tokens], 6 * limit),
    ]


def _enough(stage: str, found: int, limit: int, words: int) -> bool:
    if stage == "prefix":
        return found >= limit or (found > 0 and words > 1)
    return found > 0


async def _name_candidates_pg(conn: Any, folded: str, year: int | None, limit: int) -> list[Any]:
    seen: dict[str, Any] = {}
    for stage, values, n in _stages(folded, limit):
        if stage == "prefix":
            args: list[Any] = [*values, n]
            sql = _PREFIX_SQL.format(year="AND birth_year = $4::int4 " if year else "")
        else:
            args = [n, *values]
            likes = " AND ".join(f"name_folded LIKE ${i + 2}" for i in range(len(values)))
            sql = _LIKE_SQL.format(
                likes=likes, year=f"AND birth_year = ${len(values) + 2}::int4 " if year else ""
            )
        for r in await conn.fetch(sql, *args, *([year] if year else [])):
            seen.setdefault(r["id"], r)
        if _enough(stage, len(seen), limit, folded.count(" ") + 1):
            break
    return list(seen.values())


async def _name_candidates(s: AsyncSession, folded: str, year: int | None, limit: int) -> list[Any]:
    seen: dict[str, Any] = {}
    alive = patients.c.merged_into.is_(None)
    for stage, values, n in _stages(folded, limit):
        if stage == "prefix":
            stmt = (
                select(patients)
                .where(patients.c.name_folded >= values[0], patients.c.name_folded < values[1], alive)
                .order_by(patients.c.name_folded)
            )
        else:
            stmt = select(patients).where(
                *(patients.c.name_folded.like(v, escape="\\") for v in values), alive
            )
        if year:
            stmt = stmt.where(patients.c.birth_year == year)
        for r in (await s.execute(stmt.limit(n))).mappings().all():
            seen.setdefault(r["id"], r)
        if _enough(stage, len(seen), limit, folded.count(" ") + 1):
            break
    return list(seen.values())


def _rank(q: str, rows: list[Any], limit: int) -> list[dict[str, Any]]:
    """Best match first; each distinct spelling scored once (many patients share a name)."""
    scores = {name: name_match_score(q, name) for name in {r["full_name"] for r in rows}}
    ranked = sorted(
        (r for r in rows if scores[r["full_name"]] > 0),
        key=lambda r: (-scores[r["full_name"]], r["full_name"], r["patient_code"]),
    )
    return [patient_dict(r, ()) for r in ranked[:limit]]


def identity_dict(identity: CccdIdentity | BhytIdentity) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in identity.__dict__.items():
        if isinstance(value, PartialDate):
            out[key] = value.iso()
        elif isinstance(value, date):
            out[key] = value.isoformat()
        elif hasattr(value, "__dict__"):
            out[key] = dict(value.__dict__.items())
        else:
            out[key] = value
    return out
