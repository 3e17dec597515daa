import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert, select, text, update

from hospital.chassis.audit import (
    _V1_KEYS,
    _V2_KEYS,
    CHAINS,
    GENESIS,
    AuditChainBroken,
    AuditEntry,
    AuditKeyError,
    AuditKeyring,
    ChainReport,
    _canonical,
    append_audit,
    check_checkpoints,
    checkpoint_line,
    current_heads,
    seal_unkeyed_chains,
    verify_chain,
)
from hospital.chassis.db import Database, audit_head_table, audit_log_table
from hospital.chassis.migrations import install_chassis_schema
from hospital.chassis.uow import UnitOfWork

from .conftest import AUDIT_KEY


async def _write(db: Database, n: int) -> None:
    for i in range(n):
        async with UnitOfWork(db, source="test") as uow:
            uow.audit(
                AuditEntry(
                    actor="user:bs.minh",
                    actor_roles=("doctor",),
                    action="patient.read",
                    resource_type="Patient",
                    resource_id=f"p{i}",
                    patient_id=f"p{i}",
                    source="10.0.0.7",
                    detail={"ghi_chú": "Xem hồ sơ Nguyễn Văn An"},
                )
            )
            await uow.commit()


async def _nth(db: Database, n: int) -> tuple[int, int]:
    """(chain, seq) of the n-th record written."""
    async with db.engine.connect() as conn:
        return tuple(
            (
                await conn.execute(text(f"SELECT chain, seq FROM audit_log ORDER BY at LIMIT 1 OFFSET {n}"))
            ).one()
        )


async def _tamper(db: Database, sql: str) -> None:
    async with db.engine.begin() as conn:
        if not db.is_sqlite:  # an administrator going around the append-only trigger
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        await conn.execute(text(sql))


async def test_intact_chain_verifies(db: Database) -> None:
    await _write(db, 5)
    async with db.session() as s:
        report = await verify_chain(s)
    assert report.ok and report.checked == 5
    async with db.engine.connect() as conn:  # spread over several chains
        assert (await conn.execute(text("SELECT count(DISTINCT chain) FROM audit_log"))).scalar_one() > 1


async def test_edited_record_is_detected(db: Database) -> None:
    await _write(db, 5)
    chain, seq = await _nth(db, 2)
    await _tamper(
        db, f"UPDATE audit_log SET actor = 'user:someone-else' WHERE chain = {chain} AND seq = {seq}"
    )
    async with db.session() as s:
        report = await verify_chain(s)
    assert not report.ok and report.first_bad_seq == seq and "does not match" in report.reason


async def test_deleted_record_is_detected(db: Database) -> None:
    await _write(db, 40)  # 16 chains: some chain has at least 3 records
    async with db.engine.connect() as conn:
        chain = (
            await conn.execute(
                text("SELECT chain FROM audit_log GROUP BY chain HAVING count(*) >= 3 LIMIT 1")
            )
        ).scalar_one()
    await _tamper(db, f"DELETE FROM audit_log WHERE chain = {chain} AND seq = 2")
    async with db.session() as s:
        report = await verify_chain(s)
    assert not report.ok and report.first_bad_seq == 2 and "gap" in report.reason


async def test_truncated_tail_is_detected(db: Database) -> None:
    await _write(db, 4)
    chain, seq = await _nth(db, 3)
    await _tamper(db, f"DELETE FROM audit_log WHERE chain = {chain} AND seq = {seq}")
    async with db.session() as s:
        report = await verify_chain(s)
    assert not report.ok and "removed from the end" in report.reason


async def test_postgres_refuses_update_and_delete(pg_db: Database) -> None:
    await _write(pg_db, 1)
    with pytest.raises(Exception, match="append-only"):
        async with pg_db.engine.begin() as conn:
            await conn.execute(text("UPDATE audit_log SET actor = 'x'"))
    with pytest.raises(Exception, match="append-only"):
        async with pg_db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_log"))


# --- An attacker with full access to the database (superuser, triggers off) but not the audit key ------

ATTACKER_KEY = b"an attacker's own key, 32 bytes+"


def _v1_hash(row: dict) -> str:
    return hashlib.sha256(_canonical(row, _V1_KEYS)).hexdigest()


async def _chain_rows(db: Database, chain: int) -> list[dict]:
    async with db.engine.connect() as conn:
        return [
            dict(r)
            for r in (
                await conn.execute(
                    select(audit_log_table)
                    .where(audit_log_table.c.chain == chain)
                    .order_by(audit_log_table.c.seq)
                )
            )
            .mappings()
            .all()
        ]


