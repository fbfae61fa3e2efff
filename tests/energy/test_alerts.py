"""Tests for the warnings before a period closes: lead time, threshold, once per period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.alerts import ClosingWarning, ClosingWatch

QUARTER = 900.0


def test_a_net_import_above_the_threshold_warns_once_near_the_end() -> None:
    watch = ClosingWatch(ClosingWarning(lead_s=300.0, threshold=0.2))
    end = 3600.0
    # Too early, however much was imported.
    assert not watch.observe(end, 301.0, 5.0)
    # Within the lead time, at or below the threshold: nothing; above it: once.
    assert not watch.observe(end, 300.0, 0.2)
    assert watch.observe(end, 240.0, 0.25)
    assert not watch.observe(end, 60.0, 0.5)
    # The next period warns again; an unknown value warns of nothing.
    assert not watch.observe(end + 3600, 100.0, None)
    assert watch.observe(end + 3600, 99.0, 0.3)


def test_headroom_below_the_threshold_warns() -> None:
    watch = ClosingWatch(ClosingWarning(lead_s=120.0, threshold=0.5, below=True))
    assert not watch.observe(QUARTER, 100.0, 0.5)
    assert watch.observe(QUARTER, 90.0, -1.0)


def test_a_warning_needs_a_lead_time() -> None:
    with pytest.raises(ValueError, match="lead time"):
        ClosingWarning(0.0, 1.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, QUARTER), st.floats(-10, 10) | st.none()),
        max_size=60,
    )
)
def test_never_more_than_one_warning_per_period(
    updates: list[tuple[int, float, float | None]],
) -> None:
    watch = ClosingWatch(ClosingWarning(lead_s=300.0, threshold=1.0))
    warned: list[int] = []
    for period, seconds_left, value in sorted(updates, key=lambda u: (u[0], -u[1])):
        if watch.observe((period + 1) * QUARTER, seconds_left, value):
            assert seconds_left <= 300.0 and value is not None and value > 1.0
            warned.append(period)
    assert len(warned) == len(set(warned))
