"""The clock and the household model: determinism, shape, speed."""

from __future__ import annotations

import time

import pytest

from simulator import Clock, Household, Source
from simulator.clock import DEFAULT_MANUAL_START

MIDNIGHT = int(DEFAULT_MANUAL_START) // 60  # 2025-06-01 00:00 UTC, in minutes
PHASES = [Source.parse(spec) for spec in ("grid@a", "grid@b", "grid@c")]


def test_manual_clock_moves_only_when_told() -> None:
    clock = Clock.manual()
    assert clock.is_manual
    assert clock.now() == DEFAULT_MANUAL_START
    assert clock.advance(90) == DEFAULT_MANUAL_START + 90
    assert clock.now() == DEFAULT_MANUAL_START + 90
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="forward"):
        clock.set(0)


def test_real_clock_follows_time_and_cannot_be_moved() -> None:
    clock = Clock()
    assert not clock.is_manual
    assert abs(clock.now() - time.time()) < 1
    with pytest.raises(RuntimeError):
        clock.advance(1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("grid", Source("grid")),
        ("load@b", Source("load", phase=1)),
        ("solar", Source("solar")),
        ("battery@a", Source("battery", phase=0)),
        ("fixed@-300.5", Source("fixed", watts=-300.5)),
    ],
)
def test_source_specs_round_trip(spec: str, expected: Source) -> None:
    assert Source.parse(spec) == expected
    assert Source.parse(str(expected)) == expected


@pytest.mark.parametrize("spec", ["wind", "grid@d", "fixed@lots"])
def test_bad_source_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        Source.parse(spec)


def test_household_is_a_pure_function_of_seed_and_minute() -> None:
    first, second, other = Household(7), Household(7), Household(8)
    minutes = range(MIDNIGHT, MIDNIGHT + 3 * 1440, 37)
    for source in (*PHASES, Source("load"), Source("solar")):
        values = [first.power(source, minute) for minute in reversed(minutes)]
        assert values == [second.power(source, minute) for minute in reversed(minutes)]
    assert [first.power(PHASES[0], m) for m in minutes] != [
        other.power(PHASES[0], m) for m in minutes
    ]
    bulk = first.minute_powers(PHASES, MIDNIGHT - 100, 3000)
    assert bulk[1][::50] == [first.power(PHASES[1], MIDNIGHT - 100 + i) for i in range(0, 3000, 50)]


def test_household_sign_convention_and_shape() -> None:
    house = Household(3)
    day = house.minute_powers(
        [Source("load"), Source("solar"), Source("grid"), Source("fixed", watts=42)], MIDNIGHT, 1440
    )
    load, solar, grid, fixed = day
    assert all(watts > 0 for watts in load)
    assert 140 < min(load) < 320
    assert all(watts <= 0 for watts in solar)
    assert solar[0] == solar[1439] == 0  # night
    assert -4200 < min(solar) < -2000  # about 4 kW at noon in June
    assert min(solar) == min(solar[600:840])
    assert all(
        abs(g - (used + made)) < 1e-9 for g, used, made in zip(grid, load, solar, strict=True)
    )
    assert fixed == [42] * 1440
    assert 4 < sum(load) / 60 / 1000 < 25  # kWh a day


def test_battery_stores_surplus_and_covers_the_night() -> None:
    house = Household(3, battery_wh=10_000)
    load, solar, battery, grid = house.minute_powers(
        [Source("load"), Source("solar"), Source("battery"), Source("grid")], MIDNIGHT, 1440
    )
    assert max(battery) > 0  # charging from the surplus
    assert min(battery) < 0  # discharging
    assert all(
        abs(g - (used + made + stored)) < 1e-9
        for g, used, made, stored in zip(grid, load, solar, battery, strict=True)
    )


def test_sixty_days_of_three_phases() -> None:
    # How fast this is, is the benchmark's business (never a timed unit test).
    house = Household(11, battery_wh=10_000)
    series = house.minute_powers(PHASES, MIDNIGHT - 60 * 1440, 60 * 1440)
    assert [len(phase) for phase in series] == [86_400] * 3
