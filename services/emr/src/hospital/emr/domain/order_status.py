"""How far a lab or imaging order has come, as the doctor reads it on the order.

Lab: ``placed`` until a result is verified, ``partial`` while some of the order's tests have a verified
(or amended) result, ``resulted`` once every test of the order has one. The order's tests are the lab's
order lines (a panel such as CBC is several lines: WBC, HGB, PLT, ...), kept when the lab accepted the
order; for an order accepted before they were kept, the ordered codes stand in.
Imaging: ``resulted`` when the study arrived, ``reported`` once the radiology report is signed.
Only a live order moves, and only forward: ``pending``, ``cancel_pending``, ``cancelled`` and ``refused``
stay as they are, and a redelivered or amended result never moves an order back.
"""

from __future__ import annotations

from collections.abc import Iterable

FINAL_RESULT = frozenset({"verified", "amended", "corrected", "final"})
LAB_LIVE = frozenset({"placed", "partial"})
IMAGING_BEFORE_RESULT = frozenset({"placed", "completed"})
IMAGING_BEFORE_REPORT = frozenset({"placed", "completed", "resulted"})


def lab_status(current: str, ordered: Iterable[str], results: Iterable[tuple[str, str]]) -> str:
    """The lab order's status given its tests and its (test_code, result status) pairs."""
    if current not in LAB_LIVE:
        return current
    tests = {t.strip().upper() for t in ordered if t.strip()}
    done = {code.strip().upper() for code, status in results if status in FINAL_RESULT}
    if tests and tests <= done:
        return "resulted"
    if done:
        return "partial"
    return current


def imaging_status(current: str, *, study_arrived: bool = False, report_signed: bool = False) -> str:
    if report_signed and current in IMAGING_BEFORE_REPORT:
        return "reported"
    if study_arrived and current in IMAGING_BEFORE_RESULT:
        return "resulted"
    return current
