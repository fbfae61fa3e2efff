"""Tests for settlement periods: the local clock's periods and the net of each period.

The sequences are 1-minute records of what the grid channels counted in and out (Wh), as a
meter stores them; the expected nets are worked out by hand next to each.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.periods import (
    GAP_S,
    Period,
    PeriodClock,
    PeriodSums,
)
from custom_components.shelly_energy.energy.settlement import (
    GridSettlement,
    Provisional,
    Settlement,
    changed_by,
    settled,
)

MADRID = ZoneInfo("Europe/Madrid")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")
MINUTE = 60
HOUR = 3600


def ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: tzinfo = UTC
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def local(moment: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(moment, zone).strftime("%H:%M%z")


Minute = tuple[float, float]  # Wh in, Wh out


def feed(
    settlement: GridSettlement, start: float, minutes: list[Minute], every: int = 1
) -> list[Period]:
    """Feed a 1-minute sequence as updates `every` minutes apart; return the closed periods."""
    closed: list[Period] = []
    for index in range(0, len(minutes), every):
        chunk = minutes[index : index + every]
        begins = start + index * MINUTE
        closed += settlement.add(
            begins,
            begins + len(chunk) * MINUTE,
            sum(energy_in for energy_in, _ in chunk),
            sum(energy_out for _, energy_out in chunk),
        )
    return closed


def exact_nets(clock: PeriodClock, start: float, minutes: list[Minute]) -> dict[float, float]:
    """Each period's net, minute by minute (the minutes never straddle a period here)."""
    nets: dict[float, float] = {}
    for index, (energy_in, energy_out) in enumerate(minutes):
        period = clock.bounds(start + index * MINUTE)[0]
        nets[period] = nets.get(period, 0.0) + energy_in - energy_out
    return nets


# --- the clock -------------------------------------------------------------------------------


def test_periods_follow_the_local_clock() -> None:
    clock = PeriodClock(15, MADRID)
    # 10:52 in Madrid (summer, +02:00) is in the quarter from 10:45 to 11:00.
    start, end = clock.bounds(ts(2025, 6, 1, 10, 52, MADRID))
    assert (local(start, MADRID), local(end, MADRID)) == ("10:45+0200", "11:00+0200")
    assert end - start == 900
    # India is 5:30 ahead of UTC: its hours start at half past in UTC.
    hour = PeriodClock(60, KOLKATA).bounds(ts(2025, 6, 1, 4, 40))
    assert hour == (ts(2025, 6, 1, 4, 30), ts(2025, 6, 1, 5, 30))
    assert PeriodClock(60, UTC).day(ts(2025, 6, 1, 23, 59)) == datetime(2025, 6, 1).date()


def test_the_repeated_hour_of_autumn_is_two_periods() -> None:
    clock = PeriodClock(60, MADRID)
    # 2025-10-26: at 03:00 CEST (01:00 UTC) the clocks go back to 02:00 CET.
    first = clock.bounds(ts(2025, 10, 26, 0, 30))
    second = clock.bounds(ts(2025, 10, 26, 1, 30))
    assert first == (ts(2025, 10, 26, 0), ts(2025, 10, 26, 1))
    assert second == (ts(2025, 10, 26, 1), ts(2025, 10, 26, 2))
    # The first ends when the clock reads 02:00 again.
    assert [local(moment, MADRID) for moment in (*first, *second)] == [
        "02:00+0200",
        "02:00+0100",
        "02:00+0100",
        "03:00+0100",
    ]


def test_a_half_hour_daylight_saving_change_cuts_the_period() -> None:
    clock = PeriodClock(60, LORD_HOWE)
    # 2025-10-05: at 02:00 (+10:30, 15:30 UTC) Lord Howe Island moves to 02:30 (+11:00).
    before = clock.bounds(ts(2025, 10, 4, 15, 10))
    after = clock.bounds(ts(2025, 10, 4, 15, 40))
    assert before == (ts(2025, 10, 4, 14, 30), ts(2025, 10, 4, 15, 30))  # 01:00 to the change
    assert after == (ts(2025, 10, 4, 15, 30), ts(2025, 10, 4, 16, 0))  # 02:30 to 03:00: 30 min
    # 2026-04-05: at 02:00 (+11:00, 15:00 UTC) it moves back to 01:30 (+10:30).
    assert clock.bounds(ts(2026, 4, 4, 14, 50)) == (ts(2026, 4, 4, 14), ts(2026, 4, 4, 15))
    assert clock.bounds(ts(2026, 4, 4, 15, 10)) == (ts(2026, 4, 4, 15), ts(2026, 4, 4, 15, 30))
    assert clock.bounds(ts(2026, 4, 4, 15, 40)) == (ts(2026, 4, 4, 15, 30), ts(2026, 4, 4, 16, 30))


