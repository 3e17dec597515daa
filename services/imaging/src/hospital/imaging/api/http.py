"""HTTP API: DICOMweb (/dicomweb), studies, orders, the reconciliation queue and routing."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field, StringConstraints

from hospital.chassis.fields import Id, Limit, code, line
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, require_roles
from hospital.imaging.api.dicomweb import build_dicomweb
from hospital.imaging.app.access_audit import AccessAudit, http_entry

READ = ("radiographer", "radiologist", "doctor")
IMAGING_STAFF = ("radiographer", "radiologist")


class ResolveBody(BaseModel):
    order_id: Id | None = Field(
        default=None, description="link to this order; null accepts the study as unordered"
    )


class ConflictResolveBody(BaseModel):
    action: Literal["keep_existing", "take_new"] = Field(
        description="keep_existing: the indexed instance stays; take_new: the flagged copy replaces it "
        "(the replaced copy is kept under conflicts/)"
    )


class MppsResolveBody(BaseModel):
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = Field(
        description="how the MPPS was handled (1-500 characters, trimmed), e.g. the order re-made or why "
        "none was owed"
    )


class DeleteBody(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)] = Field(
        description="why it is deleted (5-500 characters, trimmed), e.g. the retention period ended or the "
        "images were sent for the wrong patient; kept on the job, in the audit trail and in the event"
    )


AeTitle = code(16, min_length=1)  # PS3.5: AE is at most 16 characters


class RuleBody(BaseModel):
    name: line(100) = ""
    destination_ae: AeTitle
    modality: code(16) | None = None
    source_ae: AeTitle | None = None
    attributes: dict[code(64, min_length=1), line(200)] = Field(default_factory=dict, max_length=20)
    enabled: bool = True


def build_http(services: Any) -> FastAPI:
    app = FastAPI(title="Hospital imaging (PACS gateway)", version="1")
    # STOW-RS bodies are instances: the chassis's default request limit does not apply there.
    app.state.body_limits = {"/dicomweb/studies": None}
    app.include_router(build_dicomweb(services))

    access = AccessAudit(services.rt)

    @app.get("/api/v1/studies/{study_uid}")
    async def get_study(
        study_uid: str, request: Request, who: Principal = Depends(require_roles(*READ))
    ) -> dict[str, Any]:
        """A study's index entry (patient, accession, series, linked order); audited
        ``imaging_study.read`` before it is answered."""
        study = await services.studies.get(study_uid)
        shown = [{"PatientID": study.patient_code, "StudyInstanceUID": study_uid}]
        await access.record(http_entry(who, client_address(request), "imaging_study.read", study_uid, shown))
        return MessageToDict(study, preserving_proto_field_name=True)

    @app.delete(
        "/api/v1/studies/{study_uid}", status_code=202, summary="Delete a study (objects and index rows)"
    )
    async def delete_study(
        study_uid: str, body: DeleteBody, request: Request, who: Principal = Depends(require_roles("admin"))
    ) -> dict[str, Any]:
        """Administrators only, with a ``reason``. The study leaves the index at once (C-FIND, QIDO-RS,
        WADO-RS, C-MOVE and C-GET no longer find it), ``imaging.study.deleted`` is published and
        ``imaging_study.delete`` audited in the same transaction; its objects are then removed from the
        bucket by the deletion job returned here (``status`` pending, then done; ``GET
        /api/v1/deletions/{id}``), which survives restarts and object-store outages (ADR 0312). 404
        ``study.not_found`` for a study not in the index (already deleted, or never received)."""
        return await services.deletions.delete_study(study_uid, body.reason, who, client_address(request))

    @app.delete(
        "/api/v1/studies/{study_uid}/series/{series_uid}",
        status_code=202,
        summary="Delete one series of a study (objects and index rows)",
    )
    async def delete_series(
        study_uid: str,
        series_uid: str,
        body: DeleteBody,
        request: Request,
        who: Principal = Depends(require_roles("admin")),
    ) -> dict[str, Any]:
        """As for a study: the series leaves the index at once, the study's counts and modalities are
        updated (the study itself is removed with its last series), ``imaging.series.deleted`` is
        published, ``imaging_series.delete`` audited, and the job removes the objects. 404
        ``series.not_found`` when the series is not in that study."""
        return await services.deletions.delete_series(
            study_uid, series_uid, body.reason, who, client_address(request)
        )

    @app.get("/api/v1/deletions", dependencies=[Depends(require_roles("admin"))])
    async def list_deletions(
        status: Literal["pending", "done"] | None = None, limit: Limit = 100
    ) -> dict[str, Any]:
        """Deletion jobs, newest first: ``pending`` ones still have objects to remove (``last_error`` and
        ``next_attempt_at`` tell why and when the next try is)."""
        return {"items": await services.deletions.list(status, min(limit, 500))}

    @app.get("/api/v1/deletions/{deletion_id}", dependencies=[Depends(require_roles("admin"))])
    async def get_deletion(deletion_id: str) -> dict[str, Any]:
        return await services.deletions.get(deletion_id)

    @app.get("/api/v1/orders")
    async def list_orders(
        request: Request,
        status: str | None = None,
        limit: Limit = 100,
        who: Principal = Depends(require_roles(*READ)),
    ) -> dict[str, Any]:
        """Imaging orders by scheduled time; audited ``imaging_order.list`` naming the patients shown."""
        items = await services.orders.list(status, min(limit, 500))
        shown = [{"PatientID": o["patient_id"]} for o in items]
        entry = http_entry(who, client_address(request), "imaging_order.list", None, shown, status=status)
        await access.record(replace(entry, resource_type="ImagingOrder"))
        return {"items": items}

    @app.get("/api/v1/reconciliation")
    async def list_reconciliation(
        request: Request, status: str = "open", who: Principal = Depends(require_roles(*IMAGING_STAFF))
    ) -> dict[str, Any]:
        """Studies waiting to be matched to an order; audited ``imaging_reconciliation.list`` naming the
        patients and studies shown."""
        items = await services.studies.list_reconciliation(status)
        shown = [{"PatientID": r["patient_id"], "StudyInstanceUID": r["study_instance_uid"]} for r in items]
        entry = http_entry(
            who, client_address(request), "imaging_reconciliation.list", None, shown, status=status
        )
        await access.record(entry)
        return {"items": items}

    @app.post("/api/v1/reconciliation/{item_id}/resolve")
    async def resolve(
        item_id: str, body: ResolveBody, who: Principal = Depends(require_roles(*IMAGING_STAFF))
    ) -> dict[str, Any]:
        return await services.studies.resolve(item_id, body.order_id, who)

    @app.get("/api/v1/conflicts")
    async def list_conflicts(
        request: Request,
        status: Literal["open", "resolved", "all"] = "open",
        limit: Limit = 200,
        who: Principal = Depends(require_roles("admin", *IMAGING_STAFF)),
    ) -> dict[str, Any]:
        """Instances received again with different bytes; audited ``imaging_conflict.list`` naming the
        studies shown."""
        items = await services.conflicts.list(status, min(limit, 1000))
        shown = [{"StudyInstanceUID": r.get("study_instance_uid")} for r in items]
        entry = http_entry(who, client_address(request), "imaging_conflict.list", None, shown, status=status)
        await access.record(entry)
        return {"items": items}

    @app.post("/api/v1/conflicts/{conflict_id}/resolve")
    async def resolve_conflict(
        conflict_id: str, body: ConflictResolveBody, who: Principal = Depends(require_roles(*IMAGING_STAFF))
    ) -> dict[str, Any]:
        return await services.conflicts.resolve(conflict_id, body.action, who)

    @app.get("/api/v1/mpps")
    async def list_mpps(
        request: Request,
        unmatched: bool = False,
        limit: Limit = 200,
        who: Principal = Depends(require_roles("admin", *IMAGING_STAFF)),
    ) -> dict[str, Any]:
        """MPPS messages received; ``unmatched=true``: those kept for review, ``attention`` saying why:
        ``no_order`` (matched no imaging order), ``order_cancelled`` (named an order that was cancelled;
        the order stays cancelled, ``order_id`` names it), ``already_completed`` (a new MPPS for an order
        already completed; the order stays completed), ``redo_discontinued`` (redid a discontinued order,
        which is in progress again: check its charge) or ``superseded`` (ended after a newer MPPS took over
        its order: its end was not applied), not yet resolved by staff (``POST .../resolve``). Each item
        carries ``resolved_by``, ``resolved_at`` and ``resolution_note`` (null until resolved). ADR 0306.
        Audited ``imaging_mpps.list`` naming the patients and studies shown."""
        items = await services.orders.list_mpps(unmatched, min(limit, 1000))
        shown = [
            {"PatientID": r.get("patient_id"), "StudyInstanceUID": r.get("study_instance_uid")} for r in items
        ]
        entry = http_entry(
            who, client_address(request), "imaging_mpps.list", None, shown, unmatched=unmatched
        )
        await access.record(replace(entry, resource_type="ImagingMpps"))
        return {"items": items}

    @app.post(
        "/api/v1/mpps/{mpps_instance_uid}/resolve", summary="Mark an MPPS flagged for review as handled"
    )
    async def resolve_mpps(
        mpps_instance_uid: str,
        body: MppsResolveBody,
        who: Principal = Depends(require_roles("admin", *IMAGING_STAFF)),
    ) -> dict[str, Any]:
        """Record who resolved an MPPS listed by ``unmatched=true``, when, and the ``note`` (required,
        trimmed, at most 500 characters); audited as ``imaging_mpps.resolved``. The MPPS then leaves the
        ``unmatched=true`` list and is returned with ``resolved_by``, ``resolved_at``, ``resolution_note``.
        No order is changed: staff act on orders through the order APIs. Resolving an MPPS already resolved
        returns it unchanged (whatever the note); 404 ``mpps.not_found`` for an unknown UID, 409
        ``mpps.nothing_to_resolve`` for an MPPS with no ``attention``. An MPPS later flagged for another
        reason is listed again, its resolution cleared."""
        return await services.orders.resolve_mpps(mpps_instance_uid, body.note, who)

    @app.get("/api/v1/routing/rules", dependencies=[Depends(require_roles("admin", *IMAGING_STAFF))])
    async def rules() -> dict[str, Any]:
        return {"items": await services.routing.rules()}

    @app.post("/api/v1/routing/rules", status_code=201, dependencies=[Depends(require_roles("admin"))])
    async def add_rule(body: RuleBody) -> dict[str, Any]:
        return await services.routing.add_rule(body.model_dump())

    @app.delete(
        "/api/v1/routing/rules/{rule_id}", status_code=204, dependencies=[Depends(require_roles("admin"))]
    )
    async def delete_rule(rule_id: str) -> None:
        await services.routing.delete_rule(rule_id)

    @app.get("/api/v1/routing/queue", dependencies=[Depends(require_roles("admin", *IMAGING_STAFF))])
    async def routing_queue() -> dict[str, Any]:
        return await services.routing.queue_status()

    @app.get("/api/v1/pipeline", dependencies=[Depends(require_roles("admin", *IMAGING_STAFF))])
    async def pipeline() -> dict[str, Any]:
        pending = len(services.spool.pending())
        return {
            "spooled": pending,
            "indexed_since_start": services.pipeline.indexed,
            "last_error": services.pipeline.last_error,
        }

    return app
