"""Tests for capacity peaks: demand per period, the billing period's peak, headroom, gaps."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from custom_components.shelly_energy.energy.capacity import (
    CapacitySettings,
    CapacityTracker,
    Demand,
    PeakRule,
)
from custom_components.shelly_energy.energy.periods import PeriodClock
from custom_components.shelly_energy.energy.tariff import BillingCycle

BRUSSELS = ZoneInfo("Europe/Brussels")
OSLO = ZoneInfo("Europe/Oslo")
MINUTE = 60
HOUR = 3600


def ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: tzinfo = UTC
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def quarters(zone: tzinfo = UTC) -> CapacityTracker:
    return CapacityTracker(PeriodClock(15, zone), BillingCycle())


def draw(tracker: CapacityTracker, start: float, kw: float, minutes: int) -> list[Demand]:
    """Import `kw` for `minutes`, reported every minute."""
    closed: list[Demand] = []
    for minute in range(minutes):
        begins = start + minute * MINUTE
        closed += tracker.add(begins, begins + MINUTE, kw * 1000 / 60)
    return closed


def test_the_demand_of_each_quarter_and_the_months_highest() -> None:
    tracker = quarters(BRUSSELS)
    start = ts(2025, 3, 3, 18, 0, BRUSSELS)
    # 18:00-18:15 at 2 kW; 18:15-18:30: 10 minutes at 6 kW and 5 at 0: 4 kW; 18:30-18:45 1 kW.
    closed = draw(tracker, start, 2.0, 15) + draw(tracker, start + 15 * MINUTE, 6.0, 10)
    closed += draw(tracker, start + 25 * MINUTE, 0.0, 5) + draw(
        tracker, start + 30 * MINUTE, 1.0, 15
    )
    assert [demand.start for demand in closed] == [start, start + 15 * MINUTE, start + 30 * MINUTE]
    assert [demand.kw for demand in closed] == pytest.approx([2.0, 4.0, 1.0])
    assert tracker.last == closed[-1]
    assert tracker.peak(start + HOUR) == pytest.approx(4.0)
    assert tracker.counted() == [closed[1]]
    # The next month has no peak yet.
    assert tracker.peak(ts(2025, 4, 1, 0, 5, BRUSSELS)) == 0.0
    assert tracker.threshold(ts(2025, 4, 1, 0, 5, BRUSSELS)) == 0.0


def test_headroom_before_a_new_peak() -> None:
    tracker = quarters()
    start = ts(2025, 3, 3, 9)
    draw(tracker, start, 4.0, 15)  # the month's peak: 4 kW
    draw(tracker, start + 15 * MINUTE, 3.6, 5)  # 10:15-10:20: 300 Wh so far
    now = start + 20 * MINUTE
    assert tracker.demand_so_far() == pytest.approx(1.2)  # 300 Wh over a quarter of an hour
    # At 3 kW for the last 10 minutes the quarter ends at (300 + 500) Wh / 0.25 h = 3.2 kW.
    assert tracker.projected(3000.0, now) == pytest.approx(3.2)
    # 4 kW allows 1000 Wh; 700 Wh are left for 10 minutes: 4.2 kW on average, 1.2 kW more.
    assert tracker.headroom(3000.0, now) == pytest.approx(1.2)
    assert tracker.headroom(6000.0, now) == pytest.approx(-1.8)
    assert tracker.projected(6000.0, now) == pytest.approx(5.2)
    # After the running quarter (no update has closed it yet) a new one has drawn nothing: its
    # projection is the power, its headroom all of the peak less the power.
    assert tracker.headroom(3000.0, start + HOUR) == pytest.approx(1.0)
    assert tracker.projected(3000.0, start + HOUR) == 3.0


def test_the_state_of_the_running_quarter() -> None:
    tracker = quarters()
    start = ts(2025, 3, 3, 9)
    draw(tracker, start, 4.0, 15)
    draw(tracker, start + 15 * MINUTE, 3.6, 5)
    now = start + 20 * MINUTE
    state = tracker.state(3000.0, now)
    assert (state.demand_kw, state.peak_kw, state.headroom_kw) == pytest.approx((3.2, 4.0, 1.2))
    assert (state.period_end, state.seconds_left) == (start + 30 * MINUTE, 600.0)
    assert state.threshold_kw == pytest.approx(4.0)
    # Without the power the peak and the period are still known.
    unknown = tracker.state(None, now)
    assert (unknown.demand_kw, unknown.headroom_kw) == (None, None)
    assert unknown.peak_kw == pytest.approx(4.0)
    # Settings make the tracker they describe.
    settings = CapacitySettings(60, PeakRule.MEAN_OF_DAYS, 2)
    made = settings.tracker(OSLO)
    assert (made.clock.length, made.clock.zone, made.rule, made.days) == (
        HOUR,
        OSLO,
        settings.rule,
        2,
    )


def test_norway_counts_the_mean_of_the_three_highest_days() -> None:
    tracker = CapacityTracker(PeriodClock(60, OSLO), BillingCycle(), PeakRule.MEAN_OF_DAYS, 3)
    day_peaks = {1: 5.2, 2: 4.8, 3: 6.1, 4: 3.0}
    for day, kw in day_peaks.items():
        draw(tracker, ts(2025, 1, day, 7, 0, OSLO), kw - 1.0, 60)
        draw(tracker, ts(2025, 1, day, 17, 0, OSLO), kw, 60)
    # (6.1 + 5.2 + 4.8) / 3 = 5.3667 kW; day 4's 3.0 kW does not count.
    now = ts(2025, 1, 4, 20, 0, OSLO)
    assert tracker.peak(now) == pytest.approx((6.1 + 5.2 + 4.8) / 3)
    assert [demand.kw for demand in tracker.counted()] == pytest.approx([6.1, 5.2, 4.8])
    assert tracker.day_peaks()[date(2025, 1, 3)].start == ts(2025, 1, 3, 17, 0, OSLO)
    # Today (day 4) raises the peak only above the third highest other day: 4.8 kW.
    draw(tracker, now, 1.0, 10)
    assert tracker.threshold(now + 10 * MINUTE) == pytest.approx(4.8)
    # On day 1, with fewer other days than three, any rise of today's own peak counts.
    early = CapacityTracker(PeriodClock(60, OSLO), BillingCycle(), PeakRule.MEAN_OF_DAYS)
    draw(early, ts(2025, 1, 1, 7, 0, OSLO), 2.0, 65)
    assert early.threshold(ts(2025, 1, 1, 8, 5, OSLO)) == pytest.approx(2.0)
    assert early.peak(ts(2025, 1, 1, 8, 5, OSLO)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least one day"):
        CapacityTracker(PeriodClock(60, OSLO), BillingCycle(), PeakRule.MEAN_OF_DAYS, 0)


def test_a_dst_day_has_its_peak_in_the_repeated_hour() -> None:
    tracker = CapacityTracker(PeriodClock(60, OSLO), BillingCycle(), PeakRule.MEAN_OF_DAYS)
    # 2025-10-26: 02:00-03:00 comes twice in Oslo; the second one draws 3 kW.
    start = ts(2025, 10, 26, 0, 0, UTC)  # 02:00 CEST
    draw(tracker, start, 2.0, 60)
    draw(tracker, start + HOUR, 3.0, 60)
    draw(tracker, start + 2 * HOUR, 1.0, 60)
    peaks = tracker.day_peaks()
    assert list(peaks) == [date(2025, 10, 26)]
    assert peaks[date(2025, 10, 26)].start == start + HOUR
    assert peaks[date(2025, 10, 26)].kw == pytest.approx(3.0)


def test_an_outage_across_the_month_change_is_measured_from_the_records() -> None:
    tracker = quarters(BRUSSELS)
    end_of_march = ts(2025, 3, 31, 23, 30, BRUSSELS)
    draw(tracker, end_of_march - HOUR, 2.5, 60)
    # Home Assistant is down from 23:30 to 00:30: 3 kWh imported meanwhile, spread as 3 kW.
    tracker.add(end_of_march, end_of_march + HOUR, 3000.0)
    # March's peak is final at its end: 3 kW (a guess, spread over the gap).
    assert [start for start, _ in tracker.history] == [ts(2025, 3, 1, 0, 0, BRUSSELS)]
    assert [kw for _, kw in tracker.history] == pytest.approx([3.0])
    april = end_of_march + HOUR
    assert tracker.month == (ts(2025, 4, 1, 0, 0, BRUSSELS), ts(2025, 5, 1, 0, 0, BRUSSELS))
    assert tracker.peak(april) == pytest.approx(3.0)
    assert tracker.needs_records_since() == ts(2025, 4, 1, 0, 0, BRUSSELS)
    # The records: 00:00-00:15 drew 1.5 kWh (6 kW), 00:15-00:30 nothing.
    tracker.rebuild({april - 30 * MINUTE: 1500.0, april - 15 * MINUTE: 0.0, 0.0: 1.0})
    assert tracker.peak(april) == pytest.approx(6.0)
    assert tracker.needs_records_since() is None


def test_the_peak_of_each_billing_period_by_its_start() -> None:
    tracker = quarters(BRUSSELS)
    march, april = ts(2025, 3, 1, 0, 0, BRUSSELS), ts(2025, 4, 1, 0, 0, BRUSSELS)
    assert tracker.peak_of(march) is None  # nothing measured yet
    draw(tracker, ts(2025, 3, 31, 23, 0, BRUSSELS), 2.0, 75)  # into April's first quarter
    assert tracker.peak_of(march) == pytest.approx(2.0)  # closed: from the history
    assert tracker.peak_of(april) == pytest.approx(2.0)  # the one being measured
    assert tracker.peak_of(ts(2025, 2, 1, 0, 0, BRUSSELS)) is None


def test_state_survives_a_restart() -> None:
    tracker = quarters()
    start = ts(2025, 3, 3, 9)
    draw(tracker, start, 4.0, 20)
    tracker.add(start + 20 * MINUTE, start + 50 * MINUTE, 500.0)  # a gap
    stored = json.loads(json.dumps(tracker.to_dict()))
    restored = quarters()
    restored.restore(stored)
    assert restored.to_dict() == tracker.to_dict()
    assert restored.peak(start + HOUR) == tracker.peak(start + HOUR)
    # Another period length starts the billing period's peak anew.
    hourly = CapacityTracker(PeriodClock(60, UTC), BillingCycle())
    hourly.restore(stored)
    assert hourly.peak(start + HOUR) == 0.0 and hourly.last is None


def test_a_changed_billing_cycle_measures_on_in_its_own_period() -> None:
    """Peaks turned on before a two-monthly tariff: the peak so far counts in its period."""
    monthly = quarters(BRUSSELS)
    draw(monthly, ts(2026, 12, 5, 20, 0, BRUSSELS), 1.0, 20)
    stored = json.loads(json.dumps(monthly.to_dict()))
    two_monthly = CapacityTracker(
        PeriodClock(15, BRUSSELS), BillingCycle(months=2, anchor_month=11)
    )
    two_monthly.restore(stored)
    november = ts(2026, 11, 1, 0, 0, BRUSSELS)
    assert two_monthly.month == (november, ts(2027, 1, 1, 0, 0, BRUSSELS))
    assert two_monthly.peak_of(november) == pytest.approx(1.0)
    assert two_monthly.peak_of(ts(2026, 12, 1, 0, 0, BRUSSELS)) is None
    # A cycle starting on the 15th: the 5th of December is in the period from 15 November.
    mid_month = CapacityTracker(PeriodClock(15, BRUSSELS), BillingCycle(start_day=15))
    mid_month.restore(stored)
    assert mid_month.peak_of(ts(2026, 11, 15, 0, 0, BRUSSELS)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "data", [{"version": 2}, {"version": 1, "history": [], "length": 900}, {"version": 1}]
)
def test_unreadable_capacity_states_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        quarters().restore(data)
