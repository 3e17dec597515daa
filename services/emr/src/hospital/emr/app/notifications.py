"""Live notifications to doctors (results, critical values, escalations, order status).

A notification is a row written in the transaction that causes it (so it exists exactly when its cause
does), addressed to a subject or to ``dept:<code>``. Every serve process tails the table (one query per
``poll`` for all its clients, not one per client) and hands new rows to its connected clients (SSE and the
gRPC stream); a client that reconnects with the last seq it saw (SSE ``Last-Event-ID``) gets what it
missed. Rows are re-read over a short window and de-duplicated by seq, so a transaction that committed
after a later one is not skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.db import utcnow
from hospital.chassis.ids import new_id
from hospital.emr.adapters.store import Notifications
from hospital.emr.app import schemas as sc
from hospital.emr.app.common import Context

log = logging.getLogger(__name__)
WINDOW = 200  # rows re-read behind the last seq seen (commit order may differ from seq order)


async def notify(
    session: AsyncSession,
    recipients: Iterable[str],
    kind: str,
    title: str,
    *,
    patient_id: str | None,
    encounter_id: str | None,
    **payload: BaseModel | None,
) -> None:
    """Write a notification for each recipient (a subject or "dept:<code>") in the caller's transaction."""
    now = utcnow()
    body = {k: v.model_dump(mode="json") for k, v in payload.items() if v is not None}
    for recipient in dict.fromkeys(recipients):
        if recipient:
            await Notifications(session).add(
                {
                    "id": new_id(),
                    "recipient": recipient,
                    "kind": kind,
                    "patient_id": patient_id,
                    "encounter_id": encounter_id,
                    "title": title[:300],
                    "payload": body,
                    "created_at": now,
                }
            )


def to_model(row: dict[str, Any]) -> sc.Notification:
    return sc.Notification(
        id=row["id"],
        seq=row["seq"],
        kind=row["kind"],
        patient_id=row["patient_id"] or "",
        encounter_id=row["encounter_id"] or "",
        title=row["title"],
        at=row["created_at"],
        **row["payload"],
    )


class Hub:
    def __init__(self, ctx: Context, poll_seconds: float = 0.1) -> None:
        self.ctx = ctx
        self.poll = poll_seconds
        self._clients: dict[int, tuple[frozenset[str], asyncio.Queue[sc.Notification]]] = {}
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._last = 0
        self._started = asyncio.Event()
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        async with self.ctx.rt.db.session() as s:
            self._last = await Notifications(s).last_seq()
        self._started.set()
        while not stop.is_set():
            try:
                await self._round()
            except Exception:
                log.exception("notification tail failed")
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    async def _round(self) -> None:
        if not self._clients:
            async with self.ctx.rt.db.session() as s:
                self._last = max(self._last, await Notifications(s).last_seq())
            return
        async with self.ctx.rt.db.session() as s:
            rows = await Notifications(s).after(max(0, self._last - WINDOW))
        for row in rows:
            if row["seq"] in self._seen:
                continue
            self._seen[row["seq"]] = None
            if len(self._seen) > 10 * WINDOW:
                self._seen.popitem(last=False)
            self._last = max(self._last, row["seq"])
            for recipients, queue in list(self._clients.values()):
                if row["recipient"] in recipients:
                    queue.put_nowait(to_model(row))

    def open(self, recipients: frozenset[str], after: int | None = None) -> Feed:
        """Register a client now (nothing published from here on is missed) and return its feed: with
        ``after``, first the stored notifications after that seq, then new ones. Close it when done."""
        return Feed(self, recipients, after)

    def recipients_of(self, subject: str, departments: Iterable[str]) -> frozenset[str]:
        return frozenset({subject, *(f"dept:{d}" for d in departments)})


class Feed:
    """One client's notifications (an async iterator), registered with the hub from creation to close."""

    def __init__(self, hub: Hub, recipients: frozenset[str], after: int | None) -> None:
        self.hub, self.recipients, self.after = hub, recipients, after
        self.queue: asyncio.Queue[sc.Notification] = asyncio.Queue(maxsize=1000)
        self.key = id(self.queue)
        hub._clients[self.key] = (recipients, self.queue)

    def close(self) -> None:
        self.hub._clients.pop(self.key, None)

    async def __aiter__(self) -> AsyncIterator[sc.Notification]:
        try:
            await self.hub._started.wait()
            sent: set[int] = set()
            if self.after is not None:
                async with self.hub.ctx.rt.db.session() as s:
                    missed = [
                        r
                        for r in await Notifications(s).after(self.after, limit=1000)
                        if r["recipient"] in self.recipients
                    ]
                for row in missed:
                    sent.add(row["seq"])
                    yield to_model(row)
            while True:
                item = await self.queue.get()
                if item.seq not in sent:
                    yield item
        finally:
            self.close()
