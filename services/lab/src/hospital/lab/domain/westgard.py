"""Westgard multirule QC (pure functions).

Values are z-scores ``(value - target mean) / target SD`` of one control material, oldest first; the
last one is the run being judged. Rules (Westgard 1981):

* ``1-2s`` one value beyond ±2 SD — a warning only;
* ``1-3s`` one value beyond ±3 SD — random error, reject;
* ``2-2s`` the last two values beyond 2 SD on the same side — systematic error, reject;
* ``R-4s`` two values of one run differ by more than 4 SD (one above +2, one below −2) — random error:
  the current value against the other control levels measured in the same run (``run_peers``, the
  classic within-run form), and against the previous value of the same level;
* ``4-1s`` the last four values beyond 1 SD on the same side — systematic error;
* ``10-x`` the last ten values on the same side of the mean — systematic error.

Rules looking back only fire when the current value takes part in the pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    rejection: bool


def z_score(value: float, mean: float, sd: float) -> float:
    if sd <= 0:
        raise ValueError("target SD must be positive")
    return (value - mean) / sd


def _same_side(zs: Sequence[float], limit: float) -> bool:
    return all(z > limit for z in zs) or all(z < -limit for z in zs)


def _range_4s(a: float, b: float) -> bool:
    return abs(a - b) > 4 and max(a, b) > 2 and min(a, b) < -2


def evaluate(zs: Sequence[float], run_peers: Sequence[float] = ()) -> list[Violation]:
    """Violations of the newest value (``zs[-1]``) given the series before it; ``run_peers`` are the
    z-scores of the other control levels of the same test in the same run."""
    if not zs:
        return []
    out: list[Violation] = []
    z = zs[-1]
    if abs(z) > 3:
        out.append(Violation("1-3s", True))
    if len(zs) >= 2 and _same_side(zs[-2:], 2):
        out.append(Violation("2-2s", True))
    if any(_range_4s(z, peer) for peer in run_peers) or (len(zs) >= 2 and _range_4s(zs[-1], zs[-2])):
        out.append(Violation("R-4s", True))
    if len(zs) >= 4 and _same_side(zs[-4:], 1):
        out.append(Violation("4-1s", True))
    if len(zs) >= 10 and _same_side(zs[-10:], 0):
        out.append(Violation("10-x", True))
    if abs(z) > 2 and not out:
        out.append(Violation("1-2s", False))
    return out


def accepted(violations: Sequence[Violation]) -> bool:
    return not any(v.rejection for v in violations)
