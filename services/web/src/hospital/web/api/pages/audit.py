"""The auditor's screen: every service's audit trail, read over gRPC through the one audit contract every
service serves (``hospital.platform.v1.AuditService``, the chassis), with filters (service, user, patient,
action, time range, purpose of use), and each trail's chain verification. Each service records the
auditor's query in its own trail (``audit.query``); the web records the screen's use in its own too."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hospital.chassis.purpose import PURPOSES
from hospital.contracts.platform.v1 import audit_pb2 as aud
from hospital.web import i18n
from hospital.web.adapters.backends import Backend, BackendRefused, BackendUnavailable
from hospital.web.api.deps import LOCAL_TZ, WebSession, caller, lang, render, screen, token, web

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[WebSession, screen("audit")]
SERVICES = ("admissions", "emr", "lab", "imaging", "billing", "web")
PER_SERVICE = 50
FIELD_MAX = 100
_ACTION = re.compile(r"^[a-z0-9_.]{1,100}$")
_USER = re.compile(r"^[a-z0-9._:-]{1,100}$")
_PATIENT = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _backend(request: Request, name: str) -> Backend:
    return getattr(web(request).backends, name)  # type: ignore[no-any-return]


def _local(value: str) -> datetime | None:
    """A ``datetime-local`` field (the hospital's time) as an aware UTC moment; None when unreadable."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return moment.astimezone(UTC)


def _check(request: Request, f: dict[str, str]) -> tuple[dict[str, str], aud.QueryAuditRequest]:
    language = lang(request)
    errors: dict[str, str] = {}
    req = aud.QueryAuditRequest(limit=PER_SERVICE)
    if f["service"] and f["service"] not in SERVICES:
        errors["service"] = i18n.translate("audit.err.service", language)
    if f["user"]:
        if not _USER.fullmatch(f["user"]):
            errors["user"] = i18n.translate("audit.err.user", language)
        else:
            req.actor = f["user"] if ":" in f["user"] else f"user:{f['user']}"
    if f["patient"]:
        if not _PATIENT.fullmatch(f["patient"]):
            errors["patient"] = i18n.translate("audit.err.patient", language)
        else:
            req.patient_id = f["patient"]
    if f["action"]:
        if not _ACTION.fullmatch(f["action"]):
            errors["action"] = i18n.translate("audit.err.action", language)
        else:
            req.action = f["action"]
    if f["purpose"]:
        if f["purpose"] not in PURPOSES:
            errors["purpose"] = i18n.translate("audit.err.purpose", language)
        else:
            req.purpose = f["purpose"]
    since = until = None
    for key in ("since", "until"):
        if f[key]:
            moment = _local(f[key])
            if moment is None:
                errors[key] = i18n.translate("audit.err.time", language)
            elif key == "since":
                since = moment
                req.since.FromDatetime(moment)
            else:
                until = moment
                req.until.FromDatetime(moment)
    if since and until and since >= until:
        errors["until"] = i18n.translate("audit.err.range", language)
    if f["reason"] and (len(f["reason"]) > 200 or any(ord(c) < 32 for c in f["reason"])):
        errors["reason"] = i18n.translate("refund.err.reason_long", language, max=200)
    else:
        req.reason = f["reason"]
    if f["page"] and f["service"]:
        req.page_token = f["page"][:400]
    return errors, req


@router.get("", response_class=HTMLResponse, summary="The audit trail of every service, with filters")
async def page(
    request: Request,
    sess: Auditor,
    service: str = "",
    user: str = "",
    patient: str = "",
    action: str = "",
    purpose: str = "",
    since: str = "",
    until: str = "",
    reason: str = "",
    page: str = "",
) -> Response:
    f = {
        "service": service.strip()[:FIELD_MAX],
        "user": user.strip().lower()[: FIELD_MAX + 1],
        "patient": patient.strip()[: FIELD_MAX + 1],
        "action": action.strip()[: FIELD_MAX + 1],
        "purpose": purpose.strip().upper()[:20],
        "since": since.strip()[:40],
        "until": until.strip()[:40],
        "reason": unicodedata.normalize("NFC", " ".join(reason.split()))[:201],
        "page": page.strip(),
    }
    errors, req = _check(request, f)
    ctx: dict[str, Any] = {
        "f": f,
        "errors": errors,
        "services": SERVICES,
        "purposes": PURPOSES,
        "records": [],
        "down": [],
        "refused": {},
        "next_page": "",
        "asked": bool(request.query_params),
    }
    if errors:
        return render(request, "audit.html", status=422, **ctx)
    names = [f["service"]] if f["service"] else list(SERVICES)
    tok = token(request, sess)
    answers = await asyncio.gather(
        *(_backend(request, n).audit_query(req, tok) for n in names), return_exceptions=True
    )
    records: list[dict[str, Any]] = []
    for name, out in zip(names, answers, strict=True):
        if isinstance(out, BackendUnavailable):
            ctx["down"].append(name)
        elif isinstance(out, BackendRefused):
            ctx["refused"][name] = out.message
        elif isinstance(out, BaseException):
            raise out
        else:
            records += [_row(r) for r in out.records]
            if f["service"]:
                ctx["next_page"] = out.next_page_token
    records.sort(key=lambda r: (r["at"], r["id"]), reverse=True)
    ctx["records"] = records
    w = web(request)
    async with w.accounts.rt.uow() as uow:  # the screen's use, in the web's own trail
        uow.audit(
            caller(request, sess).audit(
                "audit.screen",
                "AuditTrail",
                f["service"] or "all",
                req.patient_id or None,
                filters={k: v for k, v in f.items() if v and k != "page"},
                shown=len(records),
                unavailable=ctx["down"],
            )
        )
        await uow.commit()
    return render(request, "audit.html", **ctx)


def _row(r: aud.AuditRecord) -> dict[str, Any]:
    try:
        detail = json.loads(r.detail_json or "{}")
    except ValueError:
        detail = {"raw": r.detail_json}
    return {
        "id": r.id,
        "at": r.at.ToDatetime(tzinfo=UTC),
        "service": r.service,
        "actor": r.actor,
        "roles": list(r.actor_roles),
        "action": r.action,
        "resource": f"{r.resource_type}{' ' + r.resource_id if r.resource_id else ''}",
        "patient_id": r.patient_id,
        "purpose": r.purpose,
        "source": r.source,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else "",
        "chain": f"{r.chain}:{r.seq}",
    }


@router.get("/chains", response_class=HTMLResponse, summary="Each trail's chain verification (fragment)")
async def chains(request: Request, sess: Auditor) -> Response:
    tok = token(request, sess)
    answers = await asyncio.gather(
        *(_backend(request, n).audit_verify(tok) for n in SERVICES), return_exceptions=True
    )
    rows = []
    for name, out in zip(SERVICES, answers, strict=True):
        if isinstance(out, (BackendUnavailable, BackendRefused)):
            rows.append({"service": name, "state": "down", "checked": 0, "reason": ""})
        elif isinstance(out, BaseException):
            raise out
        else:
            rows.append(
                {
                    "service": name,
                    "state": "ok" if out.ok else "broken",
                    "checked": out.checked,
                    "reason": out.reason,
                    "at": out.verified_at,
                }
            )
    return render(request, "audit/_chains.html", rows=rows)