@pytest.mark.parametrize("minutes", [0, 7, -15, 2000])
def test_a_period_must_divide_a_day(minutes: int) -> None:
    with pytest.raises(ValueError, match="divide a day"):
        PeriodClock(minutes, UTC)


def test_an_interval_is_spread_over_the_periods_it_covers() -> None:
    sums = PeriodSums(PeriodClock(15, UTC))
    start = ts(2025, 6, 1, 10, 10)
    # 10:10 to 10:40 with 300 Wh: 100 Wh a quarter of an hour (10:10-10:15 gets a third of it).
    closed = sums.add(start, start + 30 * MINUTE, 300.0)
    assert [(p.start, p.provisional) for p in closed] == [
        (ts(2025, 6, 1, 10, 0), True),
        (ts(2025, 6, 1, 10, 15), True),
    ]
    assert [p.amount for p in closed] == pytest.approx([50.0, 150.0])
    running = sums.running
    assert running is not None
    assert running.start == ts(2025, 6, 1, 10, 30)
    assert running.amount == pytest.approx(100.0)
    # No time passing (or a clock that went back) leaves its energy in the running period.
    assert sums.add(start + 30 * MINUTE, start + 30 * MINUTE, 7.0) == []
    assert sums.add(start, start - 5, 3.0) == []
    assert running.amount == pytest.approx(110.0)
    assert sums.close_running() is running
    assert sums.close_running() is None
    assert sums.add(start, start, 1.0) == [] and sums.running is not None


def test_short_intervals_across_an_end_are_not_gaps() -> None:
    sums = PeriodSums(PeriodClock(60, UTC))
    # Updates every 90 s, one of them across 11:00: its energy is shared, the hour is settled.
    closed = sums.add(ts(2025, 6, 1, 10, 59), ts(2025, 6, 1, 11) + 30, 90.0)
    assert GAP_S > 90
    assert [(round(p.amount, 9), p.provisional) for p in closed] == [(60.0, False)]
    # An update exactly at the end closes the period with it.
    sums.restore([ts(2025, 6, 1, 11), ts(2025, 6, 1, 12), 5.0, False])
    assert sums.add(ts(2025, 6, 1, 11, 59), ts(2025, 6, 1, 12), 1.0)[0].amount == 6.0
    assert sums.running is None and sums.to_list() is None
    # An interval that starts after the running period ended closes it first, losing nothing.
    sums.restore([ts(2025, 6, 1, 12), ts(2025, 6, 1, 13), 4.0, False])
    closed = sums.add(ts(2025, 6, 1, 13, 10), ts(2025, 6, 1, 13, 11), 2.0)
    assert [(p.start, p.amount) for p in closed] == [(ts(2025, 6, 1, 12), 4.0)]
    assert sums.to_list() == [ts(2025, 6, 1, 13), ts(2025, 6, 1, 14), 2.0, False]


# --- settlement --------------------------------------------------------------------------------


def test_instantaneous_settlement_counts_what_the_metering_counted() -> None:
    settlement = GridSettlement(None, 1000.0, 500.0)
    assert settlement.add(0.0, 60.0, 30.0, 20.0) == []
    assert (settlement.imported, settlement.exported) == (1030.0, 520.0)
    assert settlement.running is None and settlement.seconds_left(60.0) is None
    assert settlement.close_running() is None
    assert Settlement.INSTANT.minutes is None and Settlement.MINUTES_15.minutes == 15


