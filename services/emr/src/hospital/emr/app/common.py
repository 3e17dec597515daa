"""What every EMR use case shares: the runtime with typed settings, time helpers, row → model mapping,
and the access checks (department, break-the-glass) that write the audit entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any, cast
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


#: The unit of work of :meth:`Context.one_transaction` while it runs (per asyncio task).
_ENCLOSING: ContextVar[UnitOfWork | None] = ContextVar("emr_enclosing_uow", default=None)


class _Joined:
    """A use case's unit of work inside :meth:`Context.one_transaction`: the enclosing unit's session,
    events and audit records; its ``commit`` is left to the enclosing unit (which commits all or none),
    and leaving it neither commits nor rolls back."""

    def __init__(self, outer: UnitOfWork) -> None:
        self._outer = outer

    async def __aenter__(self) -> _Joined:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outer, name)


class Context:
    """The runtime with the EMR's settings, handed to every use case."""

    def __init__(self, rt: Runtime[EmrSettings]) -> None:
        self.rt = rt
        self.settings = rt.settings

    def uow(self) -> UnitOfWork:
        """A unit of work of the use case's own, or, inside :meth:`one_transaction`, the enclosing one."""
        outer = _ENCLOSING.get()
        return self.rt.uow() if outer is None else cast(UnitOfWork, _Joined(outer))

    @asynccontextmanager
    async def one_transaction(self) -> AsyncIterator[UnitOfWork]:
        """Run several use cases as one: each one's writes, events and audit records go into this unit's
        transaction, committed together by ``await uow.commit()`` or not at all."""
        async with self.rt.uow() as uow:
            token = _ENCLOSING.set(uow)
            try:
                yield uow
            finally:
                _ENCLOSING.reset(token)

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
