"""Analyzer ingestion: the handler behind the ASTM and MLLP listeners.

``store`` runs before the analyzer gets its final ACK (ASTM) or ``MSA|AA`` (HL7) and does everything in
one transaction: the raw bytes (``lab_raw_messages``, unique on their SHA-256, so an identical
retransmission is recognised and acknowledged without a second effect), the parsed results (unique on a
per-result key, so a retransmission with a new header timestamp is recognised too), the checks, and the
outbox events. If anything fails the transaction rolls back and the analyzer is NAKed and resends.

Results are matched to a specimen by barcode only — never by name. An unknown barcode keeps its results
in the ``unmatched`` queue until a technician assigns them to a specimen.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.app import Runtime
from hospital.chassis.db import utcnow
from hospital.chassis.ids import new_id
from hospital.contracts.lab.v1 import events_pb2
from hospital.lab.adapters.tables import (
    lab_settings,
    order_items,
    orders,
    qc_status,
    raw_messages,
    results,
    specimens,
)
from hospital.lab.api.astm import AstmMessage, HostOrder, Peer, Query
from hospital.lab.api.hl7 import OrderMessage, ResultMessage, SpecimenQuery
from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.common import SYSTEM, result_dict, result_proto, ts
from hospital.lab.app.evaluate import Context, evaluate
from hospital.lab.app.orders import NewOrder, OrderService

log = logging.getLogger(__name__)
LOINC_RE = re.compile(r"^\d{1,7}-\d$")
SHARED_ENDPOINTS = ("astm", "mllp")


@dataclass
class InResult:
    index: int
    keys: list[str]
    loincs: list[str]
    analyzer_code: str
    value: str
    units: str
    ref: str
    flags: tuple[str, ...]
    status: str
    observed_at: datetime | None
    note: str


@dataclass
class InGroup:
    barcode: str
    results: list[InResult]


def astm_groups(message: AstmMessage, tz: ZoneInfo) -> list[InGroup]:
    groups: list[InGroup] = []
    index = 0
    for patient in message.patients:
        for og in patient.orders:
            barcode = og.order.specimen_id if og.order else ""
            items = []
            for r in og.results:
                index += 1
                comps = [c.strip() for c in r.test.components]
                when = r.completed_at or r.started_at
                items.append(InResult(
                    index=index, keys=[r.test.key, r.test.code], loincs=[c for c in comps if LOINC_RE.match(c)],
                    analyzer_code=r.test.key or r.test.code, value=r.value, units=r.units, ref=r.reference_range,
                    flags=r.abnormal_flags, status=r.status,
                    observed_at=when.replace(tzinfo=tz) if when else None,
                    note="; ".join(c.text.replace("^", " ").strip() for c in r.comments)[:500]))
            groups.append(InGroup(barcode, items))
    return groups


def hl7_groups(message: ResultMessage, tz: ZoneInfo) -> list[InGroup]:
    groups: list[InGroup] = []
    index = 0
    for req in message.requests:
        items = []
        for o in req.observations:
            index += 1
            when = o.observed_at or req.observed_at
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=tz)
            loinc = [o.code.identifier] if o.code.coding_system in ("LN", "") and LOINC_RE.match(o.code.identifier) else []
            items.append(InResult(
                index=index, keys=[o.code.identifier, o.code.text], loincs=loinc,
                analyzer_code=o.code.identifier, value=o.value, units=o.units, ref=o.reference_range,
                flags=o.abnormal_flags, status=o.status, observed_at=when, note="; ".join(o.notes)[:500]))
        groups.append(InGroup(req.specimen_id, items))
    return groups


def dedupe_key(instrument: str, barcode: str, r: InResult) -> str:
    text = "|".join([instrument, barcode, r.analyzer_code, r.value, r.units, r.status,
                     r.observed_at.isoformat() if r.observed_at else "", str(r.index)])
    return hashlib.sha256(text.encode()).hexdigest()


class IngestService:
    def __init__(self, rt: Runtime, catalogue: Catalogue, orders_svc: OrderService, qc: Any) -> None:
        self.rt = rt
        self.cat = catalogue
        self.orders = orders_svc
        self.qc = qc
        self.tz = ZoneInfo(rt.settings.instrument_timezone)
        self.received_total = 0

    async def ensure_catalogue(self) -> None:
        if not self.cat.loaded:
            async with self.rt.db.session() as s:
                await self.cat.load(s)

    # --- the protocol handlers' entry points --------------------------------------------------------------
    async def store_astm(self, raw: bytes, message: AstmMessage, peer: Peer) -> None:
        await self.ensure_catalogue()
        sender = message.header.record.raw_field(5)
        instrument = self._instrument(peer, sender, message.header.sender_name)
        kind = "results" if any(True for _ in message.results()) else ("query" if message.queries else "other")
        await self._ingest(raw, "astm", peer, sender, instrument, message.header.message_id or None, kind,
                           astm_groups(message, self.tz))

    async def store_hl7(self, raw: bytes, message: Any, peer: Peer) -> None:
        await self.ensure_catalogue()
        h = message.header
        sender = "^".join(x for x in (h.sending_application, h.sending_facility) if x)
        instrument = self._instrument(peer, sender, h.sending_application)
        if isinstance(message, ResultMessage):
            await self._ingest(raw, "hl7", peer, sender, instrument, h.control_id, "results",
                               hl7_groups(message, self.tz))
        elif isinstance(message, OrderMessage):
            await self._ingest_orders(raw, peer, sender, message)
        else:
            await self._ingest(raw, "hl7", peer, sender, instrument, h.control_id, "query", [])

    def _instrument(self, peer: Peer, sender: str, sender_name: str) -> str:
        if peer.instrument not in SHARED_ENDPOINTS:
            return peer.instrument  # a dedicated listener names its analyzer
        return self.cat.instrument_for(sender, sender_name)

    async def _claim_raw(self, s: AsyncSession, raw: bytes, protocol: str, peer: Peer, sender: str,
                         control_id: str | None, kind: str, count: int, now: datetime) -> str | None:
        """Insert the raw message; None when the same bytes were stored before (a retransmission)."""
        digest = hashlib.sha256(raw).hexdigest()
        dup = await s.execute(update(raw_messages).where(raw_messages.c.content_hash == digest)
                              .values(duplicates=raw_messages.c.duplicates + 1))
        if dup.rowcount:
            log.info("%s message from %s already stored (retransmission)", protocol, sender)
            return None
        raw_id = new_id()
        await s.execute(raw_messages.insert().values(
            id=raw_id, content_hash=digest, protocol=protocol, kind=kind, endpoint=peer.instrument,
            sender=sender[:200], peer=f"{peer.host}:{peer.port}"[:100], control_id=(control_id or "")[:100] or None,
            body=raw, received_at=now, result_count=count, duplicates=0))
        return raw_id

    async def _ingest(self, raw: bytes, protocol: str, peer: Peer, sender: str, instrument: str,
                      control_id: str | None, kind: str, groups: list[InGroup]) -> None:
        now = utcnow()
        async with self.rt.uow() as uow:
            s = uow.session
            raw_id = await self._claim_raw(s, raw, protocol, peer, sender, control_id, kind,
                                           sum(len(g.results) for g in groups), now)
            if raw_id is None:
                await uow.commit()
                return
            av_on: bool | None = None
            for group in groups:
                if not group.results:
                    continue
                barcode = group.barcode.strip()
                if barcode and barcode in self.cat.qc_samples:
                    left = await self.qc.ingest(uow, instrument, barcode, group, raw_id, now)
                    if not left:
                        continue
                    group = InGroup(group.barcode, left)
                if av_on is None:
                    av_on = await autoverify_enabled(s, self.rt.settings.autoverify_default)
                await self._store_group(uow, raw_id, instrument, barcode, group, now, av_on)
            await uow.commit()
        self.received_total += sum(len(g.results) for g in groups)

    async def _store_group(self, uow: Any, raw_id: str, instrument: str, barcode: str, group: InGroup,
                           now: datetime, av_on: bool) -> None:
        s = uow.session
        keys = {r.index: dedupe_key(instrument, barcode, r) for r in group.results}
        seen = set((await s.execute(select(results.c.dedupe_key)
                                    .where(results.c.dedupe_key.in_(list(keys.values()))))).scalars())
        fresh = [r for r in group.results if keys[r.index] not in seen]
        if not fresh:
            return
        spec = None
        if barcode:
            spec = (await s.execute(
                select(specimens.c.id, specimens.c.order_id, specimens.c.status, orders.c.patient_id,
                       orders.c.patient_sex, orders.c.birth_date, orders.c.patient_name, orders.c.ordering_doctor,
                       orders.c.visit_id, orders.c.status.label("order_status"))
                .join(orders, orders.c.id == specimens.c.order_id).where(specimens.c.barcode == barcode)
            )).mappings().first()
            if spec is not None and spec["status"] == "cancelled":
                spec = None
        rows = []
        for r in fresh:
            code, unit = self.cat.map_test(instrument, r.keys, r.loincs)
            rows.append(dict(
                id=new_id(), dedupe_key=keys[r.index], raw_message_id=raw_id, instrument=instrument,
                barcode_received=barcode, specimen_id=None, order_id=None, order_item_id=None, patient_id=None,
                test_code=code, mapped_unit=unit, analyzer_code=r.analyzer_code[:200], analyzer_value=r.value,
                analyzer_unit=r.units[:40], analyzer_flags=",".join(r.flags)[:40], analyzer_status=r.status[:4],
                analyzer_range=r.ref[:100], value=r.value, value_num=None, unit=r.units[:40], reference_range="",
                flag="", critical=False, delta_failed=False, delta_previous=None,
                status="unmatched", revision=1, note=r.note or None, observed_at=r.observed_at, received_at=now,
                verified_at=None, verified_by=None, autoverify_rule=None,
                hold_reason="barcode not found" if barcode else "no barcode in the message"))
        if spec is None:
            await s.execute(results.insert(), [_columns(x) for x in rows])
            return
        await attach(uow, self.cat, self.rt.settings, dict(spec), rows, now, av_on, insert=True)

    async def _ingest_orders(self, raw: bytes, peer: Peer, sender: str, message: OrderMessage) -> None:
        now = utcnow()
        async with self.rt.uow() as uow:
            raw_id = await self._claim_raw(uow.session, raw, "hl7", peer, sender, message.header.control_id,
                                           "order", 0, now)
            if raw_id is None:
                await uow.commit()
                return
            for o in oml_orders(message):
                tests, birth, birth_text = self.orders.validate(o)
                if await self.orders._existing(uow.session, o) is None:
                    await self.orders.create(uow, o, tests, birth, birth_text, SYSTEM, "hl7")
            await uow.commit()

    # --- host queries -----------------------------------------------------------------------------------
    async def host_query(self, query: Query | SpecimenQuery) -> Sequence[HostOrder]:
        await self.ensure_catalogue()
        ids = [i.strip() for i in query.specimen_ids if i.strip()]
        if not ids:
            return []
        instrument = self.cat.instrument_for(getattr(query, "instrument", ""), "")
        async with self.rt.db.session() as s:
            rows = (await s.execute(
                select(specimens.c.barcode, order_items.c.test_code, orders.c.patient_code, orders.c.patient_id,
                       orders.c.patient_name, orders.c.birth_date, orders.c.patient_sex, orders.c.priority)
                .join(order_items, order_items.c.specimen_id == specimens.c.id)
                .join(orders, orders.c.id == specimens.c.order_id)
                .where(specimens.c.barcode.in_(ids), specimens.c.status != "cancelled",
                       order_items.c.status == "ordered")
                .order_by(specimens.c.barcode, order_items.c.test_code))).mappings().all()
        out: dict[str, HostOrder] = {}
        for r in rows:
            code = self.cat.analyzer_code(instrument, r["test_code"])
            prev = out.get(r["barcode"])
            if prev is None:
                family, _, given = r["patient_name"].partition(" ")
                out[r["barcode"]] = HostOrder(
                    specimen_id=r["barcode"], tests=(code,), patient_id=r["patient_code"] or r["patient_id"],
                    family_name=family, given_name=given, birth_date=r["birth_date"],
                    sex={"male": "M", "female": "F"}.get(r["patient_sex"], "U"),
                    priority="S" if r["priority"] == "stat" else "R")
            else:
                out[r["barcode"]] = _with_test(prev, code)
        return [out[i] for i in ids if i in out]


def _with_test(order: HostOrder, code: str) -> HostOrder:
    from dataclasses import replace
    return replace(order, tests=(*order.tests, code))


def oml_orders(message: OrderMessage) -> list[NewOrder]:
    p = message.patient
    assert p is not None
    pid = p.identifiers[0] if p.identifiers else ""
    name = " ".join(x for x in (p.family_name, p.given_name) if x)
    sex = {"M": "male", "F": "female"}.get(p.sex.upper(), "unknown")
    out = []
    for item in message.orders:
        out.append(NewOrder(
            patient_id=pid, patient_code=pid, patient_name=name, patient_sex=sex,
            birth_date=p.birth_date.isoformat() if p.birth_date else None,
            tests=[t.identifier for t in item.tests], priority="stat" if item.priority.upper() == "S" else "routine",
            placer_order_number=item.placer_order_number or None, barcode=item.specimen_id or None,
            one_specimen=bool(item.specimen_id),
            clinical_note="; ".join(item.notes) or None))
    return out


async def autoverify_enabled(s: AsyncSession, default: bool) -> bool:
    v = (await s.execute(select(lab_settings.c.value).where(lab_settings.c.key == "autoverify"))).scalar()
    return default if v is None else v == "on"


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "mapped_unit"}


async def attach(uow: Any, cat: Catalogue, settings: Any, spec: dict[str, Any], rows: list[dict[str, Any]],
                 now: datetime, av_on: bool, *, insert: bool, allow_autoverify: bool = True,
                 hold: str | None = None) -> list[dict[str, Any]]:
    """Attach analyzer rows to a specimen: check them, insert (or update) them, mark order items,
    supersede unverified earlier results of the same tests, and publish the events."""
    s = uow.session
    codes = sorted({r["test_code"] for r in rows if r["test_code"]})
    items = {r.test_code: r.id for r in (await s.execute(
        select(order_items.c.id, order_items.c.test_code).where(order_items.c.specimen_id == spec["id"])))}
    previous: dict[str, tuple[float, datetime]] = {}
    same_specimen: dict[str, list[tuple[str, str]]] = {}
    qc_ok: dict[str, bool] = {}
    if codes:
        window = now - timedelta(days=30)
        for p in (await s.execute(
                select(results.c.id, results.c.test_code, results.c.value_num, results.c.received_at,
                       results.c.observed_at, results.c.specimen_id, results.c.status)
                .where(results.c.patient_id == spec["patient_id"], results.c.test_code.in_(codes),
                       results.c.status.in_(("preliminary", "verified")), results.c.received_at >= window)
                .order_by(results.c.received_at.desc()))).mappings():
            if p["specimen_id"] == spec["id"]:
                same_specimen.setdefault(p["test_code"], []).append((p["id"], p["status"]))
            elif p["test_code"] not in previous and p["value_num"] is not None:
                previous[p["test_code"]] = (p["value_num"], p["observed_at"] or p["received_at"])
        valid_after = now - timedelta(hours=settings.qc_validity_hours)
        for q in (await s.execute(select(qc_status).where(qc_status.c.instrument_id == rows[0]["instrument"],
                                                          qc_status.c.test_code.in_(codes)))).mappings():
            qc_ok[q["test_code"]] = bool(q["accepted"]) and q["last_run_at"] >= valid_after
        if not settings.autoverify_requires_qc:
            qc_ok = {c: qc_ok.get(c, True) for c in codes}
    ctx = Context(sex=spec["patient_sex"], birth=spec["birth_date"], autoverify_on=av_on, qc_ok=qc_ok,
                  previous=previous, allow_autoverify=allow_autoverify, hold=hold)
    superseded: list[str] = []
    out = []
    for row in rows:
        row.update(specimen_id=spec["id"], order_id=spec["order_id"], patient_id=spec["patient_id"],
                   order_item_id=items.get(row["test_code"]))
        test = cat.tests.get(row["test_code"]) if row["test_code"] else None
        if test is None:
            row.update(status="info", hold_reason="analyzer code not mapped to the catalogue")
            out.append(row)
            continue
        at = row["observed_at"] or now
        earlier = same_specimen.get(test.code, [])
        c = Context(**ctx.__dict__)
        if any(st == "verified" for _, st in earlier):
            c.allow_autoverify, c.hold = False, "repeat after a verified result: verify to amend"
        row.update(evaluate(test, row, c, at))
        superseded += [rid for rid, st in earlier if st == "preliminary"]
        if row["autoverify_rule"]:
            row.update(status="verified", verified_at=now, verified_by="autoverify")
        else:
            row["status"] = "preliminary"
        if row["order_item_id"] is None:
            row["note"] = "; ".join(x for x in (row["note"], "test not ordered on this specimen") if x)
        out.append(row)
    if superseded:
        await s.execute(update(results).where(results.c.id.in_(superseded)).values(status="superseded"))
    if insert:
        await s.execute(results.insert(), [_columns(x) for x in out])
    else:
        for x in out:
            await s.execute(update(results).where(results.c.id == x["id"]).values(
                **{k: v for k, v in _columns(x).items() if k not in ("id", "dedupe_key", "raw_message_id")}))
    for status in ("resulted", "verified"):
        ids = [x["order_item_id"] for x in out if x["order_item_id"] and
               (x["status"] == "verified") == (status == "verified") and x["status"] != "info"]
        if ids:
            await s.execute(update(order_items).where(order_items.c.id.in_(ids)).values(status=status))
    reportable = [x for x in out if x["status"] != "info"]
    protos = {x["id"]: result_proto(result_dict(x, *_names(cat, x["test_code"]), barcode=x["barcode_received"]))
              for x in reportable}
    if reportable:
        uow.publish("lab.result.received", events_pb2.ResultReceived(
            specimen_barcode=rows[0]["barcode_received"], order_id=spec["order_id"], patient_id=spec["patient_id"],
            instrument=rows[0]["instrument"], results=list(protos.values()), raw_message_id=rows[0]["raw_message_id"],
            received_at=ts(now)))
    for x in reportable:
        if x["critical"]:
            uow.publish("lab.result.critical", events_pb2.ResultCritical(
                result=protos[x["id"]], ordering_doctor=spec.get("ordering_doctor") or "",
                patient_name=spec.get("patient_name") or "", visit_id=spec.get("visit_id") or ""))
        if x["status"] == "verified":
            uow.publish("lab.result.verified", events_pb2.ResultVerified(result=protos[x["id"]], by=SYSTEM.actor()))
    return out


def _names(cat: Catalogue, code: str | None) -> tuple[str, str]:
    t = cat.tests.get(code) if code else None
    return (t.name_vi, t.loinc or "") if t else ("", "")


async def count_results(s: AsyncSession) -> int:
    return int((await s.execute(select(func.count()).select_from(results))).scalar_one())
