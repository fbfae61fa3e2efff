"""Hourly energy from stored records, and the plan that fills statistics with it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.counter import Unaccounted
from custom_components.shelly_energy.energy.history_plan import (
    HOUR,
    JUMP_KWH,
    ZERO_KWH,
    FillPlan,
    MeterHours,
    MeterIntervals,
    SiteHours,
    StatRow,
    hour_pieces,
    load_energy_between,
    meter_series,
    missing_rows,
    never_negative,
    outage_hours,
    per_hour,
    plan_day_one,
    plan_fill,
    records_needed_since,
    rows_left_behind,
    sharing,
    site_energy_between,
    site_fault_corrections,
    site_series,
    site_span_corrections,
    span_corrections,
    taken_from_bars,
    with_corrections,
    within_five_minutes,
    within_hours,
    without_negative_bar,
)
from custom_components.shelly_energy.energy.site import (
    ChannelRef,
    GridMetering,
    Role,
    ShortCount,
    SiteConfig,
)
from custom_components.shelly_energy.meter.records import EnergyRecord

T0 = 1_748_736_000  # 2025-06-01 00:00 UTC


def record(
    ts: int, energy_in: Sequence[float], energy_out: Sequence[float], period: int = 60
) -> EnergyRecord:
    return EnergyRecord(ts, period, tuple(energy_in), tuple(energy_out))


def minutes(
    start: int, count: int, energy_in: Sequence[float], energy_out: Sequence[float]
) -> list[EnergyRecord]:
    return [record(start + 60 * i, energy_in, energy_out) for i in range(count)]


def test_series_keys() -> None:
    assert meter_series(("1", "2"), three_phase=False) == (
        "1_energy_imported",
        "1_energy_exported",
        "2_energy_imported",
        "2_energy_exported",
    )
    assert meter_series(("a", "b", "c"), three_phase=True)[-2:] == (
        "total_energy_imported",
        "total_energy_exported",
    )
    assert site_series() == (
        "grid_import_energy",
        "grid_export_energy",
        "solar_energy",
        "battery_charged_energy",
        "battery_discharged_energy",
        "home_energy",
        "self_consumed_energy",
    )


def test_hours_of_a_three_phase_meter_with_a_reversed_phase() -> None:
    hours = MeterHours(("a", "b", "c"), three_phase=True, reversed_channels=frozenset({"b"}))
    # Two whole hours of 1-minute records and half of a third (not complete).
    hours.add(minutes(T0, 60, (10.0, 1.0, 0.0), (0.0, 5.0, 2.0)))
    hours.add(minutes(T0 + HOUR, 60, (20.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    hours.add(minutes(T0 + 2 * HOUR, 30, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    complete = hours.complete_hours()
    assert complete["a_energy_imported"] == {T0: pytest.approx(0.6), T0 + HOUR: pytest.approx(1.2)}
    # Phase b's CT is reversed: what it counted out was imported.
    assert complete["b_energy_imported"][T0] == pytest.approx(0.3)
    assert complete["b_energy_exported"][T0] == pytest.approx(0.06)
    assert complete["total_energy_imported"][T0] == pytest.approx(0.6 + 0.3)
    assert complete["total_energy_exported"][T0] == pytest.approx(0.06 + 0.12)
    assert hours.records == 150
    assert hours.end == T0 + 2 * HOUR + 30 * 60
    assert hours.intervals is None


def test_bogus_and_repeated_records_are_dropped() -> None:
    hours = MeterHours(("1",), three_phase=False)
    hours.add([record(1000, (500.0,), (0.0,)), record(1060, (500.0,), (0.0,))])
    hours.add(minutes(T0, 60, (1.0,), (0.0,)))
    hours.add([record(T0 + 30 * 60, (999.0,), (0.0,))])  # stamped before the last one
    assert hours.records == 60
    assert hours.first_hour == T0
    assert hours.complete_hours()["1_energy_imported"] == {T0: pytest.approx(0.06)}


def test_a_missing_hour_counts_nothing_and_an_empty_meter_has_no_hours() -> None:
    assert MeterHours(("1",), three_phase=False).complete_hours() == {
        "1_energy_imported": {},
        "1_energy_exported": {},
    }
    hours = MeterHours(("1",), three_phase=False)
    hours.add(minutes(T0, 60, (1.0,), (0.0,)))
    hours.add(minutes(T0 + 2 * HOUR, 60, (2.0,), (0.0,)))  # the meter was off in between
    assert hours.complete_hours()["1_energy_imported"] == {
        T0: pytest.approx(0.06),
        T0 + HOUR: 0.0,
        T0 + 2 * HOUR: pytest.approx(0.12),
    }


def test_hours_resume_from_saved_data() -> None:
    whole = MeterHours(("1",), three_phase=False)
    whole.add(minutes(T0, 120, (1.0,), (0.5,)))
    first = MeterHours(("1",), three_phase=False)
    first.add(minutes(T0, 70, (1.0,), (0.5,)))
    resumed = MeterHours(("1",), three_phase=False)
    resumed.restore(first.to_dict())
    resumed.add(minutes(T0, 120, (1.0,), (0.5,)))  # the first 70 again are dropped
    assert resumed.complete_hours() == whole.complete_hours()
    assert resumed.records == 120
    with pytest.raises(ValueError, match="other series"):
        MeterHours(("a", "b", "c"), three_phase=True).restore(first.to_dict())


def test_intervals_are_kept_for_sites() -> None:
    hours = MeterHours(("1", "2"), three_phase=False, keep_intervals=True)
    hours.add([record(T0 + 5, (1.0, 2.0), (0.0, 3.0)), record(T0 + 180, (4.0, 0.0), (0.0, 0.0))])
    intervals = hours.intervals
    assert intervals is not None
    assert (intervals.start, intervals.period, intervals.end) == (T0, 60, T0 + 240)
    assert list(intervals.energy_in[0]) == [1.0, 0.0, 0.0, 4.0]
    assert intervals.counted(1, T0, T0 + 240) == (2.0, 3.0)
    assert intervals.counted(0, T0 + 60, T0 + 240) == (4.0, 0.0)
    assert intervals.counted(0, T0 + 300, T0 + 600) == (0.0, 0.0)
    assert intervals.counted(0, T0 - 600, T0 + 30) == (1.0, 0.0)


def intervals(
    channel_ids: Sequence[str],
    period: int,
    start: int,
    values: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> MeterIntervals:
    result = MeterIntervals(channel_ids, period, start)
    for index, (energy_in, energy_out) in enumerate(values):
        result.add(start + index * period, energy_in, energy_out)
    return result


def site(roles: Mapping[ChannelRef, Role], metering: GridMetering) -> SiteConfig:
    return SiteConfig(roles=roles, grid_metering=metering)


def run(hours: SiteHours, chunk: int = 7) -> dict[str, dict[int, float]]:
    for _ in hours.steps(chunk):
        pass
    return hours.complete_hours()


def test_site_hours_per_interval_balanced_and_per_phase() -> None:
    a, b = ChannelRef("M", "a"), ChannelRef("M", "b")
    # Every minute phase a imports 10 Wh while phase b exports 4 Wh, for one hour.
    meter = intervals(("a", "b"), 60, T0, [((10.0, 0.0), (0.0, 4.0))] * 60)
    balanced = run(
        SiteHours(site({a: Role.GRID, b: Role.GRID}, GridMetering.BALANCED), {"M": meter})
    )
    assert balanced["grid_import_energy"] == {T0: pytest.approx(0.36)}
    assert balanced["grid_export_energy"] == {T0: 0.0}
    assert balanced["home_energy"] == {T0: pytest.approx(0.36)}
    per_phase = run(
        SiteHours(site({a: Role.GRID, b: Role.GRID}, GridMetering.PER_PHASE), {"M": meter})
    )
    assert per_phase["grid_import_energy"] == {T0: pytest.approx(0.6)}
    assert per_phase["grid_export_energy"] == {T0: pytest.approx(0.24)}
    assert per_phase["home_energy"] == {T0: pytest.approx(0.36)}


def test_site_hours_across_meters_of_different_periods() -> None:
    grid, solar, battery, load = (
        ChannelRef("PRO", "a"),
        ChannelRef("EM", "1"),
        ChannelRef("EM", "2"),
        ChannelRef("PRO", "b"),
    )
    config = site(
        {grid: Role.GRID, solar: Role.SOLAR, battery: Role.BATTERY, load: Role.LOAD},
        GridMetering.PER_PHASE,
    )
    # The Pro 3EM's 1-minute records from 00:00 to 02:05, the EM's 10-minute ones from 00:30.
    pro = intervals(("a", "b"), 60, T0, [((5.0, 9.0), (1.0, 0.0))] * 125)
    em = intervals(("1", "2"), 600, T0 + 1800, [((1.0, 20.0), (30.0, 5.0))] * 9)
    hours = SiteHours(config, {"PRO": pro, "EM": em})
    assert (hours.period, hours.start, hours.end) == (600, T0 + 1800, T0 + 7200)
    result = run(hours, chunk=2)
    # Both meters cover 00:30-02:00: the half hour from 00:30, and the whole hour from 01:00.
    # Per 10 minutes: import 50, export 10, production 29, charge 20, discharge 5:
    # consumption 50 - 10 + 29 + 5 - 20 = 54, self-consumed 29 - 10 = 19.
    assert result["grid_import_energy"] == {T0: pytest.approx(0.15), T0 + HOUR: pytest.approx(0.3)}
    result = {key: {T0 + HOUR: hours[T0 + HOUR]} for key, hours in result.items()}
    hour = T0 + HOUR
    assert result["grid_export_energy"] == {hour: pytest.approx(0.06)}
    assert result["solar_energy"] == {hour: pytest.approx(0.174)}
    assert result["battery_charged_energy"] == {hour: pytest.approx(0.12)}
    assert result["battery_discharged_energy"] == {hour: pytest.approx(0.03)}
    assert result["home_energy"] == {hour: pytest.approx(0.324)}
    assert result["self_consumed_energy"] == {hour: pytest.approx(0.114)}


def test_site_hours_count_each_load_in_the_sites_intervals() -> None:
    grid, plug, circuit, gone = (
        ChannelRef("PRO", "a"),
        ChannelRef("PRO", "b"),
        ChannelRef("EM", "2"),
        ChannelRef("GONE", "1"),
    )
    config = site(
        {grid: Role.GRID, plug: Role.LOAD, circuit: Role.LOAD, gone: Role.LOAD},
        GridMetering.PER_PHASE,
    )
    # The Pro 3EM's 1-minute records from 00:30 to 02:30: phase b consumes 1 Wh and returns
    # 2 Wh a minute. The EM's 10-minute records from 00:00 to 02:10: 30 Wh each on channel 2.
    pro = intervals(("a", "b"), 60, T0 + 1800, [((5.0, 1.0), (0.0, 2.0))] * 120)
    em = intervals(("1", "2"), 600, T0, [((0.0, 30.0), (0.0, 0.0))] * 13)
    loads = {
        "plug_in": (plug, "consumed"),
        "plug_out": (plug, "returned"),
        "circuit_in": (circuit, "consumed"),
        "gone_in": (gone, "consumed"),
    }
    hours = SiteHours(config, {"PRO": pro, "EM": em}, loads)
    # The balance meter sets the intervals; the circuit's meter, whose records end first, ends
    # them.
    assert (hours.period, hours.start, hours.end) == (60, T0 + 1800, T0 + 7800)
    result = run(hours, chunk=50)
    # The half hour from 00:30 and the whole hour from 01:00; 02:00-02:10 is no complete hour.
    assert result["grid_import_energy"] == {T0: pytest.approx(0.15), T0 + HOUR: pytest.approx(0.3)}
    assert result["plug_in"] == {T0: pytest.approx(0.03), T0 + HOUR: pytest.approx(0.06)}
    assert result["plug_out"] == {T0: pytest.approx(0.06), T0 + HOUR: pytest.approx(0.12)}
    # The circuit's records before the site's first interval are left out, as the site's are.
    assert result["circuit_in"] == {T0: pytest.approx(0.09), T0 + HOUR: pytest.approx(0.18)}
    assert "gone_in" not in result  # its meter keeps no records
    # The same energy over any span, a record shared in proportion.
    meters = {"PRO": pro, "EM": em}
    assert load_energy_between(meters, plug, "returned", T0 + 1800, T0 + 1830) == 1.0
    assert load_energy_between(meters, circuit, "consumed", T0, T0 + 900) == 45.0
    assert load_energy_between(meters, gone, "consumed", T0, T0 + 900) == 0.0


def test_a_site_without_balance_channels_has_no_hours() -> None:
    hours = SiteHours(site({ChannelRef("M", "1"): Role.LOAD}, GridMetering.PER_PHASE), {})
    assert run(hours) == {key: {} for key in site_series()}


# --- plan_fill --------------------------------------------------------------------------


def hourly(start: int, values: Sequence[float]) -> dict[int, float]:
    return {start + index * HOUR: value for index, value in enumerate(values)}


def live(start: int, sums: Sequence[float | None], state0: float = 100.0) -> list[StatRow]:
    """Rows from `start` with these sums (None: no row); states follow the sums."""
    return [
        StatRow(start + index * HOUR, state0 + value, value)
        for index, value in enumerate(sums)
        if value is not None
    ]


def apply(rows: Sequence[StatRow], plan: FillPlan) -> list[StatRow]:
    merged = {row.start: row for row in rows}
    merged.update((row.start, row) for row in plan.rows)
    return [merged[hour] for hour in sorted(merged)]


def bars(rows: Sequence[StatRow]) -> dict[int, float]:
    return {row.start: round(row.sum - before.sum, 9) for before, row in pairwise(rows)}


def apply_shift(rows: Sequence[StatRow], plan: FillPlan) -> list[StatRow]:
    """Return rows as the recorder keeps them after a plan: its own rows moved, then written."""
    moved = rows
    if plan.shift is not None:
        moved = with_corrections(rows, {plan.shift[0]: plan.shift[1]})
    return apply(moved, plan)


def test_day_one_starts_at_zero_and_the_recorder_continues_from_it() -> None:
    energy = hourly(T0, [1.0, 2.0, 3.0, 4.0, 5.0])
    # The series published its first value at T0+3h15m (50 kWh), when the device had counted
    # 0.75 kWh of that hour. The recorder summed from 0 then: 3.25 kWh in that hour, 5 after.
    first_live = T0 + 3 * HOUR + 900
    plan = plan_day_one(energy, first_live, 0.75, 50.0)
    assert [(row.start, row.sum, row.state) for row in plan.rows] == [
        (T0 - HOUR, 0.0, 43.25),
        (T0, 1.0, 44.25),
        (T0 + HOUR, 3.0, 46.25),
        (T0 + 2 * HOUR, 6.0, 49.25),
    ]
    assert plan.shift == (T0 + 3 * HOUR, 6.75)
    result = apply_shift(live(T0 + 3 * HOUR, [3.25, 8.25], state0=46.75), plan)
    assert result[0].sum == 0.0  # the first hour shows its own energy, never a negative bar
    assert bars(result) == {
        T0: 1.0,
        T0 + HOUR: 2.0,
        T0 + 2 * HOUR: 3.0,
        T0 + 3 * HOUR: 4.0,  # the first live hour's bar is the device's whole hour
        T0 + 4 * HOUR: 5.0,
    }
    assert plan_fill(result, energy).rows == ()  # nothing left to fill


def test_day_one_with_records_only_in_the_first_live_hour() -> None:
    plan = plan_day_one(hourly(T0, [0.5]), T0 + 600, 0.1, 1.0)
    assert plan == FillPlan((), (T0, 0.1))


def test_downtime_gap_is_filled_and_the_total_unchanged() -> None:
    energy = hourly(T0, [1.0] * 10)
    # Live until T0+2h, HA down T0+3h..T0+7h (no rows), catch-up in T0+8h: 6 hours in one bar.
    rows = live(T0, [1.0, 2.0, 3.0, None, None, None, None, None, 9.0, 10.0])
    plan = plan_fill(rows, energy)
    assert [row.start for row in plan.rows] == [T0 + hour * HOUR for hour in range(3, 8)]
    result = apply(rows, plan)
    assert set(bars(result).values()) == {1.0}
    assert result[-1].sum == 10.0
    assert plan_fill(result, energy).rows == ()


def test_the_hour_an_outage_began_in_gets_its_own_energy() -> None:
    energy = hourly(T0, [1.0] * 6)
    # Live until 20 minutes into T0+2h, nothing until T0+5h: the catch-up holds the rest.
    rows = live(T0, [1.0, 2.0, 2.3, None, None, 6.0])
    plan = plan_fill(rows, energy)
    assert [row.start for row in plan.rows] == [T0 + hour * HOUR for hour in range(2, 5)]
    result = apply(rows, plan)
    assert set(bars(result).values()) == {1.0}
    assert result[-1].sum == 6.0
    assert plan_fill(result, energy).rows == ()
    # Its records may be needed: the hour before the gap is read too.
    assert records_needed_since(rows, after=T0) == T0 + 2 * HOUR
    # An hour that has what the device counted in it is left as it is.
    rows = live(T0, [1.0, 2.0, 3.0 - ZERO_KWH / 2, None, None, 6.0])
    assert [row.start for row in plan_fill(rows, energy).rows] == [T0 + 3 * HOUR, T0 + 4 * HOUR]


def test_an_outage_within_two_hours_leaves_none_empty() -> None:
    energy = hourly(T0, [1.0] * 4)
    # Live until 10 minutes into T0+1h, back 50 minutes into T0+2h: no hour without a bar.
    rows = live(T0, [1.0, 1.2, 3.0, 4.0])
    outages = outage_hours(five_minute_rows(T0, 4, missing=range(14, 34)), T0, T0 + 4 * HOUR)
    assert outages == {T0 + HOUR}  # it went on past its end
    # An hour without 5-minute rows was not recorded live (imported): no outage of its own.
    assert outage_hours(five_minute_rows(T0, 1, missing=range(12)), T0, T0 + HOUR) == set()
    # The 5-minute rows tell the outage; the hourly ones alone do not.
    assert records_needed_since(rows, after=T0) is None
    assert records_needed_since(rows, after=T0, outages=outages) == T0 + HOUR
    assert records_needed_since(rows, after=T0 + 2 * HOUR, outages=outages) is None
    result = apply(rows, plan_fill(rows, energy))
    assert set(bars(result).values()) == {1.0}
    assert result[-1].sum == 4.0


def test_a_little_booked_late_after_an_outage_goes_back_to_its_hour() -> None:
    # A battery's 20 Wh at dawn: 8 recorded live, then an outage from 48 minutes into T0+1h to
    # T0+2h, whose bar got the other 12 at the catch-up; less than a jump after a whole hour.
    energy = hourly(T0, [0.0, 0.020, 0.0])
    rows = live(T0, [0.0, 0.008, 0.020])
    outages = outage_hours(five_minute_rows(T0, 3, missing=range(22, 35)), T0, T0 + 3 * HOUR)
    assert outages == {T0 + HOUR}
    assert records_needed_since(rows, after=T0) is None
    assert plan_fill(rows, energy).rows == ()
    assert records_needed_since(rows, after=T0, outages=outages) == T0 + HOUR
    result = apply(rows, plan_fill(rows, energy, outages))
    assert bars(result) == {T0 + HOUR: 0.020, T0 + 2 * HOUR: 0.0}
    # So after an hour without a row.
    rows = live(T0, [0.0, None, 0.012])
    assert records_needed_since(rows, after=T0) == T0 + HOUR
    assert bars(apply(rows, plan_fill(rows, energy))) == {T0 + HOUR: 0.012, T0 + 2 * HOUR: 0.0}


def test_an_anchor_an_outage_went_on_past_keeps_what_was_not_booked_later() -> None:
    # Home Assistant down through T0+1h; back in T0+2h, its first row booked the 1.5 kWh
    # missed; the meter then away from 20 minutes into T0+2h (0.3 kWh by then) to T0+3h,
    # whose row booked the other 0.7 kWh of T0+2h.
    energy = hourly(T0, [1.0, 1.5, 1.0, 1.0])
    missing = (*range(12, 24), *range(28, 36))
    outages = outage_hours(five_minute_rows(T0, 4, missing), T0, T0 + 4 * HOUR)
    assert outages == {T0 + 2 * HOUR}  # T0+1h has no row at all
    recorded = {T0 + 2 * HOUR: 0.3}
    rows = live(T0, [1.0, None, 2.8, 4.5])
    truth = {T0 + HOUR: 1.5, T0 + 2 * HOUR: 1.0, T0 + 3 * HOUR: 1.0}
    assert bars(apply(rows, plan_fill(rows, energy, outages, recorded))) == truth
    # Taken whole, T0+2h gives its gap 0.7 kWh too little.
    assert bars(apply(rows, plan_fill(rows, energy, outages))) == {
        T0 + HOUR: 0.8,
        T0 + 2 * HOUR: 1.0,
        T0 + 3 * HOUR: 1.7,
    }
    # Before T0+3h is compiled, T0+2h keeps what its rows recorded: the rest is still to come.
    assert bars(apply(rows[:-1], plan_fill(rows[:-1], energy, outages, recorded))) == {
        T0 + HOUR: 1.5,
        T0 + 2 * HOUR: 0.3,
    }
    # While T0+3h is held for a span (its energy not known yet), its correction may give T0+2h
    # the rest: T0+2h keeps its whole hour.
    held = hourly(T0, [1.0, 1.5, 1.0])
    assert bars(apply(rows, plan_fill(rows, held, outages, recorded))) == {
        T0 + HOUR: 0.8,
        T0 + 2 * HOUR: 1.0,
        T0 + 3 * HOUR: 1.7,
    }
    # A span's correction gave T0+2h its rest (T0+3h has no surplus): it keeps its whole hour.
    rows = live(T0, [1.0, None, 3.5, 4.5])
    assert bars(apply(rows, plan_fill(rows, energy, outages, recorded))) == truth


def five_minute_rows(start: int, hours: int, missing: Iterable[int]) -> list[StatRow]:
    """Return the 5-minute rows of `hours` hours from `start`, but the `missing` ones (by index)."""
    gone = set(missing)
    return [
        StatRow(start + 300 * index, 0.0, 0.0) for index in range(hours * 12) if index not in gone
    ]


def test_unreachable_meter_gap_with_zero_bars() -> None:
    energy = hourly(T0, [1.0, 1.0, 2.0, 2.0, 1.0])
    # Rows kept coming with bar 0 while the meter was unreachable; it came back in T0+4h.
    rows = live(T0, [1.0, 2.0, 2.0, 2.0, 7.0])
    result = apply(rows, plan_fill(rows, energy))
    assert bars(result) == {
        T0 + HOUR: 1.0,
        T0 + 2 * HOUR: 2.0,
        T0 + 3 * HOUR: 2.0,
        T0 + 4 * HOUR: 1.0,
    }


def test_live_hours_that_match_are_never_touched() -> None:
    energy = hourly(T0, [1.0, 0.0, 2.0])
    # A quiet hour (bar 0, device 0) before an hour whose bar is a little above the device's.
    rows = live(T0, [1.0, 1.0, 1.0 + 2.0 + JUMP_KWH / 2])
    assert plan_fill(rows, energy).rows == ()


def test_a_gap_never_takes_more_than_the_jump() -> None:
    # The device counted more than HA's catch-up jump (HA's counter was behind): the filled
    # sums stop at the row before the gap rather than fall below it.
    energy = hourly(T0, [1.0, 5.0, 5.0, 1.0])
    rows = live(T0, [1.0, None, None, 4.0])
    result = apply(rows, plan_fill(rows, energy))
    assert [row.sum for row in result] == [1.0, 1.0, 3.0, 4.0]
    assert all(bar >= 0 for bar in bars(result).values())


def test_a_gap_reaching_back_before_the_records() -> None:
    energy = hourly(T0 + 2 * HOUR, [1.0, 1.0, 1.0])
    rows = live(T0, [1.0, None, None, None, 10.0])
    result = apply(rows, plan_fill(rows, energy))
    # The records start at T0+2h: its bar keeps all that came before.
    assert bars(result) == {T0 + 2 * HOUR: 7.0, T0 + 3 * HOUR: 1.0, T0 + 4 * HOUR: 1.0}


def test_nothing_to_plan_without_energy() -> None:
    assert plan_fill(live(T0, [1.0]), {}) == FillPlan(())
    assert plan_fill([], hourly(T0, [1.0])) == FillPlan(())


def test_records_needed_since() -> None:
    rows = live(T0, [1.0, 2.0, None, None, 9.0, 10.0, 10.0, 10.0, 15.0])
    # From the hour before the gap: the outage may have begun in it.
    assert records_needed_since(rows, after=T0) == T0 + HOUR
    # Anchors up to `after` were checked already; the zero bars before T0+8h are a candidate.
    assert records_needed_since(rows, after=T0 + 4 * HOUR) == T0 + 5 * HOUR
    assert records_needed_since(rows, after=T0 + 8 * HOUR) is None
    assert records_needed_since(live(T0, [1.0, 2.0, 3.0]), after=0) is None
    assert records_needed_since([], after=0) is None


def test_a_jump_after_a_live_hour_is_no_gap() -> None:
    # HA counted much more than the device in T0+2h, but the hour before was live: no gap.
    energy = hourly(T0, [1.0, 1.0, 1.0])
    assert plan_fill(live(T0, [1.0, 2.0, 9.0]), energy).rows == ()


def test_intervals_add_up_records_of_one_interval() -> None:
    meter = MeterIntervals(("1",), 600, T0)
    meter.add(T0, (1.0,), (0.0,))
    meter.add(T0 + 300, (2.0,), (1.0,))
    assert meter.counted(0, T0, T0 + 600) == (3.0, 1.0)


def test_intervals_extended_by_a_later_read() -> None:
    meter = MeterIntervals(("1",), 600, T0)
    meter.add(T0, (1.0,), (0.0,))
    later = MeterIntervals(("1",), 600, T0)
    later.add(T0, (5.0,), (5.0,))  # read again: what the first read has stays
    later.add(T0 + 1800, (2.0,), (3.0,))
    meter.extend(later)
    assert meter.end == T0 + 2400
    assert meter.counted(0, T0, T0 + 2400) == (3.0, 3.0)
    assert meter.counted(0, T0 + 600, T0 + 1800) == (0.0, 0.0)


def test_saved_hours_are_a_snapshot() -> None:
    hours = MeterHours(("1",), three_phase=False)
    hours.add(minutes(T0, 10, (1.0,), (0.0,)))
    saved = hours.to_dict()
    hours.add(minutes(T0 + 600, 10, (1.0,), (0.0,)))
    assert saved["wh"]["1_energy_imported"] == [10.0]
    assert saved["end"] == T0 + 600


# --- spans the counters could not count ----------------------------------------------------


def test_energy_between_counts_partial_records_in_proportion() -> None:
    meter = MeterIntervals(("a", "b"), 60, T0)
    for minute in range(3):
        meter.add(T0 + 60 * minute, (6.0, 1.0), (0.0, 2.0))
    assert meter.energy_between(0, T0 + 30, T0 + 150) == pytest.approx((12.0, 0.0))
    assert meter.energy_between(1, T0 - 60, T0 + 10_000) == pytest.approx((3.0, 6.0))
    assert meter.energy_between(0, T0 + 200, T0 + 300) == (0.0, 0.0)  # after the records
    assert meter.series_between("b_energy_exported", T0, T0 + 90) == pytest.approx(3.0)
    assert meter.series_between("total_energy_imported", T0, T0 + 60) == pytest.approx(7.0)


def test_hour_pieces() -> None:
    assert hour_pieces(T0 + 3000, T0 + HOUR + 600) == [
        (T0, T0 + 3000, T0 + HOUR),
        (T0 + HOUR, T0 + HOUR, T0 + HOUR + 600),
    ]
    assert hour_pieces(T0, T0) == []


def test_span_corrections_place_the_records_energy_in_its_hours() -> None:
    meter = MeterIntervals(("a",), 60, T0)
    for minute in range(70):
        meter.add(T0 + 60 * minute, (10.0,), (0.0,))  # 10 Wh a minute
    # The counter missed 10:55-11:05 (a reboot) and counted 20 Wh over it.
    fixes = span_corrections(
        T0 + 3300, T0 + 3900, 20.0, lambda s, e: meter.series_between("a_energy_imported", s, e)
    )
    assert fixes == {T0: pytest.approx(0.05), T0 + HOUR: pytest.approx(0.03)}


def test_site_span_corrections_route_a_missed_channel_through_the_flows() -> None:
    grid, solar = ChannelRef("M", "a"), ChannelRef("S", "1")
    config = site({grid: Role.GRID, solar: Role.SOLAR}, GridMetering.PER_PHASE)
    mains = MeterIntervals(("a",), 60, T0)
    inverter = MeterIntervals(("1",), 60, T0)
    for minute in range(10):
        mains.add(T0 + 60 * minute, (5.0,), (0.0,))
        inverter.add(T0 + 60 * minute, (0.0,), (8.0,))
    meters = {"M": mains, "S": inverter}
    flows = site_energy_between(config, meters, T0, T0 + 600)
    assert (flows.grid_import, flows.solar_production) == (50.0, 80.0)
    # The grid counter missed two minutes and counted nothing over them.
    fixes = site_span_corrections(
        config, meters, {grid: (0.0, None)}, T0 + 60, T0 + 180, short_counts={}
    )
    assert fixes["grid_import_energy"] == {T0: pytest.approx(0.01)}
    assert fixes["home_energy"] == {T0: pytest.approx(0.01)}
    assert fixes["solar_energy"] == {}


@pytest.mark.parametrize(
    ("refused", "before_one", "from_one"),
    [
        # The site's grid flow waited for phase b from 00:25: it booked both phases' 1,400 Wh
        # since then at 01:35.
        pytest.param(True, 0.7, -0.7, id="phase-b-refused-from-00:25"),
        # Phase b's span starts where it was stored before a restart: the meter was read whole
        # at 00:55, and the site had booked both phases until then.
        pytest.param(False, 0.1, -0.1, id="phase-b-stored-at-00:25"),
    ],
)
def test_a_fault_starts_where_a_counter_began_refusing_readings(
    refused: bool, before_one: float, from_one: float
) -> None:
    """Both phases of a grid meter import 10 Wh a minute; the meter's fault ends at 01:35.

    Phase b's readings were refused from 00:25 (its span counted its 700 Wh at 01:35), then
    the meter was away from 00:55: phase a's span counted its 400 Wh since at 01:35 too.
    """
    phase_a, phase_b = ChannelRef("M", "a"), ChannelRef("M", "b")
    config = site({phase_a: Role.GRID, phase_b: Role.GRID}, GridMetering.PER_PHASE)
    meters = {"M": intervals(("a", "b"), 60, T0, [((10.0, 10.0), (0.0, 0.0))] * 120)}
    end = T0 + 5700
    fault = {
        (phase_a, 0): Unaccounted(T0 + 3300, end, 400.0),
        (phase_b, 0): Unaccounted(T0 + 1500, end, 700.0, refused=refused),
    }
    fixes = site_fault_corrections(config, meters, [fault], short_counts={})
    assert fixes["grid_import_energy"] == {
        T0: pytest.approx(before_one),
        T0 + HOUR: pytest.approx(from_one),
    }


@pytest.mark.parametrize(
    "phase_a_later",
    [
        pytest.param(None, id="phase-a-read-on"),
        # Phase a's counters fault again from 01:00: its span there counted its 350 Wh.
        pytest.param(Unaccounted(T0 + HOUR, T0 + 5700, 350.0), id="phase-a-faulted-again"),
    ],
)
def test_a_fault_that_ended_while_another_phase_refused_readings_is_booked_with_it(
    phase_a_later: Unaccounted | None,
) -> None:
    """Both phases of a grid meter import 10 Wh a minute.

    The meter is away from 00:25 to 00:55: phase a's span counted its 300 Wh then. Phase b's
    readings are refused from there; it counts on at 01:35, its span (from 00:25) counting
    its 700 Wh. The grid flow waited for phase b: it booked both phases' 1,400 Wh at 01:35.
    """
    phase_a, phase_b = ChannelRef("M", "a"), ChannelRef("M", "b")
    config = site({phase_a: Role.GRID, phase_b: Role.GRID}, GridMetering.PER_PHASE)
    meters = {"M": intervals(("a", "b"), 60, T0, [((10.0, 10.0), (0.0, 0.0))] * 120)}
    away = {(phase_a, 0): Unaccounted(T0 + 1500, T0 + 3300, 300.0)}
    refused = {(phase_b, 0): Unaccounted(T0 + 1500, T0 + 5700, 700.0, refused=True)}
    if phase_a_later is not None:
        refused[phase_a, 0] = phase_a_later
    fixes = site_fault_corrections(config, meters, [away, refused], short_counts={})
    # 00:25-01:00 flowed in its hour: 35 minutes of both phases.
    assert fixes["grid_import_energy"] == {
        T0: pytest.approx(0.7),
        T0 + HOUR: pytest.approx(-0.7),
    }


def test_a_refused_counter_that_did_not_move_does_not_start_the_fault_earlier() -> None:
    """A grid meter imports 10 Wh a minute and exports nothing; Home Assistant restarts.

    Both of its counters refused their first readings after the restart, and counted on at
    01:35. Each span starts where its total was last recorded: the import's at 00:55, the
    export's (it did not move) at 00:25. The site booked the import up to 00:55.
    """
    grid = ChannelRef("M", "a")
    config = site({grid: Role.GRID}, GridMetering.PER_PHASE)
    meters = {"M": intervals(("a",), 60, T0, [((10.0,), (0.0,))] * 120)}
    end = T0 + 5700
    fault = {
        (grid, 0): Unaccounted(T0 + 3300, end, 400.0, refused=True),
        (grid, 1): Unaccounted(T0 + 1500, end, 0.0, refused=True),
    }
    fixes = site_fault_corrections(config, meters, [fault], short_counts={})
    assert fixes["grid_import_energy"] == {
        T0: pytest.approx(0.05),
        T0 + HOUR: pytest.approx(-0.05),
    }


GRID, SOLAR, BATTERY = ChannelRef("M", "a"), ChannelRef("S", "1"), ChannelRef("B", "1")


def exporting_site() -> tuple[SiteConfig, dict[str, MeterIntervals]]:
    """Two hours of a site whose solar makes 25 Wh a minute and exports 20 of it."""
    config = site({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    return config, {
        "M": intervals(("a",), 60, T0, [((0.0,), (20.0,))] * 120),
        "S": intervals(("1",), 60, T0, [((0.0,), (25.0,))] * 120),
    }


def charging_site(minutes: int) -> tuple[SiteConfig, dict[str, MeterIntervals]]:
    """A site importing 30 Wh a minute, 25 of it into its battery, for `minutes`."""
    config = site({GRID: Role.GRID, BATTERY: Role.BATTERY}, GridMetering.PER_PHASE)
    return config, {
        "M": intervals(("a",), 60, T0, [((30.0,), (0.0,))] * minutes),
        "B": intervals(("1",), 60, T0, [((25.0,), (0.0,))] * minutes),
    }


def test_site_span_corrections_book_no_consumption_where_its_running_sum_fell() -> None:
    """The solar exports 20 of its 25 Wh a minute; the home consumes 5.

    The solar counter's readings were rejected from 00:45 and the reading at 01:10 counted all
    625 Wh at once. Meanwhile the site counted the export but no production: consumption's
    running sum fell, so it booked nothing in 00:00 and the 125 Wh of the span at 01:10.
    """
    config, meters = exporting_site()
    fixes = site_span_corrections(
        config, meters, {SOLAR: (None, 625.0)}, T0 + 2700, T0 + 4200, short_counts={}
    )
    for key in ("home_energy", "self_consumed_energy"):
        assert fixes[key] == {T0: pytest.approx(0.075), T0 + HOUR: pytest.approx(-0.075)}, key
    assert fixes["solar_energy"] == {T0: pytest.approx(0.375), T0 + HOUR: pytest.approx(-0.375)}
    assert fixes["grid_export_energy"] == {}


def test_site_span_corrections_give_what_the_site_forgave_no_second_time() -> None:
    """The solar exports 20 of its 25 Wh a minute; the home consumes 5.

    The solar's meter rebooted between its readings at 00:50 and 00:55 and forgot 100 Wh: its
    counter counted 25 of the span's 125. At 00:55 consumption's running sum fell 75 Wh below
    its highest value; the site forgave it that, and booked nothing for the span.
    """
    config, meters = exporting_site()
    # Both accrued last at 00:50, when the span began.
    short_counts = {
        "home_energy": ShortCount(T0 + 3000, 75.0),
        "self_consumed_energy": ShortCount(T0 + 3000, 75.0),
    }
    fixes = site_span_corrections(
        config, meters, {SOLAR: (None, 25.0)}, T0 + 3000, T0 + 3300, short_counts=short_counts
    )
    for key in short_counts:
        # The span's 25 Wh, and not the 75 forgiven again.
        assert fixes[key] == {T0: pytest.approx(0.025)}, key
    assert fixes["solar_energy"] == {T0: pytest.approx(0.1)}
    unforgiven = site_span_corrections(
        config, meters, {SOLAR: (None, 25.0)}, T0 + 3000, T0 + 3300, short_counts={}
    )
    assert unforgiven["home_energy"] == {T0: pytest.approx(0.1)}


@pytest.mark.parametrize(
    ("below", "first_hour", "second_hour"),
    [
        pytest.param(0.0, 0.1, -0.1, id="at-its-highest"),
        pytest.param(50.0, 0.05, -0.05, id="50-below"),
        pytest.param(150.0, 0.0, 0.0, id="150-below"),
    ],
)
def test_site_span_corrections_make_up_the_fall_before_the_span_first(
    below: float, first_hour: float, second_hour: float
) -> None:
    """The solar makes 5 Wh a minute at dawn, all of it used at home; the mains is without
    power from 00:40 to 01:30 (its counters count nothing, its records have nothing).

    Self-consumed solar waited for the mains from 00:40 and booked the span's 250 Wh at 01:30,
    `below` Wh of it making up the night's use of the inverter: the hours get what the sum rose
    by in each, that fall made up first.
    """
    config = site({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    meters = {
        "M": intervals(("a",), 60, T0, [((0.0,), (0.0,))] * 120),
        "S": intervals(("1",), 60, T0, [((0.0,), (5.0,))] * 120),
    }
    fixes = site_span_corrections(
        config,
        meters,
        {GRID: (0.0, 0.0)},
        T0 + 2400,
        T0 + 5400,
        short_counts={"self_consumed_energy": ShortCount(T0 + 2400, 0.0, below)},
    )
    found = fixes["self_consumed_energy"]
    assert found.get(T0, 0.0) == pytest.approx(first_hour)
    assert found.get(T0 + HOUR, 0.0) == pytest.approx(second_hour)
    assert found.keys() <= {T0, T0 + HOUR}


@pytest.mark.parametrize(
    ("running_since", "home_before_one"),
    [
        # Consumption waited from 00:35: its 250 Wh of 00:00 go back there.
        pytest.param(-math.inf, 0.25, id="running-all-along"),
        # Home Assistant started at 00:45: the hours it was down are the restart's to fill.
        pytest.param(T0 + 2700, 0.15, id="started-at-00:45"),
    ],
)
def test_site_span_corrections_give_a_net_flow_what_it_waited_for_before_the_span(
    running_since: float, home_before_one: float
) -> None:
    """The home draws 10 Wh a minute from the grid; the solar makes nothing.

    The solar's meter is away from 00:35, so consumption waits for it from there; the grid
    counter refuses its readings from 00:50 and counts its 200 Wh at 01:10, where consumption
    books all 350 Wh since 00:35. The grid's correction starts at 00:50, consumption's at 00:35.
    """
    config = site({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    meters = {
        "M": intervals(("a",), 60, T0, [((10.0,), (0.0,))] * 120),
        "S": intervals(("1",), 60, T0, [((0.0,), (0.0,))] * 120),
    }
    fixes = site_span_corrections(
        config,
        meters,
        {GRID: (200.0, None)},
        T0 + 3000,
        T0 + 4200,
        short_counts={"home_energy": ShortCount(T0 + 2100, 0.0)},
        running_since=running_since,
    )
    assert fixes["grid_import_energy"] == {T0: pytest.approx(0.1), T0 + HOUR: pytest.approx(-0.1)}
    assert fixes["home_energy"] == {
        T0: pytest.approx(home_before_one),
        T0 + HOUR: pytest.approx(-home_before_one),
    }


def test_a_net_flow_waiting_from_before_a_restart_starts_where_home_assistant_left_it() -> None:
    """The solar makes 5 Wh a minute and the home uses it all; the grid does nothing.

    Self-consumed solar was 100 Wh below its highest when the site's state was stored at
    00:35. Home Assistant ran on to 00:47, restarted at 01:19, and the solar's counter (stored
    at 00:45) counted its 175 Wh at 01:20: the site booked all since 00:35 then. By 00:45 the
    sum had made up 50 of the 100; by 01:00, all of it and 25 more.
    """
    config = site({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    meters = {
        "M": intervals(("a",), 60, T0, [((0.0,), (0.0,))] * 120),
        "S": intervals(("1",), 60, T0, [((0.0,), (5.0,))] * 120),
    }
    fixes = site_span_corrections(
        config,
        meters,
        {SOLAR: (0.0, 175.0)},
        T0 + 2700,
        T0 + 4800,
        short_counts={"self_consumed_energy": ShortCount(T0 + 2100, 0.0, 100.0)},
        running_since=T0 + 4740,
    )
    assert fixes["self_consumed_energy"] == {
        T0: pytest.approx(0.025),
        T0 + HOUR: pytest.approx(-0.025),
    }


def test_a_take_back_the_next_hour_holds_only_in_part_is_handed_back_for_the_rest() -> None:
    # The night's 04:00 holds nothing, the dawn's 05:00 holds 134 Wh, and a correction takes
    # 229 Wh back from 04:00 (found by the random fault days, seed 49): 05:00 gives its 134,
    # and the 95 no hour holds are handed back, not left in 04:00 as a negative bar.
    rows = [StatRow(T0 + hour * HOUR, 0.0, 0.0) for hour in range(5)]
    rows.append(StatRow(T0 + 5 * HOUR, 0.134, 0.134))
    corrections = never_negative(rows, {T0 + 4 * HOUR: -0.229})
    assert corrections == {T0 + 4 * HOUR: pytest.approx(-0.095), T0 + 5 * HOUR: -0.134}
    placed, unplaced = without_negative_bar(rows, corrections)
    assert placed == {T0 + 4 * HOUR: pytest.approx(0.0), T0 + 5 * HOUR: -0.134}
    assert unplaced == pytest.approx(0.095)


def test_a_take_back_no_hour_holds_is_handed_back() -> None:
    # A night: the rows hold nothing, and a correction takes 6.5 Wh back from 01:00.
    rows = [StatRow(T0, 0.0, 0.0), StatRow(T0 + HOUR, 0.0, 0.0), StatRow(T0 + 2 * HOUR, 0.0, 0.0)]
    corrections = never_negative(rows, {T0 + HOUR: -0.0065})
    assert corrections == {T0 + HOUR: -0.0065}  # nothing anywhere gives it
    placed, unplaced = without_negative_bar(rows, corrections)
    assert placed == {T0 + HOUR: 0.0}
    assert unplaced == pytest.approx(0.0065)
    # An hour holding 10 Wh gives it.
    rows = [StatRow(T0, 0.0, 0.0), StatRow(T0 + HOUR, 0.01, 0.01)]
    assert without_negative_bar(rows, {T0 + HOUR: -0.0065}) == ({T0 + HOUR: -0.0065}, 0.0)
    assert without_negative_bar(rows, {}) == ({}, 0.0)


def test_a_take_back_comes_from_the_earliest_bars_each_giving_at_most_its_own() -> None:
    # 5-minute rows of a dawn: nothing, then 2, 0 and 5 Wh.
    rows = [
        StatRow(T0, 0.0, 0.0),
        StatRow(T0 + 300, 0.0, 0.0),
        StatRow(T0 + 600, 0.002, 0.002),
        StatRow(T0 + 900, 0.002, 0.002),
        StatRow(T0 + 1200, 0.007, 0.007),
    ]
    taken, rest = taken_from_bars(rows, 0.004)
    assert taken == {T0 + 600: pytest.approx(-0.002), T0 + 1200: pytest.approx(-0.002)}
    assert rest == 0.0
    taken, rest = taken_from_bars(rows, 0.009)
    assert taken == {T0 + 600: pytest.approx(-0.002), T0 + 1200: pytest.approx(-0.005)}
    assert rest == pytest.approx(0.002)  # beyond all that the rows hold
    assert taken_from_bars(rows[:1], 0.004) == ({}, 0.004)


def test_rows_are_written_for_corrected_hours_home_assistant_missed() -> None:
    rows = [StatRow(T0, 1.0, 1.0), StatRow(T0 + HOUR, 1.5, 1.5), StatRow(T0 + 4 * HOUR, 3.0, 3.0)]
    corrections = {T0 + 2 * HOUR: 0.5, T0 + 4 * HOUR: -0.5}
    corrected = with_corrections(rows, corrections)
    # 02:00 gains its 0.5 kWh; 03:00 has none of its own; 04:00 gave it up.
    assert missing_rows(corrected, corrections) == (
        StatRow(T0 + 2 * HOUR, 1.5, 2.0),
        StatRow(T0 + 3 * HOUR, 1.5, 2.0),
    )
    assert missing_rows([], corrections) == ()
    assert missing_rows(corrected, {}) == ()
    # Hours before the first row, or from the last row on, are the recorder's.
    assert missing_rows(corrected, {T0 - HOUR: 1.0}) == ()
    assert missing_rows(corrected, {T0 + 5 * HOUR: 1.0}) == ()


def test_a_correction_from_inside_an_hour_writes_that_hours_row() -> None:
    rows = [StatRow(T0, 1.0, 1.0), StatRow(T0 + HOUR, 2.0, 2.0), StatRow(T0 + 2 * HOUR, 3.0, 3.0)]
    # From 01:40: the recorder moves the 5-minute rows from 01:40 and the hourly from 02:00.
    corrections = {T0 + HOUR: 0.5, T0 + HOUR + 40 * 60: -0.25, T0 + 2 * HOUR: 0.1}
    hours = per_hour(corrections)
    assert hours == {T0 + HOUR: 0.25, T0 + 2 * HOUR: 0.1}
    corrected = with_corrections(rows, hours)
    assert rows_left_behind(corrected, corrections) == (StatRow(T0 + HOUR, 2.0, 2.25),)
    assert rows_left_behind(corrected, {T0 + HOUR: 0.5}) == ()
    # What `never_negative` moves goes to an hour's last moment (after the rises it takes back).
    assert within_hours(corrections, {T0: -0.1, T0 + HOUR: 0.35, T0 + 2 * HOUR: 0.1}) == {
        T0: -0.1,
        T0 + HOUR: 0.5,
        T0 + HOUR + 40 * 60: pytest.approx(-0.15),
        T0 + 2 * HOUR: 0.1,
    }


def test_a_take_back_beyond_its_5_minute_row_comes_from_the_rows_of_its_hour() -> None:
    """5-minute rows of 00:00 to 02:00, moved as a rebuild that makes up a surplus moves them.

    00:00 rose by 0.25 kWh, 00:15 by 0.125; 00:55 showed a booking the sensor's surplus took,
    and 01:10 a rise of 0.5.
    """
    rises = {T0: 0.25, T0 + 900: 0.125, T0 + HOUR + 600: 0.5}
    starts = [T0 - 300, *range(T0, T0 + 2 * HOUR, 300)]
    rows = [
        StatRow(start, 0.0, sum(kwh for at, kwh in rises.items() if at <= start))
        for start in starts
    ]
    # 00:00 rises by the exact nets; 00:55, the last booking's row, loses them and the surplus
    # they made up: it would fall by 2.125.
    corrections = {T0: 2.0, T0 + 3300: -2.125, T0 + HOUR: -0.25, T0 + HOUR + 1800: 0.5}
    # That comes from the rows before it, latest first: 00:15's 0.125, then 2.0 of 00:00's 2.25.
    # 01:00 would fall with no row before it: 01:10 gives. 01:30 rises: left as it is.
    assert within_five_minutes(rows, corrections) == {
        T0 + 900: -0.125,
        T0 + HOUR + 600: -0.25,
        T0 + HOUR + 1800: 0.5,
    }
    # Nothing falls: nothing moves.
    assert within_five_minutes(rows, {T0: 2.0, T0 + 900: -0.125}) == {T0: 2.0, T0 + 900: -0.125}
    # Before the rows read every row moves alike; after the last no row moves.
    assert within_five_minutes(rows, {T0 - 600: -9.0, T0 + 2 * HOUR: -9.0}) == {
        T0 - 600: -9.0,
        T0 + 2 * HOUR: -9.0,
    }


def test_a_take_back_beyond_its_hour_comes_from_the_hours_that_can_give() -> None:
    """Hourly rows of 00:00 to 02:00, each bar what the live counting booked in it."""
    rows = [
        StatRow(T0 - HOUR, 0.0, 0.0),
        StatRow(T0, 0.0, 0.25),
        StatRow(T0 + HOUR, 0.0, 2.5),
        StatRow(T0 + 2 * HOUR, 0.0, 3.0),
    ]
    # A site waited for a battery meter from 00:10 to 01:10 and booked the span at its end: the
    # records take the charge back from consumption in both hours. 00:00, the first corrected
    # hour, would fall to -1.0: 01:00 gives it.
    assert never_negative(rows, {T0: -1.25, T0 + HOUR: -0.25}) == {T0: -0.25, T0 + HOUR: -1.25}
    # Nothing falls: nothing moves.
    assert never_negative(rows, {T0: -0.25, T0 + HOUR: 0.5}) == {T0: -0.25, T0 + HOUR: 0.5}
    # A counter's span ended just after 02:00, its count shown just before: 02:00 alone cannot
    # give it back, the hours before it do, latest first.
    assert never_negative(rows, {T0 + 2 * HOUR: -1.0}) == {T0 + HOUR: -0.5, T0 + 2 * HOUR: -0.5}
    # Beyond everything the rows hold (00:00 gives its 0.25, 01:00 its 2.25): 02:00 keeps the
    # rest.
    assert never_negative(rows, {T0 + 2 * HOUR: -4.0}) == {
        T0: -0.25,
        T0 + HOUR: -2.25,
        T0 + 2 * HOUR: -1.5,
    }
    # Home Assistant was down at 01:00: its row is written with its corrections as its bar.
    down = [rows[0], rows[1], rows[3]]
    assert never_negative(down, {T0: 0.25, T0 + HOUR: -0.5, T0 + 2 * HOUR: 0.25}) == {
        T0: -0.25,
        T0 + HOUR: 0.0,
        T0 + 2 * HOUR: 0.25,
    }


def test_a_site_that_waited_for_a_rebooted_meter_leaves_no_hour_negative() -> None:
    """The grid imports 30 Wh a minute, the battery charges 25 of it; consumption is 5.

    The battery's meter reboots at 00:10 and answers at 01:10, its counter having counted
    nothing over the span: the site waits for it and books the span's 1.8 kWh of import as
    consumption at 01:10.
    """
    config, meters = charging_site(180)
    spans = site_span_corrections(
        config, meters, {BATTERY: (0.0, None)}, T0 + 600, T0 + 4200, short_counts={}
    )
    home = spans["home_energy"]
    assert home == {T0: pytest.approx(-1.25), T0 + HOUR: pytest.approx(-0.25)}
    # 00:00 showed 0.05 kWh (to 00:10), 01:00 2.05 (the booking and 01:10 on).
    rows = [
        StatRow(T0 - HOUR, 0.0, 0.0),
        StatRow(T0, 0.0, 0.05),
        StatRow(T0 + HOUR, 0.0, 2.1),
        StatRow(T0 + 2 * HOUR, 0.0, 2.4),
    ]
    # 00:00 would fall to -1.2: 01:00, where the site booked the span, gives it.
    assert never_negative(rows, home) == {
        T0: pytest.approx(-0.05),
        T0 + HOUR: pytest.approx(-1.45),
    }


def test_a_site_that_waited_for_a_rebooted_meter_gets_each_hour_what_flowed_in_it() -> None:
    """The example above, as the site tells it: consumption last accrued at 00:10.

    It booked nothing until 01:10, then the span's 1.8 kWh of import with no charge; its sum
    never fell, so nothing was forgiven.
    """
    config, meters = charging_site(180)
    spans = site_span_corrections(
        config,
        meters,
        {BATTERY: (0.0, None)},
        T0 + 600,
        T0 + 4200,
        short_counts={"home_energy": ShortCount(T0 + 600, 0.0)},
    )
    # 00:00 gains its 50 minutes of 5 Wh; 01:00 its 10, less the 1.8 kWh booked.
    assert spans["home_energy"] == {T0: pytest.approx(0.25), T0 + HOUR: pytest.approx(-1.75)}
    rows = [
        StatRow(T0 - HOUR, 0.0, 0.0),
        StatRow(T0, 0.0, 0.05),
        StatRow(T0 + HOUR, 0.0, 2.1),
        StatRow(T0 + 2 * HOUR, 0.0, 2.4),
    ]
    # Each hour shows its 0.3 kWh: nothing to move.
    assert never_negative(rows, spans["home_energy"]) == spans["home_energy"]


def test_faults_sharing_an_accrual_are_corrected_together() -> None:
    # Each fault (meter, end) with the accruals that took it: the last joins two sets before it.
    assert sharing({("M", 1): {"x"}, ("S", 2): {"y"}, ("B", 3): set(), ("S", 4): {"x", "y"}}) == [
        [("B", 3)],
        [("M", 1), ("S", 2), ("S", 4)],
    ]


def test_a_flow_that_accrued_inside_a_span_booked_its_first_part() -> None:
    """The grid imports 30 Wh a minute and the battery charges 25; consumption is 5.

    The battery's counter counted nothing from 00:40 to 01:10. Its meter answered until 00:50,
    while consumption accrued the import alone (300 Wh); then the site waited for it and booked
    the other 600 Wh of import at 01:10.
    """
    config, meters = charging_site(120)
    spans = site_span_corrections(
        config,
        meters,
        {BATTERY: (0.0, None)},
        T0 + 2400,
        T0 + 4200,
        short_counts={"home_energy": ShortCount(T0 + 3000, 0.0)},
    )
    # 00:00 booked 300 of the span for a true 100; 01:00 booked 600 for a true 50.
    assert spans["home_energy"] == {T0: pytest.approx(-0.2), T0 + HOUR: pytest.approx(-0.55)}


@given(
    st.lists(st.integers(0, 50), min_size=36, max_size=36),
    st.dictionaries(
        st.integers(0, 35).map(lambda row: T0 + row * 300), st.integers(-300, 300), max_size=6
    ),
)
def test_moves_from_moments_keep_each_hour_its_last_5_minute_rows_sum(
    bars: list[int], moves: dict[int, int]
) -> None:
    """Three compiled hours of 5-minute rows after an hour of none, moved as a run moves them.

    The recorder adds a move to every row (hourly and 5-minute) starting from its moment on; a
    run writes the hourly rows a move from inside their hour leaves behind. The moves take back
    no more than the hours hold (the live counting booked it). Each hour's sum stays its last
    5-minute row's, no hourly or 5-minute bar is negative, and the total moves by the moves'.
    """
    assume(sum(bars) + sum(moves.values()) >= 0)
    five = {
        T0 - 300: 0.0,
        **{T0 + index * 300: sum(bars[: index + 1]) / 1000 for index in range(36)},
    }
    hourly = [
        StatRow(hour, 0.0, five[hour + 3300]) for hour in range(T0 - HOUR, T0 + 3 * HOUR, HOUR)
    ]
    corrections = {moment: wh / 1000 for moment, wh in moves.items()}
    hours = never_negative(hourly, per_hour(corrections))
    short = [StatRow(start, 0.0, total) for start, total in five.items()]
    fixes = within_five_minutes(short, within_hours(corrections, hours))
    assert per_hour(fixes) == pytest.approx(hours)
    five = {
        start: total + sum(kwh for moment, kwh in fixes.items() if moment <= start)
        for start, total in five.items()
    }
    recorded = {
        row.start: row.sum + sum(kwh for moment, kwh in fixes.items() if moment <= row.start)
        for row in hourly
    }
    for row in rows_left_behind(with_corrections(hourly, hours), fixes):
        recorded[row.start] = row.sum
    assert recorded == pytest.approx({hour: five[hour + 3300] for hour in recorded})
    for before, hour in pairwise(sorted(recorded)):
        assert recorded[hour] - recorded[before] >= -1e-9
    for (_, earlier), (_, total) in pairwise(sorted(five.items())):
        assert total - earlier >= -1e-9
    assert five[T0 + 3 * HOUR - 300] - sum(bars) / 1000 == pytest.approx(sum(corrections.values()))


@st.composite
def outages_recorded(draw: st.DrawFn) -> tuple[dict[int, float], list[StatRow], float]:
    """Return a device's hours (kWh), the rows Home Assistant recorded of them, and the total.

    Energy flows evenly within each hour. During an outage nothing is recorded; what flowed is
    booked at its end, in the hour it ends in. An hour the outage covers whole gets no row (Home
    Assistant was down) or one with a bar of 0 (the meter was away).
    """
    hours = 12
    energy = [draw(st.integers(0, 3000)) / 1000 for _ in range(hours)]
    starts = sorted(draw(st.lists(st.integers(60, hours * 60 - 61), max_size=6, unique=True)))
    outages: list[tuple[int, int]] = []
    for start, end in zip(starts[::2], starts[1::2], strict=False):
        if not outages or start > outages[-1][1]:
            outages.append((start, end))  # minutes from T0

    def flowed(start: float, end: float) -> float:
        """Return the device's energy over [start, end) minutes."""
        total = 0.0
        for hour, kwh in enumerate(energy):
            overlap = min(end, (hour + 1) * 60) - max(start, hour * 60)
            total += kwh * max(overlap, 0) / 60
        return total

    booked = [0.0] * hours
    for hour in range(hours):
        booked[hour] = flowed(hour * 60, (hour + 1) * 60)
    for start, end in outages:
        for hour in range(hours):
            booked[hour] -= flowed(max(start, hour * 60), min(end, (hour + 1) * 60))
        booked[end // 60] += flowed(start, end)
    rows = [StatRow(T0 - HOUR, 0.0, 0.0)]
    total = 0.0
    for hour in range(hours):
        total += booked[hour]
        whole = any(start <= hour * 60 and (hour + 1) * 60 <= end for start, end in outages)
        if whole and draw(st.booleans()):
            continue  # no row: Home Assistant was down
        rows.append(StatRow(T0 + hour * HOUR, total, total))
    return hourly(T0, energy), rows, total


@given(outages_recorded())
def test_filling_outages_keeps_the_total_makes_no_hour_negative_and_is_done_once(
    recorded: tuple[dict[int, float], list[StatRow], float],
) -> None:
    energy, rows, total = recorded
    plan = plan_fill(rows, energy)
    result = apply(rows, plan)
    assert result[-1].sum == pytest.approx(total)
    filled = bars(result)
    assert all(bar >= -1e-9 for bar in filled.values())
    assert plan_fill(result, energy).rows == ()
