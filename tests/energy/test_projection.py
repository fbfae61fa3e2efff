"""Bill projection from hourly history, with hand-computed expectations."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from custom_components.shelly_energy.energy.projection import (
    NOT_ENOUGH_DATA,
    NoProjection,
    Projection,
    ProjectionMethod,
    crossed_into_tier,
    project_bill,
)
from custom_components.shelly_energy.energy.tariff import (
    BillingCycle,
    FlatPricing,
    HourlyEnergy,
    PerKwCapacity,
    Slab,
    SlabPricing,
    Tariff,
    TimeOfUsePricing,
    TimeWindow,
    bill_for,
)

BERLIN = ZoneInfo("Europe/Berlin")
IST = ZoneInfo("Asia/Kolkata")
TELESCOPIC = Tariff(SlabPricing((Slab(100, 3.0), Slab(300, 4.5), Slab(None, 6.0))))
# 2025-01-01 is a Wednesday: January has 23 weekdays and 8 weekend days.


def at(
    month: int, day: int, hour: int = 0, *, year: int = 2025, zone: ZoneInfo = BERLIN
) -> datetime:
    return datetime(year, month, day, hour, tzinfo=zone)


def series(
    first: datetime,
    until: datetime,
    imported: Callable[[datetime], float],
    exported: Callable[[datetime], float] = lambda hour: 0.0,
) -> list[HourlyEnergy]:
    """Hourly rows on the UTC hours from `first` until `until`, stamped in `first`'s zone."""
    start, stop = first.astimezone(UTC), until.astimezone(UTC)
    hours = [
        (start + timedelta(hours=n)).astimezone(first.tzinfo)
        for n in range(int((stop - start) / timedelta(hours=1)))
    ]
    return [(hour, imported(hour), exported(hour)) for hour in hours]


def constant(kwh: float) -> Callable[[datetime], float]:
    return lambda hour: kwh


def projected(result: Projection | NoProjection) -> Projection:
    assert isinstance(result, Projection)
    return result


def test_constant_consumption_projects_exactly() -> None:
    now = at(1, 11)
    result = projected(
        project_bill(TELESCOPIC, series(at(12, 1, year=2024), now, constant(1.0)), now)
    )
    assert result.method is ProjectionMethod.WEEKLY_PROFILE
    assert result.period == (at(1, 1), at(2, 1))
    assert result.trend == 1.0
    assert result.import_so_far_kwh == 240.0  # ten days of 24 kWh
    assert result.remaining_import_kwh == pytest.approx(504.0)  # 21 days
    assert result.import_kwh == pytest.approx(744.0)
    # 100 x 3 + 200 x 4.5 + 444 x 6 = 300 + 900 + 2664 = 3864
    assert result.bill.energy_charge == pytest.approx(3864.0)
    assert result.tier == 3
    # no scatter, no range
    assert result.bill_low == result.bill == result.bill_high
    assert result.import_low_kwh == result.import_high_kwh == result.import_kwh


def test_the_projected_bill_charges_the_capacity_peak_so_far() -> None:
    now = at(1, 11)
    tariff = Tariff(FlatPricing(0.25), tax_percent=10.0, capacity=PerKwCapacity(4.0, 2.5))
    rows = series(at(12, 1, year=2024), now, constant(1.0))
    result = projected(project_bill(tariff, rows, now, capacity_kw=3.6))
    # 744 kWh at 0.25 = 186.00 and 3.6 kW at 4.00 = 14.40, with 10 % tax: 220.44.
    assert result.bill.capacity_charge == pytest.approx(14.4)
    assert result.bill.total == pytest.approx((186.0 + 14.4) * 1.1)
    assert result.bill_low.capacity_charge == result.bill_high.capacity_charge == 14.4
    # No peak measured: no capacity charge.
    assert projected(project_bill(tariff, rows, now)).bill.capacity_charge == 0.0


def test_weekday_and_weekend_pattern_is_captured() -> None:
    def weekly(hour: datetime) -> float:
        return 2.0 if hour.weekday() >= 5 else 1.0

    now = at(1, 11)
    result = projected(project_bill(TELESCOPIC, series(at(12, 1, year=2024), now, weekly), now))
    assert result.trend == 1.0
    # 23 weekdays x 24 x 1 + 8 weekend days x 24 x 2 = 552 + 384 = 936
    assert result.import_kwh == pytest.approx(936.0)


