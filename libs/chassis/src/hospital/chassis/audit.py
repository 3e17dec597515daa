"""Append-only, hash-chained audit trail: who did what, to which patient's record, when, from where.

Each record's hash covers its content and the previous record's hash, so editing, deleting or
reordering any record breaks the chain from that point on; ``audit_head`` holds the last hash, so
cutting records off the end is detected too. On PostgreSQL a trigger also refuses UPDATE and DELETE.

There are :data:`CHAINS` independent chains; a transaction appends to one of them (picked at random),
so concurrent transactions rarely wait for each other's commit on the chain's head row.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.db import audit_head_table, audit_log_table, utcnow
from hospital.chassis.ids import new_id

GENESIS = "0" * 64
CHAINS = 16


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str  # e.g. "patient.read", "patient.register", "visit.open"
    resource_type: str
    resource_id: str | None = None
    patient_id: str | None = None
    actor_roles: tuple[str, ...] = ()
    source: str = ""  # client address, or the calling service
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=new_id)


def _canonical(row: dict[str, Any]) -> bytes:
    keys = (
        "chain",
        "seq",
        "id",
        "at",
        "actor",
        "actor_roles",
        "action",
        "patient_id",
        "resource_type",
        "resource_id",
        "source",
        "detail",
        "prev_hash",
    )
    doc = {k: row[k] for k in keys}
    doc["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def record_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(row)).hexdigest()


async def append_audit(session: AsyncSession, entries: Sequence[AuditEntry]) -> None:
    """Append entries to one chain inside the caller's transaction (its head row stays locked until
    the transaction ends)."""
    if not entries:
        return
    chain = random.randrange(CHAINS)
    head = (
        await session.execute(
            select(audit_head_table.c.last_seq, audit_head_table.c.last_hash)
            .where(audit_head_table.c.id == chain)
            .with_for_update()
        )
    ).one()
    rows = audit_rows(chain, head.last_seq, head.last_hash, entries)
    await session.execute(insert(audit_log_table), rows)
    await session.execute(
        update(audit_head_table)
        .where(audit_head_table.c.id == chain)
        .values(last_seq=rows[-1]["seq"], last_hash=rows[-1]["hash"])
    )


def audit_rows(
    chain: int, last_seq: int, last_hash: str, entries: Sequence[AuditEntry]
) -> list[dict[str, Any]]:
    """The records that append ``entries`` to ``chain`` after its head (``last_seq``, ``last_hash``),
    each hashed over its content and its predecessor's hash. For writers that append with their own
    statements (e.g. one guarded statement on the driver connection); :func:`append_audit` uses it."""
    rows, seq, prev = [], last_seq, last_hash
    for e in entries:
        seq += 1
        row = {
            "chain": chain,
            "seq": seq,
            "id": e.id,
            "at": e.at,
            "actor": e.actor,
            "actor_roles": ",".join(e.actor_roles),
            "action": e.action,
            "patient_id": e.patient_id,
            "resource_type": e.resource_type,
            "resource_id": e.resource_id,
            "source": e.source,
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True, default=str),
            "prev_hash": prev,
        }
        row["hash"] = record_hash(row)
        prev = row["hash"]
        rows.append(row)
    return rows


@dataclass
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


async def verify_chain(session: AsyncSession, *, chunk: int = 5000) -> ChainReport:
    """Recompute every chain from its first record; report the first record that does not fit."""
    checked = 0
    for chain in range(CHAINS):
        report = await _verify_one(session, chain, chunk)
        checked += report.checked
        if not report.ok:
            report.checked = checked
            return report
    return ChainReport(True, checked)


async def _verify_one(session: AsyncSession, chain: int, chunk: int) -> ChainReport:
    prev, expected_seq, checked, last = GENESIS, 1, 0, 0
    log = audit_log_table
    while True:
        rows = (
            (
                await session.execute(
                    select(log)
                    .where(log.c.chain == chain, log.c.seq >= expected_seq)
                    .order_by(log.c.seq)
                    .limit(chunk)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            data = dict(row)
            if data["seq"] != expected_seq:
                return ChainReport(
                    False, checked, expected_seq, f"chain {chain}: record missing (sequence gap)"
                )
            if data["prev_hash"] != prev:
                return ChainReport(False, checked, data["seq"], f"chain {chain}: previous-hash link broken")
            if record_hash(data) != data["hash"]:
                return ChainReport(
                    False, checked, data["seq"], f"chain {chain}: record content does not match its hash"
                )
            prev, last = data["hash"], data["seq"]
            expected_seq += 1
            checked += 1
    head = (await session.execute(select(audit_head_table).where(audit_head_table.c.id == chain))).one()
    if head.last_seq != last or head.last_hash != prev:
        return ChainReport(
            False, checked, last + 1, f"chain {chain}: records removed from the end of the chain"
        )
    return ChainReport(True, checked)
