"""Audit of access to images and their index: who searched, saw, retrieved or stored which patients' studies.

One record per request or DIMSE operation, written (through the chassis unit of work, the same hash-chained
trail as every other action) *before* the answer is sent, so nothing is disclosed unaudited:

================================  =======================================================================
action                            when
================================  =======================================================================
``imaging_study.search``          QIDO-RS (``detail.level``: study, series or instance)
``imaging_study.find``            C-FIND, Patient / Study Root
``imaging_worklist.find``         Modality Worklist C-FIND
``imaging_study.retrieve``        WADO-RS: instances, metadata, rendered, thumbnail (``detail.what``)
``imaging_study.move``            C-MOVE (``detail.destination``)
``imaging_study.get``             C-GET
``imaging_instance.stow``         STOW-RS (stored and refused counts)
``imaging_instance.store``        C-STORE, once the pipeline indexes what was received (per study and AE)
``imaging_study.read``            GET /api/v1/studies/{uid}, gRPC GetStudy (the study's index entry)
``imaging_study.search``          also gRPC ListStudies
``imaging_order.list``            GET /api/v1/orders (the patients of the orders shown)
``imaging_reconciliation.list``   GET /api/v1/reconciliation (the patients and studies waiting for an order)
``imaging_conflict.list``         GET /api/v1/conflicts (the studies of the conflicting instances)
``imaging_mpps.list``             GET /api/v1/mpps (the patients and studies of the MPPS shown)
``imaging_order.read``            gRPC GetOrder
``imaging_order.list``            also gRPC ListOrders (the imaging desk's worklist)
``imaging_reconciliation.list``   also gRPC ListReconciliation
``imaging_mpps.list``             also gRPC ListMpps
================================  =======================================================================

The actor is the token's subject for HTTP and ``ae:<calling AE title>`` for DICOM (the source is the peer's
address). ``patient_id`` is set when one patient is involved; ``detail.patient_ids`` lists every patient
shown (at most :data:`MAX_LISTED`, with the total), ``detail.studies`` the studies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hospital.chassis.app import Runtime
from hospital.chassis.audit import AuditEntry
from hospital.chassis.security import Principal

MAX_LISTED = 200


def shown(rows: Iterable[Mapping[str, Any]]) -> tuple[str | None, dict[str, Any]]:
    """(the one patient involved, or None; detail listing the patients and studies in `rows`)."""
    rows = list(rows)
    patients = sorted({str(r.get("PatientID") or "") for r in rows})
    studies = sorted({str(r["StudyInstanceUID"]) for r in rows if r.get("StudyInstanceUID")})
    detail: dict[str, Any] = {"count": len(rows)}
    detail["patient_ids"] = patients[:MAX_LISTED]
    if len(patients) > MAX_LISTED:
        detail["patients_total"] = len(patients)
    detail["studies"] = studies[:MAX_LISTED]
    if len(studies) > MAX_LISTED:
        detail["studies_total"] = len(studies)
    return (patients[0] or None) if len(patients) == 1 else None, detail


def http_entry(
    who: Principal,
    source: str,
    action: str,
    resource_id: str | None,
    rows: list[Mapping[str, Any]],
    **detail: Any,
) -> AuditEntry:
    patient, listed = shown(rows)
    return AuditEntry(
        actor=who.subject,
        actor_roles=tuple(sorted(who.roles)),
        action=action,
        resource_type="ImagingStudy",
        resource_id=resource_id,
        patient_id=patient,
        source=source,
        detail={**detail, **listed},
    )


def dicom_entry(
    calling_ae: str,
    peer: str,
    action: str,
    resource_id: str | None,
    rows: list[Mapping[str, Any]],
    **detail: Any,
) -> AuditEntry:
    patient, listed = shown(rows)
    return AuditEntry(
        actor=f"ae:{calling_ae.strip()}",
        actor_roles=("dicom_peer",),
        action=action,
        resource_type="ImagingStudy",
        resource_id=resource_id,
        patient_id=patient,
        source=peer,
        detail={**detail, **listed},
    )


class AccessAudit:
    """Writes access records in a transaction of their own."""

    def __init__(self, rt: Runtime[Any]) -> None:
        self.rt = rt

    async def record(self, entry: AuditEntry) -> None:
        async with self.rt.uow() as uow:
            uow.audit(entry)
            await uow.commit()
