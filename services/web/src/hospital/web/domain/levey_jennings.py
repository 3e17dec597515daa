"""The geometry of a Levey-Jennings chart drawn on the server as SVG: one control lot's runs in order,
against its target mean and ±1, 2, 3 SD; a value beyond ±4 SD is drawn on the edge (and says so)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 16, 40
SPAN = 4.0  # the chart shows mean ± 4 SD


@dataclass(frozen=True)
class Line:
    k: int  # SD from the mean: -3..3
    y: float
    value: float
    kind: str  # mean, sd1, sd2, sd3


@dataclass(frozen=True)
class Dot:
    n: int  # 1-based run number
    x: float
    y: float
    value: float
    z: float
    rules: tuple[str, ...]
    state: str  # ok, warning (1-2s only), reject
    clipped: bool
    label: str = ""  # date or time under the axis (every few runs)


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    lines: list[Line] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    path: str = ""  # the polyline joining the runs


def _y(z: float) -> float:
    z = max(-SPAN, min(SPAN, z))
    return TOP + (SPAN - z) / (2 * SPAN) * (HEIGHT - BOTTOM - TOP)


def state_of(rules: Sequence[str], accepted: bool) -> str:
    if not accepted:
        return "reject"
    return "warning" if rules else "ok"


def chart(
    mean: float,
    sd: float,
    points: Sequence[tuple[float, float, Sequence[str], bool, str]],
    label_every: int = 0,
) -> Chart:
    """``points``: (value, z, Westgard rules broken, accepted, label) oldest first."""
    c = Chart()
    for k in (-3, -2, -1, 0, 1, 2, 3):
        kind = "mean" if k == 0 else f"sd{abs(k)}"
        c.lines.append(Line(k, round(_y(k), 1), mean + k * sd, kind))
    n = len(points)
    inner = c.right - c.left
    step = inner / max(n, 1)
    every = label_every or max(1, n // 8)
    for i, (value, z, rules, accepted, label) in enumerate(points):
        x = round(c.left + step * (i + 0.5), 1)
        c.dots.append(
            Dot(
                n=i + 1,
                x=x,
                y=round(_y(z), 1),
                value=value,
                z=z,
                rules=tuple(rules),
                state=state_of(rules, accepted),
                clipped=abs(z) > SPAN,
                label=label if (i % every == 0 or i == n - 1) else "",
            )
        )
    c.path = " ".join(f"{d.x},{d.y}" for d in c.dots)
    return c
