"""Patients for the doctor's tests: registered and given a visit by reception (admissions' HTTP API), and
their encounter as the EMR opens it from admissions' event."""

from __future__ import annotations

from typing import Any

from hospital.testing.services import http_client, issuer_for
from hospital.testing.waits import wait_for


def doctor_token(stack: Any) -> str:
    """A token like the web's signed-in demo doctor's (same subject and departments)."""
    return issuer_for(stack.emr).mint("user:doctor", ["doctor"], extra={"departments": ["KKB"]})


async def visit(stack: Any, name: str, room: str, birth_date: str = "1975-03-14", sex: str = "male") -> dict:
    """Register ``name``, open a visit in ``room``; the patient, the visit and the EMR encounter's id."""
    async with http_client(stack.admissions, "receptionist") as clerk:
        r = await clerk.post(
            "/api/v1/patients", json={"full_name": name, "birth_date": birth_date, "sex": sex}
        )
        assert r.status_code == 201, r.text
        patient = r.json()
        r = await clerk.post("/api/v1/visits", json={"patient_id": patient["id"], "room": room})
        assert r.status_code == 201, r.text
        opened = r.json()
    async with http_client(stack.emr, token=doctor_token(stack)) as emr:

        async def encounter() -> str | None:
            r = await emr.get("/api/v1/encounters", params={"patient_id": patient["id"]})
            items = r.json().get("items") if r.status_code == 200 else None
            return items[0]["id"] if items else None

        enc_id = await wait_for(encounter, what=f"the EMR opened the encounter of {name}")
    return {"patient": patient, "visit": opened, "encounter_id": enc_id}
