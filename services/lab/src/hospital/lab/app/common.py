"""The lab's own system caller, and row → dict/proto mapping (Caller itself is the chassis's)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from hospital.chassis.caller import Caller
from hospital.chassis.security import Principal
from hospital.contracts.lab.v1 import lab_pb2 as pb

SYSTEM = Caller(
    Principal(subject="lab-ingest", name="Analyzer interface", roles=frozenset({"service"})), "lab"
)

SEX_PB = {"male": pb.SEX_MALE, "female": pb.SEX_FEMALE}
SEX_NAME = {pb.SEX_MALE: "male", pb.SEX_FEMALE: "female"}
PRIORITY_PB = {"routine": pb.PRIORITY_ROUTINE, "stat": pb.PRIORITY_STAT}


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def result_dict(r: Any, test_name: str = "", loinc: str = "", barcode: str = "") -> dict[str, Any]:
    return {
        "id": r["id"],
        "order_id": r["order_id"],
        "specimen_barcode": barcode or r["barcode_received"],
        "barcode_received": r["barcode_received"],
        "patient_id": r["patient_id"],
        "test_code": r["test_code"],
        "test_name": test_name,
        "loinc": loinc,
        "value": r["value"],
        "unit": r["unit"],
        "reference_range": r["reference_range"],
        "flag": r["flag"],
        "critical": r["critical"],
        "delta_failed": r["delta_failed"],
        "delta_previous": r["delta_previous"],
        "status": r["status"],
        "revision": r["revision"],
        "instrument": r["instrument"],
        "analyzer_code": r["analyzer_code"],
        "analyzer_value": r["analyzer_value"],
        "analyzer_unit": r["analyzer_unit"],
        "analyzer_flags": r["analyzer_flags"],
        "observed_at": iso(r["observed_at"]),
        "received_at": iso(r["received_at"]),
        "verified_at": iso(r["verified_at"]),
        "verified_by": r["verified_by"],
        "autoverify_rule": r["autoverify_rule"],
        "hold_reason": r["hold_reason"],
        "note": r["note"],
    }


def result_proto(d: dict[str, Any]) -> pb.Result:
    m = pb.Result(
        id=d["id"],
        order_id=d["order_id"] or "",
        specimen_barcode=d["specimen_barcode"] or "",
        patient_id=d["patient_id"] or "",
        test_code=d["test_code"] or "",
        test_name=d["test_name"] or "",
        loinc=d["loinc"] or "",
        value=d["value"] or "",
        unit=d["unit"] or "",
        reference_range=d["reference_range"] or "",
        flag=d["flag"] or "",
        critical=bool(d["critical"]),
        delta_failed=bool(d["delta_failed"]),
        status=d["status"],
        instrument=d["instrument"] or "",
        verified_by=d["verified_by"] or "",
        autoverify_rule=d["autoverify_rule"] or "",
        analyzer_value=d["analyzer_value"] or "",
        analyzer_unit=d["analyzer_unit"] or "",
        revision=d["revision"] or 0,
    )
    for name in ("observed_at", "verified_at"):
        if d.get(name):
            getattr(m, name).FromDatetime(datetime.fromisoformat(d[name]))
    return m


def row_proto(r: Any, test_name: str = "", loinc: str = "", barcode: str = "") -> pb.Result:
    """``result_proto(result_dict(r, ...))`` without the detour through ISO strings (the ingest path)."""
    m = pb.Result(
        id=r["id"],
        order_id=r["order_id"] or "",
        specimen_barcode=barcode or r["barcode_received"] or "",
        patient_id=r["patient_id"] or "",
        test_code=r["test_code"] or "",
        test_name=test_name or "",
        loinc=loinc or "",
        value=r["value"] or "",
        unit=r["unit"] or "",
        reference_range=r["reference_range"] or "",
        flag=r["flag"] or "",
        critical=bool(r["critical"]),
        delta_failed=bool(r["delta_failed"]),
        status=r["status"],
        instrument=r["instrument"] or "",
        verified_by=r["verified_by"] or "",
        autoverify_rule=r["autoverify_rule"] or "",
        analyzer_value=r["analyzer_value"] or "",
        analyzer_unit=r["analyzer_unit"] or "",
        revision=r["revision"] or 0,
    )
    if r["observed_at"]:
        m.observed_at.FromDatetime(r["observed_at"])
    if r["verified_at"]:
        m.verified_at.FromDatetime(r["verified_at"])
    return m
