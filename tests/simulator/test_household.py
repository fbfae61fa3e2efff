"""The clock and the household model: determinism, shape, speed."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import Clock, Household, Simulator, Source
from simulator.clock import DEFAULT_MANUAL_START
from simulator.household import CIRCUITS

MIDNIGHT = int(DEFAULT_MANUAL_START) // 60  # 2025-06-01 00:00 UTC, in minutes
WINTER_MIDNIGHT = 1_764_547_200 // 60  # 2025-12-01 00:00 UTC, in minutes
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
        ("heat_pump", Source("heat_pump")),
        ("oven@c", Source("oven", phase=2)),
    ],
)
def test_source_specs_round_trip(spec: str, expected: Source) -> None:
    assert Source.parse(spec) == expected
    assert Source.parse(str(expected)) == expected


@pytest.mark.parametrize("spec", ["wind", "grid@d", "fixed@lots", "sauna"])
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


def _day(house: Household, sources: list[Source], midnight: int) -> list[list[float]]:
    return house.minute_powers(sources, midnight, 1440)


def test_circuits_nest_in_their_household() -> None:
    house = Household(3, battery_wh=10_000)
    phases = [Source("load", phase=phase) for phase in range(3)]
    circuits = {
        name: _day(house, [Source(name, phase=phase) for phase in range(3)], WINTER_MIDNIGHT)
        for name in CIRCUITS
    }
    loads = _day(house, phases, WINTER_MIDNIGHT)
    for phase, load in enumerate(loads):
        for minute, watts in enumerate(load):
            parts = [circuits[name][phase][minute] for name in CIRCUITS]
            assert all(part >= 0 for part in parts)
            # What the house draws besides its circuits is the base load: 150-300 W over the
            # phases, never less than a fifth of 150 W on one.
            assert watts - sum(parts) > 30
    heat_pump = _day(house, [Source("heat_pump")], WINTER_MIDNIGHT)[0]
    assert set(heat_pump) == {0.0, 1500.0}  # three phases of 500 W, on and off
    assert 10 < sum(heat_pump) / 60 / 1000 < 40  # kWh on a cold day
    # The same watts seen whole: a circuit's phases add up to the circuit.
    assert heat_pump == [sum(watts) for watts in zip(*circuits["heat_pump"], strict=True)]
    # No heating in June.
    assert set(_day(house, [Source("heat_pump")], MIDNIGHT)[0]) == {0.0}


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    day=st.integers(0, 364),
    circuit=st.sampled_from(CIRCUITS),
    phase=st.sampled_from([None, 0, 1, 2]),
)
def test_a_circuit_never_draws_more_than_its_household(
    seed: int, day: int, circuit: str, phase: int | None
) -> None:
    house = Household(seed, battery_wh=5_000)
    midnight = WINTER_MIDNIGHT + day * 1440
    part, whole, solar, battery, grid = _day(
        house,
        [
            Source(circuit, phase=phase),  # type: ignore[arg-type]
            Source("load", phase=phase),
            Source("solar", phase=phase),
            Source("battery", phase=phase),
            Source("grid", phase=phase),
        ],
        midnight,
    )
    assert all(0 <= used <= total for used, total in zip(part, whole, strict=True))
    # The grid sees the circuit inside the house's load, whatever solar and battery do.
    assert all(
        abs(g - (used + made + stored)) < 1e-9
        for g, used, made, stored in zip(grid, whole, solar, battery, strict=True)
    )


def test_meters_of_one_seed_share_one_household() -> None:
    simulator = Simulator(Clock.manual())
    mains = simulator.add_meter("pro3em", seed=3, mac="A0DD6C000001", battery_wh=10_000)
    inverters = simulator.add_meter(
        "gen1_em", seed=3, mac="A0DD6C000002", wiring=["solar", "battery"]
    )
    other = simulator.add_meter("pro3em", seed=4)
    assert inverters.household is mains.household
    assert mains.household.battery_wh == 10_000  # the first meter's options make it
    assert other.household is not mains.household
    with pytest.raises(ValueError, match=r"battery_wh=5000 \(it has 10000\)"):
        simulator.add_meter("proem50", seed=3, mac="A0DD6C000003", battery_wh=5_000)
    with pytest.raises(ValueError, match="need a mac of their own"):
        simulator.add_meter("proem50", seed=4)
    # Repeating the household's options is fine.
    simulator.add_meter("proem50", seed=3, mac="A0DD6C000004", battery_wh=10_000)


def test_a_sub_meter_and_the_mains_add_up() -> None:
    # The demo's house: the mains, the inverters, and a sub-meter on the heat pump, through a
    # day of stored history and an hour of live physics.
    clock = Clock.manual(WINTER_MIDNIGHT * 60)
    simulator = Simulator(clock)
    mains = simulator.add_meter("pro3em", seed=3, history_days=1, battery_wh=10_000)
    inverters = simulator.add_meter(
        "gen1_em", seed=3, mac="A0DD6C000002", history_days=1, wiring=["solar", "battery"]
    )
    circuits = simulator.add_meter(
        "proem50", seed=3, mac="A0DD6C000003", history_days=1, wiring=["load", "heat_pump"]
    )
    clock.advance(3600)
    grid = [mains.counters(phase) for phase in "abc"]
    (solar_in, solar_out), (charged, discharged) = inverters.counters(0), inverters.counters(1)
    consumption = (
        sum(energy_in - energy_out for energy_in, energy_out in grid)
        + (solar_out - solar_in)
        + (discharged - charged)
    )
    load, heat_pump = circuits.counters(0)[0], circuits.counters(1)[0]
    assert consumption == pytest.approx(load, abs=0.01)
    assert 10_000 < heat_pump < load - 3_000  # Wh: the heat pump, and the base load besides
