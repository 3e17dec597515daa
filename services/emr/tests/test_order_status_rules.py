"""The rule that moves an order from its results (hospital.emr.domain.order_status); the flow on real lab,
imaging, NATS and the EMR is in tests/e2e/test_emr_orders.py and the patient journey."""

from __future__ import annotations

import pytest

from hospital.emr.domain.order_status import imaging_status, lab_status

LINES = ["WBC", "HGB", "PLT", "GLU"]  # CBC + GLU as the lab expanded them


def test_lab_order_partial_then_resulted_against_its_lines() -> None:
    assert lab_status("placed", LINES, []) == "placed"
    assert lab_status("placed", LINES, [("GLU", "preliminary")]) == "placed"  # not verified yet
    assert lab_status("placed", LINES, [("GLU", "verified")]) == "partial"
    some = [("GLU", "verified"), ("WBC", "verified"), ("HGB", "amended")]
    assert lab_status("partial", LINES, some) == "partial"
    assert lab_status("partial", LINES, [*some, ("CRP", "verified")]) == "partial"  # not one of its lines
    assert lab_status("partial", LINES, [*some, ("PLT", "verified")]) == "resulted"
    assert lab_status("partial", ["glu "], [("GLU", "verified")]) == "resulted"  # codes compared trimmed


def test_a_resulted_order_never_moves_back() -> None:
    assert lab_status("resulted", LINES, [("GLU", "amended")]) == "resulted"
    assert lab_status("resulted", LINES, []) == "resulted"


@pytest.mark.parametrize("status", ["pending", "cancel_pending", "cancelled", "refused"])
def test_orders_that_are_not_live_are_left_alone(status: str) -> None:
    assert lab_status(status, LINES, [(t, "verified") for t in LINES]) == status
    assert imaging_status(status, study_arrived=True, report_signed=True) == status


def test_imaging_resulted_when_the_study_arrives_reported_when_signed() -> None:
    assert imaging_status("placed", study_arrived=True) == "resulted"
    assert imaging_status("completed", study_arrived=True) == "resulted"
    assert imaging_status("resulted", study_arrived=True) == "resulted"
    assert imaging_status("resulted", report_signed=True) == "reported"
    assert imaging_status("reported", study_arrived=True) == "reported"
