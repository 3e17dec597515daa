"""Calls between services carry the purpose of use (hospital.chassis.rpc.call_metadata): the lab's patient
check in admissions is audited there with the purpose the ordering request stated (X-Purpose-Of-Use), and
with the lab's own purpose, treatment, for an order that came from a device or the HIS over HL7."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hospital.chassis.app import Service
from hospital.chassis.db import audit_log_table
from hospital.lab.service import DEFINITION as LAB
from hospital.lab.simulator import send_mllp
from hospital.testing.services import http_client, running_service

from .conftest import OML_O21
from .test_order_patient_check import admissions, lab_settings, msa, order_body, register  # noqa: F401

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)


async def _reads(svc: Service, patient_id: str) -> list[tuple[str, str]]:
    async with svc.rt.db.session() as s:
        rows = await s.execute(
            select(audit_log_table.c.actor, audit_log_table.c.purpose)
            .where(audit_log_table.c.action == "patient.read", audit_log_table.c.patient_id == patient_id)
            .order_by(audit_log_table.c.at, audit_log_table.c.seq)
        )
    return [(r.actor, r.purpose) for r in rows]


async def test_the_patient_check_is_audited_in_admissions_with_the_purpose_of_use(
    admissions: Service,  # noqa: F811
    database_url: str,
    nats_server,
    tmp_path: Path,
) -> None:
    urgent = await register(admissions, "Lê Văn Cường")
    routine = await register(admissions, "Phạm Thị Thu Hà")
    settings = lab_settings(database_url, nats_server, tmp_path, admissions.settings.grpc_port)
    async with running_service(LAB, **settings) as lab:
        async with http_client(lab, "doctor") as c:
            r = await c.post(
                "/api/v1/orders", json=order_body(urgent["id"]), headers={"X-Purpose-Of-Use": "ETREAT"}
            )
            assert r.status_code == 201 and r.json()["patient"]["check"] == "verified", r.text
        hl7 = OML_O21.replace("BN240003", routine["patient_code"]).replace("OML0001", "OML0009")
        ack = await send_mllp("127.0.0.1", lab.settings.mllp_port, [hl7], timeout=10)
        assert msa(ack[0])[:3] == ["MSA", "AA", "OML0009"]
    (actor, purpose), *_ = await _reads(admissions, urgent["id"])
    assert actor.startswith("service:") and "lab" in actor and purpose == "ETREAT"
    # HL7 knows only the patient code: the lab looks the patient up and reads it, for treatment
    reads = await _reads(admissions, routine["id"])
    assert reads and {p for _, p in reads} == {"TREAT"} and all("lab" in a for a, _ in reads)