def test_time_of_use_bill_follows_the_hours() -> None:
    peak = TimeWindow("peak", time(17), time(22), 9.0, frozenset(range(5)))
    tariff = Tariff(TimeOfUsePricing((peak,), 5.0))
    now = at(1, 11)
    result = projected(project_bill(tariff, series(at(12, 1, year=2024), now, constant(1.0)), now))
    # peak: 23 weekdays x 5 h = 115 kWh x 9 = 1035; default: 629 kWh x 5 = 3145
    assert [line.name for line in result.bill.lines] == ["peak", "default"]
    assert [line.kwh for line in result.bill.lines] == pytest.approx([115.0, 629.0])
    assert result.bill.energy_charge == pytest.approx(4180.0)
    assert result.tier is None


def test_export_credit_is_projected() -> None:
    def sunny(hour: datetime) -> float:
        return 0.5 if 10 <= hour.hour < 14 else 0.0

    tariff = Tariff(FlatPricing(8.0), export_price=2.0)
    now = at(1, 11)
    rows = series(at(12, 1, year=2024), now, constant(1.0), sunny)
    result = projected(project_bill(tariff, rows, now))
    # 31 days x 4 h x 0.5 kWh = 62 kWh x 2 = 124
    assert result.bill.export_kwh == pytest.approx(62.0)
    assert result.bill.export_credit == pytest.approx(124.0)
    assert result.bill.total == pytest.approx(744.0 * 8 - 124.0)
    assert result.bill_low.export_credit == pytest.approx(124.0)


def test_a_step_up_carries_on() -> None:
    def stepped(hour: datetime) -> float:
        return 1.5 if hour >= at(1, 1) else 1.0

    now = at(1, 8)
    result = projected(project_bill(TELESCOPIC, series(at(12, 1, year=2024), now, stepped), now))
    # The last four weeks (11 Dec - 7 Jan) give each weekday-hour (3 x 1.0 + 1.5) / 4 = 1.125.
    # Daily ratios: 21 days of 1 / 1.125, then 7 of 1.5 / 1.125 = 4/3: a clean step, kept whole.
    assert result.trend == pytest.approx(4 / 3)
    # 7 days x 24 x 1.5 = 252 so far, then 24 days x 24 x 1.125 x 4/3 = 864
    assert result.import_so_far_kwh == 252.0
    assert result.import_kwh == pytest.approx(1116.0)


def test_a_ramp_carries_on_for_two_weeks() -> None:
    def rising(hour: datetime) -> float:
        return 1.0 + 0.01 * (hour.date() - at(12, 1, year=2024).date()).days  # +1 % a day

    now = at(1, 11)
    result = projected(project_bill(TELESCOPIC, series(at(12, 1, year=2024), now, rising), now))
    # Truth: 24 x (31 days + 0.01 x (31 + ... + 61)) = 24 x 45.26 = 1086.24. Without a trend the
    # profile of 14 Dec - 10 Jan (1.265 kWh an hour on average) gives about 325.2 so far plus
    # 504 x 1.265 = 962.8, 11 % short. The ramp, held from two weeks ahead (25 January):
    held = sum(kwh for _, kwh, _ in series(at(1, 1), at(2, 1), lambda h: rising(min(h, at(1, 25)))))
    assert held == pytest.approx(1081.2)
    assert result.trend > 1.05
    # four weekly profile values per slot turn the ramp into a staircase: the line fits it to 1 %
    assert result.import_kwh == pytest.approx(held, rel=0.01)
    assert result.import_kwh == pytest.approx(1086.24, rel=0.015)


def test_noisy_days_do_not_make_a_trend() -> None:
    rng = random.Random(7)
    now = at(1, 11)
    noise = {day: rng.uniform(0.9, 1.1) for day in range(60)}
    rows = series(at(12, 1, year=2024), now, lambda hour: noise[(hour - at(12, 1, year=2024)).days])
    result = projected(project_bill(TELESCOPIC, rows, now))
    assert result.trend == pytest.approx(1.0, abs=0.02)
    assert result.import_low_kwh < result.import_kwh < result.import_high_kwh


def test_missing_hours_in_the_history_are_unknown_not_zero() -> None:
    rng = random.Random(3)
    now = at(1, 11)
    december = series(at(12, 1, year=2024), at(1, 1), constant(1.0))
    rows = [row for row in december if rng.random() > 0.2] + series(at(1, 1), now, constant(1.0))
    result = projected(project_bill(TELESCOPIC, rows, now))
    assert result.import_kwh == pytest.approx(744.0)


