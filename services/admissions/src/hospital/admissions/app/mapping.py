"""Row ↔ API (dict, protobuf) mapping for admissions records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from hospital.contracts.admissions.v1 import admissions_pb2 as pb
from hospital.contracts.common.v1 import types_pb2

SEX = {"male": pb.SEX_MALE, "female": pb.SEX_FEMALE}
VISIT_KIND = {
    "insured": pb.VISIT_KIND_INSURED,
    "fee_paying": pb.VISIT_KIND_FEE_PAYING,
    "emergency": pb.VISIT_KIND_EMERGENCY,
    "referral": pb.VISIT_KIND_REFERRAL,
}


def _d(value: date | None) -> str | None:
    return value.isoformat() if value else None


def birth_iso(row: Mapping[str, Any]) -> str:
    parts = [f"{row['birth_year']:04d}"]
    if row["birth_month"]:
        parts.append(f"{row['birth_month']:02d}")
        if row["birth_day"]:
            parts.append(f"{row['birth_day']:02d}")
    return "-".join(parts)


def card_dict(c: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": c["number"],
        "benefit_level": c["benefit_level"],
        "benefit_rate": c["benefit_rate"],
        "province_code": c["province_code"],
        "registered_facility": c["registered_facility"],
        "valid_from": _d(c["valid_from"]),
        "valid_to": _d(c["valid_to"]),
        "five_year_date": _d(c["five_year_date"]),
    }


def patient_dict(row: Mapping[str, Any], cards: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    cards = [card_dict(c) for c in cards]
    return {
        "id": row["id"],
        "patient_code": row["patient_code"],
        "full_name": row["full_name"],
        "birth_date": birth_iso(row),
        "sex": row["sex"],
        "cccd": row["cccd"],
        "old_id_number": row["old_id_number"],
        "phone": row["phone"],
        "address": {
            "line": row["address_line"],
            "ward": row["ward"],
            "district": row["district"],
            "province_code": row["province_code"],
        },
        "ethnicity": row["ethnicity"],
        "occupation": row["occupation"],
        "guardian": (
            {"name": row["guardian_name"], "phone": row["guardian_phone"]} if row["guardian_name"] else None
        ),
        "bhyt_number": cards[0]["number"] if cards else None,
        "insurance_cards": cards,
        "merged_into": row["merged_into"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def patient_proto(p: Mapping[str, Any]) -> pb.Patient:
    y, *rest = p["birth_date"].split("-")
    birth = types_pb2.PartialDate(
        year=int(y), month=int(rest[0]) if rest else 0, day=int(rest[1]) if len(rest) > 1 else 0
    )
    addr = p["address"]
    msg = pb.Patient(
        id=p["id"],
        patient_code=p["patient_code"],
        full_name=p["full_name"],
        birth_date=birth,
        sex=SEX.get(p["sex"], pb.SEX_UNSPECIFIED),
        cccd=p["cccd"] or "",
        old_id_number=p["old_id_number"] or "",
        phone=p["phone"] or "",
        ethnicity=p["ethnicity"] or "",
        occupation=p["occupation"] or "",
        merged_into=p["merged_into"] or "",
        address=pb.Address(
            line=addr["line"] or "",
            ward=addr["ward"] or "",
            district=addr["district"] or "",
            province_code=addr["province_code"] or "",
        ),
        insurance_cards=[
            pb.InsuranceCard(
                number=c["number"],
                benefit_level=c["benefit_level"],
                benefit_rate_percent=c["benefit_rate"],
                province_code=c["province_code"],
                registered_facility=c["registered_facility"] or "",
                valid_from=c["valid_from"] or "",
                valid_to=c["valid_to"] or "",
                five_year_date=c["five_year_date"] or "",
            )
            for c in p["insurance_cards"]
        ],
    )
    msg.updated_at.FromDatetime(datetime.fromisoformat(p["updated_at"]))
    return msg


def visit_dict(v: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": v["id"],
        "visit_code": v["visit_code"],
        "patient_id": v["patient_id"],
        "kind": v["kind"],
        "department_code": v["department_code"],
        "room": v["room_code"],
        "service_date": v["service_date"].isoformat(),
        "ticket_number": v["ticket_number"],
        "queue_status": v["queue_status"],
        "status": v["status"],
        "insurance_card_number": v["insurance_card_number"],
        "referral_code": v["referral_code"],
        "opened_at": v["opened_at"].isoformat(),
        "closed_at": v["closed_at"].isoformat() if v["closed_at"] else None,
    }


def visit_proto(v: Mapping[str, Any]) -> pb.Visit:
    msg = pb.Visit(
        id=v["id"],
        visit_code=v["visit_code"],
        patient_id=v["patient_id"],
        kind=VISIT_KIND.get(v["kind"], pb.VISIT_KIND_UNSPECIFIED),
        department_code=v["department_code"],
        room_code=v["room_code"],
        ticket_number=v["ticket_number"],
        status=v["status"],
        insurance_card_number=v["insurance_card_number"] or "",
        referral_code=v["referral_code"] or "",
    )
    msg.opened_at.FromDatetime(v["opened_at"])
    if v["closed_at"]:
        msg.closed_at.FromDatetime(v["closed_at"])
    return msg


def stay_dict(a: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": a["id"],
        "patient_id": a["patient_id"],
        "visit_id": a["visit_id"],
        "ward": a["ward_code"],
        "bed": a["bed_code"],
        "status": a["status"],
        "admitted_at": a["admitted_at"].isoformat(),
        "discharged_at": a["discharged_at"].isoformat() if a["discharged_at"] else None,
        "discharge_type": a["discharge_type"],
    }


def stay_proto(a: Mapping[str, Any]) -> pb.Admission:
    msg = pb.Admission(
        id=a["id"],
        patient_id=a["patient_id"],
        visit_id=a["visit_id"] or "",
        ward_code=a["ward_code"],
        bed_code=a["bed_code"],
    )
    msg.admitted_at.FromDatetime(a["admitted_at"])
    return msg
