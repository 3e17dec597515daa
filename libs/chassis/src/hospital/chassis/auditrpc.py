"""The audit trail over gRPC (``hospital.platform.v1.AuditService``), served by every service through the
chassis runner: one implementation of reading a service's keyed, hash-chained ``audit_log`` with filters
and of verifying its chains, so an auditor's screen reads every trail the same way.

Only the ``auditor`` role may call it (:data:`RULES`, merged into each service's rules by the runner).
Every query and verification is itself recorded in the trail it read (``audit.query``, ``audit.verify``),
with the filters, the number of records returned and the patients they named. ADR 0010.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

import grpc
from sqlalchemy import and_, or_, select

from hospital.chassis import purpose as purpose_of_use
from hospital.chassis.audit import verify_chain
from hospital.chassis.caller import Caller
from hospital.chassis.db import audit_log_table, utcnow
from hospital.chassis.errors import Invalid
from hospital.chassis.fields import clean_text
from hospital.chassis.rpc import principal
from hospital.contracts.platform.v1 import audit_pb2 as pb
from hospital.contracts.platform.v1 import audit_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["AuditService"].full_name
READERS: tuple[str, ...] = ("auditor",)
RULES: dict[str, tuple[str, ...]] = {
    f"/{SERVICE}/QueryAudit": READERS,
    f"/{SERVICE}/VerifyAudit": READERS,
}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTER_MAX = 200


def _filter(value: str, field: str) -> str:
    return clean_text(value, field=field, max_length=FILTER_MAX) if value else ""


def encode_token(at: datetime, record_id: str) -> str:
    raw = f"{at.astimezone(UTC).isoformat(timespec='microseconds')}|{record_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> tuple[datetime, str]:
    try:
        at, _, rid = base64.urlsafe_b64decode(token.encode("ascii")).decode().partition("|")
        when = datetime.fromisoformat(at)
    except (ValueError, UnicodeError, binascii.Error):
        raise Invalid("audit.page_token", "not a page token of this query", field="page_token") from None
    if not rid or when.tzinfo is None:
        raise Invalid("audit.page_token", "not a page token of this query", field="page_token")
    return when, rid


def record_proto(row: Any, service: str) -> pb.AuditRecord:
    m = pb.AuditRecord(
        id=row["id"],
        actor=row["actor"],
        actor_roles=[r for r in (row["actor_roles"] or "").split(",") if r],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"] or "",
        patient_id=row["patient_id"] or "",
        source=row["source"],
        purpose=row["purpose"] or "",
        detail_json=row["detail"] or "{}",
        chain=row["chain"],
        seq=row["seq"],
        service=service,
    )
    m.at.FromDatetime(row["at"].astimezone(UTC))
    return m


class AuditServicer(pb_grpc.AuditServiceServicer):
    """``rt``: the service's runtime (its database, settings and unit of work)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    @property
    def service(self) -> str:
        return str(self.rt.settings.service)

    def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        return Caller(principal(), context.peer() or "")

    async def QueryAudit(self, request: pb.QueryAuditRequest, context: Any) -> pb.QueryAuditResponse:
        limit = request.limit or DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid("audit.limit", f"limit is 1 to {MAX_LIMIT}", field="limit")
        actor = _filter(request.actor, "actor")
        patient_id = _filter(request.patient_id, "patient_id")
        action = _filter(request.action, "action")
        reason = clean_text(request.reason, field="reason", max_length=500) if request.reason else ""
        try:
            purpose = purpose_of_use.parse(request.purpose)
        except purpose_of_use.UnknownPurpose as exc:
            raise Invalid("audit.purpose", str(exc), field="purpose") from None
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        until = request.until.ToDatetime(tzinfo=UTC) if request.HasField("until") else None
        if since and until and since >= until:
            raise Invalid("audit.time_range", "the start must come before the end", field="since")
        c = audit_log_table.c
        conds: list[Any] = []
        if actor:
            conds.append(c.actor == actor)
        if patient_id:
            conds.append(c.patient_id == patient_id)
        if action:
            conds.append(
                c.action.startswith(action, autoescape=True) if action.endswith(".") else c.action == action
            )
        if purpose:
            conds.append(c.purpose == purpose)
        if since:
            conds.append(c.at >= since)
        if until:
            conds.append(c.at < until)
        if request.page_token:
            at, rid = decode_token(request.page_token)
            conds.append(or_(c.at < at, and_(c.at == at, c.id < rid)))
        stmt = select(audit_log_table).where(*conds).order_by(c.at.desc(), c.id.desc()).limit(limit + 1)
        async with self.rt.db.session() as s:
            rows = (await s.execute(stmt)).mappings().all()
        more = len(rows) > limit
        rows = rows[:limit]
        filters = {
            k: v
            for k, v in {
                "actor": actor,
                "patient_id": patient_id,
                "action": action,
                "purpose": purpose or "",
                "since": since.isoformat() if since else "",
                "until": until.isoformat() if until else "",
                "page": bool(request.page_token),
            }.items()
            if v
        }
        patients = sorted({r["patient_id"] for r in rows if r["patient_id"]})
        async with self.rt.uow() as uow:
            uow.audit(
                self._caller(context).audit(
                    "audit.query",
                    "AuditTrail",
                    self.service,
                    patient_id or None,
                    filters=filters,
                    returned=len(rows),
                    patients=patients[:100],
                    reason=reason,
                )
            )
            await uow.commit()
        return pb.QueryAuditResponse(
            records=[record_proto(r, self.service) for r in rows],
            next_page_token=encode_token(rows[-1]["at"], rows[-1]["id"]) if more and rows else "",
            service=self.service,
        )

    async def VerifyAudit(self, request: pb.VerifyAuditRequest, context: Any) -> pb.VerifyAuditResponse:
        async with self.rt.db.session() as s:
            report = await verify_chain(s)
        async with self.rt.uow() as uow:
            uow.audit(
                self._caller(context).audit(
                    "audit.verify",
                    "AuditTrail",
                    self.service,
                    None,
                    ok=report.ok,
                    checked=report.checked,
                    reason=report.reason,
                )
            )
            await uow.commit()
        out = pb.VerifyAuditResponse(
            service=self.service,
            ok=report.ok,
            checked=report.checked,
            chain=report.chain if report.chain is not None else -1,
            first_bad_seq=report.first_bad_seq or 0,
            reason=report.reason,
        )
        out.verified_at.FromDatetime(utcnow())
        return out


def detail_of(record: pb.AuditRecord) -> dict[str, Any]:
    """A record's detail as a dict (an unreadable one as ``{"raw": text}``)."""
    try:
        value = json.loads(record.detail_json or "{}")
    except ValueError:
        return {"raw": record.detail_json}
    return value if isinstance(value, dict) else {"value": value}


def register(server: grpc.aio.Server, rt: Any) -> None:
    pb_grpc.add_AuditServiceServicer_to_server(AuditServicer(rt), server)