def evening(hour: datetime) -> float:
    return 2.0 if 18 <= hour.hour < 22 else 1.0  # 20 x 1 + 4 x 2 = 28 kWh a day


def test_a_weekday_hour_never_seen_takes_that_hour_on_other_days() -> None:
    now = at(1, 11)
    rows = [
        row
        for row in series(at(12, 1, year=2024), now, evening)
        if (row[0].weekday(), row[0].hour) != (0, 3)  # no Monday 03:00, ever
    ]
    result = projected(project_bill(TELESCOPIC, rows, now))
    # 31 days x 28 = 868, less the unknown Monday 6 January 03:00 of the period so far
    assert result.import_kwh == pytest.approx(867.0)


def test_an_hour_never_seen_takes_the_mean_of_all_hours() -> None:
    now = at(1, 11)
    rows = [row for row in series(at(12, 1, year=2024), now, evening) if row[0].hour != 3]
    result = projected(project_bill(TELESCOPIC, rows, now))
    # 03:00 takes the mean of the other 23 hours: (19 x 1 + 4 x 2) / 23 = 27/23.
    # So far 10 days x 27 = 270; then 21 days x (27 + 27/23) = 13608/23.
    assert result.import_so_far_kwh == 270.0
    assert result.import_kwh == pytest.approx(270 + 13608 / 23)


@pytest.mark.parametrize(
    ("month", "hours"),
    [(10, 31 * 24 + 1), (3, 31 * 24 - 1)],  # the clocks go back in October, forward in March
)
def test_daylight_saving_periods(month: int, hours: int) -> None:
    now = at(month, 11)
    rows = series(at(month - 1, 1), now, constant(1.0))
    result = projected(project_bill(TELESCOPIC, rows, now))
    assert result.import_kwh == pytest.approx(hours)


def test_a_partial_hour_counts_up_to_now() -> None:
    # India is UTC+05:30: statistics' UTC hours start at half past, across local midnight.
    now = at(1, 11, zone=IST)  # 10 January 18:30 UTC
    rows = series(datetime(2024, 11, 30, 18, tzinfo=UTC).astimezone(IST), now, constant(1.0))
    current = (datetime(2025, 1, 10, 18, tzinfo=UTC).astimezone(IST), 0.5, 0.0)  # to 18:30
    result = projected(project_bill(TELESCOPIC, [*rows, current], now))
    # half of the hour across the period's start, 239 whole hours, half of the current one
    assert result.import_so_far_kwh == pytest.approx(240.0)
    assert result.import_kwh == pytest.approx(744.0)


def test_rows_from_the_future_are_ignored() -> None:
    now = at(1, 11)
    rows = series(at(12, 1, year=2024), at(2, 1), lambda hour: 1.0 if hour < now else 50.0)
    assert projected(project_bill(TELESCOPIC, rows, now)).import_kwh == pytest.approx(744.0)


def test_without_a_week_of_history_the_period_average_stands_in() -> None:
    def alternate(hour: datetime) -> float:
        return 2.0 if hour.day % 2 else 1.0  # 6-10 January: 1, 2, 1, 2, 1 kWh an hour

    now = at(1, 11)
    result = projected(project_bill(TELESCOPIC, series(at(1, 6), now, alternate), now))
    assert result.method is ProjectionMethod.PERIOD_AVERAGE
    assert result.trend == pytest.approx(1.0)
    # 168 kWh in 120 hours: 1.4 an hour; 504 hours to come: 705.6
    assert result.import_so_far_kwh == 168.0
    assert result.import_kwh == pytest.approx(873.6)
    # Daily ratios 5/7, 10/7, 5/7, 10/7, 5/7 around 1: squares 3 x (2/7)^2 + 2 x (3/7)^2 = 30/49,
    # noise sqrt(30/49 / 4); 90 % range: 1.645 x noise x 705.6 x sqrt(1/21 days + 1/5 days).
    spread = 1.645 * math.sqrt(30 / 49 / 4) * 705.6 * math.sqrt(1 / 21 + 1 / 5)
    assert result.import_low_kwh == pytest.approx(873.6 - spread)
    assert result.import_high_kwh == pytest.approx(873.6 + spread)


