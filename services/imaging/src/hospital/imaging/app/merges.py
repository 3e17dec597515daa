"""Patient records merged in admissions (``admissions.patient.merged``) and what they change here (ADR 0317).

The event names the two records by admissions id; the worklist and the study index use patient codes (DICOM
PatientID), so both records are read from admissions. In the consumer's transaction:

* the merged record's orders (by ``patient_ref``, or by its code for orders that came without a ref) now
  name the survivor: its id, code, name, birth date and sex, so the worklist shows the surviving record;
* the merged record's code is recorded as naming the survivor (``patient_merges``): matching a study to an
  order takes both codes as one patient, also for studies that arrive later with the old code;
* studies linked to the moved orders are re-evaluated: they stay linked (same person), audited
  ``imaging_study.reevaluated`` with outcome ``kept_after_merge``;
* studies queued for reconciliation because their patient differed from their order's
  (``patient_mismatch``) whose two patients are now one are linked to that order, the queue item resolved
  by ``admissions.patient.merged``, and ``imaging.study.reconciled`` is published.

Stored images are never rewritten: they keep the PatientID they were sent with.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select, update

from hospital.chassis.audit import AuditEntry
from hospital.chassis.bus import Event
from hospital.chassis.db import utcnow
from hospital.chassis.uow import UnitOfWork
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import events_pb2 as adm_ev  # noqa: F401 - registers PatientMerged
from hospital.contracts.imaging.v1 import events_pb2 as ev
from hospital.imaging.adapters import tables as t
from hospital.imaging.app.orders import to_pn
from hospital.imaging.app.studies import link_study, same_patient_codes

log = logging.getLogger(__name__)

ACTOR = "admissions.patient.merged"
_SEX = {adm.SEX_MALE: "M", adm.SEX_FEMALE: "F"}


def _dicom_date(d: Any) -> str | None:
    if not d.year:
        return None
    return (
        f"{d.year:04d}"
        + (f"{d.month:02d}" if d.month else "")
        + (f"{d.day:02d}" if d.month and d.day else "")
    )


class PatientMerges:
    def __init__(self, rt: Any, admissions: Any) -> None:
        self.rt, self.admissions = rt, admissions

    async def on_patient_merged(self, session: Any, event: Event) -> None:
        msg = event.message()
        survivor = await self.admissions.patient(msg.survivor_id)
        merged = await self.admissions.patient(msg.merged_id)
        if survivor is None:
            log.warning(
                "patient merge %s -> %s: admissions does not know the survivor; nothing changed",
                msg.merged_id,
                msg.survivor_id,
            )
            return
        uow = UnitOfWork.joining(session, source="imaging")
        s = session
        now = utcnow()
        merged_code = merged.patient_code if merged is not None else ""
        survivor_code = survivor.patient_code

        if merged_code and merged_code != survivor_code:
            # a chain (A merged into B, later B into C): what named B now names C
            await s.execute(
                update(t.patient_merges)
                .where(t.patient_merges.c.survivor_code == merged_code)
                .values(survivor_code=survivor_code, survivor_ref=msg.survivor_id)
            )
            known = (
                await s.execute(
                    select(t.patient_merges.c.merged_code).where(
                        t.patient_merges.c.merged_code == merged_code
                    )
                )
            ).first()
            values = {
                "survivor_code": survivor_code,
                "merged_ref": msg.merged_id,
                "survivor_ref": msg.survivor_id,
                "merged_at": now,
            }
            if known is None:
                await s.execute(t.patient_merges.insert().values(merged_code=merged_code, **values))
            else:
                await s.execute(
                    update(t.patient_merges)
                    .where(t.patient_merges.c.merged_code == merged_code)
                    .values(**values)
                )

        conds = [t.orders.c.patient_ref == msg.merged_id]
        if merged_code:
            conds.append(t.orders.c.patient_id == merged_code)
        moved = (await s.execute(select(t.orders).where(or_(*conds)))).all()
        if moved:
            await s.execute(
                update(t.orders)
                .where(t.orders.c.id.in_([o.id for o in moved]))
                .values(
                    patient_ref=msg.survivor_id,
                    patient_id=survivor_code,
                    patient_name=to_pn(survivor.full_name),
                    patient_birth_date=_dicom_date(survivor.birth_date),
                    patient_sex=_SEX.get(survivor.sex),
                    updated_at=now,
                )
            )
        for o in moved:
            uow.audit(
                AuditEntry(
                    actor=ACTOR,
                    action="imaging_order.patient_merged",
                    resource_type="ImagingOrder",
                    resource_id=o.id,
                    patient_id=msg.survivor_id,
                    detail={
                        "accession": o.accession_number,
                        "merged_ref": msg.merged_id,
                        "merged_code": o.patient_id,
                        "survivor_code": survivor_code,
                    },
                )
            )
        if moved:
            linked = (
                await s.execute(
                    select(
                        t.studies.c.study_instance_uid, t.studies.c.order_id, t.studies.c.patient_id
                    ).where(t.studies.c.order_id.in_([o.id for o in moved]))
                )
            ).all()
            for st in linked:
                uow.audit(
                    AuditEntry(
                        actor=ACTOR,
                        action="imaging_study.reevaluated",
                        resource_type="ImagingStudy",
                        resource_id=st.study_instance_uid,
                        patient_id=msg.survivor_id,
                        detail={
                            "order_id": st.order_id,
                            "outcome": "kept_after_merge",
                            "study_patient": st.patient_id,
                        },
                    )
                )

        codes = await same_patient_codes(s, survivor_code)
        waiting = (
            await s.execute(
                select(
                    t.reconciliation.c.id,
                    t.reconciliation.c.study_instance_uid,
                    t.reconciliation.c.reason,
                    t.studies.c.patient_id.label("study_patient"),
                    t.orders.c.id.label("order_id"),
                    t.orders.c.accession_number,
                    t.orders.c.patient_id.label("order_patient"),
                )
                .join(t.studies, t.studies.c.study_instance_uid == t.reconciliation.c.study_instance_uid)
                .join(t.orders, t.orders.c.id == t.reconciliation.c.candidate_order_id)
                .where(
                    t.reconciliation.c.status == "open",
                    t.reconciliation.c.reason == "patient_mismatch",
                    t.studies.c.patient_id.in_(sorted(codes)),
                    t.orders.c.patient_id.in_(sorted(codes)),
                )
            )
        ).all()
        for item in waiting:
            taken = (
                await s.execute(
                    select(t.studies.c.study_instance_uid).where(
                        t.studies.c.order_id == item.order_id,
                        t.studies.c.study_instance_uid != item.study_instance_uid,
                    )
                )
            ).first()
            if taken is not None:  # the order has another study: staff decide, as before
                continue
            await link_study(s, item.study_instance_uid, item.order_id, "resolved")
            await s.execute(
                update(t.reconciliation)
                .where(t.reconciliation.c.id == item.id)
                .values(
                    status="resolved", resolved_order_id=item.order_id, resolved_by=ACTOR, resolved_at=now
                )
            )
            uow.publish(
                "imaging.study.reconciled",
                ev.StudyReconciled(
                    study_instance_uid=item.study_instance_uid,
                    order_id=item.order_id,
                    accession_number=item.accession_number,
                    patient_code=item.study_patient,
                    reason=item.reason,
                    resolved_by=ACTOR,
                ),
            )
            uow.audit(
                AuditEntry(
                    actor=ACTOR,
                    action="imaging_study.reevaluated",
                    resource_type="ImagingStudy",
                    resource_id=item.study_instance_uid,
                    patient_id=msg.survivor_id,
                    detail={
                        "order_id": item.order_id,
                        "outcome": "linked_after_merge",
                        "reason": item.reason,
                    },
                )
            )
            log.info(
                "study %s linked to order %s: its patient %s and the order's are merged records",
                item.study_instance_uid,
                item.accession_number,
                item.study_patient,
            )
        await uow.flush_pending()
