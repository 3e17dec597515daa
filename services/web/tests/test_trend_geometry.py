"""The trend chart's geometry (no browser): values on the time axis, the reference range as a band,
non-numeric values left to the table."""

from __future__ import annotations

from datetime import UTC, datetime

from hospital.web.domain.trend import HEIGHT, reference_limits, trend_chart


def test_reference_limits() -> None:
    assert reference_limits("3.5-5.0") == (3.5, 5.0)
    assert reference_limits("3,5 – 5,1") == (3.5, 5.1)
    assert reference_limits("<5") is None and reference_limits("âm tính") is None
    assert reference_limits("5-3") is None


def test_points_band_and_order() -> None:
    t = [datetime(2026, 12, d, 8, tzinfo=UTC) for d in (1, 3, 5)]
    chart = trend_chart(
        [(t[0], 5.9, "5.9", "H"), (t[1], None, "tan máu", "A"), (t[2], 4.2, "4.2", "N")], "3.5-5.0"
    )
    assert chart.skipped == 1 and len(chart.points) == 2
    first, last = chart.points
    assert first.x < last.x and first.y < last.y  # later to the right; higher value nearer the top
    assert chart.band is not None
    high, low = chart.band
    assert first.y < high < last.y < low  # 5.9 above the range, 4.2 inside it
    assert all(0 <= p.y <= HEIGHT for p in chart.points)
    assert chart.x_ticks[0][1] == "01/12 15:00"  # Vietnam's time
    assert trend_chart([(t[0], None, "dương tính", "A")], "").points == []
