"""Admissions database tables (SQLAlchemy Core: use cases issue explicit, index-friendly statements)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

from hospital.chassis.db import UtcDateTime

metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_code", String(20), nullable=False, unique=True),
    Column("full_name", String(200), nullable=False),
    # lower-case ASCII search key; byte order ("C") on PostgreSQL so a plain btree serves prefix LIKE
    # and ORDER BY
    Column("name_folded", String(200).with_variant(String(200, collation="C"), "postgresql"), nullable=False),
    Column("birth_year", Integer, nullable=False),
    Column("birth_month", Integer, nullable=True),
    Column("birth_day", Integer, nullable=True),
    Column("sex", String(10), nullable=False),
    Column("cccd", String(12), nullable=True),
    Column("old_id_number", String(12), nullable=True),
    Column("phone", String(15), nullable=True),
    Column("address_line", String(300), nullable=True),
    Column("ward", String(100), nullable=True),
    Column("district", String(100), nullable=True),
    Column("province_code", String(2), nullable=True),
    Column("ethnicity", String(50), nullable=True),
    Column("occupation", String(100), nullable=True),
    Column("guardian_name", String(200), nullable=True),
    Column("guardian_phone", String(15), nullable=True),
    Column("merged_into", String(36), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index(
        "ix_patients_cccd",
        "cccd",
        unique=True,
        postgresql_where=text("cccd IS NOT NULL AND merged_into IS NULL"),
        sqlite_where=text("cccd IS NOT NULL AND merged_into IS NULL"),
    ),
    Index("ix_patients_phone", "phone"),
    Index("ix_patients_birth_year", "birth_year"),
    Index("ix_patients_name_prefix", "name_folded"),
)

insurance_cards = Table(
    "insurance_cards",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), ForeignKey("patients.id"), nullable=False, index=True),
    Column("number", String(15), nullable=False, index=True),
    Column("benefit_level", Integer, nullable=False),
    Column("benefit_rate", Integer, nullable=False),
    Column("province_code", String(2), nullable=False),
    Column("registered_facility", String(20), nullable=True),
    Column("valid_from", Date, nullable=True),
    Column("valid_to", Date, nullable=True),
    Column("five_year_date", Date, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("patient_id", "number", "valid_from", name="uq_card_period"),
)

idempotency = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("resource_id", String(36), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

departments = Table(
    "departments",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
)

clinic_rooms = Table(
    "clinic_rooms",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("department_code", String(20), ForeignKey("departments.code"), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
)

wards = Table(
    "wards",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("department_code", String(20), ForeignKey("departments.code"), nullable=False),
)

beds = Table(
    "beds",
    metadata,
    Column("code", String(30), primary_key=True),
    Column("ward_code", String(20), ForeignKey("wards.code"), nullable=False, index=True),
    Column("room", String(30), nullable=False),
    Column("admission_id", String(36), nullable=True),  # the occupant; set only by a guarded UPDATE
)

visits = Table(
    "visits",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("visit_code", String(30), nullable=False, unique=True),
    Column("patient_id", String(36), ForeignKey("patients.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("department_code", String(20), nullable=False),
    Column("room_code", String(20), ForeignKey("clinic_rooms.code"), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("ticket_number", Integer, nullable=False),
    Column("queue_status", String(20), nullable=False),  # waiting, called, skipped, done
    Column("call_count", Integer, nullable=False, server_default=text("0")),
    Column("called_at", UtcDateTime(), nullable=True),
    Column("status", String(20), nullable=False),  # open, closed
    Column("insurance_card_number", String(15), nullable=True),
    Column("referral_code", String(50), nullable=True),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
    UniqueConstraint("room_code", "service_date", "ticket_number", name="uq_ticket"),
    Index("ix_visits_queue", "room_code", "service_date", "queue_status", "ticket_number"),
)

inpatient_stays = Table(
    "inpatient_stays",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), ForeignKey("patients.id"), nullable=False, index=True),
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=True),
    Column("ward_code", String(20), ForeignKey("wards.code"), nullable=False),
    Column("bed_code", String(30), ForeignKey("beds.code"), nullable=False),
    Column("status", String(20), nullable=False),  # active, discharged
    Column("admitted_at", UtcDateTime(), nullable=False),
    Column("discharged_at", UtcDateTime(), nullable=True),
    Column("discharge_type", String(30), nullable=True),
    Index(
        "ix_stay_active_bed",
        "bed_code",
        unique=True,
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
    Index(
        "ix_stay_active_patient",
        "patient_id",
        unique=True,
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
)

# Card-less reception (migration 0006): every look-up of a patient's card on the insurance portal, with
# its answer and the check time, linked to the patient and the visit when the clerk gave them.
insurance_checks = Table(
    "insurance_checks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(36), ForeignKey("patients.id"), nullable=True, index=True),
    Column("visit_id", String(36), ForeignKey("visits.id"), nullable=True, index=True),
    Column("identifier_kind", String(30), nullable=False),  # cccd, social_insurance_number
    Column("identifier", String(12), nullable=False),
    Column("status", String(20), nullable=False),  # valid, expired, refused, unavailable, not_configured
    Column("result_code", String(10), nullable=False),  # the portal's maKetQua ("" when it did not answer)
    Column("message", String(500), nullable=False),
    Column("card_number", String(15), nullable=True),
    Column("benefit_level", Integer, nullable=True),
    Column("registered_facility", String(20), nullable=True),
    Column("valid_from", Date, nullable=True),
    Column("valid_to", Date, nullable=True),
    Column("five_year_date", Date, nullable=True),
    Column("checked_at", UtcDateTime(), nullable=False),
    Column("checked_by", String(200), nullable=False),
)
