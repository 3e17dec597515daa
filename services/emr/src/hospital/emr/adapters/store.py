"""Repositories: every SQL statement of the EMR's charts lives here (SQLAlchemy Core, both databases).
Each repository works inside the session (the unit of work's or the event consumer's transaction) it is
given; use cases decide when to commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.emr.adapters.tables import (
    allergies,
    chart_access,
    consultations,
    critical_alerts,
    diagnoses,
    documents,
    drugs,
    encounter_papers,
    encounters,
    imaging_studies,
    lab_results,
    medication_administrations,
    notifications,
    order_commands,
    orders,
    patients,
    prescriptions,
    problems,
    signing_keys,
    vital_observations,
)

Row = dict[str, Any]


def upsert(session: AsyncSession) -> Any:
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class Patients:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def save(self, row: Row) -> None:
        """Insert or refresh the snapshot of an admissions patient."""
        ins = upsert(self.s)(patients).values(**row)
        cols = {k: ins.excluded[k] for k in row if k != "id"}
        await self.s.execute(ins.on_conflict_do_update(index_elements=["id"], set_=cols))

    async def ensure(self, patient_id: str, now: datetime) -> None:
        ins = upsert(self.s)(patients).values(id=patient_id, full_name="", sex="unknown", updated_at=now)
        await self.s.execute(ins.on_conflict_do_nothing(index_elements=["id"]))

    async def get(self, patient_id: str) -> Row | None:
        row = (await self.s.execute(select(patients).where(patients.c.id == patient_id))).mappings().first()
        return dict(row) if row else None

    async def mark_merged(self, merged_id: str, survivor_id: str, now: datetime) -> None:
        await self.s.execute(
            update(patients).where(patients.c.id == merged_id).values(merged_into=survivor_id, updated_at=now)
        )


# every table whose rows belong to a patient (re-pointed by a merge)
PATIENT_TABLES = (
    encounters,
    consultations,
    diagnoses,
    allergies,
    problems,
    orders,
    prescriptions,
    documents,
    lab_results,
    imaging_studies,
    critical_alerts,
    chart_access,
    encounter_papers,
)


async def repoint_patient(session: AsyncSession, merged_id: str, survivor_id: str) -> int:
    moved = 0
    for table in PATIENT_TABLES:
        res = await session.execute(
            update(table).where(table.c.patient_id == merged_id).values(patient_id=survivor_id)
        )
        moved += res.rowcount or 0
    return moved


_ENCOUNTER_COLS = [
    *encounters.c,
    patients.c.full_name.label("patient_name"),
    patients.c.patient_code.label("patient_code"),
]


class Encounters:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    def _select(self) -> Any:
        return select(*_ENCOUNTER_COLS).select_from(
            encounters.outerjoin(patients, patients.c.id == encounters.c.patient_id)
        )

    async def add(self, row: Row) -> None:
        await self.s.execute(encounters.insert().values(**row))

    async def get(self, encounter_id: str, *, for_update: bool = False) -> Row | None:
        stmt = self._select().where(encounters.c.id == encounter_id)
        if for_update and self.s.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=encounters)
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def visit_code_of(self, visit_id: str) -> str | None:
        """The visit code (admissions' số khám bệnh) any encounter of the visit carries."""
        return (
            await self.s.execute(
                select(encounters.c.visit_code)
                .where(encounters.c.visit_id == visit_id, encounters.c.visit_code.is_not(None))
                .limit(1)
            )
        ).scalar()

    async def find(self, visit_id: str | None, admission_id: str | None) -> Row | None:
        cond = [encounters.c.visit_id == visit_id] if visit_id else []
        cond.append(
            encounters.c.admission_id == admission_id if admission_id else encounters.c.admission_id.is_(None)
        )
        row = (await self.s.execute(self._select().where(and_(*cond)))).mappings().first()
        return dict(row) if row else None

    async def by_admission(self, admission_id: str) -> Row | None:
        row = (
            (await self.s.execute(self._select().where(encounters.c.admission_id == admission_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def open_outpatient_of_visit(self, visit_id: str) -> list[Row]:
        rows = await self.s.execute(
            self._select().where(
                encounters.c.visit_id == visit_id,
                encounters.c.admission_id.is_(None),
                encounters.c.status == "open",
            )
        )
        return [dict(r) for r in rows.mappings()]

    async def update(self, encounter_id: str, **values: Any) -> None:
        await self.s.execute(update(encounters).where(encounters.c.id == encounter_id).values(**values))

    async def of_patient(self, patient_id: str, limit: int = 500) -> list[Row]:
        rows = await self.s.execute(
            self._select()
            .where(encounters.c.patient_id == patient_id)
            .order_by(encounters.c.opened_at.desc(), encounters.c.id.desc())
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def departments_of_patient(self, patient_id: str) -> set[str]:
        rows = await self.s.execute(
            select(encounters.c.department_code).distinct().where(encounters.c.patient_id == patient_id)
        )
        return set(rows.scalars())

    async def search(
        self,
        *,
        patient_id: str | None,
        department_code: str | None,
        status: str | None,
        kind: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Row]:
        stmt = self._select()
        if patient_id:
            stmt = stmt.where(encounters.c.patient_id == patient_id)
        if department_code:
            stmt = stmt.where(encounters.c.department_code == department_code)
        if status:
            stmt = stmt.where(encounters.c.status == status)
        if kind:
            stmt = stmt.where(encounters.c.kind == kind)
        if before:
            at, eid = before
            stmt = stmt.where(
                or_(encounters.c.opened_at < at, and_(encounters.c.opened_at == at, encounters.c.id < eid))
            )
        rows = await self.s.execute(
            stmt.order_by(encounters.c.opened_at.desc(), encounters.c.id.desc()).limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def queue(
        self, *, department_code: str, room_code: str | None, service_date: date, include_closed: bool
    ) -> list[Row]:
        stmt = self._select().where(
            encounters.c.department_code == department_code,
            encounters.c.service_date == service_date,
            encounters.c.admission_id.is_(None),
        )
        if room_code:
            stmt = stmt.where(encounters.c.room_code == room_code)
        if not include_closed:
            stmt = stmt.where(encounters.c.status == "open")
        rows = await self.s.execute(
            stmt.order_by(func.coalesce(encounters.c.ticket_number, 0), encounters.c.opened_at)
        )
        return [dict(r) for r in rows.mappings()]


class Consultations:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, encounter_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(consultations).where(consultations.c.encounter_id == encounter_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def insert(self, row: Row) -> None:
        await self.s.execute(consultations.insert().values(**row))

    async def update_if_version(self, encounter_id: str, expected_version: int, values: Row) -> bool:
        res = await self.s.execute(
            update(consultations)
            .where(consultations.c.encounter_id == encounter_id, consultations.c.version == expected_version)
            .values(**values)
        )
        return (res.rowcount or 0) == 1

    async def diagnoses(self, encounter_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(diagnoses).where(diagnoses.c.encounter_id == encounter_id).order_by(diagnoses.c.seq)
        )
        return [dict(r) for r in rows.mappings()]

    async def replace_diagnoses(self, encounter_id: str, rows: Sequence[Row]) -> None:
        await self.s.execute(delete(diagnoses).where(diagnoses.c.encounter_id == encounter_id))
        if rows:
            await self.s.execute(diagnoses.insert(), list(rows))


class PatientLists:
    """The patient's allergy list and problem list (kept across encounters; items are never deleted)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def allergies(self, patient_id: str, *, active_only: bool = False) -> list[Row]:
        stmt = select(allergies).where(allergies.c.patient_id == patient_id)
        if active_only:
            stmt = stmt.where(allergies.c.status == "active")
        rows = await self.s.execute(stmt.order_by(allergies.c.recorded_at, allergies.c.id))
        return [dict(r) for r in rows.mappings()]

    async def problems(self, patient_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(problems)
            .where(problems.c.patient_id == patient_id)
            .order_by(problems.c.recorded_at, problems.c.id)
        )
        return [dict(r) for r in rows.mappings()]

    async def add_allergy(self, row: Row) -> None:
        await self.s.execute(allergies.insert().values(**row))

    async def update_allergy(self, allergy_id: str, patient_id: str, values: Row) -> None:
        await self.s.execute(
            update(allergies)
            .where(allergies.c.id == allergy_id, allergies.c.patient_id == patient_id)
            .values(**values)
        )

    async def add_problem(self, row: Row) -> None:
        await self.s.execute(problems.insert().values(**row))

    async def update_problem(self, problem_id: str, patient_id: str, values: Row) -> None:
        await self.s.execute(
            update(problems)
            .where(problems.c.id == problem_id, problems.c.patient_id == patient_id)
            .values(**values)
        )


class ChartAccess:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def record(self, row: Row) -> None:
        await self.s.execute(chart_access.insert().values(**row))

    async def report(self, since: datetime | None, limit: int = 500) -> list[Row]:
        stmt = select(chart_access)
        if since:
            stmt = stmt.where(chart_access.c.accessed_at >= since)
        rows = await self.s.execute(stmt.order_by(chart_access.c.accessed_at.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]


class Orders:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(orders.insert().values(**row))

    async def get(self, order_id: str) -> Row | None:
        row = (await self.s.execute(select(orders).where(orders.c.id == order_id))).mappings().first()
        return dict(row) if row else None

    async def lock(self, order_id: str) -> Row | None:
        """The order, its row locked until the transaction ends (status moves one at a time)."""
        stmt = select(orders).where(orders.c.id == order_id).with_for_update()
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> list[Row]:
        """The orders one PlaceOrders request made (keys ``<request_id>#<n>``), in request order."""
        rows = await self.s.execute(
            select(orders).where(orders.c.request_key.startswith(f"{request_id}#", autoescape=True))
        )
        return sorted(
            (dict(r) for r in rows.mappings()), key=lambda r: int(r["request_key"].rsplit("#", 1)[1])
        )

    async def by_downstream(self, kind: str, downstream_id: str) -> Row | None:
        row = (
            (
                await self.s.execute(
                    select(orders).where(orders.c.kind == kind, orders.c.downstream_id == downstream_id)
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def by_accession(self, accession: str) -> Row | None:
        row = (
            (await self.s.execute(select(orders).where(orders.c.accession_number == accession)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def update(self, order_id: str, **values: Any) -> None:
        await self.s.execute(update(orders).where(orders.c.id == order_id).values(**values))

    async def of_encounter(self, encounter_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(orders)
            .where(orders.c.encounter_id == encounter_id)
            .order_by(orders.c.ordered_at, orders.c.placer_order_number)
        )
        return [dict(r) for r in rows.mappings()]

    async def of_patient(self, patient_id: str, limit: int = 500) -> list[Row]:
        rows = await self.s.execute(
            select(orders)
            .where(orders.c.patient_id == patient_id)
            .order_by(orders.c.ordered_at.desc())
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def active_medication(self, encounter_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(orders).where(
                orders.c.encounter_id == encounter_id,
                orders.c.kind == "medication",
                orders.c.status == "active",
            )
        )
        return [dict(r) for r in rows.mappings()]


class OrderCommands:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(order_commands.insert().values(**row))

    async def due(self, now: datetime, limit: int) -> list[Row]:
        """Pending commands whose time has come and that are the first pending command of their order (an
        order's commands go one at a time, in order), oldest first. Commands waiting for a retry (a
        downstream that is down) do not hold back the due commands behind them."""
        earlier = order_commands.alias("earlier")
        c = order_commands.c
        first_of_order = ~exists().where(
            earlier.c.order_id == c.order_id,
            earlier.c.status == "pending",
            or_(
                earlier.c.created_at < c.created_at,
                and_(earlier.c.created_at == c.created_at, earlier.c.id < c.id),
            ),
        )
        rows = await self.s.execute(
            select(order_commands)
            .where(c.status == "pending", c.next_attempt_at <= now, first_of_order)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def pending_of(self, order_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(order_commands)
            .where(order_commands.c.order_id == order_id, order_commands.c.status == "pending")
            .order_by(order_commands.c.created_at)
        )
        return [dict(r) for r in rows.mappings()]

    async def claim(self, command_id: str, seen_next: datetime, lease_until: datetime) -> bool:
        """Take a command for sending (one sender at a time, also across processes)."""
        res = await self.s.execute(
            update(order_commands)
            .where(
                order_commands.c.id == command_id,
                order_commands.c.status == "pending",
                order_commands.c.next_attempt_at == seen_next,
            )
            .values(next_attempt_at=lease_until)
        )
        return (res.rowcount or 0) == 1

    async def update(self, command_id: str, **values: Any) -> None:
        await self.s.execute(update(order_commands).where(order_commands.c.id == command_id).values(**values))


class Drugs:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get_many(self, codes: Sequence[str]) -> dict[str, Row]:
        rows = await self.s.execute(
            select(drugs).where(drugs.c.code.in_(list(codes)), drugs.c.active.is_(True))
        )
        return {r["code"]: dict(r) for r in rows.mappings()}

    async def search(self, terms: Sequence[str], limit: int) -> list[Row]:
        stmt = select(drugs).where(drugs.c.active.is_(True))
        for t in terms:
            stmt = stmt.where(drugs.c.search_text.like(f"%{t}%"))
        rows = await self.s.execute(stmt.order_by(drugs.c.name).limit(limit))
        return [dict(r) for r in rows.mappings()]


class Prescriptions:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(prescriptions.insert().values(**row))

    async def get(self, prescription_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(prescriptions).where(prescriptions.c.id == prescription_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(prescriptions).where(prescriptions.c.request_id == request_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def update(self, prescription_id: str, **values: Any) -> None:
        await self.s.execute(
            update(prescriptions).where(prescriptions.c.id == prescription_id).values(**values)
        )

    async def of_encounter(self, encounter_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(prescriptions)
            .where(prescriptions.c.encounter_id == encounter_id)
            .order_by(prescriptions.c.created_at)
        )
        return [dict(r) for r in rows.mappings()]


class Results:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, result_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(lab_results).where(lab_results.c.id == result_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def save(self, row: Row) -> None:
        ins = upsert(self.s)(lab_results).values(**row)
        cols = {k: ins.excluded[k] for k in row if k != "id"}
        await self.s.execute(ins.on_conflict_do_update(index_elements=["id"], set_=cols))

    async def of_patient(self, patient_id: str, encounter_id: str | None, limit: int) -> list[Row]:
        stmt = select(lab_results).where(lab_results.c.patient_id == patient_id)
        if encounter_id:
            stmt = stmt.where(lab_results.c.encounter_id == encounter_id)
        rows = await self.s.execute(
            stmt.order_by(lab_results.c.observed_at.desc(), lab_results.c.id).limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def of_order(self, order_id: str) -> list[tuple[str, str]]:
        """(test_code, status) of every result attached to one EMR order."""
        rows = await self.s.execute(
            select(lab_results.c.test_code, lab_results.c.status).where(lab_results.c.order_id == order_id)
        )
        return [(r.test_code, r.status) for r in rows]

    async def trend(self, patient_id: str, test_code: str, limit: int) -> list[Row]:
        rows = await self.s.execute(
            select(lab_results)
            .where(
                lab_results.c.patient_id == patient_id,
                or_(lab_results.c.test_code == test_code, lab_results.c.loinc == test_code),
            )
            .order_by(lab_results.c.observed_at.desc())
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()][::-1]


class Studies:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, uid: str) -> Row | None:
        row = (
            (await self.s.execute(select(imaging_studies).where(imaging_studies.c.study_instance_uid == uid)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def save(self, row: Row) -> None:
        ins = upsert(self.s)(imaging_studies).values(**row)
        cols = {k: ins.excluded[k] for k in row if k != "study_instance_uid"}
        await self.s.execute(ins.on_conflict_do_update(index_elements=["study_instance_uid"], set_=cols))

    async def update_by_order(self, imaging_order_id: str, **values: Any) -> None:
        await self.s.execute(
            update(imaging_studies)
            .where(imaging_studies.c.imaging_order_id == imaging_order_id)
            .values(**values)
        )

    async def of_patient(self, patient_id: str, encounter_id: str | None, limit: int = 200) -> list[Row]:
        stmt = select(imaging_studies).where(imaging_studies.c.patient_id == patient_id)
        if encounter_id:
            stmt = stmt.where(imaging_studies.c.encounter_id == encounter_id)
        rows = await self.s.execute(stmt.order_by(imaging_studies.c.received_at.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]


class Criticals:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add_once(self, row: Row) -> bool:
        ins = (
            upsert(self.s)(critical_alerts).values(**row).on_conflict_do_nothing(index_elements=["result_id"])
        )
        res = await self.s.execute(ins)
        return (res.rowcount or 0) == 1

    async def get(self, alert_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(critical_alerts).where(critical_alerts.c.id == alert_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def acknowledge(self, alert_id: str, **values: Any) -> bool:
        res = await self.s.execute(
            update(critical_alerts)
            .where(critical_alerts.c.id == alert_id, critical_alerts.c.status == "open")
            .values(**values)
        )
        return (res.rowcount or 0) == 1

    async def due_for_escalation(self, before: datetime, limit: int = 100) -> list[Row]:
        rows = await self.s.execute(
            select(critical_alerts)
            .where(
                critical_alerts.c.status == "open",
                critical_alerts.c.escalated_at.is_(None),
                critical_alerts.c.raised_at <= before,
            )
            .order_by(critical_alerts.c.raised_at)
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def mark_escalated(self, alert_id: str, at: datetime) -> bool:
        res = await self.s.execute(
            update(critical_alerts)
            .where(
                critical_alerts.c.id == alert_id,
                critical_alerts.c.escalated_at.is_(None),
                critical_alerts.c.status == "open",
            )
            .values(escalated_at=at)
        )
        return (res.rowcount or 0) == 1

    async def visible(
        self, subject: str, departments: Sequence[str], patient_id: str | None, include_acknowledged: bool
    ) -> list[Row]:
        """The caller's own alerts and the escalated ones of their departments (or a patient's)."""
        stmt = select(critical_alerts)
        if patient_id:
            stmt = stmt.where(critical_alerts.c.patient_id == patient_id)
        else:
            stmt = stmt.where(
                or_(
                    critical_alerts.c.ordering_doctor == subject,
                    and_(
                        critical_alerts.c.escalated_at.is_not(None),
                        critical_alerts.c.department_code.in_(list(departments)),
                    ),
                )
            )
        if not include_acknowledged:
            stmt = stmt.where(critical_alerts.c.status == "open")
        rows = await self.s.execute(stmt.order_by(critical_alerts.c.raised_at.desc()).limit(500))
        return [dict(r) for r in rows.mappings()]


class Notifications:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(notifications.insert().values(**row))

    async def after(self, seq: int, limit: int = 500) -> list[Row]:
        rows = await self.s.execute(
            select(notifications).where(notifications.c.seq > seq).order_by(notifications.c.seq).limit(limit)
        )
        return [dict(r) for r in rows.mappings()]

    async def last_seq(self) -> int:
        return int((await self.s.execute(select(func.max(notifications.c.seq)))).scalar() or 0)


class Documents:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(documents.insert().values(**row))

    async def get(self, document_id: str, *, for_update: bool = False) -> Row | None:
        stmt = select(documents).where(documents.c.id == document_id)
        if for_update and self.s.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(documents).where(documents.c.request_id == request_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def update_draft(self, document_id: str, **values: Any) -> bool:
        """Only a draft changes; a signed version is immutable."""
        res = await self.s.execute(
            update(documents)
            .where(documents.c.id == document_id, documents.c.status == "draft")
            .values(**values)
        )
        return (res.rowcount or 0) == 1

    async def supersede(self, document_id: str, by_id: str) -> bool:
        res = await self.s.execute(
            update(documents)
            .where(
                documents.c.id == document_id,
                documents.c.status == "signed",
                documents.c.amended_by_document_id.is_(None),
            )
            .values(status="superseded", amended_by_document_id=by_id)
        )
        return (res.rowcount or 0) == 1

    async def of_encounter(self, encounter_id: str) -> list[Row]:
        rows = await self.s.execute(
            select(documents).where(documents.c.encounter_id == encounter_id).order_by(documents.c.created_at)
        )
        return [dict(r) for r in rows.mappings()]

    async def reports_of_studies(self, uids: Sequence[str]) -> dict[str, Row]:
        rows = await self.s.execute(
            select(documents).where(
                documents.c.study_instance_uid.in_(list(uids)),
                documents.c.kind == "radiology_report",
                documents.c.status != "superseded",
            )
        )
        return {r["study_instance_uid"]: dict(r) for r in rows.mappings()}


class Papers:
    """Discharge papers, referral papers, sick-leave certificates and re-visit appointments."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(encounter_papers.insert().values(**row))

    async def get(self, paper_id: str, *, for_update: bool = False) -> Row | None:
        stmt = select(encounter_papers).where(encounter_papers.c.id == paper_id)
        if for_update and self.s.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def by_document(self, document_id: str) -> Row | None:
        row = (
            (
                await self.s.execute(
                    select(encounter_papers).where(encounter_papers.c.document_id == document_id)
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> Row | None:
        row = (
            (
                await self.s.execute(
                    select(encounter_papers).where(encounter_papers.c.request_id == request_id)
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row else None

    async def of_encounter(self, encounter_id: str, kind: str | None = None) -> list[Row]:
        stmt = select(encounter_papers).where(encounter_papers.c.encounter_id == encounter_id)
        if kind:
            stmt = stmt.where(encounter_papers.c.kind == kind)
        rows = await self.s.execute(stmt.order_by(encounter_papers.c.created_at, encounter_papers.c.id))
        return [dict(r) for r in rows.mappings()]

    async def update(self, paper_id: str, **values: Any) -> None:
        await self.s.execute(
            update(encounter_papers).where(encounter_papers.c.id == paper_id).values(**values)
        )


class SigningKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def ensure(self, row: Row) -> None:
        ins = upsert(self.s)(signing_keys).values(**row).on_conflict_do_nothing(index_elements=["key_id"])
        await self.s.execute(ins)

    async def get(self, key_id: str) -> Row | None:
        row = (
            (await self.s.execute(select(signing_keys).where(signing_keys.c.key_id == key_id)))
            .mappings()
            .first()
        )
        return dict(row) if row else None


async def studies_waiting_for_report(
    session: AsyncSession, modality: str | None, include_reported: bool, limit: int
) -> list[Row]:
    stmt = select(imaging_studies)
    if not include_reported:
        signed = select(documents.c.study_instance_uid).where(
            documents.c.kind == "radiology_report", documents.c.status == "signed"
        )
        stmt = stmt.where(imaging_studies.c.study_instance_uid.not_in(signed))
    rows = await session.execute(
        stmt.order_by(imaging_studies.c.received_at).limit(limit * 4 if modality else limit)
    )
    out = [dict(r) for r in rows.mappings()]
    if modality:
        out = [r for r in out if modality.upper() in r["modalities"]][:limit]
    return out


async def critical_alerts_since(session: AsyncSession, since: datetime | None) -> list[Row]:
    stmt = select(
        critical_alerts.c.department_code,
        critical_alerts.c.status,
        critical_alerts.c.escalated_at,
        critical_alerts.c.seconds_to_acknowledge,
    )
    if since:
        stmt = stmt.where(critical_alerts.c.raised_at >= since)
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


class VitalObservations:
    """A nurse's vital signs of a ward encounter, a time series."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(vital_observations.insert().values(**row))

    async def get(self, observation_id: str) -> Row | None:
        stmt = select(vital_observations).where(vital_observations.c.id == observation_id)
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> Row | None:
        stmt = select(vital_observations).where(vital_observations.c.request_id == request_id)
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def of_encounter(self, encounter_id: str, limit: int) -> list[Row]:
        """Newest first."""
        rows = await self.s.execute(
            select(vital_observations)
            .where(vital_observations.c.encounter_id == encounter_id)
            .order_by(vital_observations.c.measured_at.desc(), vital_observations.c.recorded_at.desc())
            .limit(limit)
        )
        return [dict(r) for r in rows.mappings()]


class Administrations:
    """The medication administration record: each dose of a medication order given, held, refused or
    missed."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def add(self, row: Row) -> None:
        await self.s.execute(medication_administrations.insert().values(**row))

    async def get(self, administration_id: str) -> Row | None:
        stmt = select(medication_administrations).where(medication_administrations.c.id == administration_id)
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def by_request(self, request_id: str) -> Row | None:
        stmt = select(medication_administrations).where(medication_administrations.c.request_id == request_id)
        row = (await self.s.execute(stmt)).mappings().first()
        return dict(row) if row else None

    async def of_encounter(self, encounter_id: str, order_id: str | None, limit: int) -> list[Row]:
        """Newest first."""
        stmt = select(medication_administrations).where(
            medication_administrations.c.encounter_id == encounter_id
        )
        if order_id:
            stmt = stmt.where(medication_administrations.c.order_id == order_id)
        rows = await self.s.execute(
            stmt.order_by(
                medication_administrations.c.administered_at.desc(),
                medication_administrations.c.recorded_at.desc(),
            ).limit(limit)
        )
        return [dict(r) for r in rows.mappings()]