def two_hours() -> list[Minute]:
    """10:00-12:00: an hour of cooking then solar, and an hour with the heat pump on."""
    # 10:00-10:30 import 20 Wh a minute (600 Wh), 10:30-11:00 export 30 Wh a minute (900 Wh):
    # the hour nets 300 Wh of export. 11:00-12:00: 10 Wh in and 4 Wh out a minute on two
    # phases: 600 Wh in, 240 Wh out, a net import of 360 Wh.
    return [(20.0, 0.0)] * 30 + [(0.0, 30.0)] * 30 + [(10.0, 4.0)] * 60


def test_an_hourly_settlement_books_each_hours_net() -> None:
    clock = PeriodClock(60, UTC)
    settlement = GridSettlement(clock, 1000.0, 2000.0)
    start = ts(2025, 6, 1, 10)
    closed = feed(settlement, start, two_hours())
    assert [p.start for p in closed] == [start, start + HOUR]
    assert [p.amount for p in closed] == pytest.approx([-300.0, 360.0])
    # Import 360 Wh, export 300 Wh, where the metering counted 1200 Wh and 1140 Wh.
    assert settlement.imported == pytest.approx(1360.0)
    assert settlement.exported == pytest.approx(2300.0)
    assert settlement.running is None
    assert settlement.provisional == {}


def test_the_readmes_quarter_hour_example() -> None:
    """README, "Settlement periods": one phase, 5-minute steps, an hour of quarters (Wh)."""
    steps = [3000, -1500, -1500, -2000, -2000, -2000, 1000, 1000, 1000, 0, 0, 600]  # W
    minutes: list[Minute] = [
        (max(watts, 0) / 60, max(-watts, 0) / 60) for watts in steps for _ in range(5)
    ]
    start = ts(2025, 6, 1, 10)
    quarters = GridSettlement(PeriodClock(15, UTC))
    closed = feed(quarters, start, minutes, every=5)
    assert [p.amount for p in closed] == pytest.approx([0.0, -500.0, 250.0, 50.0])
    assert (quarters.imported, quarters.exported) == pytest.approx((300.0, 500.0))
    hours = GridSettlement(PeriodClock(60, UTC))
    feed(hours, start, minutes, every=5)
    assert (hours.imported, hours.exported) == pytest.approx((0.0, 200.0))
    # Per phase, the metering counted 550 Wh in and 750 Wh out.
    assert sum(m[0] for m in minutes) == pytest.approx(550.0)
    assert sum(m[1] for m in minutes) == pytest.approx(750.0)


def test_the_running_periods_net_and_time_left() -> None:
    settlement = GridSettlement(PeriodClock(15, UTC))
    start = ts(2025, 6, 1, 10)
    feed(settlement, start, [(20.0, 0.0)] * 5 + [(0.0, 8.0)] * 5)  # 100 in, 40 out: +60 Wh
    running = settlement.running
    assert running is not None and running.amount == pytest.approx(60.0)
    assert settlement.seconds_left(start + 10 * MINUTE) == 300.0
    assert settlement.seconds_left(start + 20 * MINUTE) == 0.0
    assert (settlement.imported, settlement.exported) == (0.0, 0.0)  # nothing booked yet


