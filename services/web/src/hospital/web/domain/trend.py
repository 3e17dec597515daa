"""An analyte's trend as a small server-drawn chart: the geometry of an inline SVG (no JavaScript, no
chart library): the values on a time axis, the reference range as a band, the flagged points marked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40
_RANGE = re.compile(r"^\s*(-?\d+(?:[.,]\d+)?)\s*[-–]\s*(-?\d+(?:[.,]\d+)?)\s*$")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: str
    flag: str
    when: datetime


@dataclass(frozen=True)
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    points: list[Point] = field(default_factory=list)
    path: str = ""  # polyline points "x,y x,y"
    band: tuple[float, float] | None = None  # y of the reference range's high and low limits
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)  # x0, y0, x1, y1
    skipped: int = 0  # values that are not numbers (shown in the table only)


def reference_limits(text: str) -> tuple[float, float] | None:
    """``"3.5-5.1"`` (or with a comma decimal) as (low, high); None for other forms (``"<5"``, text)."""
    m = _RANGE.match(text or "")
    if not m:
        return None
    low, high = (float(g.replace(",", ".")) for g in m.groups())
    return (low, high) if low < high else None


def _label(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def trend_chart(
    values: list[tuple[datetime, float | None, str, str]],
    reference_range: str,
    *,
    local_offset_hours: int = 7,
) -> Chart:
    """``values``: (observed at, number or None, value as reported, flag), oldest first. Times are shown in
    Vietnam's time (UTC+7, no daylight saving)."""
    numeric = [(t, v, text, flag) for t, v, text, flag in values if v is not None]
    skipped = len(values) - len(numeric)
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    if not numeric:
        return Chart(skipped=skipped)
    limits = reference_limits(reference_range)
    lows = [v for _, v, _, _ in numeric] + ([limits[0]] if limits else [])
    highs = [v for _, v, _, _ in numeric] + ([limits[1]] if limits else [])
    lo, hi = min(lows), max(highs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.1
    lo, hi = lo - pad, hi + pad
    times = [t.timestamp() for t, _, _, _ in numeric]
    t0, t1 = min(times), max(times)

    def x_of(ts: float) -> float:
        if t1 == t0:
            return (x0 + x1) / 2
        return x0 + (ts - t0) / (t1 - t0) * (x1 - x0)

    def y_of(v: float) -> float:
        return y1 - (v - lo) / (hi - lo) * (y1 - y0)

    points = [
        Point(round(x_of(ts), 1), round(y_of(v), 1), text, flag or "N", t)
        for ts, (t, v, text, flag) in zip(times, numeric, strict=True)
    ]
    band = (round(y_of(limits[1]), 1), round(y_of(limits[0]), 1)) if limits else None
    y_ticks = [(round(y_of(v), 1), _label(v)) for v in (lo + pad, (lo + hi) / 2, hi - pad)]

    def local(t: datetime) -> str:
        return (t + timedelta(hours=local_offset_hours)).strftime("%d/%m %H:%M")

    x_ticks = [(points[0].x, local(points[0].when))]
    if len(points) > 1:
        x_ticks.append((points[-1].x, local(points[-1].when)))
    return Chart(
        points=points,
        path=" ".join(f"{p.x},{p.y}" for p in points),
        band=band,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        skipped=skipped,
    )
