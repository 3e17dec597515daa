"""Reads behind the FHIR API: one row by id, or a patient's rows, from the EMR's tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.emr.adapters.tables import (
    allergies,
    consultations,
    diagnoses,
    documents,
    encounters,
    imaging_studies,
    lab_results,
    orders,
    patients,
    prescriptions,
    problems,
    vital_observations,
)

Row = dict[str, Any]
SEARCH_LIMIT = 1000  # rows of one kind in one searchset (a chart of 500 encounters fits)


class FhirReads:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def _one(self, table: Table, column: str, value: str) -> Row | None:
        row = (await self.s.execute(select(table).where(table.c[column] == value))).mappings().first()
        return dict(row) if row else None

    async def _of_patient(self, table: Table, patient_id: str, order: str, *where: Any) -> list[Row]:
        q = (
            select(table)
            .where(table.c.patient_id == patient_id, *where)
            .order_by(table.c[order].desc())
            .limit(SEARCH_LIMIT)
        )
        return [dict(r) for r in (await self.s.execute(q)).mappings()]

    async def patient(self, patient_id: str) -> Row | None:
        return await self._one(patients, "id", patient_id)

    async def encounter(self, encounter_id: str) -> Row | None:
        return await self._one(encounters, "id", encounter_id)

    async def encounters(self, patient_id: str) -> list[Row]:
        return await self._of_patient(encounters, patient_id, "opened_at")

    async def consultation(self, encounter_id: str) -> Row | None:
        return await self._one(consultations, "encounter_id", encounter_id)

    async def consultations(self, patient_id: str) -> list[Row]:
        return await self._of_patient(consultations, patient_id, "updated_at")

    async def nurse_vitals(self, patient_id: str) -> list[Row]:
        """The nurses' vital signs of the patient's ward encounters, newest first."""
        q = (
            select(vital_observations)
            .where(vital_observations.c.patient_id == patient_id)
            .order_by(vital_observations.c.measured_at.desc(), vital_observations.c.id)
            .limit(SEARCH_LIMIT)
        )
        return [dict(r) for r in (await self.s.execute(q)).mappings()]

    async def nurse_vital(self, observation_id: str) -> Row | None:
        return await self._one(vital_observations, "id", observation_id)

    async def diagnosis(self, row_id: str) -> Row | None:
        return await self._one(diagnoses, "id", row_id)

    async def diagnoses(self, patient_id: str) -> list[Row]:
        return await self._of_patient(diagnoses, patient_id, "recorded_at")

    async def problem(self, row_id: str) -> Row | None:
        return await self._one(problems, "id", row_id)

    async def problems(self, patient_id: str) -> list[Row]:
        return await self._of_patient(problems, patient_id, "recorded_at")

    async def allergy(self, row_id: str) -> Row | None:
        return await self._one(allergies, "id", row_id)

    async def allergies(self, patient_id: str) -> list[Row]:
        return await self._of_patient(allergies, patient_id, "recorded_at")

    async def order(self, order_id: str) -> Row | None:
        return await self._one(orders, "id", order_id)

    async def orders(self, patient_id: str, kinds: tuple[str, ...]) -> list[Row]:
        return await self._of_patient(orders, patient_id, "ordered_at", orders.c.kind.in_(kinds))

    async def prescription(self, prescription_id: str) -> Row | None:
        return await self._one(prescriptions, "id", prescription_id)

    async def prescriptions(self, patient_id: str) -> list[Row]:
        return await self._of_patient(prescriptions, patient_id, "created_at")

    async def lab_result(self, result_id: str) -> Row | None:
        return await self._one(lab_results, "id", result_id)

    async def lab_results(self, patient_id: str) -> list[Row]:
        return await self._of_patient(lab_results, patient_id, "received_at")

    async def lab_results_of(self, group: str) -> list[Row]:
        """The results of one EMR lab order (or, for results no EMR order asked for, of one lab order)."""
        q = (
            select(lab_results)
            .where((lab_results.c.order_id == group) | (lab_results.c.lab_order_id == group))
            .order_by(lab_results.c.test_code)
        )
        return [dict(r) for r in (await self.s.execute(q)).mappings()]

    async def study(self, study_uid: str) -> Row | None:
        return await self._one(imaging_studies, "study_instance_uid", study_uid)

    async def studies(self, patient_id: str) -> list[Row]:
        return await self._of_patient(imaging_studies, patient_id, "received_at")

    async def document(self, document_id: str) -> Row | None:
        return await self._one(documents, "id", document_id)

    async def documents(self, patient_id: str, kinds: tuple[str, ...] | None = None) -> list[Row]:
        where = [documents.c.kind.in_(kinds)] if kinds else []
        return await self._of_patient(documents, patient_id, "created_at", *where)

    async def report_of_study(self, study_uid: str) -> Row | None:
        q = (
            select(documents)
            .where(documents.c.study_instance_uid == study_uid, documents.c.status == "signed")
            .order_by(documents.c.version.desc())
        )
        row = (await self.s.execute(q)).mappings().first()
        return dict(row) if row else None
