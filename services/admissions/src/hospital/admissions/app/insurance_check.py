"""Card-less reception: look a patient's BHYT card up on the insurance agency's portal from the CCCD or the
social-insurance number, record the answer and its check time (on the visit when given), and add a valid
card to the patient so that reception can open an insured visit with it. A portal that is down or slow
answers ``unavailable`` within its timeout: the clerk proceeds fee-paying or retries."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select

from hospital.admissions.adapters.insurance_portal import InsurancePortal, birth_text
from hospital.admissions.adapters.tables import insurance_checks, patients, visits
from hospital.admissions.app.patients import Caller, PatientService
from hospital.admissions.app.visits import service_date
from hospital.admissions.config import AdmissionsSettings
from hospital.admissions.domain.insurance_check import CheckResult, Status, identifier_kind
from hospital.chassis.app import Runtime
from hospital.chassis.errors import Conflict, DomainError, Invalid, NotFound
from hospital.chassis.ids import new_id


def portal_from(settings: AdmissionsSettings) -> InsurancePortal:
    return InsurancePortal(
        settings.insurance_portal_url,
        settings.insurance_portal_username,
        settings.insurance_portal_password,
        settings.insurance_portal_officer_name,
        settings.insurance_portal_officer_cccd,
        settings.insurance_portal_timeout_seconds,
    )


def _check_dict(row: Any) -> dict[str, Any]:
    card = None
    if row["card_number"]:
        card = {
            "number": row["card_number"],
            "benefit_level": row["benefit_level"],
            "registered_facility": row["registered_facility"],
            "valid_from": row["valid_from"].isoformat() if row["valid_from"] else None,
            "valid_to": row["valid_to"].isoformat() if row["valid_to"] else None,
            "five_year_date": row["five_year_date"].isoformat() if row["five_year_date"] else None,
        }
    return {
        "id": row["id"],
        "patient_id": row["patient_id"],
        "visit_id": row["visit_id"],
        "identifier_kind": row["identifier_kind"],
        "status": row["status"],
        "result_code": row["result_code"],
        "message": row["message"],
        "card": card,
        "checked_at": row["checked_at"].isoformat(),
        "checked_by": row["checked_by"],
    }


class InsuranceCheckService:
    def __init__(
        self, rt: Runtime[AdmissionsSettings], patients_svc: PatientService, portal: InsurancePortal
    ) -> None:
        self.rt = rt
        self.patients = patients_svc
        self.portal = portal

    async def check(
        self,
        caller: Caller,
        *,
        identifier: str | None = None,
        full_name: str | None = None,
        birth_date: str | None = None,
        patient_id: str | None = None,
        visit_id: str | None = None,
    ) -> dict[str, Any]:
        """Look the card up. The patient (``patient_id``, or the visit's) supplies what is not given:
        the CCCD as identifier, the name and the birth date."""
        async with self.rt.uow() as uow:
            s = uow.session
            if visit_id:
                v = (await s.execute(select(visits).where(visits.c.id == visit_id))).mappings().first()
                if v is None:
                    raise NotFound("visit.not_found", f"no visit {visit_id}", field="visit_id")
                if patient_id and patient_id != v["patient_id"]:
                    raise Conflict(
                        "insurance.visit_patient", "the visit belongs to another patient", field="patient_id"
                    )
                patient_id = v["patient_id"]
            p = None
            if patient_id:
                p = (await s.execute(select(patients).where(patients.c.id == patient_id))).mappings().first()
                if p is None:
                    raise NotFound("patient.not_found", f"no patient {patient_id}", field="patient_id")
        identifier = (identifier or (p["cccd"] if p else "") or "").strip()
        if not identifier:
            raise Invalid(
                "insurance.identifier", "give the CCCD or the social-insurance number", field="identifier"
            )
        try:
            kind = identifier_kind(identifier)
        except ValueError as exc:
            raise Invalid("insurance.identifier", str(exc), field="identifier") from None
        name = (full_name or (p["full_name"] if p else "") or "").strip()
        if not name:
            raise Invalid("insurance.full_name", "give the patient's full name", field="full_name")
        birth = (
            _birth(birth_date)
            if birth_date
            else (birth_text(p["birth_year"], p["birth_month"], p["birth_day"]) if p else "")
        )
        if not birth:
            raise Invalid(
                "insurance.birth_date", "give the birth date (YYYY-MM-DD or YYYY)", field="birth_date"
            )

        result = await self.portal.lookup(identifier, name, birth, service_date())
        card = result.card
        row = {
            "id": new_id(),
            "patient_id": patient_id,
            "visit_id": visit_id,
            "identifier_kind": kind,
            "identifier": identifier,
            "status": result.status.value,
            "result_code": result.code,
            "message": result.message[:500],
            "card_number": card.number if card else None,
            "benefit_level": card.benefit_level if card else None,
            "registered_facility": card.registered_facility if card else None,
            "valid_from": card.valid_from if card else None,
            "valid_to": card.valid_to if card else None,
            "five_year_date": card.five_year_date if card else None,
            "checked_at": result.checked_at,
            "checked_by": caller.subject,
        }
        async with self.rt.uow() as uow:
            await uow.session.execute(insurance_checks.insert().values(**row))
            uow.audit(
                caller.audit(
                    "insurance.lookup",
                    "Patient",
                    patient_id,
                    patient_id,
                    status=row["status"],
                    identifier_kind=kind,
                    visit_id=visit_id,
                )
            )
            await uow.commit()
        out = _check_dict(row)
        out["card_added"] = False
        if result.status is Status.VALID and card is not None and patient_id:
            out["card_added"] = await self._add_card(patient_id, result, caller)
        return out

    async def _add_card(self, patient_id: str, result: CheckResult, caller: Caller) -> bool:
        card = result.card
        assert card is not None
        try:
            await self.patients.add_card(
                patient_id,
                card.number,
                caller,
                valid_from=card.valid_from,
                valid_to=card.valid_to,
                registered_facility=card.registered_facility or None,
                five_year_date=card.five_year_date,
            )
        except (
            DomainError
        ):  # e.g. the card is linked to another patient: the clerk sees the check and corrects
            return False
        return True

    async def checks_of_visit(self, visit_id: str, caller: Caller) -> list[dict[str, Any]]:
        async with self.rt.uow() as uow:
            s = uow.session
            v = (await s.execute(select(visits.c.patient_id).where(visits.c.id == visit_id))).first()
            if v is None:
                raise NotFound("visit.not_found", f"no visit {visit_id}")
            rows = (
                (
                    await s.execute(
                        select(insurance_checks)
                        .where(insurance_checks.c.visit_id == visit_id)
                        .order_by(insurance_checks.c.checked_at)
                    )
                )
                .mappings()
                .all()
            )
            uow.audit(caller.audit("insurance.checks.read", "Visit", visit_id, v.patient_id))
            await uow.commit()
        return [_check_dict(r) for r in rows]


def _birth(text: str) -> str:
    value = text.strip()
    if len(value) == 4 and value.isdigit():
        return value
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Invalid(
            "insurance.birth_date", "birth_date is YYYY-MM-DD or YYYY", field="birth_date"
        ) from None
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"
