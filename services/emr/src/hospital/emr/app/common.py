"""What every EMR use case shares: the runtime with typed settings, time helpers, row → model mapping,
and the access checks (department, break-the-glass) that write the audit entries."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

from hospital.chassis.app import Runtime
from hospital.chassis.caller import Caller
from hospital.chassis.db import utcnow
from hospital.chassis.errors import NotFound
from hospital.chassis.ids import new_id
from hospital.chassis.uow import UnitOfWork
from hospital.emr.adapters.store import ChartAccess, Encounters
from hospital.emr.app import schemas as sc
from hospital.emr.config import EmrSettings
from hospital.emr.domain import access

SOURCE = "emr"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_date(at: datetime) -> date:
    return at.astimezone(LOCAL_TZ).date()


def ts(value: Timestamp | None) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=UTC)


class Context:
    """The runtime with the EMR's settings, handed to every use case."""

    def __init__(self, rt: Runtime) -> None:
        assert isinstance(rt.settings, EmrSettings)
        self.rt = rt
        self.settings: EmrSettings = rt.settings

    def uow(self) -> UnitOfWork:
        return self.rt.uow()

    def departments(self, caller: Caller) -> frozenset[str]:
        return access.departments_of(caller.principal, self.settings.staff_departments)


def encounter_model(row: dict[str, Any]) -> sc.Encounter:
    data = {k: v for k, v in row.items() if v is not None}
    return sc.Encounter.model_validate(data)


async def load_encounter(session: Any, encounter_id: str, *, for_update: bool = False) -> dict[str, Any]:
    row = await Encounters(session).get(encounter_id, for_update=for_update)
    if row is None:
        raise NotFound("encounter.not_found", f"no encounter {encounter_id}", field="encounter_id")
    return row


async def authorize_read(
    ctx: Context,
    uow: UnitOfWork,
    caller: Caller,
    patient_id: str,
    encounter_id: str | None,
    reason: str | None,
    action: str,
) -> access.Access:
    """Check the caller may read the patient's chart; record a break-the-glass access (with its own audit
    entry) when the patient is outside the caller's departments; audit the read itself."""
    departments = await Encounters(uow.session).departments_of_patient(patient_id)
    granted = access.check_read(caller.principal, ctx.departments(caller), departments, reason)
    if granted.break_glass:
        await ChartAccess(uow.session).record(
            {
                "id": new_id(),
                "subject": caller.subject,
                "patient_id": patient_id,
                "encounter_id": encounter_id,
                "department_code": ",".join(sorted(departments)) or None,
                "reason": granted.reason,
                "accessed_at": utcnow(),
            }
        )
        uow.audit(
            caller.audit(
                "chart.break_glass",
                "Patient",
                patient_id,
                patient_id,
                reason=granted.reason,
                encounter_id=encounter_id,
            )
        )
    uow.audit(
        caller.audit(
            action,
            "Encounter" if encounter_id else "Patient",
            encounter_id or patient_id,
            patient_id,
            break_glass=granted.break_glass,
        )
    )
    return granted