def test_an_outage_is_settled_again_from_the_records() -> None:
    clock = PeriodClock(60, UTC)
    minutes = two_hours() + [(0.0, 25.0)] * 60  # 12:00-13:00 exports 1500 Wh
    start = ts(2025, 6, 1, 10)
    settlement = GridSettlement(clock)
    # Updates until 10:20, then nothing until 12:10 (Home Assistant was down), then again.
    feed(settlement, start, minutes[:20])
    down = minutes[20:130]
    settlement.add(
        start + 20 * MINUTE,
        start + 130 * MINUTE,
        sum(energy_in for energy_in, _ in down),
        sum(energy_out for _, energy_out in down),
    )
    feed(settlement, start + 130 * MINUTE, minutes[130:])
    # The gap held 200 Wh in and 900 out (10:20-11:00), 600 in and 240 out (11:00-12:00),
    # and 250 out (12:00-12:10): 800 in, 1390 out over 110 minutes, 5.3636 Wh a minute out.
    # Spread, 10:00 nets 400 - 40 x 5.3636 = 185.45 Wh and 11:00 nets -321.8 Wh: neither is
    # the truth (-300 and +360).
    assert sorted(settlement.provisional) == [start, start + HOUR, start + 2 * HOUR]
    assert settlement.provisional[start].net == pytest.approx(400 - 40 * 590 / 110)
    assert settlement.provisional[start].booked_at == start + 130 * MINUTE  # the gap's end
    assert settlement.needs_records_since() == start
    # Spread: 185.45 import (10:00); 11:00 exports 321.8 and 12:00 exports 1303.6 (its first
    # 10 minutes are the gap's, 53.6 Wh, then 1250 Wh).
    spread_out = 70 * 590 / 110 + 1250
    assert settlement.imported == pytest.approx(400 - 40 * 590 / 110)
    assert settlement.exported == pytest.approx(spread_out)
    # The records tell each hour's net: the totals become those of the hourly settlement. A
    # rebuild moves import and export by the same amount: the periods' nets add up the same.
    exact = exact_nets(clock, start, minutes)
    rebuilt = settlement.rebuild(exact, start + 4 * HOUR)
    # 10:00 and 11:00 were booked when the gap ended, 12:00 (the gap's last 10 minutes) at its end.
    assert [(p.start, p.end, p.booked_at) for p in rebuilt] == [
        (start, start + HOUR, start + 130 * MINUTE),
        (start + HOUR, start + 2 * HOUR, start + 130 * MINUTE),
        (start + 2 * HOUR, start + 3 * HOUR, start + 3 * HOUR),
    ]
    assert changed_by(rebuilt) == pytest.approx((360 - (400 - 40 * 590 / 110), 1800 - spread_out))
    assert settlement.imported == pytest.approx(360.0)
    assert settlement.exported == pytest.approx(300.0 + 1500.0)
    assert settlement.provisional == {}
    assert settlement.rebuild(exact, start + 4 * HOUR) == []  # nothing left to do


def test_a_rebuild_never_lowers_a_published_total() -> None:
    clock = PeriodClock(60, UTC)
    start = ts(2025, 6, 1, 10)
    settlement = GridSettlement(clock)
    # A gap of two hours that netted +200 Wh, spread as +100 Wh an hour.
    settlement.add(start, start + 2 * HOUR, 200.0, 0.0)
    assert settlement.imported == pytest.approx(200.0)
    # The records: the first hour imported 300 Wh, the second exported 100 Wh.
    rebuilt = settlement.rebuild({start: 300.0, start + HOUR: -100.0}, start + 2 * HOUR)
    assert changed_by(rebuilt) == pytest.approx((100.0, 100.0))
    assert (settlement.imported, settlement.exported) == pytest.approx((300.0, 100.0))
    # Another gap booked too high (spread +150, +150; the records say +100, +100): import stays
    # at what was published, and the next bookings make up the 100 Wh first.
    settlement.add(start + 2 * HOUR, start + 4 * HOUR, 300.0, 0.0)
    assert settlement.imported == pytest.approx(600.0)
    settlement.rebuild({start + 2 * HOUR: 100.0, start + 3 * HOUR: 100.0}, start + 4 * HOUR)
    assert settlement.imported == pytest.approx(600.0)
    settlement.add(start + 4 * HOUR, start + 5 * HOUR, 150.0, 0.0)
    assert settlement.imported == pytest.approx(650.0)  # 500 booked + 150


def test_old_provisional_periods_are_forgotten() -> None:
    settlement = GridSettlement(PeriodClock(60, UTC))
    settlement.add(0.0, 3 * HOUR, 30.0, 0.0)
    assert len(settlement.provisional) == 3
    settlement.rebuild({}, 62 * 86400 + 2 * HOUR)
    assert list(settlement.provisional) == [2 * HOUR]