def test_a_period_average_needs_two_days() -> None:
    now = at(1, 11)
    result = project_bill(TELESCOPIC, series(at(1, 9, 1), now, constant(1.0)), now)
    assert result == NoProjection(NOT_ENOUGH_DATA)


def test_a_new_period_projects_from_the_history_alone() -> None:
    now = at(1, 1)
    result = projected(
        project_bill(TELESCOPIC, series(at(12, 20, year=2024), now, constant(1.0)), now)
    )
    assert result.import_so_far_kwh == 0.0
    assert result.import_kwh == pytest.approx(744.0)


def test_weeks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one week"):
        project_bill(TELESCOPIC, [], at(1, 11), weeks=0)


def test_a_range_below_nothing_stops_at_nothing() -> None:
    def wild(hour: datetime) -> float:
        return 20.0 if hour.day in {7, 9} else 0.0  # 6-10 January: 0, 20, 0, 20, 0

    now = at(1, 11)
    result = projected(project_bill(TELESCOPIC, series(at(1, 6), now, wild), now))
    assert result.import_low_kwh == result.import_so_far_kwh == 960.0


# --- slab crossings -----------------------------------------------------------------------


def test_crossed_into_tier() -> None:
    now = at(1, 11)
    rows = series(at(12, 1, year=2024), now, constant(0.25))
    lower = projected(project_bill(TELESCOPIC, rows, now))  # 186 kWh: tier 2
    higher = dataclasses.replace(lower, tier=3)
    assert lower.tier == 2
    assert crossed_into_tier(lower, higher) == 3
    assert crossed_into_tier(higher, lower) is None  # a fall
    assert crossed_into_tier(lower, lower) is None
    assert crossed_into_tier(None, higher) is None  # a first projection
    assert crossed_into_tier(NoProjection(NOT_ENOUGH_DATA), higher) is None
    assert crossed_into_tier(lower, NoProjection(NOT_ENOUGH_DATA)) is None
    next_period = dataclasses.replace(higher, period=TELESCOPIC.billing_period(at(2, 1)))
    assert crossed_into_tier(lower, next_period) is None
    flat = dataclasses.replace(higher, tier=None)
    assert crossed_into_tier(lower, flat) is None


# --- a noisy household --------------------------------------------------------------------


def household(seed: int, first: datetime, until: datetime) -> list[HourlyEnergy]:
    """Hourly import of a synthetic household: daily and weekly rhythm, weather, appliances."""
    rng = random.Random(seed)
    weather: dict[object, float] = {}

    def kwh(hour: datetime) -> float:
        day = weather.setdefault(hour.date(), rng.lognormvariate(0, 0.2))
        weekend = hour.weekday() >= 5
        use = 0.25  # fridge and standby
        if 6 <= hour.hour < 9:
            use += 0.3 if weekend else 0.6
        if 9 <= hour.hour < 17 and weekend:
            use += 0.5
        if 17 <= hour.hour < 23:
            use += 0.9
        use *= day * rng.lognormvariate(0, 0.3)
        if 8 <= hour.hour < 21 and rng.random() < 0.04:
            use += 1.2  # washing machine, oven
        return use

    return series(first, until, kwh)


def test_noisy_household_projected_on_day_ten() -> None:
    tariff = Tariff(
        SlabPricing((Slab(200, 3.0), Slab(500, 4.5), Slab(None, 6.0))),
        BillingCycle(months=2, anchor_month=3),
        fixed_charge=150.0,
        tax_percent=5.0,
    )
    now = at(3, 11)  # day 10 of March-April, across the change to summer time
    period = tariff.billing_period(now)
    errors, held = [], 0
    for seed in range(10):
        rows = household(seed, at(2, 11), at(2, 11) + timedelta(weeks=12))
        actual = bill_for(tariff, rows, period).total
        result = projected(project_bill(tariff, [row for row in rows if row[0] < now], now))
        errors.append(abs(result.bill.total / actual - 1))
        held += result.bill_low.total <= actual <= result.bill_high.total
    # Weather makes days vary by a fifth: the remaining 51 days and the four weeks behind the
    # profile are each a few per cent off their mean, more with slabs. Nine in ten within 10 %.
    assert sum(error < 0.10 for error in errors) >= 9
    assert sum(errors) / len(errors) < 0.05
    assert held >= 7  # a nominal 90 % range; it assumes the days independent
