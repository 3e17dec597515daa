"""Analyzer status for the bench: per instrument of the catalogue, the last message it sent (when, what,
from which address, how many so far), whether a connection from that address is open on a listener now,
and its QC state per test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from hospital.lab.adapters.tables import qc_status, raw_messages
from hospital.lab.app.catalogue import Catalogue


def _host(peer: str) -> str:
    """The address of ``host:port`` (an IPv6 host keeps its colons)."""
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


class AnalyzerStatus:
    def __init__(self, rt: Any, catalogue: Catalogue) -> None:
        self.rt, self.cat = rt, catalogue

    async def status(self, listeners: Iterable[Any]) -> list[dict[str, Any]]:
        open_hosts: Counter[str] = Counter()
        for server in listeners:
            hosts = getattr(server, "open_hosts", None)
            if hosts is not None:
                open_hosts.update(hosts())
        async with self.rt.db.session() as s:
            senders = (
                await s.execute(
                    select(
                        raw_messages.c.sender, func.count(), func.max(raw_messages.c.received_at)
                    ).group_by(raw_messages.c.sender)
                )
            ).all()
            last: dict[str, dict[str, Any]] = {}
            for sender, count, at in senders:
                inst = self.cat.instrument_for(sender, "")
                entry = last.setdefault(inst, {"messages": 0, "at": None, "sender": None})
                entry["messages"] += int(count)
                if entry["at"] is None or at > entry["at"]:
                    entry["at"], entry["sender"] = at, sender
            for entry in last.values():
                row = (
                    await s.execute(
                        select(raw_messages.c.kind, raw_messages.c.peer)
                        .where(raw_messages.c.sender == entry["sender"])
                        .order_by(raw_messages.c.received_at.desc())
                        .limit(1)
                    )
                ).first()
                entry["kind"], entry["peer"] = (row.kind, row.peer) if row else ("", "")
            qc_rows = (await s.execute(select(qc_status))).mappings().all()
        qc: dict[str, list[dict[str, Any]]] = {}
        for r in qc_rows:
            qc.setdefault(r["instrument_id"], []).append(
                {
                    "test_code": r["test_code"],
                    "accepted": r["accepted"],
                    "violations": [v for v in r["violations"].split(",") if v],
                    "last_run_at": r["last_run_at"],
                    "lot_id": r["lot_id"],
                }
            )
        out = []
        for inst in self.cat.instruments:
            seen = last.get(inst.id, {})
            peer = seen.get("peer") or ""
            at: datetime | None = seen.get("at")
            out.append(
                {
                    "id": inst.id,
                    "name": inst.name,
                    "protocol": inst.protocol,
                    "last_message_at": at,
                    "last_message_kind": seen.get("kind") or "",
                    "last_peer": peer,
                    "messages": seen.get("messages", 0),
                    "connected": bool(peer) and open_hosts[_host(peer)] > 0,
                    "qc": sorted(qc.get(inst.id, []), key=lambda q: q["test_code"]),
                }
            )
        return out