def test_a_dst_day_is_settled_hour_by_hour() -> None:
    clock = PeriodClock(60, MADRID)
    # 2025-10-26, 01:00 to 04:00 local: four real hours, 02:00-03:00 twice. Each minute imports
    # the hour's index in Wh (0, 1, 2, 3) and exports 1.5 Wh: nets -90, -30, +30, +90 Wh.
    start = ts(2025, 10, 26, 1, 0, MADRID)
    minutes = [(float(index), 1.5) for index in range(4) for _ in range(60)]
    settlement = GridSettlement(clock)
    closed = feed(settlement, start, minutes, every=2)
    assert [local(p.start, MADRID) for p in closed] == [
        "01:00+0200",
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]
    assert [p.amount for p in closed] == pytest.approx([-90.0, -30.0, 30.0, 90.0])
    assert (settlement.imported, settlement.exported) == pytest.approx((120.0, 120.0))
    # The spring day has no 02:00: 01:00 CET is followed by 03:00 CEST, an hour later.
    spring = GridSettlement(clock)
    closed = feed(spring, ts(2025, 3, 30, 1, 0, MADRID), minutes[:120], every=5)
    assert [local(p.start, MADRID) for p in closed] == ["01:00+0100", "03:00+0200"]


def test_a_gap_across_a_month_change_in_quarters() -> None:
    clock = PeriodClock(15, MADRID)
    # 31 January 23:40 to 1 February 00:20, with an update at 23:50 and none until 00:10.
    start = ts(2025, 1, 31, 23, 40, MADRID)
    # Each minute until midnight imports 12 Wh; from midnight it exports 6 Wh.
    minutes = [(12.0, 0.0)] * 20 + [(0.0, 6.0)] * 20
    settlement = GridSettlement(clock)
    feed(settlement, start, minutes[:10], every=10)
    settlement.add(start + 10 * MINUTE, start + 30 * MINUTE, 120.0, 60.0)  # the gap
    feed(settlement, start + 30 * MINUTE, minutes[30:], every=1)
    # Spread: 23:30-23:45 gets 60 Wh (no gap before 23:50: 5 minutes of 12 Wh), 23:45-00:00
    # 60 + 10 x 3 = 90 Wh, 00:00-00:15 15 x 3 = 45 Wh (the gap's 00:00-00:10 at 3 Wh a minute,
    # then 5 minutes of exporting 6 Wh: 30 - 30 = 15 Wh). The truth: +60, +120 and -90 Wh.
    assert settlement.imported == pytest.approx(60 + 90 + 0.0)
    exact = exact_nets(clock, start, minutes)
    assert exact == {
        ts(2025, 1, 31, 23, 30, MADRID): 60.0,
        ts(2025, 1, 31, 23, 45, MADRID): 180.0,
        ts(2025, 2, 1, 0, 0, MADRID): -90.0,
        ts(2025, 2, 1, 0, 15, MADRID): -30.0,
    }
    settlement.rebuild(exact, start + HOUR)
    assert settlement.imported == pytest.approx(60.0 + 180.0)
    assert settlement.exported == pytest.approx(90.0)


def test_switching_the_settlement_keeps_the_totals() -> None:
    hourly = GridSettlement(PeriodClock(60, UTC), 100.0, 50.0)
    start = ts(2025, 6, 1, 10)
    feed(hourly, start, [(3.0, 1.0)] * 30)  # +60 Wh so far in the running hour
    stored = json.loads(json.dumps(hourly.to_dict()))
    # Back to instantaneous: the running hour is booked as it stands.
    instant = GridSettlement.from_dict(None, stored)
    assert (instant.imported, instant.exported) == (160.0, 50.0)
    assert instant.running is None
    # Quarters from the same state: the same; the quarters start with the next interval.
    quarters = GridSettlement.from_dict(PeriodClock(15, UTC), stored)
    assert (quarters.imported, quarters.exported) == (160.0, 50.0)
    feed(quarters, start + 30 * MINUTE, [(0.0, 1.0)] * 15)
    assert quarters.exported == 65.0
    # The same settlement continues the running hour.
    same = GridSettlement.from_dict(PeriodClock(60, UTC), stored)
    running = same.running
    assert running is not None and running.amount == pytest.approx(60.0)
    assert (same.imported, same.exported) == (100.0, 50.0)


