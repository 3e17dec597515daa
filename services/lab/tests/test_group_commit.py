"""Group commit of analyzer messages (ADR 0101): messages from many concurrent connections are stored
together in one transaction and each connection gets its ACK only after that commit; a message that
cannot be stored is refused (HL7 ``AR`` / ASTM NAK) without losing or refusing the others."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from hospital.chassis.db import Database
from hospital.lab.adapters.tables import raw_messages, results
from hospital.lab.app.ingest import GroupCommit, IngestService
from hospital.lab.simulator import generate_specimens, send_astm, send_mllp, specimen_to_astm, specimen_to_oru

from .test_service import AN, NAM, place


# --- the group-commit primitive ---------------------------------------------------------------------
async def test_concurrent_items_share_transactions_and_a_failure_is_isolated() -> None:
    committed: list[list[int]] = []
    attempts: list[list[int]] = []

    async def apply(items: list[int]) -> None:
        attempts.append(list(items))
        await asyncio.sleep(0.01)  # the commit is "in flight": later submissions queue up
        if -1 in items:
            raise RuntimeError("poison")
        committed.append(list(items))

    gc: GroupCommit[int] = GroupCommit(apply, max_batch=50, window=0.005)
    outcome = await asyncio.gather(*(gc.submit(i) for i in range(20)))
    assert outcome == [None] * 20 and gc.largest > 1 and gc.batches < 20 and gc.fallbacks == 0
    outcome = await asyncio.gather(
        *(gc.submit(i) for i in range(20, 30)),
        gc.submit(-1),
        *(gc.submit(i) for i in range(30, 40)),
        return_exceptions=True,
    )
    assert [o for o in outcome if isinstance(o, Exception)] == [outcome[10]]
    assert isinstance(outcome[10], RuntimeError) and gc.fallbacks >= 1
    assert [-1] in attempts  # the poison item was retried alone, after failing in a batch
    assert any(-1 in a and len(a) > 1 for a in attempts)
    flat = [i for batch in committed for i in batch]
    assert sorted(flat) == list(range(40))  # every good item committed exactly once


async def test_cancelled_caller_is_skipped_and_idle_submit_commits_at_once() -> None:
    seen: list[list[str]] = []
    gate = asyncio.Event()

    async def apply(items: list[str]) -> None:
        seen.append(list(items))
        if items == ["first"]:
            await gate.wait()

    gc: GroupCommit[str] = GroupCommit(apply, window=0.005)
    first = asyncio.create_task(gc.submit("first"))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(gc.submit("gone"))  # queued behind the in-flight commit
    await asyncio.sleep(0.01)
    gone.cancel()  # the store timeout expired: the analyzer is NAKed and will resend
    await asyncio.sleep(0)
    gate.set()
    await first
    await asyncio.wait_for(gc.submit("later"), 2)
    assert seen[0] == ["first"] and ["gone"] not in seen and seen[-1] == ["later"]


# --- through the real listeners, on SQLite and PostgreSQL ---------------------------------------------
POISON = "POISON-0001"


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every committed batch, slow each commit down a little so that messages from
    concurrent connections pile up, and make the message for barcode POISON fail to store."""
    sizes: list[int] = []
    store_batch, row, count = IngestService._store_batch, IngestService._row, GroupCommit._count

    async def slow_store_batch(self, items):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.03)
        await store_batch(self, items)

    def poisoned_row(self, raw_id, instrument, barcode, r, key, now):  # type: ignore[no-untyped-def]
        if barcode == POISON:
            raise RuntimeError("poison message")
        return row(self, raw_id, instrument, barcode, r, key, now)

    def counting(self, n):  # type: ignore[no-untyped-def]
        sizes.append(n)
        count(self, n)

    monkeypatch.setattr(IngestService, "_store_batch", slow_store_batch)
    monkeypatch.setattr(IngestService, "_row", poisoned_row)
    monkeypatch.setattr(GroupCommit, "_count", counting)
    return sizes


async def test_many_connections_one_poison_message(lab, batches: list[int]) -> None:
    mllp_conns, astm_conns, per_conn = 6, 3, 3
    n = (mllp_conns + astm_conns) * per_conn
    barcodes = []
    for i in range(n):
        order = await place(lab, ["CBC"], patient=AN if i % 2 else NAM)
        barcodes.append(order["specimens"][0]["barcode"])
    specimens = generate_specimens([*barcodes, POISON], n + 1, "cbc", seed=3)
    poison = specimens[-1]
    at = datetime(2025, 7, 6, 8, 0)
    oru = [
        specimen_to_oru(s, at + timedelta(minutes=i), f"GC{i}")
        for i, s in enumerate(specimens[: mllp_conns * per_conn])
    ]
    astm = [
        specimen_to_astm(s, at + timedelta(minutes=100 + i))
        for i, s in enumerate(specimens[mllp_conns * per_conn : n])
    ]
    per_message = len(specimens[0].results)
    # the poison message goes in the middle of the first MLLP connection's traffic
    links = [
        send_mllp(
            "127.0.0.1",
            lab.settings.mllp_port,
            oru[k::mllp_conns]
            if k
            else [*oru[0:1], specimen_to_oru(poison, at, "GC-POISON"), *oru[mllp_conns::mllp_conns]],
        )
        for k in range(mllp_conns)
    ]
    links += [send_astm("127.0.0.1", lab.settings.astm_port, astm[k::astm_conns]) for k in range(astm_conns)]
    outcome = await asyncio.gather(*links)
    replies = [ack for acks in outcome[:mllp_conns] for ack in acks]
    refused = [a for a in replies if b"MSA|AA" not in a]
    assert len(replies) == mllp_conns * per_conn + 1
    assert len(refused) == 1 and b"MSA|AR" in refused[0] and b"GC-POISON" in refused[0]
    for stats in outcome[mllp_conns:]:
        assert stats.messages_failed == 0 and stats.naks == 0
    assert max(batches) > 1, batches  # messages from several connections shared a transaction

    db = Database(lab.settings.database_url)
    try:
        async with db.session() as s:
            per_barcode = dict(
                (
                    await s.execute(
                        select(results.c.barcode_received, func.count()).group_by(results.c.barcode_received)
                    )
                ).all()
            )
            raw = int((await s.execute(select(func.count()).select_from(raw_messages))).scalar_one())
    finally:
        await db.dispose()
    assert per_barcode == dict.fromkeys(barcodes, per_message)  # each good message stored once, nothing else
    assert raw == n


async def test_concurrent_retransmissions_in_one_batch_store_once(lab, batches: list[int]) -> None:
    order = await place(lab, ["CBC"])
    spec = generate_specimens([order["specimens"][0]["barcode"]], 1, "cbc", seed=5)[0]
    at = datetime(2025, 7, 6, 9, 0)
    same = specimen_to_oru(spec, at, "DUP1")
    resent = specimen_to_oru(spec, at, "DUP2")  # new envelope (control id), same results
    outcome = await asyncio.gather(
        *(send_mllp("127.0.0.1", lab.settings.mllp_port, [m]) for m in (same, same, resent, same))
    )
    assert all(b"MSA|AA" in acks[0] for acks in outcome)
    db = Database(lab.settings.database_url)
    try:
        async with db.session() as s:
            n = int((await s.execute(select(func.count()).select_from(results))).scalar_one())
            dup = (await s.execute(select(func.sum(raw_messages.c.duplicates)))).scalar_one()
            raws = int((await s.execute(select(func.count()).select_from(raw_messages))).scalar_one())
    finally:
        await db.dispose()
    assert n == len(spec.results) and raws == 2 and dup == 2
