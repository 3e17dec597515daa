"""Upgrading a database that already holds patients keeps patient codes unique."""

from __future__ import annotations

from datetime import UTC

from hospital.admissions.service import DEFINITION
from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade
from hospital.testing.services import http_client, running_service


async def test_codes_continue_after_existing_ones(database_url, nats_server, tmp_path) -> None:
    db = Database(database_url)
    await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0002")
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO patients"
            " (id, patient_code, full_name, name_folded, birth_year, sex, created_at, updated_at)"
            " VALUES ('p-old', 'BN260000042', 'Hà Văn Cũ', 'ha van cu', 1950, 'male', "
            "'2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')"
        )
    await db.dispose()
    async with (
        running_service(
            DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url
        ) as svc,
        http_client(svc, "receptionist") as c,
    ):
        r = await c.post(
            "/api/v1/patients", json={"full_name": "Hà Thị Mới", "birth_date": "2000", "sex": "female"}
        )
    assert r.status_code == 201, r.text
    assert int(r.json()["patient_code"][4:]) == 43


async def test_audit_records_from_before_keying_verify_after_the_upgrade(
    database_url, nats_server, tmp_path
) -> None:
    """A database whose audit trail was written before the trail was keyed (plain SHA-256 chain, heads
    without a MAC): after the upgrade and the first start its old records still verify, new ones are
    keyed, and the old ones can no longer be rewritten."""
    import hashlib
    import json
    from datetime import datetime

    from sqlalchemy import text

    from hospital.chassis.audit import _V1_KEYS, GENESIS, _canonical, verify_chain

    db = Database(database_url)
    await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0003")
    row = {
        "chain": 3,
        "seq": 1,
        "id": "old-audit-1",
        "at": datetime(2026, 2, 1, 7, 30, tzinfo=UTC),
        "actor": "user:letan.lan",
        "actor_roles": "receptionist",
        "action": "patient.register",
        "patient_id": "p-old",
        "resource_type": "Patient",
        "resource_id": "p-old",
        "source": "10.1.2.3",
        "detail": json.dumps({"patient_code": "BN260000042"}),
        "prev_hash": GENESIS,
    }
    row["hash"] = hashlib.sha256(_canonical(row, _V1_KEYS)).hexdigest()
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_log (chain, seq, id, at, actor, actor_roles, action, patient_id, "
                "resource_type, resource_id, source, detail, prev_hash, hash) VALUES (:chain, :seq, :id, "
                ":at, :actor, :actor_roles, :action, :patient_id, :resource_type, :resource_id, :source, "
                ":detail, :prev_hash, :hash)"
            ),
            {**row, "at": row["at"] if not db.is_sqlite else "2026-02-01 07:30:00.000000"},
        )
        await conn.execute(
            text("UPDATE audit_head SET last_seq = 1, last_hash = :h WHERE id = 3"), {"h": row["hash"]}
        )
    await db.dispose()
    async with running_service(
        DEFINITION, data_dir=tmp_path, database_url=database_url, nats_url=nats_server.url
    ) as svc:
        async with http_client(svc, "receptionist") as c:
            for i in range(3):
                r = await c.post(
                    "/api/v1/patients",
                    json={"full_name": f"Lý Thị Mới {i}", "birth_date": "2001", "sex": "female"},
                )
                assert r.status_code == 201, r.text
        keyring = svc.rt.db.audit_keyring
        async with svc.rt.db.session() as s:
            report = await verify_chain(s)
            keyed = (
                await s.execute(
                    text("SELECT count(*) FROM audit_log WHERE key_id = :k"), {"k": keyring.current_id}
                )
            ).scalar_one()
        assert report.ok and report.checked == 4 and keyed == 3, report
        async with svc.rt.db.engine.begin() as conn:  # the old record edited, its plain hash recomputed
            if not svc.rt.db.is_sqlite:
                await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
            forged = {**row, "actor": "user:someone-else"}
            forged_hash = hashlib.sha256(_canonical(forged, _V1_KEYS)).hexdigest()
            await conn.execute(
                text(
                    "UPDATE audit_log SET actor = 'user:someone-else', hash = :h WHERE chain = 3 AND seq = 1"
                ),
                {"h": forged_hash},
            )
            await conn.execute(
                text("UPDATE audit_head SET last_hash = :h WHERE id = 3 AND last_seq = 1"), {"h": forged_hash}
            )
            await conn.execute(
                text("UPDATE audit_log SET prev_hash = :h WHERE chain = 3 AND seq = 2"), {"h": forged_hash}
            )
        async with svc.rt.db.session() as s:
            report = await verify_chain(s)
        assert not report.ok and report.chain == 3, report