def test_floors_after_a_restart() -> None:
    settlement = GridSettlement(PeriodClock(60, UTC), 100.0, 50.0)
    # Home Assistant recorded 130 Wh of import before a crash that the store missed.
    settlement.hold_at_least(130.0, None)
    assert (settlement.imported, settlement.exported) == (130.0, 50.0)
    start = ts(2025, 6, 1, 10)
    feed(settlement, start, [(1.0, 0.0)] * 60)  # the hour is counted again: 160 booked
    assert settlement.imported == 160.0


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2},
        {"version": 1, "booked": [1.0, 2.0]},
        {"version": 1, "booked": [1.0], "published": [1.0, 2.0], "length": None},
        {
            "version": 1,
            "booked": [1, 2],
            "published": [1, 2],
            "length": 900,
            "running": None,
            "provisional": [[1, "x"]],
        },
    ],
)
def test_unreadable_settlements_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GridSettlement.from_dict(None, data)


@pytest.mark.parametrize(
    ("length", "zone", "start"),
    [
        (15, UTC, ts(2025, 6, 1, 10)),
        # Madrid's autumn change (the repeated hour at 01:00 UTC) in hours.
        (60, MADRID, ts(2025, 10, 25, 23)),
        # Lord Howe moves by 30 minutes at 15:30 UTC: the hour holding it is cut.
        (60, LORD_HOWE, ts(2025, 10, 4, 13)),
        # January becomes February at 23:00 UTC in Madrid, in half hours.
        (30, MADRID, ts(2025, 1, 31, 21)),
    ],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40)).map(lambda p: (float(p[0]), float(p[1]))),
        min_size=1,
        max_size=300,
    ),
    st.lists(st.integers(1, 30), min_size=1, max_size=300),
)
def test_rebuilt_settlement_equals_the_settlement_of_the_records(
    length: int, zone: tzinfo, start: float, minutes: list[Minute], steps: list[int]
) -> None:
    """Whatever the updates, once the records told the gaps every period's net is the truth.

    Updates come every few minutes; one that reaches across a period's end is either short (its
    minutes are split by time: here every update that is short ends on a period's end) or a gap.
    """
    clock = PeriodClock(length, zone)
    settlement = GridSettlement(clock)
    index = 0
    published = (0.0, 0.0)
    for step in steps * (len(minutes) // len(steps) + 1):
        if index >= len(minutes):
            break
        chunk = minutes[index : index + step]
        begins = start + index * MINUTE
        ends = begins + len(chunk) * MINUTE
        if len(chunk) * MINUTE <= GAP_S and clock.bounds(begins)[1] < ends:
            chunk = chunk[: int((clock.bounds(begins)[1] - begins) // MINUTE)]
            ends = begins + len(chunk) * MINUTE
        settlement.add(begins, ends, sum(c[0] for c in chunk), sum(c[1] for c in chunk))
        assert settlement.imported >= published[0] and settlement.exported >= published[1]
        published = (settlement.imported, settlement.exported)
        index += len(chunk)
        # A period's net is what it books as import less export: the booked totals and the
        # running period hold everything fed so far.
        running = settlement.running
        net = sum(c[0] - c[1] for c in minutes[:index])
        booked_in, booked_out = settlement.booked
        assert booked_in - booked_out + (running.amount if running else 0.0) == pytest.approx(net)
    settlement.close_running()
    before = (settlement.imported, settlement.exported)
    exact = exact_nets(clock, start, minutes)
    settlement.rebuild(exact, start)
    assert settlement.provisional == {}
    # What the periods booked is now exactly the settlement of the records; what is published
    # never fell: it stays above where the spread gaps booked more than the records tell.
    booked = settlement.booked
    assert booked[0] == pytest.approx(sum(settled(net)[0] for net in exact.values()))
    assert booked[1] == pytest.approx(sum(settled(net)[1] for net in exact.values()))
    assert settlement.imported == pytest.approx(max(before[0], booked[0]))
    assert settlement.exported == pytest.approx(max(before[1], booked[1]))


def test_provisional_periods_stored_without_their_booking() -> None:
    stored = {
        "version": 1,
        "length": 3600,
        "booked": [10.0, 0.0],
        "published": [10.0, 0.0],
        "running": None,
        "provisional": [[7200.0, 10.0]],
    }
    settlement = GridSettlement.from_dict(PeriodClock(60, UTC), stored)
    assert settlement.provisional == {7200.0: Provisional(10.0, 10800.0)}
    assert GridSettlement.from_dict(PeriodClock(60, UTC), settlement.to_dict()).provisional == {
        7200.0: Provisional(10.0, 10800.0)
    }
