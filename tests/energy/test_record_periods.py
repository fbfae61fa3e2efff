"""Settlement and demand periods from 1-minute records, and the statistics of rebuilt periods."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.capacity import CapacityTracker
from custom_components.shelly_energy.energy.history_plan import MeterIntervals, SiteHours
from custom_components.shelly_energy.energy.periods import PeriodClock
from custom_components.shelly_energy.energy.record_periods import (
    RecordPeriods,
    five_minutes_of,
    hour_of,
    settlement_moves,
)
from custom_components.shelly_energy.energy.settlement import GridSettlement, Settlement
from custom_components.shelly_energy.energy.site import (
    ChannelRef,
    GridMetering,
    Role,
    SiteConfig,
)
from custom_components.shelly_energy.energy.tariff import BillingCycle

MADRID = ZoneInfo("Europe/Madrid")
BRUSSELS = ZoneInfo("Europe/Brussels")
MINUTE = 60
HOUR = 3600

Minute = tuple[float, float]  # grid Wh in, Wh out


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: tzinfo = UTC) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=zone).timestamp())


def recorded(periods: RecordPeriods, start: int, minutes: list[Minute]) -> RecordPeriods:
    for index, (energy_in, energy_out) in enumerate(minutes):
        begins = start + index * MINUTE
        periods.add(begins, begins + MINUTE, energy_in, energy_out)
    return periods


def test_hourly_nets_across_the_autumn_change_in_madrid() -> None:
    # 2025-10-26 in Madrid: 02:00-03:00 comes twice (00:00 and 01:00 UTC). From 01:00 local
    # (23:00 UTC) for four hours of real time: 20 Wh in a minute, then 30 Wh out, each half hour.
    start = ts(2025, 10, 25, 23)
    minutes: list[Minute] = ([(20.0, 0.0)] * 30 + [(0.0, 30.0)] * 30) * 2
    minutes += [(10.0, 0.0)] * 60 + [(0.0, 5.0)] * 60
    periods = recorded(RecordPeriods(PeriodClock(60, MADRID), None, start), start, minutes)
    # Four periods: 01:00, 02:00 (summer), 02:00 (winter), 03:00; each an hour of real time.
    assert periods.nets == {
        start: -300.0,
        start + HOUR: -300.0,
        start + 2 * HOUR: 600.0,
        start + 3 * HOUR: -300.0,
    }
    # Each booked in the hour its period ends: 01:00's net in the UTC hour from midnight.
    assert periods.booked == {
        start + HOUR: [0.0, 300.0],
        start + 2 * HOUR: [0.0, 300.0],
        start + 3 * HOUR: [600.0, 0.0],
        start + 4 * HOUR: [0.0, 300.0],
    }
    assert periods.imports == {}  # no demand periods wanted


def test_only_whole_periods_are_told() -> None:
    # The records begin at 10:10: the quarter from 10:00 is partial (its booking is what the
    # records know of it; its net is not told), and the last quarter is still running.
    start = ts(2025, 6, 1, 10, 10)
    periods = recorded(
        RecordPeriods(PeriodClock(15, UTC), PeriodClock(15, UTC), start),
        start,
        [(4.0, 1.0)] * 30,
    )
    assert periods.nets == {start + 5 * MINUTE: 45.0}
    assert periods.imports == {start + 5 * MINUTE: 60.0}
    assert periods.booked == {ts(2025, 6, 1, 10): [60.0, 0.0]}  # 15 + 45 Wh by 10:30


def test_an_outage_straddling_periods_is_settled_as_the_records_tell() -> None:
    """Home Assistant down from 10:20 to 12:10: the live settlement guesses, the records tell."""
    clock = PeriodClock(60, UTC)
    start = ts(2025, 6, 1, 10)
    # 10:00-10:30 imports 20 Wh a minute, 10:30-11:00 exports 30; 11:00-12:00 imports 10 and
    # exports 4; 12:00-13:00 exports 25.
    minutes: list[Minute] = [(20.0, 0.0)] * 30 + [(0.0, 30.0)] * 30 + [(10.0, 4.0)] * 60
    minutes += [(0.0, 25.0)] * 60
    live = GridSettlement(clock)
    for index in (*range(20), 130, *range(131, 180)):
        length = 110 if index == 130 else 1
        begins = start + (20 if index == 130 else index) * MINUTE
        chunk = minutes[(begins - start) // MINUTE :][:length]
        live.add(begins, begins + length * MINUTE, *map(sum, zip(*chunk, strict=True)))
    assert sorted(live.provisional) == [start, start + HOUR, start + 2 * HOUR]
    periods = recorded(RecordPeriods(clock, None, start), start, minutes)
    assert periods.nets == {start: -300.0, start + HOUR: 360.0, start + 2 * HOUR: -1500.0}
    live.rebuild(periods.nets, start + 3 * HOUR)
    assert live.booked == pytest.approx((360.0, 1800.0))
    assert (live.imported, live.exported) == pytest.approx((360.0, 1800.0))


def test_a_settled_sensor_books_each_period_at_its_end() -> None:
    # Quarters from 10:00: 2 Wh in and 1 out a minute, then 3 out a minute from 10:30.
    start = ts(2025, 6, 1, 10)
    periods = recorded(
        RecordPeriods(PeriodClock(15, UTC), None, start),
        start,
        [(2.0, 1.0)] * 30 + [(0.0, 3.0)] * 30,
    )
    assert periods.nets == {
        start: 15.0,
        start + 15 * MINUTE: 15.0,
        start + 30 * MINUTE: -45.0,
        start + 45 * MINUTE: -45.0,
    }
    # Rows stopping at 10:40: what the quarters ending at 10:15 and 10:30 booked.
    assert periods.booked_between(start, start + 40 * MINUTE) == (30.0, 0.0)
    # The quarter ending at 10:45 is booked at the first update from then, not before.
    assert periods.booked_between(start, start + 45 * MINUTE) == (30.0, 0.0)
    assert periods.booked_between(start, start + HOUR) == (30.0, 45.0)
    assert periods.booked_between(start + 20 * MINUTE, start + HOUR + 1) == (15.0, 90.0)
    with pytest.raises(ValueError, match="no settlement periods"):
        RecordPeriods(None, PeriodClock(15, UTC), start).booked_between(start, start + HOUR)


def test_a_gap_across_the_month_change_gives_aprils_first_peak() -> None:
    # Brussels: Home Assistant down from 31 March 23:30 to 1 April 00:30, quarters, highest.
    tracker = CapacityTracker(PeriodClock(15, BRUSSELS), BillingCycle())
    before = ts(2025, 3, 31, 23, 30, BRUSSELS)
    april = ts(2025, 4, 1, 0, 0, BRUSSELS)
    # The gap as the live site saw it: 3 kWh in an hour, spread as 3 kW over four quarters.
    tracker.add(before, before + HOUR, 3000.0)
    assert tracker.peak(april) == pytest.approx(3.0)
    # The records: 25 Wh a minute to midnight, then 100 Wh a minute for a quarter (6 kW), then
    # 10 Wh a minute.
    minutes: list[Minute] = [(25.0, 0.0)] * 30 + [(100.0, 0.0)] * 15 + [(10.0, 0.0)] * 15
    periods = recorded(RecordPeriods(None, PeriodClock(15, BRUSSELS), before), before, minutes)
    assert periods.imports == {
        before: 375.0,
        before + 15 * MINUTE: 375.0,
        april: 1500.0,
        april + 15 * MINUTE: 150.0,
    }
    tracker.rebuild(periods.imports)
    assert tracker.peak(april) == pytest.approx(6.0)  # April's quarters only: 6.0 and 0.6 kW
    assert tracker.pending == set()


def test_a_settled_site_books_its_grid_hours_by_period() -> None:
    mains = MeterIntervals(("a", "b"), 60, ts(2025, 6, 1, 10))
    # Phase a imports 30 Wh a minute for 50 minutes, phase b exports 20 Wh a minute all along.
    for index in range(120):
        mains.add(
            ts(2025, 6, 1, 10) + index * MINUTE, (30.0 if index < 50 else 0.0, 0.0), (0.0, 20.0)
        )
    roles = {ChannelRef("M", "a"): Role.GRID, ChannelRef("M", "b"): Role.GRID}
    hours = SiteHours(SiteConfig(roles, GridMetering.PER_PHASE, Settlement.HOUR), {"M": mains})
    for _ in hours.steps():
        pass
    result = hours.complete_hours()
    # 10:00 nets 1500 - 1200 = +300 Wh, booked at 11:00; 11:00-12:00 is not complete.
    assert result["grid_import_energy"] == {ts(2025, 6, 1, 10): 0.0, ts(2025, 6, 1, 11): 0.3}
    assert result["grid_export_energy"] == {ts(2025, 6, 1, 10): 0.0, ts(2025, 6, 1, 11): 0.0}
    assert hours.periods.nets == {ts(2025, 6, 1, 10): 300.0, ts(2025, 6, 1, 11): -1200.0}


def test_statistics_of_a_gap_that_the_records_raise() -> None:
    """Estimates of 100 and 0 Wh booked at 12:40; the records say 300 and 200 Wh."""
    clock = PeriodClock(60, UTC)
    start = ts(2025, 6, 1, 10)
    settlement = GridSettlement(clock)
    settlement.add(start, start + 2 * HOUR + 40 * MINUTE, 100.0 * 8 / 3, 0.0)
    rebuilt = settlement.rebuild({start: 300.0, start + HOUR: 200.0}, start + 3 * HOUR)
    # 12:00's share of the gap (66.7 Wh) is still running: 10:00 and 11:00 booked 100 each.
    assert [period.was for period in rebuilt] == pytest.approx([100.0, 100.0])
    moves = settlement_moves(rebuilt, 0, 300.0, start + 3 * HOUR + 32 * MINUTE)
    # 10:00's net to the hour from 11:00, 11:00's to the hour from 12:00, where the estimates
    # were booked: they leave the 5-minute row from 12:40, where they rose. The 300 Wh more
    # is published at 13:32, taken back from the 5-minute row from 13:30 once compiled.
    assert moves.now == pytest.approx(
        {start + HOUR: 0.3, start + 2 * HOUR: 0.2, start + 2 * HOUR + 40 * MINUTE: -0.2}
    )
    assert moves.later == (start + 3 * HOUR + 30 * MINUTE, -0.3)
    # Export: nothing booked, nothing to move.
    assert settlement_moves(rebuilt, 1, 0.0, start + 3 * HOUR).now == {
        start + HOUR: 0.0,
        start + 2 * HOUR: 0.0,
        start + 2 * HOUR + 40 * MINUTE: 0.0,
    }


def test_statistics_keep_a_surplus_where_it_was_booked() -> None:
    """Estimates of 300 Wh each; the records say 100 and 50: the published 600 Wh stays."""
    clock = PeriodClock(60, UTC)
    start = ts(2025, 6, 1, 10)
    settlement = GridSettlement(clock)
    settlement.add(start, start + 2 * HOUR, 600.0, 0.0)
    rebuilt = settlement.rebuild({start: 100.0, start + HOUR: 50.0}, start + 3 * HOUR)
    moves = settlement_moves(rebuilt, 0, 0.0, start + 3 * HOUR)
    # The hour from 11:00 holds 10:00's net; the hour from 12:00, where 600 Wh were booked,
    # holds 11:00's and the 450 Wh surplus that later bookings make up.
    assert moves.now == pytest.approx({start + HOUR: 0.1, start + 2 * HOUR: -0.1})
    assert moves.later is None
    assert settlement_moves([], 0, 0.0, start).now == {}


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30)).map(lambda p: (float(p[0]), float(p[1]))),
        min_size=200,
        max_size=360,
    ),
    st.lists(st.tuples(st.integers(0, 300), st.integers(3, 180)), min_size=1, max_size=3),
    st.sampled_from([15, 30, 60]),
    st.integers(0, 3599),
)
def test_rebuilt_statistics_follow_the_records_and_the_sensor(
    minutes: list[Minute], gaps: list[tuple[int, int]], length: int, rebuilt_second: int
) -> None:
    """Live statistics, a rebuild and its moves: the bars of the records, never negative.

    The live site reads every minute but for its gaps (one to three); the recorder's bar of a
    5-minute row is what the published total rose in it, an hour's bar the sum of its rows'.
    After the moves (and the published rise counted in the row of the rebuild), the statistics'
    total is the sensor's, no 5-minute row (so no hour) is negative, and every hour holds what
    the settlement of the records books in it, but for a surplus the sensor keeps until later
    bookings make it up (held in the hour it was booked in).
    """
    clock = PeriodClock(length, UTC)
    start = ts(2025, 6, 1, 10)
    gap_ends = {at: min(at + gap_length, len(minutes)) for at, gap_length in gaps}
    live = GridSettlement(clock)
    rows: dict[int, float] = {}  # 5-minute bars, by row start
    index = 0
    while index < len(minutes):
        stop = gap_ends.get(index, index + 1)
        chunk = minutes[index:stop]
        before = live.imported
        ends = start + stop * MINUTE
        live.add(start + index * MINUTE, ends, sum(c[0] for c in chunk), sum(c[1] for c in chunk))
        row = five_minutes_of(ends)
        rows[row] = rows.get(row, 0.0) + (live.imported - before) / 1000
        index = stop
    periods = recorded(RecordPeriods(clock, None, start), start, minutes)
    before = live.imported
    rebuilt_at = start + (len(minutes) // 60 + 2) * HOUR + rebuilt_second
    rebuilt = live.rebuild(periods.nets, rebuilt_at)
    raised = live.imported - before
    rows[five_minutes_of(rebuilt_at)] = rows.get(five_minutes_of(rebuilt_at), 0.0) + raised / 1000
    moves = settlement_moves(rebuilt, 0, raised, rebuilt_at)
    for moment, kwh in moves.now.items():
        assert moment % 300 == 0  # a 5-minute row's start
        rows[moment] = rows.get(moment, 0.0) + kwh
    if moves.later is not None:
        rows[moves.later[0]] += moves.later[1]
    assert sum(rows.values()) == pytest.approx(live.imported / 1000, abs=1e-9)
    assert min(rows.values()) >= -1e-9
    bars: dict[int, float] = {}
    for moment, kwh in rows.items():
        bars[hour_of(moment)] = bars.get(hour_of(moment), 0.0) + kwh
    surplus = (live.imported - live.booked[0]) / 1000
    booked = {hour: pair[0] / 1000 for hour, pair in periods.booked.items()}
    differences = {
        hour: bars.get(hour, 0.0) - booked.get(hour, 0.0)
        for hour in {*bars, *booked}
        if round(bars.get(hour, 0.0) - booked.get(hour, 0.0), 9)
    }
    # The running period at the end is not booked yet by either.
    last = differences.pop(hour_of(start + len(minutes) * MINUTE), None)
    if surplus <= 1e-9:
        assert differences == {}
    else:
        # Held in one hour (or in the last, running one: its difference is not compared).
        assert len(differences) <= 1
        assert sum(differences.values(), last or 0.0) == pytest.approx(surplus, abs=1e-9)