async def _rewrite_chain(
    db: Database, chain: int, rows: list[dict], *, how: str, head_mac: str | None = "keep"
) -> None:
    """Replace ``chain`` by ``rows``, renumbered from 1 and re-chained from GENESIS: ``how`` = "v1"
    (plain SHA-256, as records before keying), or "forged" (HMAC with a key of the attacker's, under
    the real key's id); the head is moved to the new last record."""
    prev = GENESIS
    forger = AuditKeyring(ATTACKER_KEY)
    for seq, row in enumerate(rows, start=1):
        row["seq"], row["prev_hash"] = seq, prev
        if how == "v1":
            row["key_id"] = None
            row["hash"] = _v1_hash(row)
        else:
            row["hash"] = forger.record_mac(_canonical(row, _V2_KEYS))
        prev = row["hash"]
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        await conn.execute(delete(audit_log_table).where(audit_log_table.c.chain == chain))
        if rows:
            await conn.execute(insert(audit_log_table), rows)
        values = {"last_seq": len(rows), "last_hash": prev}
        if head_mac != "keep":
            values["head_mac"] = head_mac
        await conn.execute(update(audit_head_table).where(audit_head_table.c.id == chain).values(**values))


async def _busiest_chain(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT chain FROM audit_log GROUP BY chain ORDER BY count(*) DESC, chain LIMIT 1")
            )
        ).scalar_one()


async def _verify(db: Database) -> ChainReport:
    async with db.session() as s:
        return await verify_chain(s)


@pytest.mark.parametrize("how", ["v1", "forged"])
async def test_edit_and_recompute_is_detected(db: Database, how: str) -> None:
    await _write(db, 40)
    chain = await _busiest_chain(db)
    rows = await _chain_rows(db, chain)
    rows[1]["actor"] = "user:someone-else"  # the edit, then every later hash and the head recomputed
    await _rewrite_chain(db, chain, rows, how=how)
    report = await _verify(db)
    assert not report.ok and report.chain == chain, report
    if how == "forged":
        assert report.first_bad_seq == 1 and "does not match" in report.reason
    else:  # the whole chain now looks like records from before keying: its sealed head gives it away
        assert "head does not verify" in report.reason


@pytest.mark.parametrize("how", ["v1", "forged"])
async def test_delete_and_rechain_is_detected(db: Database, how: str) -> None:
    await _write(db, 40)
    chain = await _busiest_chain(db)
    rows = await _chain_rows(db, chain)
    del rows[1]  # the deletion, then the chain renumbered and re-linked, the head moved
    await _rewrite_chain(db, chain, rows, how=how)
    report = await _verify(db)
    assert not report.ok and report.chain == chain, report


@pytest.mark.parametrize("head_mac", ["keep", None])
async def test_tail_cut_with_head_moved_back_is_detected(db: Database, head_mac: str | None) -> None:
    await _write(db, 40)
    chain = await _busiest_chain(db)
    rows = await _chain_rows(db, chain)
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        await conn.execute(
            delete(audit_log_table).where(
                audit_log_table.c.chain == chain, audit_log_table.c.seq == rows[-1]["seq"]
            )
        )
        values = {"last_seq": rows[-2]["seq"], "last_hash": rows[-2]["hash"]}
        if head_mac != "keep":
            values["head_mac"] = head_mac
        await conn.execute(update(audit_head_table).where(audit_head_table.c.id == chain).values(**values))
    report = await _verify(db)
    assert not report.ok and report.chain == chain and "head does not verify" in report.reason
    # and no writer extends the tampered chain (which would give it a fresh, valid head)
    with pytest.raises(AuditChainBroken):
        async with db.session() as s, s.begin():
            for _ in range(200):  # append_audit picks a chain at random: until it picks this one
                await append_audit(
                    s, [AuditEntry(actor="user:bs.minh", action="patient.read", resource_type="Patient")]
                )
    assert not (await _verify(db)).ok


async def test_other_key_or_no_key_cannot_verify(db: Database) -> None:
    await _write(db, 3)
    async with db.session() as s:
        assert not (await verify_chain(s, AuditKeyring(ATTACKER_KEY))).ok
    bare = Database(db.url)
    try:
        async with bare.session() as s:
            with pytest.raises(AuditKeyError):
                await verify_chain(s)
            with pytest.raises(AuditKeyError):
                await append_audit(s, [AuditEntry(actor="x", action="y", resource_type="z")])
    finally:
        await bare.dispose()


