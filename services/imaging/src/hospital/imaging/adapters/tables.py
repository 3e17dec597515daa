"""Imaging database tables (SQLAlchemy Core): the study index, orders, reconciliation and routing.

The index is patient / study / series / instance, keyed by the DICOM UIDs. Study and series rows carry
denormalised counts and the attributes C-FIND and QIDO-RS match on, so a query touches one table.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text, text

from hospital.chassis.db import BigId, UtcDateTime

metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("patient_id", String(64), primary_key=True),  # DICOM PatientID (the hospital's patient code)
    Column("patient_name", String(200), nullable=True),  # DICOM PN as decoded (UTF-8)
    Column("name_folded", String(200), nullable=True),  # upper-case ASCII for wildcard matching
    Column("birth_date", String(8), nullable=True),
    Column("sex", String(16), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_img_patients_name", "name_folded"),  # + name_folded text_pattern_ops on PostgreSQL (0002)
)

studies = Table(
    "studies",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("patient_id", String(64), nullable=False),  # "" when the modality sent none
    Column("patient_name", String(200), nullable=True),
    Column("name_folded", String(200), nullable=True),
    Column("patient_birth_date", String(8), nullable=True),
    Column("patient_sex", String(16), nullable=True),
    Column("study_date", String(8), nullable=True),
    Column("study_time", String(16), nullable=True),
    Column("accession_number", String(64), nullable=True),
    Column("study_description", String(200), nullable=True),
    Column("referring_physician", String(200), nullable=True),
    Column("modalities", String(100), nullable=False, server_default=""),  # backslash-separated
    Column("series_count", Integer, nullable=False, server_default=text("0")),
    Column("instance_count", Integer, nullable=False, server_default=text("0")),
    Column("size_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("source_ae", String(16), nullable=True),
    Column("order_id", String(36), nullable=True),
    Column(
        "reconciliation", String(20), nullable=False, server_default="new"
    ),  # new, matched, pending, resolved
    Column("first_received_at", UtcDateTime(), nullable=False),
    Column("last_received_at", UtcDateTime(), nullable=False),
    Column("announced_at", UtcDateTime(), nullable=True),  # last imaging.study.received
    Index("ix_studies_patient", "patient_id"),
    Index("ix_studies_date", "study_date"),
    Index("ix_studies_accession", "accession_number"),
    Index("ix_studies_name", "name_folded"),  # + name_folded text_pattern_ops on PostgreSQL (0002)
    Index("ix_studies_unannounced", "last_received_at"),
)

series = Table(
    "series",
    metadata,
    Column("series_instance_uid", String(64), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("modality", String(16), nullable=True),
    Column("series_number", Integer, nullable=True),
    Column("series_description", String(200), nullable=True),
    Column("body_part", String(64), nullable=True),
    Column("instance_count", Integer, nullable=False, server_default=text("0")),
    Column("source_ae", String(16), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Index("ix_series_modality", "modality"),
)

instances = Table(
    "instances",
    metadata,
    Column("sop_instance_uid", String(64), primary_key=True),
    Column("series_instance_uid", String(64), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("frames", Integer, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 of transfer syntax + data set bytes
    Column("object_key", String(300), nullable=False),
    Column("source_ae", String(16), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
)

# Same SOP Instance UID received again with other content: kept, never overwrites, flagged for review.
instance_conflicts = Table(
    "instance_conflicts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sop_instance_uid", String(64), nullable=False, index=True),
    Column("digest", String(64), nullable=False),
    Column("object_key", String(300), nullable=False),
    Column("source_ae", String(16), nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False, server_default="open"),  # open, resolved
    Column("resolution", String(20), nullable=True),  # keep_existing, take_new (0003)
    Column("resolved_by", String(200), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Index("ix_conflict_unique", "sop_instance_uid", "digest", unique=True),
)

# Every MPPS (N-CREATE, then N-SETs) as received, linked to its order when one matches (0003). One that
# matches no order is kept here (never dropped) and listed for review. ``attention`` (0005) says why staff
# must look at it: "no_order" (matches no order), "order_cancelled" (names an order that was cancelled: the
# order stays cancelled, nothing is published), "already_completed" (a new MPPS for a completed order: not
# applied), "redo_discontinued" (redoes a discontinued order: applied, its reversed charge to check),
# "superseded" (ended after a newer MPPS took over its order: not applied); NULL for an MPPS that updates
# its order normally (ADR 0306). ``resolved_*`` (0006): staff marked a flagged MPPS handled
# (``POST /api/v1/mpps/{uid}/resolve``): who, when and their note; it then leaves the review list.
mpps = Table(
    "mpps",
    metadata,
    Column("mpps_instance_uid", String(64), primary_key=True),
    Column("order_id", String(36), nullable=True),
    Column("accession_number", String(64), nullable=True),
    Column("study_instance_uid", String(64), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("patient_name", String(200), nullable=True),
    Column("calling_ae", String(16), nullable=True),
    Column("status", String(20), nullable=False),  # IN PROGRESS, COMPLETED, DISCONTINUED
    Column("attention", String(20), nullable=True),  # see above (0005); at most 20 characters
    Column("resolved_by", String(200), nullable=True),  # 0006
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolution_note", String(500), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_mpps_unmatched", "order_id", "created_at"),
    Index("ix_mpps_attention", "attention", "created_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("accession_number", String(16), nullable=False, unique=True),
    Column("request_id", String(100), nullable=True, unique=True),
    Column("order_ref", String(100), nullable=True),
    Column("requested_procedure_id", String(16), nullable=False),
    Column("requested_procedure_description", String(64), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("station_ae_title", String(16), nullable=True),
    Column("scheduled_start", UtcDateTime(), nullable=False),
    Column("scheduled_date", String(8), nullable=False),  # YYYYMMDD, Asia/Ho_Chi_Minh, for worklist matching
    Column("patient_ref", String(36), nullable=True),
    Column("patient_id", String(64), nullable=False),
    Column("patient_name", String(200), nullable=False),
    Column("patient_birth_date", String(8), nullable=True),
    Column("patient_sex", String(1), nullable=True),
    Column("referring_physician", String(200), nullable=True),
    Column("visit_ref", String(36), nullable=True),  # the visit in admissions (UUID), when the EMR gave it
    Column(
        "status", String(20), nullable=False
    ),  # scheduled, in_progress, completed, discontinued, cancelled
    Column("study_instance_uid", String(64), nullable=False),  # pre-assigned, sent on the worklist
    Column("mpps_instance_uid", String(64), nullable=True, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_orders_worklist", "status", "modality", "scheduled_date"),
    Index("ix_orders_patient", "patient_id"),
)

reconciliation = Table(
    "reconciliation",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False, unique=True),
    Column("reason", String(40), nullable=False),  # unknown_accession, patient_mismatch, no_accession,
    #                                                  order_cancelled
    Column("detail", Text, nullable=False),
    Column("candidate_order_id", String(36), nullable=True),
    Column("status", String(20), nullable=False),  # open, resolved
    Column("resolved_order_id", String(36), nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Index("ix_reconciliation_status", "status", "created_at"),
)

routing_rules = Table(
    "routing_rules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("destination_ae", String(16), nullable=False),
    Column("modality", String(16), nullable=True),  # null = any
    Column("source_ae", String(16), nullable=True),  # null = any
    Column("attributes", JSON, nullable=False),  # {"BodyPartExamined": "CHEST", ...} exact matches
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", UtcDateTime(), nullable=False),
)

routing_queue = Table(
    "routing_queue",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("rule_id", String(36), nullable=False),
    Column("destination_ae", String(16), nullable=False),
    Column("study_instance_uid", String(64), nullable=False),
    Column("sop_instance_uid", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # pending, sent, failed (refused by the destination)
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Index("ix_routing_due", "status", "next_attempt_at"),
    Index("ix_routing_unique", "destination_ae", "sop_instance_uid", "rule_id", unique=True),
)

# Deletion of a study or series by an administrator (0009, ADR 0312). One transaction removes the index rows,
# writes the job and lists every object to remove (instances and their conflict copies) in
# ``deletion_objects``; the deletion worker removes those objects (idempotent) and their rows, then marks the
# job done. A crash or an object-store failure leaves the rest listed: the next pass resumes.
deletions = Table(
    "deletions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("level", String(10), nullable=False),  # study, series
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("series_instance_uid", String(64), nullable=True),
    Column("patient_id", String(64), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # pending, done
    Column("instance_count", Integer, nullable=False),
    Column("objects_total", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("completed_at", UtcDateTime(), nullable=True),
    Index("ix_deletions_due", "status", "next_attempt_at"),
)

deletion_objects = Table(
    "deletion_objects",
    metadata,
    Column("deletion_id", String(36), primary_key=True),
    Column("object_key", String(300), primary_key=True),
)

# Patient records merged in admissions (admissions.patient.merged, 0010, ADR 0317): the merged-away record's
# patient code names the same person as the survivor's. Matching a study to an order takes both codes as
# one patient; stored images keep the code they were sent with.
patient_merges = Table(
    "patient_merges",
    metadata,
    Column("merged_code", String(64), primary_key=True),
    Column("survivor_code", String(64), nullable=False, index=True),
    Column("merged_ref", String(36), nullable=False),
    Column("survivor_ref", String(36), nullable=False),
    Column("merged_at", UtcDateTime(), nullable=False),
)

# Storage Commitment requests (0011, ADR 0318): written before the N-ACTION is answered, so a request and
# the state of its N-EVENT-REPORT survive a restart. ``refs``: [[sop class, sop instance], ...] as asked;
# ``result`` once decided: {"committed": [[class, sop]], "failed": [[class, sop, reason]]}.
storage_commitments = Table(
    "storage_commitments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("transaction_uid", String(64), nullable=False),
    Column("calling_ae", String(16), nullable=False),
    Column("refs", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # waiting, reporting, reported, unreported
    Column("result", JSON, nullable=True),
    Column("wait_until", UtcDateTime(), nullable=False),  # instances not yet indexed are waited for until
    Column("attempts", Integer, nullable=False, server_default=text("0")),  # N-EVENT-REPORT attempts
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("reported_at", UtcDateTime(), nullable=True),
    Index("ix_storage_commitments_due", "status", "next_attempt_at"),
    Index("ix_storage_commitments_transaction", "transaction_uid"),
)
