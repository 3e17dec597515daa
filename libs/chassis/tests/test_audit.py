import pytest
from sqlalchemy import text

from hospital.chassis.audit import AuditEntry, verify_chain
from hospital.chassis.db import Database
from hospital.chassis.uow import UnitOfWork


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