async def test_records_from_before_keying_still_verify_and_are_sealed(database_url: str) -> None:
    """A trail written before keying (scheme 1 records, heads without a MAC): the first keyed start
    seals it, it verifies, new records are keyed after it, and its old records can no longer be rewritten."""
    keyring = AuditKeyring(AUDIT_KEY)
    db = Database(database_url, audit_keyring=keyring)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(install_chassis_schema)  # no key: heads unsealed, as before keying
        prev = GENESIS
        old = []
        for seq in range(1, 4):  # three records of the old scheme on chain 5
            row = {
                "chain": 5,
                "seq": seq,
                "id": f"old-{seq}",
                "at": datetime(2026, 3, seq, 8, tzinfo=UTC),
                "actor": "user:letan.lan",
                "actor_roles": "receptionist",
                "action": "patient.register",
                "patient_id": f"p{seq}",
                "resource_type": "Patient",
                "resource_id": f"p{seq}",
                "source": "10.0.0.5",
                "detail": json.dumps({"patient_code": f"BN26000000{seq}"}),
                "prev_hash": prev,
                "key_id": None,
            }
            row["hash"] = prev = _v1_hash(row)
            old.append(row)
        async with db.engine.begin() as conn:
            await conn.execute(insert(audit_log_table), old)
            await conn.execute(
                update(audit_head_table).where(audit_head_table.c.id == 5).values(last_seq=3, last_hash=prev)
            )
        async with db.session() as s:
            assert not (await verify_chain(s)).ok  # unsealed heads never verify
        async with db.session() as s:
            assert await seal_unkeyed_chains(s) == CHAINS
        async with db.session() as s:
            assert await seal_unkeyed_chains(s) == 0  # once only
        report = await _verify(db)
        assert report.ok and report.checked == 3, report
        written = 0
        while len(await _chain_rows(db, 5)) < 4 and written < 1000:  # chains are picked at random
            await _write(db, 1)
            written += 1
        report = await _verify(db)
        assert report.ok and report.checked == 3 + written, report
        rows = await _chain_rows(db, 5)
        assert [r["key_id"] for r in rows[:3]] == [None] * 3 and rows[3]["key_id"] == keyring.current_id
        # rewrite an old record and its old-scheme successors: the first keyed record's link gives it away
        rows[0]["actor"] = "user:someone-else"
        await _rewrite_chain(db, 5, rows[:3], how="v1")
        async with db.engine.begin() as conn:  # put the keyed records back after the rewritten ones
            if not db.is_sqlite:
                await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
            await conn.execute(insert(audit_log_table), rows[3:])
            await conn.execute(
                update(audit_head_table)
                .where(audit_head_table.c.id == 5)
                .values(last_seq=rows[-1]["seq"], last_hash=rows[-1]["hash"])
            )
        report = await _verify(db)
        assert not report.ok and report.chain == 5 and report.first_bad_seq == 4, report
    finally:
        await db.dispose()


async def test_previous_key_still_verifies_after_a_key_change(db: Database) -> None:
    await _write(db, 5)
    new_key = b"0123456789abcdef0123456789abcdef-2027"
    db.audit_keyring = AuditKeyring(new_key, [AUDIT_KEY])
    await _write(db, 5)
    report = await _verify(db)
    assert report.ok and report.checked == 10
    async with db.session() as s:  # without the previous key the older records are unverifiable
        report = await verify_chain(s, AuditKeyring(new_key))
    assert not report.ok and ("unknown key" in report.reason or "head does not verify" in report.reason), (
        report
    )


async def test_checkpoints_outside_the_database_catch_a_replayed_older_head(db: Database) -> None:
    """An attacker who saved an older head row (valid MAC) cuts the chain back to it: the keyed chain
    alone cannot tell, the checkpoint file kept outside the database can."""
    await _write(db, 40)
    chain = await _busiest_chain(db)
    async with db.engine.connect() as conn:
        saved = (await conn.execute(select(audit_head_table).where(audit_head_table.c.id == chain))).one()
    for _ in range(1000):  # until that chain has grown past the saved head (chains are picked at random)
        await _write(db, 1)
        if len(await _chain_rows(db, chain)) > saved.last_seq:
            break
    async with db.session() as s:
        lines = [checkpoint_line(db.audit_keyring, "lab", await current_heads(s))]
        assert await check_checkpoints(s, db.audit_keyring, "lab", lines) is None
    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        await conn.execute(
            delete(audit_log_table).where(
                audit_log_table.c.chain == chain, audit_log_table.c.seq > saved.last_seq
            )
        )
        await conn.execute(
            update(audit_head_table)
            .where(audit_head_table.c.id == chain)
            .values(last_seq=saved.last_seq, last_hash=saved.last_hash, head_mac=saved.head_mac)
        )
    async with db.session() as s:
        assert (await verify_chain(s)).ok  # the replayed head is one the key once made
        report = await check_checkpoints(s, db.audit_keyring, "lab", lines)
        assert report is not None and not report.ok and report.chain == chain and "shorter" in report.reason
        doc = json.loads(lines[0])  # the attacker lowers the checkpoint to match (no key for the MAC)
        doc["heads"][str(chain)] = [saved.last_seq, saved.last_hash]
        forged = json.dumps(doc)
        report = await check_checkpoints(s, db.audit_keyring, "lab", [forged])
        assert report is not None and "not a valid checkpoint" in report.reason
