"""Tariffs, billing periods, cost accounting and itemised bills, with hand-computed costs."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from custom_components.shelly_energy.energy.tariff import (
    BandedCapacity,
    Bill,
    BillAccumulator,
    BillingCycle,
    BillingPeriod,
    CapacityBand,
    ChargeLine,
    FlatPricing,
    PerKwCapacity,
    Pricing,
    Slab,
    SlabPricing,
    Tariff,
    TariffError,
    TimeOfUsePricing,
    TimeWindow,
    bill_for,
)

IST = ZoneInfo("Asia/Kolkata")  # UTC+05:30: UTC hours of statistics straddle local midnight
BERLIN = ZoneInfo("Europe/Berlin")
SLABS = (Slab(100, 3.0), Slab(300, 4.5), Slab(None, 6.0))
TELESCOPIC = SlabPricing(SLABS)
NON_TELESCOPIC = SlabPricing(SLABS, telescopic=False)
PEAK = TimeWindow("peak", time(17), time(22), 9.0, frozenset(range(5)))  # Mon-Fri
NIGHT = TimeWindow("night", time(22), time(6), 2.0)  # every night, across midnight
TIME_OF_USE = TimeOfUsePricing((PEAK, NIGHT), default_price=5.0)
PRICINGS: list[Pricing] = [FlatPricing(8.0), TELESCOPIC, NON_TELESCOPIC, TIME_OF_USE]
# Norway's steps (NOK per month, simplified): up to 2 kW, up to 5 kW, up to 10 kW, above.
NORWAY = BandedCapacity(
    (
        CapacityBand(2.0, 120.0),
        CapacityBand(5.0, 190.0),
        CapacityBand(10.0, 305.0),
        CapacityBand(None, 420.0),
    )
)
# 2025-01-06 is a Monday.


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, zone: ZoneInfo = IST
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def accumulator(pricing: Pricing, start: datetime | None = None, **tariff: Any) -> BillAccumulator:
    return BillAccumulator(Tariff(pricing, **tariff), start or at(2025, 1, 6))


def lines(acc: BillAccumulator) -> list[tuple[str, float, float]]:
    return [(line.name, line.kwh, line.price) for line in acc.bill.lines]


# --- pricing kinds ------------------------------------------------------------------------


def test_flat_price() -> None:
    acc = accumulator(FlatPricing(8.0))
    cost = acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), 123.5, 0.0)
    # 123.5 kWh x 8.00 = 988.00
    assert cost.energy_charge == 988.0
    assert lines(acc) == [("energy", 123.5, 8.0)]
    assert acc.bill.energy_charge == 988.0
    assert acc.marginal_price == 8.0


@pytest.mark.parametrize(
    ("kwh", "expected_lines", "charge"),
    [
        (0.0, [], 0.0),
        (100.0, [("tier_1", 100.0, 3.0)], 300.0),  # the limit belongs to its tier
        # 100 x 3.00 + 150 x 4.50 = 300 + 675 = 975.00
        (250.0, [("tier_1", 100.0, 3.0), ("tier_2", 150.0, 4.5)], 975.0),
        # 100 x 3.00 + 200 x 4.50 + 100 x 6.00 = 300 + 900 + 600 = 1800.00
        (400.0, [("tier_1", 100.0, 3.0), ("tier_2", 200.0, 4.5), ("tier_3", 100.0, 6.0)], 1800.0),
    ],
)
def test_telescopic_slabs(
    kwh: float, expected_lines: list[tuple[str, float, float]], charge: float
) -> None:
    acc = accumulator(TELESCOPIC)
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), kwh, 0.0)
    assert lines(acc) == expected_lines
    assert acc.bill.energy_charge == charge


@pytest.mark.parametrize(
    ("kwh", "expected_lines", "charge"),
    [
        (100.0, [("tier_1", 100.0, 3.0)], 300.0),  # 100 x 3.00
        (250.0, [("tier_2", 250.0, 4.5)], 1125.0),  # every kWh at tier 2: 250 x 4.50
        (400.0, [("tier_3", 400.0, 6.0)], 2400.0),  # 400 x 6.00
    ],
)
def test_non_telescopic_slabs(
    kwh: float, expected_lines: list[tuple[str, float, float]], charge: float
) -> None:
    acc = accumulator(NON_TELESCOPIC)
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), kwh, 0.0)
    assert lines(acc) == expected_lines
    assert acc.bill.energy_charge == charge


def test_slab_limit_crossed_inside_one_telescopic_update() -> None:
    acc = accumulator(TELESCOPIC)
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), 90.0, 0.0)
    assert acc.marginal_price == 3.0
    cost = acc.add(at(2025, 1, 6, 1), at(2025, 1, 6, 1, 5), 20.0, 0.0)
    # 10 kWh left in tier 1 at 3.00 + 10 kWh in tier 2 at 4.50 = 30 + 45 = 75.00
    assert cost.energy_charge == 75.0
    assert cost.effective_price == 3.75  # 75 / 20
    assert lines(acc) == [("tier_1", 100.0, 3.0), ("tier_2", 10.0, 4.5)]
    assert acc.marginal_price == 4.5


def test_slab_limit_crossed_inside_one_non_telescopic_update() -> None:
    acc = accumulator(NON_TELESCOPIC)
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), 90.0, 0.0)  # 90 x 3.00 = 270
    cost = acc.add(at(2025, 1, 6, 1), at(2025, 1, 6, 1, 5), 20.0, 0.0)
    # 110 x 4.50 = 495, less the 270 already charged: 225.00, i.e. 11.25 per kWh of the update
    assert cost.energy_charge == 225.0
    assert cost.effective_price == 11.25
    assert lines(acc) == [("tier_2", 110.0, 4.5)]
    assert acc.marginal_price == 4.5


def test_slab_marginal_price_and_tiers() -> None:
    acc = accumulator(TELESCOPIC)
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), 100.0, 0.0)
    assert acc.marginal_price == 4.5  # the 101st kWh is in tier 2
    assert [TELESCOPIC.tier_of(kwh) for kwh in (0.0, 100.0, 100.5, 300.0, 1000.0)] == [
        1,
        1,
        2,
        2,
        3,
    ]


def test_time_of_use_interval_straddling_a_window_start() -> None:
    acc = accumulator(TIME_OF_USE)
    cost = acc.add(at(2025, 1, 6, 16, 50), at(2025, 1, 6, 17, 10), 2.0, 0.0)
    # Monday: 16:50-17:00 at the default 5.00, 17:00-17:10 at peak 9.00: 1 x 5 + 1 x 9 = 14.00
    assert cost.energy_charge == 14.0
    assert lines(acc) == [("peak", 1.0, 9.0), ("default", 1.0, 5.0)]
    assert acc.marginal_price == 9.0


def test_time_of_use_window_across_midnight_and_days() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 6, 21))
    cost = acc.add(at(2025, 1, 6, 21), at(2025, 1, 7, 7), 10.0, 0.0)
    # 1 kWh an hour: 21-22 peak 1 x 9 + 22-06 night 8 x 2 + 06-07 default 1 x 5 = 9 + 16 + 5 = 30
    assert cost.energy_charge == pytest.approx(30.0)
    assert acc.bill.energy_charge == pytest.approx(30.0)
    # Today is Tuesday: 00-06 night 6 x 2 + 06-07 default 1 x 5 = 17
    assert acc.today.day == date(2025, 1, 7)
    assert acc.today.import_kwh == pytest.approx(7.0)
    assert acc.today.energy_charge == pytest.approx(17.0)


def test_time_of_use_weekday_against_weekend() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 10, 17))  # Friday 17:00-18:00: peak
    assert acc.add(at(2025, 1, 10, 17), at(2025, 1, 10, 18), 1.0, 0.0).energy_charge == 9.0
    # Saturday 17:00-18:00: peak is Mon-Fri only, so the default price
    assert acc.add(at(2025, 1, 11, 17), at(2025, 1, 11, 18), 1.0, 0.0).energy_charge == 5.0


def test_window_weekdays_are_the_days_it_opens() -> None:
    friday_night = TimeWindow("weekend_night", time(22), time(6), 1.0, frozenset({4}))
    assert friday_night.contains(at(2025, 1, 10, 23))  # Friday 23:00
    assert friday_night.contains(at(2025, 1, 11, 3))  # Saturday 03:00: opened on Friday
    assert not friday_night.contains(at(2025, 1, 11, 23))  # Saturday night: not listed
    assert not friday_night.contains(at(2025, 1, 6, 3))  # Monday 03:00: Sunday not listed
    weekend = TimeWindow("weekend", time(0), time(0), 1.0, frozenset({5, 6}))
    assert weekend.contains(at(2025, 1, 11, 12))  # Saturday noon
    assert weekend.contains(at(2025, 1, 12, 23, 59))  # Sunday 23:59
    assert not weekend.contains(at(2025, 1, 13, 0, 30))  # Monday


def test_first_open_window_wins() -> None:
    pricing = TimeOfUsePricing(
        (TimeWindow("evening", time(18), time(20), 7.0), TimeWindow("all", time(0), time(0), 4.0)),
        default_price=5.0,
    )
    assert pricing.price_at(at(2025, 1, 6, 19)) == 7.0
    assert pricing.price_at(at(2025, 1, 6, 9)) == 4.0
    assert pricing.edges() == (time(0), time(18), time(20))


# --- fixed charge, tax, export ------------------------------------------------------------


def test_fixed_charge_tax_and_export_credit() -> None:
    acc = accumulator(FlatPricing(8.0), fixed_charge=150.0, tax_percent=5.0, export_price=2.5)
    cost = acc.add(at(2025, 1, 6, 10), at(2025, 1, 6, 12), 100.0, 20.0)
    bill = acc.bill
    # energy 100 x 8 = 800; tax 5 % of (800 + 150) = 47.50; credit 20 x 2.50 = 50
    assert (bill.energy_charge, bill.fixed_charge, bill.tax, bill.export_credit) == (
        800.0,
        150.0,
        47.5,
        50.0,
    )
    assert bill.total == 947.5  # 800 + 150 + 47.50 - 50
    assert (cost.energy_charge, cost.export_credit) == (800.0, 50.0)
    today = acc.today
    # the day carries no fixed charge: 800 + 5 % of 800 - 50 = 790
    assert (today.import_kwh, today.export_kwh, today.tax, today.export_credit) == (
        100.0,
        20.0,
        40.0,
        50.0,
    )
    assert today.total == 790.0


def test_net_exporter_is_owed_money() -> None:
    acc = accumulator(FlatPricing(8.0), export_price=3.0)
    acc.add(at(2025, 1, 6, 10), at(2025, 1, 6, 14), 1.0, 10.0)
    assert acc.bill.total == -22.0  # 1 x 8 - 10 x 3


# --- billing periods ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cycle", "moment", "start", "end"),
    [
        (BillingCycle(), at(2025, 1, 15, 12), at(2025, 1, 1), at(2025, 2, 1)),
        (BillingCycle(), at(2025, 1, 1), at(2025, 1, 1), at(2025, 2, 1)),
        (BillingCycle(), at(2024, 12, 31, 23, 59), at(2024, 12, 1), at(2025, 1, 1)),
        (BillingCycle(start_day=28), at(2025, 2, 27, 23, 59), at(2025, 1, 28), at(2025, 2, 28)),
        (BillingCycle(start_day=28), at(2025, 2, 28), at(2025, 2, 28), at(2025, 3, 28)),
        (BillingCycle(start_day=28), at(2024, 2, 29, 12), at(2024, 2, 28), at(2024, 3, 28)),
        (BillingCycle(start_day=28), at(2024, 3, 1), at(2024, 2, 28), at(2024, 3, 28)),
        (BillingCycle(months=2), at(2025, 2, 15), at(2025, 1, 1), at(2025, 3, 1)),
        (BillingCycle(months=2), at(2025, 3, 1), at(2025, 3, 1), at(2025, 5, 1)),
        (BillingCycle(months=2), at(2025, 12, 31), at(2025, 11, 1), at(2026, 1, 1)),
        (BillingCycle(months=2, anchor_month=2), at(2025, 1, 15), at(2024, 12, 1), at(2025, 2, 1)),
        (BillingCycle(months=2, anchor_month=2), at(2025, 2, 1), at(2025, 2, 1), at(2025, 4, 1)),
        (
            BillingCycle(months=2, start_day=28, anchor_month=12),
            at(2025, 2, 10),
            at(2024, 12, 28),
            at(2025, 2, 28),
        ),
        (
            BillingCycle(months=2, start_day=28, anchor_month=12),
            at(2024, 2, 29),
            at(2024, 2, 28),
            at(2024, 4, 28),
        ),
    ],
)
def test_billing_period(
    cycle: BillingCycle, moment: datetime, start: datetime, end: datetime
) -> None:
    assert cycle.period(moment) == BillingPeriod(start, end)
    assert Tariff(FlatPricing(1.0), cycle).billing_period(moment) == (start, end)


def test_billing_period_needs_a_time_zone() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        BillingCycle().period(datetime(2025, 1, 1))


def test_period_contains_compares_real_time() -> None:
    period = BillingCycle().period(at(2025, 10, 15, zone=BERLIN))
    last_second = datetime(2025, 10, 31, 22, 59, 59, tzinfo=UTC)  # 23:59:59 CET
    assert period.contains(last_second)
    assert not period.contains(last_second + timedelta(seconds=1))


def test_delta_across_the_period_start_is_shared_between_periods() -> None:
    acc = accumulator(FlatPricing(8.0), at(2025, 1, 31, 23))
    cost = acc.add(at(2025, 1, 31, 23), at(2025, 2, 1, 1), 2.0, 0.0)
    assert cost.energy_charge == 16.0  # 2 x 8: half in January, half in February
    (january,) = acc.history
    assert january.period == (at(2025, 1, 1), at(2025, 2, 1))
    assert (january.import_kwh, january.energy_charge) == (1.0, 8.0)
    assert acc.bill.period == (at(2025, 2, 1), at(2025, 3, 1))
    assert (acc.bill.import_kwh, acc.bill.energy_charge) == (1.0, 8.0)
    assert (acc.today.day, acc.today.import_kwh) == (date(2025, 2, 1), 1.0)


def test_slabs_start_again_in_a_new_period() -> None:
    acc = accumulator(TELESCOPIC, at(2025, 1, 31, 12))
    acc.add(at(2025, 1, 31, 12), at(2025, 1, 31, 13), 150.0, 0.0)
    assert acc.marginal_price == 4.5
    acc.add(at(2025, 1, 31, 23), at(2025, 2, 1, 0), 0.0, 0.0)
    # an interval ending at the period's end closes it: the new period starts at tier 1
    assert acc.history[-1].energy_charge == 525.0  # 100 x 3 + 50 x 4.5
    assert acc.bill.import_kwh == 0.0
    assert acc.marginal_price == 3.0
    assert acc.today.day == date(2025, 2, 1)


def test_history_keeps_the_last_twelve_periods() -> None:
    acc = accumulator(FlatPricing(1.0), at(2024, 1, 15))
    for month in range(1, 15):  # February 2024 to March 2025
        moment = at(2024 + month // 12, month % 12 + 1, 15)
        acc.add(moment, moment, 0.0, 0.0)
    assert len(acc.history) == 12
    # January 2024 to February 2025 closed: the first two are gone
    assert acc.history[0].period.start == at(2024, 3, 1)
    assert acc.history[-1].period.start == at(2025, 2, 1)
    assert acc.bill.period.start == at(2025, 3, 1)


# --- the accumulator's rules --------------------------------------------------------------


def test_empty_interval_moves_time_of_use_prices_on() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 6, 16, 59))
    assert acc.marginal_price == 5.0
    assert acc.effective_price == 5.0
    cost = acc.add(at(2025, 1, 6, 16, 59), at(2025, 1, 6, 17, 1), 0.0, 0.0)
    assert cost.effective_price == 9.0  # nothing imported: the marginal price
    assert acc.marginal_price == 9.0


def test_overlapping_intervals_move_forward_and_keep_their_energy() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 6, 16, 40))
    acc.add(at(2025, 1, 6, 16, 40), at(2025, 1, 6, 16, 55), 1.0, 0.0)
    # overlaps by 5 minutes: accounted as 16:55-17:05, half default, half peak
    acc.add(at(2025, 1, 6, 16, 50), at(2025, 1, 6, 17, 5), 2.0, 0.0)
    assert acc.last_end == at(2025, 1, 6, 17, 5)
    # entirely in the past: accounted at the last end, 17:05 (peak)
    acc.add(at(2025, 1, 6, 12), at(2025, 1, 6, 13), 1.0, 0.0)
    assert acc.last_end == at(2025, 1, 6, 17, 5)
    assert lines(acc) == [("peak", 2.0, 9.0), ("default", 2.0, 5.0)]


@pytest.mark.parametrize(
    ("start", "end", "import_kwh", "export_kwh", "message"),
    [
        (datetime(2025, 1, 6), at(2025, 1, 6, 1), 1.0, 0.0, "no time zone"),
        (at(2025, 1, 6, 2), at(2025, 1, 6, 1), 1.0, 0.0, "before it starts"),
        (at(2025, 1, 6), at(2025, 1, 6, 1), -1.0, 0.0, "not negative"),
        (at(2025, 1, 6), at(2025, 1, 6, 1), 1.0, math.nan, "finite"),
    ],
)
def test_add_rejects_impossible_intervals(
    start: datetime, end: datetime, import_kwh: float, export_kwh: float, message: str
) -> None:
    acc = accumulator(FlatPricing(1.0))
    with pytest.raises(ValueError, match=message):
        acc.add(start, end, import_kwh, export_kwh)


def test_accumulator_needs_a_time_zone() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        BillAccumulator(Tariff(FlatPricing(1.0)), datetime(2025, 1, 6))


def quarter_hours(start: datetime, count: int) -> list[tuple[datetime, datetime, float, float]]:
    """Uneven consumption, 15 minutes at a time: 0.4-1.6 kWh import, some export."""
    first = start.astimezone(UTC)
    return [
        (
            (first + timedelta(minutes=15 * n)).astimezone(start.tzinfo),
            (first + timedelta(minutes=15 * (n + 1))).astimezone(start.tzinfo),
            0.4 + 0.3 * (n % 5),
            0.1 * (n % 3),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("pricing", PRICINGS)
def test_effective_prices_sum_to_the_energy_charge(pricing: Pricing) -> None:
    acc = accumulator(pricing, at(2025, 1, 6))
    paid = 0.0
    for interval in quarter_hours(at(2025, 1, 6), 4 * 96):  # four days, 383.4 kWh
        cost = acc.add(*interval)
        paid += cost.effective_price * cost.import_kwh
    assert acc.bill.import_kwh > 300  # crosses both slab limits
    assert paid == pytest.approx(acc.bill.energy_charge, rel=1e-12)


@pytest.mark.parametrize("pricing", PRICINGS)
def test_restart_continues_exactly(pricing: Pricing) -> None:
    tariff = Tariff(pricing, BillingCycle(start_day=7), 100.0, 5.0, 2.0)
    intervals = quarter_hours(at(2025, 1, 6, 20), 2 * 96)  # across a day and a period start
    uninterrupted = BillAccumulator(tariff, intervals[0][0])
    restarted = BillAccumulator(tariff, intervals[0][0])
    for interval in intervals[:50]:
        uninterrupted.add(*interval)
        restarted.add(*interval)
    restarted = BillAccumulator.from_dict(tariff, json.loads(json.dumps(restarted.to_dict())))
    for interval in intervals[50:]:
        assert restarted.add(*interval) == uninterrupted.add(*interval)
    assert restarted.bill == uninterrupted.bill
    assert restarted.today == uninterrupted.today
    assert restarted.history == uninterrupted.history
    assert (restarted.marginal_price, restarted.effective_price) == (
        uninterrupted.marginal_price,
        uninterrupted.effective_price,
    )
    assert restarted.tariff is tariff


def test_restored_state_right_after_a_restart() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 6, 16, 50))
    acc.add(at(2025, 1, 6, 16, 50), at(2025, 1, 6, 17, 10), 2.0, 0.0)
    restored = BillAccumulator.from_dict(acc.tariff, json.loads(json.dumps(acc.to_dict())))
    assert restored.bill == acc.bill
    assert restored.today == acc.today
    assert restored.last_end == acc.last_end
    assert (restored.marginal_price, restored.effective_price) == (9.0, 7.0)  # 14 / 2


def test_changed_tariff_reprices_the_current_period() -> None:
    acc = accumulator(TIME_OF_USE, at(2025, 1, 6, 16, 50))
    acc.add(at(2025, 1, 6, 16, 50), at(2025, 1, 6, 17, 10), 2.0, 0.0)
    flat = BillAccumulator.from_dict(Tariff(FlatPricing(8.0)), acc.to_dict())
    assert flat.bill.energy_charge == 16.0  # 2 x 8
    back = BillAccumulator.from_dict(Tariff(TimeOfUsePricing((NIGHT,), 5.0)), flat.to_dict())
    assert [(line.name, line.kwh) for line in back.bill.lines] == [("default", 2.0)]
    assert back.bill.energy_charge == 10.0  # the flat kWh are charged at the default 5.00


def test_changed_billing_cycle_takes_effect_when_the_period_ends() -> None:
    acc = accumulator(FlatPricing(1.0), at(2025, 1, 10))
    acc.add(at(2025, 1, 10), at(2025, 1, 10, 1), 3.0, 0.0)
    moved = BillAccumulator.from_dict(
        Tariff(FlatPricing(1.0), BillingCycle(start_day=12)), acc.to_dict()
    )
    moved.add(at(2025, 1, 10, 1), at(2025, 1, 10, 2), 1.0, 0.0)
    assert moved.bill.period == (at(2025, 1, 1), at(2025, 2, 1))
    moved.add(at(2025, 2, 1), at(2025, 2, 1, 1), 2.0, 0.0)
    assert moved.history[-1].period == (at(2025, 1, 1), at(2025, 2, 1))
    assert moved.history[-1].import_kwh == 4.0
    assert moved.bill.period == (at(2025, 1, 12), at(2025, 2, 12))
    assert moved.bill.import_kwh == 2.0
    moved.add(at(2025, 2, 12), at(2025, 2, 12, 1), 5.0, 0.0)
    assert moved.bill.period == (at(2025, 2, 12), at(2025, 3, 12))
    assert moved.bill.import_kwh == 5.0


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"history": [{"period_start": "2025-01-01T00:00:00+05:30"}]},
        {"day": None},
    ],
)
def test_accumulator_rejects_foreign_data(change: dict[str, Any]) -> None:
    acc = accumulator(FlatPricing(1.0))
    with pytest.raises(ValueError, match="accumulator"):
        BillAccumulator.from_dict(acc.tariff, acc.to_dict() | change)


def test_accumulator_rejects_bad_timestamps() -> None:
    acc = accumulator(FlatPricing(1.0))
    with pytest.raises(ValueError, match="Invalid isoformat"):
        BillAccumulator.from_dict(acc.tariff, acc.to_dict() | {"last_end": "yesterday"})


# --- itemised bills from hourly statistics ------------------------------------------------


def utc_hours(first: datetime, count: int, zone: ZoneInfo) -> list[datetime]:
    return [(first + timedelta(hours=n)).astimezone(zone) for n in range(count)]


@pytest.mark.parametrize(
    "pricing",
    [
        *PRICINGS,
        TimeOfUsePricing((TimeWindow("peak", time(17, 30), time(21), 9.0),), 4.0),
    ],
)
def test_bill_for_hourly_statistics_equals_the_accumulator(pricing: Pricing) -> None:
    tariff = Tariff(pricing, BillingCycle(months=2), 120.0, 18.0, 3.0)
    # UTC hours from 31 Dec 18:00 UTC (23:30 IST) to 1 Mar 19:00 UTC: IST midnights cut hours
    hours = utc_hours(datetime(2024, 12, 31, 18, tzinfo=UTC), 59 * 24 + 1, IST)
    hourly = [(hour, 0.2 + 0.05 * (n % 7), 0.03 * (n % 4)) for n, hour in enumerate(hours)]
    acc = BillAccumulator(tariff, hours[0])
    for hour, imported, exported in hourly:
        acc.add(hour, hour + timedelta(hours=1), imported, exported)
    period = tariff.billing_period(at(2025, 1, 15))
    assert period == (at(2025, 1, 1), at(2025, 3, 1))
    bill = bill_for(tariff, hourly, period)
    assert bill == acc.history[-1]
    assert bill.import_kwh < sum(imported for _, imported, _ in hourly)  # half-hours outside


def test_bill_for_itemises_a_telescopic_period() -> None:
    tariff = Tariff(TELESCOPIC, fixed_charge=50.0, tax_percent=10.0, export_price=2.0)
    period = tariff.billing_period(at(2025, 1, 1))
    hours = utc_hours(period.start.astimezone(UTC), 31 * 24, IST)
    hourly = [(hour, 0.5, 0.25) for hour in hours]  # 744 hours: 372 kWh in, 186 kWh out
    bill = bill_for(tariff, hourly, period)
    # 100 x 3 + 200 x 4.5 + 72 x 6 = 300 + 900 + 432 = 1632
    assert [(line.name, line.kwh, line.amount) for line in bill.lines] == [
        ("tier_1", 100.0, 300.0),
        ("tier_2", 200.0, 900.0),
        ("tier_3", 72.0, 432.0),
    ]
    # tax 10 % of (1632 + 50) = 168.20; credit 186 x 2 = 372; total 1632 + 50 + 168.2 - 372
    assert bill.tax == pytest.approx(168.2)
    assert bill.export_credit == 372.0
    assert bill.total == pytest.approx(1478.2)
    assert bill.to_dict()["total"] == bill.total
    assert bill.to_dict()["lines"][0] == {
        "name": "tier_1",
        "kwh": 100.0,
        "price": 3.0,
        "amount": 300.0,
    }


@pytest.mark.parametrize(("day", "hours"), [(date(2025, 10, 26), 25), (date(2025, 3, 30), 23)])
def test_bill_for_daylight_saving_days(day: date, hours: int) -> None:
    # a window over 02:00-03:00: twice on the autumn day, never on the spring day
    pricing = TimeOfUsePricing((TimeWindow("two", time(2), time(3), 9.0),), 1.0)
    tariff = Tariff(pricing)
    midnight = datetime.combine(day, time(0), BERLIN)
    rows = [(hour, 1.0, 0.0) for hour in utc_hours(midnight.astimezone(UTC), 30, BERLIN)]
    day_only = BillingPeriod(midnight, datetime.combine(day + timedelta(days=1), time(0), BERLIN))
    bill = bill_for(tariff, rows, day_only)
    assert bill.import_kwh == hours
    two = hours - 23  # 2 kWh in the window in autumn, 0 in spring
    assert bill.energy_charge == (hours - two) * 1.0 + two * 9.0


# --- definitions and storage --------------------------------------------------------------


@pytest.mark.parametrize(
    "tariff",
    [
        Tariff(FlatPricing(8.0)),
        Tariff(TELESCOPIC, BillingCycle(2, 15, 2), 120.0, 18.0, 3.5),
        Tariff(NON_TELESCOPIC),
        Tariff(TIME_OF_USE, BillingCycle(start_day=28), export_price=1.25),
        Tariff(FlatPricing(0.3), capacity=PerKwCapacity(4.5, 2.5)),
        Tariff(FlatPricing(0.3), capacity=NORWAY),
    ],
)
def test_tariff_storage_round_trip(tariff: Tariff) -> None:
    assert Tariff.from_dict(json.loads(json.dumps(tariff.to_dict()))) == tariff


def test_tariff_storage_format() -> None:
    assert Tariff(TIME_OF_USE).to_dict() == {
        "version": 1,
        "pricing": {
            "kind": "time_of_use",
            "default_price": 5.0,
            "windows": [
                {
                    "name": "peak",
                    "start": "17:00:00",
                    "end": "22:00:00",
                    "price": 9.0,
                    "weekdays": [0, 1, 2, 3, 4],
                },
                {
                    "name": "night",
                    "start": "22:00:00",
                    "end": "06:00:00",
                    "price": 2.0,
                    "weekdays": [0, 1, 2, 3, 4, 5, 6],
                },
            ],
        },
        "billing": {"months": 1, "start_day": 1, "anchor_month": 1},
        "fixed_charge": 0.0,
        "tax_percent": 0.0,
        "export_price": 0.0,
    }
    assert Tariff(TELESCOPIC).to_dict()["pricing"] == {
        "kind": "slabs",
        "telescopic": True,
        "slabs": [[100, 3.0], [300, 4.5], [None, 6.0]],
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 2}, "malformed"),
        ({"pricing": {"kind": "dynamic"}}, "malformed"),
        ({"pricing": {"kind": "flat"}}, "malformed"),
        ({"pricing": {"kind": "flat", "price": "cheap"}}, "malformed"),
        ({"billing": {"months": 1}}, "malformed"),
        ({"pricing": {"kind": "flat", "price": -1.0}}, "negative"),
        ({"billing": {"months": 3, "start_day": 1, "anchor_month": 1}}, "period_months"),
        ({"capacity": {"kind": "per_kva", "price": 1.0}}, "malformed"),
        ({"capacity": {"kind": "per_kw", "price": 1.0}}, "malformed"),
        ({"capacity": {"kind": "bands", "bands": [[2.0, 10.0]]}}, "band_open_end"),
    ],
)
def test_tariff_from_foreign_data(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(TariffError) as caught:
        Tariff.from_dict(Tariff(FlatPricing(1.0)).to_dict() | change)
    assert caught.value.reason == reason


def test_time_of_use_from_bad_clock() -> None:
    data = Tariff(TIME_OF_USE).to_dict()
    data["pricing"]["windows"][0]["start"] = "5 pm"
    with pytest.raises(TariffError, match="not a stored tariff") as caught:
        Tariff.from_dict(data)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: FlatPricing(-0.5), "negative"),
        (lambda: FlatPricing(math.inf), "not_a_number"),
        (lambda: SlabPricing(()), "no_slabs"),
        (lambda: SlabPricing((Slab(100, 3.0),)), "slab_open_end"),
        (lambda: SlabPricing((Slab(0, 3.0), Slab(None, 4.0))), "slab_order"),
        (lambda: SlabPricing((Slab(200, 3.0), Slab(100, 4.0), Slab(None, 5.0))), "slab_order"),
        (lambda: SlabPricing((Slab(None, 3.0), Slab(None, 4.0))), "slab_order"),
        (lambda: SlabPricing((Slab(math.nan, 3.0), Slab(None, 4.0))), "slab_order"),
        (lambda: SlabPricing((Slab(100, 3.0), Slab(None, -4.0))), "negative"),
        (lambda: TimeWindow("", time(1), time(2), 1.0), "window_name"),
        (lambda: TimeWindow("default", time(1), time(2), 1.0), "window_name"),
        (lambda: TimeWindow("w", time(1), time(2), 1.0, frozenset()), "window_weekdays"),
        (lambda: TimeWindow("w", time(1), time(2), 1.0, frozenset({7})), "window_weekdays"),
        (lambda: TimeWindow("w", time(1), time(2), -1.0), "negative"),
        (lambda: TimeOfUsePricing((), 1.0), "no_windows"),
        (lambda: TimeOfUsePricing((PEAK, PEAK), 1.0), "window_name"),
        (lambda: TimeOfUsePricing((PEAK,), math.nan), "not_a_number"),
        (lambda: BillingCycle(months=0), "period_months"),
        (lambda: BillingCycle(start_day=29), "start_day"),
        (lambda: BillingCycle(start_day=0), "start_day"),
        (lambda: BillingCycle(anchor_month=13), "anchor_month"),
        (lambda: Tariff(FlatPricing(1.0), fixed_charge=-1.0), "negative"),
        (lambda: Tariff(FlatPricing(1.0), tax_percent=-1.0), "negative"),
        (lambda: Tariff(FlatPricing(1.0), export_price=math.nan), "not_a_number"),
        (lambda: PerKwCapacity(-4.5), "negative"),
        (lambda: PerKwCapacity(4.5, math.inf), "not_a_number"),
        (lambda: BandedCapacity(()), "band_open_end"),
        (lambda: BandedCapacity((CapacityBand(2.0, 10.0),)), "band_open_end"),
        (lambda: BandedCapacity((CapacityBand(0.0, 1.0), CapacityBand(None, 2.0))), "band_order"),
        (
            lambda: BandedCapacity(
                (CapacityBand(5.0, 1.0), CapacityBand(2.0, 2.0), CapacityBand(None, 3.0))
            ),
            "band_order",
        ),
        (lambda: BandedCapacity((CapacityBand(2.0, -1.0), CapacityBand(None, 2.0))), "negative"),
    ],
)
def test_impossible_tariffs_are_refused(build: Any, reason: str) -> None:
    with pytest.raises(TariffError) as caught:
        build()
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)
    assert str(caught.value)


def test_charge_line_amount() -> None:
    line = ChargeLine("tier_2", 150.0, 4.5)
    assert line.amount == 675.0
    assert ChargeLine.from_dict(line.to_dict()) == line


# --- capacity charges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak_kw", "band", "charge"),
    [(0.0, 1, 120.0), (2.0, 1, 120.0), (2.01, 2, 190.0), (5.37, 3, 305.0), (12.0, 4, 420.0)],
)
def test_a_stepped_capacity_charge_is_its_band_s(peak_kw: float, band: int, charge: float) -> None:
    # A limit belongs to its band: a peak of exactly 2 kW is in the first.
    assert (NORWAY.band_of(peak_kw), NORWAY.charge(peak_kw)) == (band, charge)


def test_a_capacity_charge_per_kw_has_a_minimum() -> None:
    # Flanders: per kW of the month's peak, on at least 2.5 kW.
    flanders = PerKwCapacity(4.0, 2.5)
    assert flanders.charge(3.6) == pytest.approx(14.4)
    assert flanders.charge(1.0) == 10.0


def test_the_bill_adds_the_capacity_charge_and_taxes_it() -> None:
    acc = accumulator(
        FlatPricing(0.25),
        fixed_charge=10.0,
        tax_percent=20.0,
        export_price=0.1,
        capacity=PerKwCapacity(4.0, 2.5),
    )
    acc.add(at(2025, 1, 6), at(2025, 1, 6, 1), 100.0, 20.0)
    # No peak measured yet: no charge.
    assert (acc.bill.capacity_kw, acc.bill.capacity_charge) == (None, 0.0)
    acc.capacity_kw = 3.6
    bill = acc.bill
    # 100 kWh at 0.25 = 25, fixed 10, capacity 3.6 kW at 4.00 = 14.40; 20 % tax on 49.40.
    assert bill.capacity_charge == pytest.approx(14.4)
    assert bill.tax == pytest.approx(9.88)
    assert bill.total == pytest.approx(25.0 + 10.0 + 14.4 + 9.88 - 2.0)
    assert Bill.from_dict(json.loads(json.dumps(bill.to_dict()))) == bill
    # The peak belongs to its period: the next one starts without.
    acc.add(at(2025, 1, 31, 23), at(2025, 2, 1, 1), 2.0, 0.0)
    assert acc.bill.capacity_kw is None
    assert acc.history[-1].capacity_kw == 3.6
    # ... and survives a restart.
    acc.capacity_kw = 1.0
    restored = BillAccumulator.from_dict(acc.tariff, json.loads(json.dumps(acc.to_dict())))
    assert restored.bill == acc.bill
    assert restored.bill.capacity_charge == 10.0  # the 2.5 kW minimum


def test_bills_from_statistics_charge_the_peak_given() -> None:
    tariff = Tariff(FlatPricing(1.0), capacity=NORWAY)
    period = tariff.billing_period(at(2025, 1, 6))
    hours = [(at(2025, 1, 6, hour), 1.0, 0.0) for hour in range(3)]
    bill = bill_for(tariff, hours, period, capacity_kw=5.37)
    assert (bill.capacity_kw, bill.capacity_charge, bill.total) == (5.37, 305.0, 308.0)
    # A tariff without a capacity charge ignores any peak.
    plain = bill_for(Tariff(FlatPricing(1.0)), hours, period, capacity_kw=5.37)
    assert (plain.capacity_kw, plain.capacity_charge, plain.total) == (None, 0.0, 3.0)
