"""The claim's clinical tables from the EMR: ``claim_papers`` (the signed discharge paper, referral paper,
sick-leave certificate and re-visit appointment of a visit: XML7, XML13, XML11, XML14), ``claim_results``
(verified lab results and signed imaging reports: XML4), ``claim_course`` (signed clinical notes: XML5,
and the reason for the visit and the admission diagnosis they state); the signed discharge summary is a
``claim_papers`` row of kind ``discharge_summary`` (XML8);
``staff_identifiers`` (the health-practitioner identifier written as MA_BAC_SI / MA_BS / MA_BS_DOC_KQ /
NGUOI_THUC_HIEN for a staff member's sign-in subject, seeded for the demo users) and
``visits.consulting_doctor`` (the doctor who saved the consultation: MA_BAC_SI of the examination).
Frozen history in explicit DDL.

Revision ID: 0012
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from hospital.chassis.db import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# the local stack's demo staff (libs/chassis security.DEMO_USERS) with invented practising-certificate numbers
DEMO_STAFF = [
    ("user:bs.minh", "003456/TB-CCHN", "BS. Lê Quang Minh", "Bác sĩ"),
    ("user:bs.cdha.thao", "004812/TB-CCHN", "BS. Đặng Thu Thảo", "Bác sĩ chẩn đoán hình ảnh"),
    ("user:ktv.xetnghiem.tuan", "002217/TB-CCHN", "Phạm Anh Tuấn", "Kỹ thuật viên xét nghiệm"),
    ("user:ktv.cdha.hung", "002230/TB-CCHN", "Võ Văn Hùng", "Kỹ thuật viên chẩn đoán hình ảnh"),
    ("user:dieuduong.hoa", "005530/TB-CCHN", "Trần Thị Hoa", "Điều dưỡng"),
]


def upgrade() -> None:
    op.add_column("visits", sa.Column("consulting_doctor", sa.String(100), nullable=True))
    staff = op.create_table(
        "staff_identifiers",
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("practitioner_id", sa.String(length=50), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=True),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    op.bulk_insert(
        staff,
        [
            {"subject": s, "practitioner_id": p, "full_name": n, "title": t, "updated_at": now}
            for s, p, n, t in DEMO_STAFF
        ],
    )
    op.create_table(
        "claim_papers",
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("paper_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=50), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("diagnoses", sa.JSON(), nullable=False),
        sa.Column("department_code", sa.String(length=20), nullable=True),
        sa.Column("signer", sa.String(length=100), nullable=False),
        sa.Column("signer_name", sa.String(length=200), nullable=False),
        sa.Column("signed_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("visit_id", "kind"),
    )
    op.create_table(
        "claim_results",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=True),
        sa.Column("order_ref", sa.String(length=80), nullable=True),
        sa.Column("accession", sa.String(length=40), nullable=True),
        sa.Column("test_code", sa.String(length=64), nullable=False),
        sa.Column("test_name", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column("result_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("read_by", sa.String(length=100), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claim_results_visit_id", "claim_results", ["visit_id"], unique=False)
    op.create_index("ix_claim_results_order_ref", "claim_results", ["order_ref"], unique=False)
    op.create_table(
        "claim_course",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("visit_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("course", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("performer", sa.String(length=100), nullable=False),
        sa.Column("replaced_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_claim_course_visit_id", "claim_course", ["visit_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_claim_course_visit_id", table_name="claim_course")
    op.drop_table("claim_course")
    op.drop_index("ix_claim_results_order_ref", table_name="claim_results")
    op.drop_index("ix_claim_results_visit_id", table_name="claim_results")
    op.drop_table("claim_results")
    op.drop_table("claim_papers")
    op.drop_table("staff_identifiers")
    with op.batch_alter_table("visits") as batch:
        batch.drop_column("consulting_doctor")
