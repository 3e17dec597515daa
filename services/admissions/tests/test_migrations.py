"""Upgrading a database that already holds patients keeps patient codes unique."""

from __future__ import annotations

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
