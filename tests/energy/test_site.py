"""Tests for the energy site: roles, power flows, energy from counter deltas, ratios, persistence.

Every expected value is worked out by hand in the comments next to it. Signs follow the module's
convention: positive towards the home's consumers (grid importing, battery charging, load
consuming); a producing solar CT reads negative.
"""

from __future__ import annotations

import json
import random
from dataclasses import fields
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from custom_components.shelly_energy.energy.capacity import CapacitySettings, PeakRule
from custom_components.shelly_energy.energy.settlement import Settlement
from custom_components.shelly_energy.energy.site import (
    SHORT_COUNTS_KEPT,
    ChannelInput,
    ChannelRef,
    GridMetering,
    LoadEnergy,
    Role,
    RunningPeriod,
    ShortCount,
    SiteAccumulator,
    SiteConfig,
    SiteEnergy,
    SitePower,
    SiteState,
)

DAY = date(2025, 6, 21)
NEXT_DAY = date(2025, 6, 22)

# A single-meter site (a two-channel EM): channel 1 on the grid, channel 2 on the solar inverter.
GRID = ChannelRef("EM0001", "1")
SOLAR = ChannelRef("EM0001", "2")
# A second meter with a battery inverter and a load circuit.
BATTERY = ChannelRef("EM0002", "1")
HEAT_PUMP = ChannelRef("EM0002", "2")
# A three-phase mains meter.
PHASE_A = ChannelRef("PRO3EM01", "a")
PHASE_B = ChannelRef("PRO3EM01", "b")
PHASE_C = ChannelRef("PRO3EM01", "c")
# A second meter on the solar inverter's output.
INVERTER = ChannelRef("PROEM01", "1")

PV_SITE = SiteConfig({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
BATTERY_SITE = SiteConfig(
    {GRID: Role.GRID, SOLAR: Role.SOLAR, BATTERY: Role.BATTERY, HEAT_PUMP: Role.LOAD},
    GridMetering.PER_PHASE,
)


def three_phase_site(metering: GridMetering) -> SiteConfig:
    """Mains phases a, b, c on the grid, and a second meter's channel 1 on the solar inverter."""
    return SiteConfig(
        {PHASE_A: Role.GRID, PHASE_B: Role.GRID, PHASE_C: Role.GRID, INVERTER: Role.SOLAR},
        metering,
    )


def ch(power: float | None, energy_in: float | None, energy_out: float | None) -> ChannelInput:
    return ChannelInput(power=power, energy_in=energy_in, energy_out=energy_out)


def energy(
    *,
    grid_import: float | None = 0.0,
    grid_export: float | None = 0.0,
    solar_production: float | None = 0.0,
    battery_charged: float | None = 0.0,
    battery_discharged: float | None = 0.0,
    home_consumption: float | None = 0.0,
    self_consumed_solar: float | None = 0.0,
) -> SiteEnergy:
    return SiteEnergy(
        grid_import=grid_import,
        grid_export=grid_export,
        solar_production=solar_production,
        battery_charged=battery_charged,
        battery_discharged=battery_discharged,
        home_consumption=home_consumption,
        self_consumed_solar=self_consumed_solar,
    )


# --- one household, several moments of a day ------------------------------------------------------


def test_night_import_only() -> None:
    acc = SiteAccumulator(PV_SITE)
    first = acc.update({GRID: ch(500, 10_000, 2_000), SOLAR: ch(2, 50, 30_000)}, DAY)
    # The inverter draws 2 W standby: production max(-2, 0) = 0; the grid's 500 W include that
    # draw, so consumption = 500 - 0 + 0 = 500. No battery channel: it contributes 0.
    assert first.power == SitePower(
        grid_net=500.0,
        grid_import=500.0,
        grid_export=0.0,
        solar_production=0.0,
        battery_charging=0.0,
        battery_discharging=0.0,
        battery_net=0.0,
        home_consumption=500.0,
        self_consumed_solar=0.0,
        loads={},
    )
    # First sighting: baselines only.
    assert first.energy == energy()
    assert first.self_consumption_rate is None
    assert first.self_sufficiency is None

    # Half an hour later: +250 Wh imported, +1 Wh standby into the inverter, nothing produced.
    second = acc.update({GRID: ch(500, 10_250, 2_000), SOLAR: ch(2, 51, 30_000)}, DAY)
    # production = max(0 - 1, 0) = 0; consumption = 250 - 0 + 0 = 250.
    assert second.energy == energy(grid_import=250.0, home_consumption=250.0)
    assert second.self_consumption_rate is None  # nothing produced today
    assert second.self_sufficiency == 0.0  # 1 - 250 / 250


def test_sunny_midday_export() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(-1_200, 10_000, 2_000), SOLAR: ch(-3_000, 50, 30_000)}, DAY)
    state = acc.update({GRID: ch(-1_200, 10_000, 2_600), SOLAR: ch(-3_000, 50, 31_500)}, DAY)
    # Power: export 1200, production 3000, consumption = 0 - 1200 + 3000 = 1800,
    # self-consumed = 3000 - 1200 = 1800.
    assert state.power.grid_net == -1_200.0
    assert state.power.grid_import == 0.0
    assert state.power.grid_export == 1_200.0
    assert state.power.solar_production == 3_000.0
    assert state.power.home_consumption == 1_800.0
    assert state.power.self_consumed_solar == 1_800.0
    # Energy: export +600, production +1500, consumption = 0 - 600 + 1500 = 900,
    # self-consumed = 1500 - 600 = 900.
    assert state.energy == energy(
        grid_export=600.0,
        solar_production=1_500.0,
        home_consumption=900.0,
        self_consumed_solar=900.0,
    )
    assert state.self_consumption_rate == 60.0  # 900 / 1500
    assert state.self_sufficiency == 100.0  # 1 - 0 / 900


def test_battery_charging_from_solar() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    acc.update(
        {
            GRID: ch(50, 10_000, 2_000),
            SOLAR: ch(-4_000, 50, 30_000),
            BATTERY: ch(2_500, 5_000, 4_000),
            HEAT_PUMP: ch(1_200, 7_000, 0),
        },
        DAY,
    )
    state = acc.update(
        {
            GRID: ch(50, 10_025, 2_000),
            SOLAR: ch(-4_000, 50, 32_000),
            BATTERY: ch(2_500, 6_250, 4_000),
            HEAT_PUMP: ch(1_200, 7_600, 0),
        },
        DAY,
    )
    # Power: consumption = 50 - 0 + 4000 + 0 - 2500 = 1550; self-consumed = 4000 - 0 = 4000
    # (the battery's charge is self-consumed solar too). The heat pump is a load within the 1550.
    assert state.power == SitePower(
        grid_net=50.0,
        grid_import=50.0,
        grid_export=0.0,
        solar_production=4_000.0,
        battery_charging=2_500.0,
        battery_discharging=0.0,
        battery_net=-2_500.0,
        home_consumption=1_550.0,
        self_consumed_solar=4_000.0,
        loads={HEAT_PUMP: 1_200.0},
    )
    # Energy: import +25, production +2000, charged +1250; consumption = 25 + 2000 - 1250 = 775.
    assert state.energy == energy(
        grid_import=25.0,
        solar_production=2_000.0,
        battery_charged=1_250.0,
        home_consumption=775.0,
        self_consumed_solar=2_000.0,
    )
    assert state.self_consumption_rate == 100.0  # 2000 / 2000
    assert state.self_sufficiency == pytest.approx(100 * (1 - 25 / 775))  # 96.774...


def test_battery_discharging_at_night() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    acc.update(
        {
            GRID: ch(100, 10_000, 2_000),
            SOLAR: ch(4, 50, 30_000),
            BATTERY: ch(-800, 5_000, 4_000),
            HEAT_PUMP: ch(0, 7_000, 0),
        },
        DAY,
    )
    state = acc.update(
        {
            GRID: ch(100, 10_050, 2_000),
            SOLAR: ch(4, 52, 30_000),
            BATTERY: ch(-800, 5_000, 4_400),
            HEAT_PUMP: ch(-1, 7_000, 0),
        },
        DAY,
    )
    # Power: production max(-4, 0) = 0; consumption = 100 - 0 + 0 + 800 - 0 = 900.
    # The heat pump's -1 W is noise: clamped to 0.
    assert state.power.solar_production == 0.0
    assert state.power.battery_charging == 0.0
    assert state.power.battery_discharging == 800.0
    assert state.power.battery_net == 800.0
    assert state.power.home_consumption == 900.0
    assert state.power.self_consumed_solar == 0.0
    assert state.power.loads == {HEAT_PUMP: 0.0}
    # Energy: import +50, standby +2 (production max(0 - 2, 0) = 0), discharged +400;
    # consumption = 50 + 0 + 400 = 450.
    assert state.energy == energy(
        grid_import=50.0, battery_discharged=400.0, home_consumption=450.0
    )
    assert state.self_sufficiency == pytest.approx(100 * (1 - 50 / 450))  # 88.888...


def test_two_meter_site() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.PER_PHASE))
    acc.update(
        {
            PHASE_A: ch(-200, 1_000, 500),
            PHASE_B: ch(-150, 2_000, 600),
            PHASE_C: ch(-250, 3_000, 700),
            INVERTER: ch(-2_000, 10, 9_000),
        },
        DAY,
    )
    state = acc.update(
        {
            PHASE_A: ch(-200, 1_000, 600),
            PHASE_B: ch(-150, 2_000, 675),
            PHASE_C: ch(-250, 3_000, 825),
            INVERTER: ch(-2_000, 10, 10_000),
        },
        DAY,
    )
    # Power: export 200 + 150 + 250 = 600, production 2000, consumption = 2000 - 600 = 1400.
    assert state.power.grid_net == -600.0
    assert state.power.grid_export == 600.0
    assert state.power.home_consumption == 1_400.0
    assert state.power.self_consumed_solar == 1_400.0
    # Energy: export 100 + 75 + 125 = 300, production 1000, consumption and self-consumed 700.
    assert state.energy == energy(
        grid_export=300.0,
        solar_production=1_000.0,
        home_consumption=700.0,
        self_consumed_solar=700.0,
    )


# Phase a imports 1000 W, phase b exports 600 W, phase c imports 100 W; the inverter makes 700 W.
# Over the interval: a +500 Wh in, b +300 Wh out, c +50 Wh in, the inverter +350 Wh out.
MIXED_PHASES_BEFORE = {
    PHASE_A: ch(1_000, 1_000, 500),
    PHASE_B: ch(-600, 2_000, 600),
    PHASE_C: ch(100, 3_000, 700),
    INVERTER: ch(-700, 10, 9_000),
}
MIXED_PHASES_AFTER = {
    PHASE_A: ch(1_000, 1_500, 500),
    PHASE_B: ch(-600, 2_000, 900),
    PHASE_C: ch(100, 3_050, 700),
    INVERTER: ch(-700, 10, 9_350),
}


def test_per_phase_metering_bills_each_phase() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.PER_PHASE))
    acc.update(MIXED_PHASES_BEFORE, DAY)
    state = acc.update(MIXED_PHASES_AFTER, DAY)
    # Power: import 1000 + 100 = 1100, export 600, net 500; consumption = 1100 - 600 + 700 = 1200;
    # self-consumed = 700 - 600 = 100.
    assert state.power.grid_net == 500.0
    assert state.power.grid_import == 1_100.0
    assert state.power.grid_export == 600.0
    assert state.power.home_consumption == 1_200.0
    assert state.power.self_consumed_solar == 100.0
    # Energy: import 500 + 50 = 550, export 300; consumption = 550 - 300 + 350 = 600;
    # self-consumed = 350 - 300 = 50.
    assert state.energy == energy(
        grid_import=550.0,
        grid_export=300.0,
        solar_production=350.0,
        home_consumption=600.0,
        self_consumed_solar=50.0,
    )


def test_balanced_metering_nets_the_phases() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.BALANCED))
    acc.update(MIXED_PHASES_BEFORE, DAY)
    state = acc.update(MIXED_PHASES_AFTER, DAY)
    # Power: net 1000 - 600 + 100 = 500 imported, nothing exported; consumption = 500 + 700 = 1200
    # (the same as per phase: the metering mode moves energy between import, export and
    # self-consumption, never into or out of consumption); self-consumed = 700 - 0 = 700.
    assert state.power.grid_net == 500.0
    assert state.power.grid_import == 500.0
    assert state.power.grid_export == 0.0
    assert state.power.home_consumption == 1_200.0
    assert state.power.self_consumed_solar == 700.0
    # Energy: net 500 - 300 + 50 = 250 imported; consumption = 250 + 350 = 600; self-consumed 350.
    assert state.energy == energy(
        grid_import=250.0,
        solar_production=350.0,
        home_consumption=600.0,
        self_consumed_solar=350.0,
    )


def test_balanced_metering_exports_when_the_net_is_negative() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.BALANCED))
    acc.update(
        {PHASE_A: ch(0, 0, 0), PHASE_B: ch(0, 0, 0), PHASE_C: ch(0, 0, 0), INVERTER: ch(0, 0, 0)},
        DAY,
    )
    state = acc.update(
        {
            PHASE_A: ch(-900, 0, 450),
            PHASE_B: ch(200, 100, 0),
            PHASE_C: ch(-100, 0, 50),
            INVERTER: ch(-2_000, 0, 1_000),
        },
        DAY,
    )
    # Power: net -900 + 200 - 100 = -800: export 800; consumption = -800 + 2000 = 1200.
    assert state.power.grid_import == 0.0
    assert state.power.grid_export == 800.0
    assert state.power.home_consumption == 1_200.0
    # Energy: net 100 - 450 - 50 = -400: export 400; consumption = -400 + 1000 = 600.
    assert state.energy == energy(
        grid_export=400.0,
        solar_production=1_000.0,
        home_consumption=600.0,
        self_consumed_solar=600.0,
    )


# --- availability ---------------------------------------------------------------------------------


def test_offline_meter_returns_with_its_energy_added_once() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.PER_PHASE))

    def mains(energy_in_a: float) -> dict[ChannelRef, ChannelInput | None]:
        return {
            PHASE_A: ch(100, energy_in_a, 0),
            PHASE_B: ch(0, 0, 0),
            PHASE_C: ch(0, 0, 0),
        }

    acc.update({**mains(1_000), INVERTER: ch(-800, 0, 5_000)}, DAY)
    # The inverter's meter is offline: the grid still accrues (+100), everything that depends on
    # the inverter is unavailable, its total kept.
    offline = acc.update({**mains(1_100), INVERTER: None}, DAY)
    assert offline.energy == energy(
        grid_import=100.0, solar_production=None, home_consumption=None, self_consumed_solar=None
    )
    assert offline.power.grid_import == 100.0
    assert offline.power.solar_production is None
    assert offline.power.home_consumption is None
    assert offline.power.self_consumed_solar is None
    assert offline.self_consumption_rate is None
    assert offline.self_sufficiency is None
    # A missing key means the same as None.
    assert acc.update(mains(1_100), DAY).energy == offline.energy

    # Back: +50 more imported (150 since the first update), +400 produced while away.
    back = acc.update({**mains(1_150), INVERTER: ch(-800, 0, 5_400)}, DAY)
    # Consumption and self-consumed accrue the whole spell since the first update:
    # consumption = 150 - 0 + 400 = 550; self-consumed = 400 - 0 = 400.
    assert back.energy == energy(
        grid_import=150.0, solar_production=400.0, home_consumption=550.0, self_consumed_solar=400.0
    )
    assert back.self_sufficiency == pytest.approx(100 * (1 - 150 / 550))

    # Another +100 produced: added once, nothing of the offline spell counted again.
    later = acc.update({**mains(1_150), INVERTER: ch(-800, 0, 5_500)}, DAY)
    assert later.energy == energy(
        grid_import=150.0, solar_production=500.0, home_consumption=650.0, self_consumed_solar=500.0
    )
    assert later.self_consumption_rate == 100.0  # 500 / 500
    assert later.self_sufficiency == pytest.approx(100 * (1 - 150 / 650))

    # Offline again: the ratios known a moment ago are unavailable, not frozen.
    again = acc.update({**mains(1_150), INVERTER: None}, DAY)
    assert again.self_consumption_rate is None
    assert again.self_sufficiency is None


def test_partial_availability_never_yields_partial_sums() -> None:
    acc = SiteAccumulator(three_phase_site(GridMetering.PER_PHASE))
    acc.update(
        {
            PHASE_A: ch(0, 0, 0),
            PHASE_B: ch(0, 0, 0),
            PHASE_C: ch(0, 0, 0),
            INVERTER: ch(0, 0, 0),
        },
        DAY,
    )
    # Phase b reports counters but no power; phase c's export counter is missing.
    state = acc.update(
        {
            PHASE_A: ch(300, 10, 0),
            PHASE_B: ch(None, 20, 0),
            PHASE_C: ch(200, 30, None),
            INVERTER: ch(-500, 0, 40),
        },
        DAY,
    )
    # Power needs every grid phase's power; energy needs every grid phase's two counters.
    assert state.power.grid_net is None
    assert state.power.grid_import is None
    assert state.power.grid_export is None
    assert state.power.home_consumption is None
    assert state.power.self_consumed_solar is None
    assert state.power.solar_production == 500.0
    assert state.energy == energy(
        grid_import=None,
        grid_export=None,
        solar_production=40.0,
        home_consumption=None,
        self_consumed_solar=None,
    )


def test_loads_are_available_each_on_its_own() -> None:
    fridge = ChannelRef("EM0003", "1")
    config = SiteConfig(
        {GRID: Role.GRID, HEAT_PUMP: Role.LOAD, fridge: Role.LOAD}, GridMetering.PER_PHASE
    )
    state = SiteAccumulator(config).update(
        {GRID: ch(900, 0, 0), HEAT_PUMP: ch(700, 0, 0), fridge: ch(None, 0, 0)}, DAY
    )
    assert state.power.loads == {HEAT_PUMP: 700.0, fridge: None}
    state = SiteAccumulator(config).update({GRID: ch(900, 0, 0), fridge: ch(80, 0, 0)}, DAY)
    assert state.power.loads == {HEAT_PUMP: None, fridge: 80.0}
    assert state.power.home_consumption == 900.0  # loads are part of consumption, not added


LOAD_SITE = SiteConfig({GRID: Role.GRID, HEAT_PUMP: Role.LOAD}, GridMetering.PER_PHASE)


def test_a_load_counts_what_it_consumed_and_what_flowed_back() -> None:
    # A circuit with a plug-in solar panel: it consumes at night and feeds the home by day.
    acc = SiteAccumulator(LOAD_SITE)
    state = acc.update({GRID: ch(500, 1_000, 0), HEAT_PUMP: ch(300, 4_000, 200)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(0.0, 0.0)}  # first sighting: baselines only
    state = acc.update({GRID: ch(500, 1_500, 0), HEAT_PUMP: ch(-100, 4_300, 250)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=300.0, returned=50.0)}
    assert state.power.loads == {HEAT_PUMP: 0.0}  # its power is what it consumes
    # The circuit's meter is offline: the load is unavailable and its totals wait.
    state = acc.update({GRID: ch(500, 1_600, 0), HEAT_PUMP: None}, DAY)
    assert state.loads == {HEAT_PUMP: None}
    assert state.energy.grid_import == 600.0  # the rest of the site goes on
    # Back: what it counted while offline is added once (4300 -> 4700, 250 -> 260).
    state = acc.update({GRID: ch(500, 1_700, 0), HEAT_PUMP: ch(200, 4_700, 260)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=700.0, returned=60.0)}
    # The meter's totals started anew (a replaced meter): held, then counted on from there.
    state = acc.update({GRID: ch(500, 1_800, 0), HEAT_PUMP: ch(200, 10, 0)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=700.0, returned=60.0)}
    state = acc.update({GRID: ch(500, 1_900, 0), HEAT_PUMP: ch(200, 110, 5)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=800.0, returned=65.0)}
    # Loads are part of consumption, never added to it: 900 Wh imported, 900 Wh consumed.
    assert state.energy.home_consumption == 900.0


def test_a_load_never_publishes_less_than_it_showed_before_a_restart() -> None:
    acc = SiteAccumulator(LOAD_SITE)
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_000, 0)}, DAY)
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_100, 0)}, DAY)
    # A crash lost the last save: Home Assistant had recorded 250 Wh consumed.
    acc = restarted(acc, LOAD_SITE)
    acc.hold_load_at_least(HEAT_PUMP, "consumed", 250.0)
    assert acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: None}, DAY).loads == {HEAT_PUMP: None}
    # 100 + 100 counted, held at the 250 shown (to the Wh: at least 249.501 Wh, shown as 250);
    # then counting on from there.
    state = acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_200, 0)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=249.501, returned=0.0)}
    state = acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_300, 20)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy(consumed=349.501, returned=20.0)}


def test_a_load_keeps_when_it_was_first_published_across_a_restart() -> None:
    acc = SiteAccumulator(LOAD_SITE)
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: None}, DAY, now=100.0)
    assert acc.started == 100.0
    assert acc.load_started(HEAT_PUMP) is None  # its meter has not answered yet
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_000, 0)}, DAY, now=160.0)
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_100, 0)}, DAY, now=220.0)
    assert acc.load_started(HEAT_PUMP) == 160.0  # its first sighting, not the site's start
    assert acc.load_started(GRID) is None  # not a load
    assert restarted(acc, LOAD_SITE).load_started(HEAT_PUMP) == 160.0


def test_a_channel_that_stops_being_a_load_leaves_its_totals_behind() -> None:
    acc = SiteAccumulator(LOAD_SITE)
    acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_000, 0)}, DAY)
    assert acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_100, 0)}, DAY).loads == {
        HEAT_PUMP: LoadEnergy(consumed=100.0)
    }
    acc.update_config(SiteConfig({GRID: Role.GRID}, GridMetering.PER_PHASE))
    assert acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_200, 0)}, DAY).loads == {}
    acc.update_config(LOAD_SITE)
    state = acc.update({GRID: ch(0, 0, 0), HEAT_PUMP: ch(0, 1_300, 0)}, DAY)
    assert state.loads == {HEAT_PUMP: LoadEnergy()}  # afresh from this sighting


def test_totals_saved_before_loads_had_energy_restore_and_loads_start_afresh() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    run(acc, BATTERY_SCENARIO[:2])
    saved = acc.to_dict()
    del saved["loads"]
    acc = SiteAccumulator.from_dict(BATTERY_SITE, saved)
    state = acc.update(*BATTERY_SCENARIO[3])
    assert state.loads == {HEAT_PUMP: LoadEnergy()}
    assert state.energy.grid_import == 200.0  # 150 before the save, 50 after


def test_roles_without_channels_contribute_zero() -> None:
    # A grid-only site: no production, consumption = import - export.
    grid_only = SiteConfig({GRID: Role.GRID, SOLAR: Role.UNUSED}, GridMetering.PER_PHASE)
    assert grid_only.has_role(Role.GRID)
    assert not grid_only.has_role(Role.SOLAR)
    assert not grid_only.has_role(Role.BATTERY)
    acc = SiteAccumulator(grid_only)
    acc.update({GRID: ch(300, 100, 0)}, DAY)
    state = acc.update({GRID: ch(300, 250, 0)}, DAY)
    assert state.power.solar_production == 0.0
    assert state.power.home_consumption == 300.0
    assert state.energy == energy(grid_import=150.0, home_consumption=150.0)

    # An off-grid site: consumption = production + discharge - charge; all of it self-supplied.
    off_grid = SiteConfig({SOLAR: Role.SOLAR, BATTERY: Role.BATTERY}, GridMetering.PER_PHASE)
    acc = SiteAccumulator(off_grid)
    acc.update({SOLAR: ch(-1_000, 0, 0), BATTERY: ch(400, 0, 0)}, DAY)
    state = acc.update({SOLAR: ch(-1_000, 0, 500), BATTERY: ch(400, 200, 0)}, DAY)
    assert state.power.grid_import == 0.0
    assert state.power.home_consumption == 600.0  # 1000 - 400
    # Consumption = 500 - 200 = 300; self-consumed = 500 - 0 = 500.
    assert state.energy == energy(
        solar_production=500.0,
        battery_charged=200.0,
        home_consumption=300.0,
        self_consumed_solar=500.0,
    )
    assert state.self_sufficiency == 100.0


def test_config_lists_channels_by_role_in_order() -> None:
    config = three_phase_site(GridMetering.BALANCED)
    assert config.channels(Role.GRID) == (PHASE_A, PHASE_B, PHASE_C)
    assert config.channels(Role.SOLAR) == (INVERTER,)
    assert config.channels(Role.LOAD) == ()


# --- counters -------------------------------------------------------------------------------------


def grid_only_site() -> SiteAccumulator:
    return SiteAccumulator(SiteConfig({GRID: Role.GRID}, GridMetering.PER_PHASE))


def test_a_drop_of_an_input_holds_and_counts_on_from_the_new_value() -> None:
    acc = grid_only_site()
    acc.update({GRID: ch(0, 1_000, 500)}, DAY)
    acc.update({GRID: ch(0, 1_200, 500)}, DAY)  # +200
    # The meter's totals started anew (a new meter entry): 20 Wh. Never booked as energy (the
    # issue's 46 kWh counter booked as import), never taken back.
    state = acc.update({GRID: ch(0, 20, 500)}, DAY)
    assert state.energy.grid_import == 200.0
    state = acc.update({GRID: ch(0, 50, 500)}, DAY)
    assert state.energy.grid_import == 230.0  # + (50 - 20)


def test_counter_jitter_is_not_counted_twice() -> None:
    acc = grid_only_site()
    acc.update({GRID: ch(0, 1_000, 500)}, DAY)
    # The counter dips by 5 mWh, then rebounds: only the rise above 1000 counts.
    assert acc.update({GRID: ch(0, 999.995, 500)}, DAY).energy.grid_import == 0.0
    assert acc.update({GRID: ch(0, 1_000.5, 500)}, DAY).energy.grid_import == 0.5


def test_input_drops_are_held_and_only_the_rise_after_them_counts() -> None:
    acc = grid_only_site()
    acc.update({GRID: ch(0, 1_000, 500)}, DAY)
    assert acc.update({GRID: ch(0, 999.5, 500)}, DAY).energy.grid_import == 0.0  # jitter
    assert acc.update({GRID: ch(0, 999, 500)}, DAY).energy.grid_import == 0.0  # a drop of 1 Wh
    assert acc.update({GRID: ch(0, 1_000.5, 500)}, DAY).energy.grid_import == 1.5


# --- role changes ---------------------------------------------------------------------------------


def test_role_change_keeps_totals_and_rebaselines_changed_channels() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 1_000, 0), SOLAR: ch(0, 0, 2_000), BATTERY: ch(0, 100, 100)}, DAY)
    before = acc.update(
        {GRID: ch(0, 1_100, 0), SOLAR: ch(0, 0, 2_300), BATTERY: ch(0, 150, 100)}, DAY
    )
    # import 100, production 300, consumption 400, self-consumed 300.
    assert before.energy == energy(
        grid_import=100.0, solar_production=300.0, home_consumption=400.0, self_consumed_solar=300.0
    )

    # The user adds the battery; the solar channel turns out to be a heat pump (a load).
    acc.update_config(
        SiteConfig(
            {GRID: Role.GRID, SOLAR: Role.LOAD, BATTERY: Role.BATTERY}, GridMetering.PER_PHASE
        )
    )
    # Totals stay. The battery's first sighting under its new role is a baseline only, though
    # it charged 50 Wh before (150 -> 200); the grid keeps its baseline: +50.
    after = acc.update(
        {GRID: ch(0, 1_150, 0), SOLAR: ch(0, 0, 2_400), BATTERY: ch(0, 200, 100)}, DAY
    )
    assert after.energy == energy(
        grid_import=150.0, solar_production=300.0, home_consumption=450.0, self_consumed_solar=300.0
    )
    # Now the battery counts: +30 charged; import +40; consumption = 40 - 30 = 10.
    later = acc.update(
        {GRID: ch(0, 1_190, 0), SOLAR: ch(0, 0, 2_500), BATTERY: ch(0, 230, 100)}, DAY
    )
    assert later.energy == energy(
        grid_import=190.0,
        solar_production=300.0,
        battery_charged=30.0,
        home_consumption=460.0,
        self_consumed_solar=300.0,
    )


def test_a_channel_moving_between_roles_starts_afresh_under_its_new_role() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 1_000, 0), SOLAR: ch(0, 0, 2_000)}, DAY)
    # The "solar" channel turns out to be a battery inverter.
    acc.update_config(SiteConfig({GRID: Role.GRID, SOLAR: Role.BATTERY}, GridMetering.PER_PHASE))
    # Import +100. What channel 2 counted meanwhile (+300 out) belongs to neither role: the
    # consumption flow re-baselines it rather than taking it as discharge, so consumption
    # = 100 (not 100 + 300).
    state = acc.update({GRID: ch(0, 1_100, 0), SOLAR: ch(0, 0, 2_300)}, DAY)
    assert state.energy == energy(grid_import=100.0, home_consumption=100.0)
    # Import +50, discharge +200: consumption = 50 + 200 = 250 more.
    state = acc.update({GRID: ch(0, 1_150, 0), SOLAR: ch(0, 0, 2_500)}, DAY)
    assert state.energy == energy(
        grid_import=150.0, battery_discharged=200.0, home_consumption=350.0
    )


def test_a_channel_that_loses_its_role_leaves_no_baseline() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 1_000, 0), SOLAR: ch(0, 0, 2_000)}, DAY)
    acc.update_config(SiteConfig({GRID: Role.GRID}, GridMetering.PER_PHASE))
    saved = acc.to_dict()
    assert saved["roles"] == [{"meter_id": "EM0001", "channel_id": "1", "role": "grid"}]
    assert saved["baselines"] == {
        "grid": [{"meter_id": "EM0001", "channel_id": "1", "energy_in": 1_000, "energy_out": 0}],
        "solar": [],
        "battery": [],
        "self_consumed_solar": [
            {"meter_id": "EM0001", "channel_id": "1", "energy_in": 1_000, "energy_out": 0}
        ],
        "home_consumption": [
            {"meter_id": "EM0001", "channel_id": "1", "energy_in": 1_000, "energy_out": 0}
        ],
    }


# --- persistence ----------------------------------------------------------------------------------


def restarted(acc: SiteAccumulator, config: SiteConfig) -> SiteAccumulator:
    """Save as the adapter would (through JSON) and restore."""
    return SiteAccumulator.from_dict(config, json.loads(json.dumps(acc.to_dict())))


BATTERY_SCENARIO: list[tuple[dict[ChannelRef, ChannelInput | None], date]] = [
    (
        {
            GRID: ch(300, 1_000, 0),
            SOLAR: ch(0, 0, 2_000),
            BATTERY: ch(0, 500, 500),
            HEAT_PUMP: ch(0, 5_000, 0),
        },
        DAY,
    ),
    (
        {
            GRID: ch(-200, 1_150, 0),
            SOLAR: ch(-900, 0, 2_300),
            BATTERY: ch(300, 600, 500),
            HEAT_PUMP: ch(800, 5_200, 0),
        },
        DAY,
    ),
    # The battery's meter goes offline: battery and consumption wait.
    ({GRID: ch(-200, 1_150, 80), SOLAR: ch(-900, 0, 2_700), BATTERY: None}, DAY),
    # -- a save and restart happens here in the second run --
    (
        {
            GRID: ch(100, 1_200, 80),
            SOLAR: ch(0, 1, 2_800),
            BATTERY: ch(-400, 700, 650),
            HEAT_PUMP: ch(0, 5_500, 0),
        },
        DAY,
    ),
    (
        {
            GRID: ch(100, 1_250, 80),
            SOLAR: ch(0, 2, 2_800),
            BATTERY: ch(-400, 700, 850),
            HEAT_PUMP: ch(-50, 5_600, 10),
        },
        NEXT_DAY,
    ),
]


def run(
    acc: SiteAccumulator, steps: list[tuple[dict[ChannelRef, ChannelInput | None], date]]
) -> SiteState:
    state = None
    for readings, day in steps:
        state = acc.update(readings, day)
    assert state is not None
    return state


def test_restart_in_the_middle_loses_and_double_counts_nothing() -> None:
    straight = SiteAccumulator(BATTERY_SITE)
    end = run(straight, BATTERY_SCENARIO)
    # By hand, interval by interval (updates 1..5; update 1 sets the baselines):
    # import: +150, 0, +50, +50 = 250. Export: 0, +80, 0, 0 = 80.
    # Production: 300, 400, max(100 - 1, 0) = 99, max(0 - 1, 0) = 0 -> 799.
    # Battery (offline at 3, so 2 -> 4 is one interval): charged +100, +100 = 200;
    # discharged +150, +200 = 350.
    # Consumption (waits at 3 too): 150 + 300 - 100 = 350; then 2 -> 4: import 50 - export 80
    # + production max(500 - 1, 0) = 499 + discharged 150 - charged 100 = 519;
    # then 50 + 0 + 200 = 250 -> 1119.
    # Self-consumed: 300, max(400 - 80, 0) = 320, 99, 0 -> 719.
    assert end.energy == energy(
        grid_import=250.0,
        grid_export=80.0,
        solar_production=799.0,
        battery_charged=200.0,
        battery_discharged=350.0,
        home_consumption=1_119.0,
        self_consumed_solar=719.0,
    )
    # The heat pump (offline with the battery at 3): consumed +200, +300, +100; returned +10.
    assert end.loads == {HEAT_PUMP: LoadEnergy(consumed=600.0, returned=10.0)}
    # The last update is on the next day: today holds its interval alone.
    # Self-consumption: 0 / 0 -> None; self-sufficiency: 1 - 50 / 250 = 80 %.
    assert end.self_consumption_rate is None
    assert end.self_sufficiency == 80.0

    interrupted = SiteAccumulator(BATTERY_SITE)
    run(interrupted, BATTERY_SCENARIO[:3])
    assert run(restarted(interrupted, BATTERY_SITE), BATTERY_SCENARIO[3:]) == end


def test_restart_keeps_todays_ratios() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0)}, DAY)
    acc.update({GRID: ch(0, 100, 300), SOLAR: ch(0, 0, 1_000)}, DAY)
    acc = restarted(acc, PV_SITE)
    state = acc.update({GRID: ch(0, 100, 300), SOLAR: ch(0, 0, 1_000)}, DAY)
    # Self-consumed 1000 - 300 = 700 of 1000; consumption 100 - 300 + 1000 = 800, import 100.
    assert state.self_consumption_rate == 70.0
    assert state.self_sufficiency == 87.5  # 1 - 100 / 800


def test_restart_before_any_update() -> None:
    acc = restarted(SiteAccumulator(PV_SITE), PV_SITE)
    assert acc.update({GRID: ch(0, 10, 0), SOLAR: ch(0, 0, 20)}, DAY).energy == energy()


def test_restart_with_roles_changed_while_stopped() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 1_000, 0), SOLAR: ch(0, 0, 2_000)}, DAY)
    acc.update({GRID: ch(0, 1_100, 0), SOLAR: ch(0, 0, 2_300)}, DAY)
    # Home Assistant reloads the site with the solar channel now a load.
    acc = restarted(acc, SiteConfig({GRID: Role.GRID, SOLAR: Role.LOAD}, GridMetering.PER_PHASE))
    state = acc.update({GRID: ch(0, 1_150, 0), SOLAR: ch(0, 0, 2_600)}, DAY)
    # Import 100 + 50; the former solar channel's +300 counts nowhere; totals kept.
    assert state.energy == energy(
        grid_import=150.0, solar_production=300.0, home_consumption=450.0, self_consumed_solar=300.0
    )
    assert state.power.loads == {SOLAR: 0.0}
    assert state.loads == {SOLAR: LoadEnergy()}  # a new load: its first sighting sets baselines


def test_restoring_another_storage_version_fails() -> None:
    data = SiteAccumulator(PV_SITE).to_dict()
    data["version"] = 2
    with pytest.raises(ValueError, match="unsupported site storage version 2"):
        SiteAccumulator.from_dict(PV_SITE, data)


# --- noise and ratios -----------------------------------------------------------------------------


def test_noise_is_clamped_to_zero() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    acc.update(
        {GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0), BATTERY: ch(0, 0, 0), HEAT_PUMP: ch(0, 0, 0)}, DAY
    )
    # Night, everything idle: the grid CT reads -5 W, the solar CT +3 W, the battery -2 W.
    state = acc.update(
        {
            GRID: ch(-5, 0, 0.01),
            SOLAR: ch(3, 0.01, 0),
            BATTERY: ch(-2, 0, 0),
            HEAT_PUMP: ch(0, 0, 0),
        },
        DAY,
    )
    # Power: production max(-3, 0) = 0; consumption max(0 - 5 + 0 + 2 - 0, 0) = 0.
    assert state.power.solar_production == 0.0
    assert state.power.home_consumption == 0.0
    assert state.power.self_consumed_solar == 0.0
    # Energy: production max(0 - 0.01, 0) = 0; consumption max(0 - 0.01 + 0, 0) = 0.
    assert state.energy == energy(grid_export=0.01)


def test_self_sufficiency_is_zero_when_the_battery_charges_from_the_grid() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0), BATTERY: ch(0, 0, 0)}, DAY)
    state = acc.update({GRID: ch(0, 1_000, 0), SOLAR: ch(0, 0, 0), BATTERY: ch(0, 600, 0)}, DAY)
    # Consumption 1000 - 600 = 400, all of it imported and more: 1 - 1000 / 400 < 0 -> 0.
    assert state.energy.home_consumption == 400.0
    assert state.self_sufficiency == 0.0


def test_ratios_restart_on_a_new_day() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0)}, DAY)
    # Day 1: import 200, export 100, production 400 -> self-consumed 300, consumption 500.
    state = acc.update({GRID: ch(0, 200, 100), SOLAR: ch(0, 0, 400)}, DAY)
    assert state.self_consumption_rate == 75.0  # 300 / 400
    assert state.self_sufficiency == 60.0  # 1 - 200 / 500
    # Day 2, first update: the interval since the last update counts for the new day alone:
    # import 100, production 0 -> consumption 100.
    state = acc.update({GRID: ch(0, 300, 100), SOLAR: ch(0, 0, 400)}, NEXT_DAY)
    assert state.self_consumption_rate is None  # nothing produced yet today
    assert state.self_sufficiency == 0.0  # 1 - 100 / 100
    # Totals do not restart.
    assert state.energy.grid_import == 300.0
    # Day 2 goes on: production 100, all self-consumed; consumption 100 more.
    state = acc.update({GRID: ch(0, 300, 100), SOLAR: ch(0, 0, 500)}, NEXT_DAY)
    assert state.self_consumption_rate == 100.0
    assert state.self_sufficiency == 50.0  # 1 - 100 / 200


# --- properties over random sequences -------------------------------------------------------------

SCENARIO_CHANNELS = (PHASE_A, PHASE_B, PHASE_C, INVERTER, BATTERY, HEAT_PUMP)
MIXED_SITE = SiteConfig(
    {
        PHASE_A: Role.GRID,
        PHASE_B: Role.GRID,
        PHASE_C: Role.GRID,
        INVERTER: Role.SOLAR,
        BATTERY: Role.BATTERY,
        HEAT_PUMP: Role.LOAD,
    },
    GridMetering.BALANCED,
)
METER_IDS = {ref.meter_id for ref in SCENARIO_CHANNELS}


def random_scenario(seed: int) -> list[tuple[dict[ChannelRef, ChannelInput | None], date]]:
    """Meters that go offline, counters that rise, jitter, reset and count short, over 3 days."""
    rng = random.Random(seed)
    counters = {ref: [rng.uniform(0, 10_000), rng.uniform(0, 10_000)] for ref in SCENARIO_CHANNELS}
    spans = dict.fromkeys(METER_IDS, 0)
    latest = dict.fromkeys(SCENARIO_CHANNELS, 0)
    steps: list[tuple[dict[ChannelRef, ChannelInput | None], date]] = []
    for step in range(60):
        offline = {meter_id for meter_id in METER_IDS if rng.random() < 0.15}
        readings: dict[ChannelRef, ChannelInput | None] = {}
        for ref, counter in counters.items():
            roll = rng.random()
            if roll < 0.05:
                counter[:] = rng.uniform(0, 5), rng.uniform(0, 5)  # reset
                spans[ref.meter_id] += 1  # what it counted before, the records tell
                latest[ref] = spans[ref.meter_id]
            elif roll < 0.15:
                counter[0] -= rng.uniform(0, 0.01)  # jitter
            else:
                counter[0] += rng.choice((0.0, rng.uniform(0, 300)))
                counter[1] += rng.choice((0.0, rng.uniform(0, 300)))
            power = rng.uniform(-3_000, 3_000)
            readings[ref] = (
                None
                if ref.meter_id in offline
                else ChannelInput(power, counter[0], counter[1], spans[ref.meter_id], latest[ref])
            )
        steps.append((readings, date(2025, 6, 21 + step // 20)))
    return steps


@pytest.mark.parametrize("seed", range(20))
def test_totals_never_decrease_and_survive_a_restart_anywhere(seed: int) -> None:
    steps = random_scenario(seed)
    straight = SiteAccumulator(MIXED_SITE)
    previous = straight.to_dict()["totals"]
    previous_loads: dict[ChannelRef, LoadEnergy] = {}
    states = []
    for readings, day in steps:
        state = straight.update(readings, day)
        states.append(state)
        totals = straight.to_dict()["totals"]
        # The published totals never decrease (the signed running sums behind two of them may).
        assert all(totals[name] >= previous[name] for name in totals if not name.endswith("_net"))
        for ref, load in state.loads.items():
            if load is not None and (before := previous_loads.get(ref)) is not None:
                assert load.consumed >= before.consumed
                assert load.returned >= before.returned
        previous_loads = {ref: load for ref, load in state.loads.items() if load is not None}
        for value in non_negative_values(state):
            assert value is None or value >= 0
        for ratio in (state.self_consumption_rate, state.self_sufficiency):
            assert ratio is None or 0 <= ratio <= 100
        previous = totals

    restart_at = random.Random(seed).randrange(1, len(steps))
    interrupted = SiteAccumulator(MIXED_SITE)
    run(interrupted, steps[:restart_at])
    resumed = restarted(interrupted, MIXED_SITE)
    for (readings, day), expected in zip(steps[restart_at:], states[restart_at:], strict=True):
        assert resumed.update(readings, day) == expected


def non_negative_values(state: SiteState) -> list[float | None]:
    """Every power and energy value of a state but the two signed nets."""
    values: list[float | None] = [
        getattr(state.power, field.name)
        for field in fields(SitePower)
        if field.name not in {"grid_net", "battery_net", "loads"}
    ]
    values += state.power.loads.values()
    for load in state.loads.values():
        values += (None, None) if load is None else (load.consumed, load.returned)
    values += (getattr(state.energy, field.name) for field in fields(SiteEnergy))
    return values


# --- meters read at different instants ------------------------------------------------------------


def test_consumption_follows_meters_read_at_different_instants() -> None:
    # Grid and solar on two meters. In one hour the grid exports 1000 Wh while 2500 Wh of solar
    # are produced: home consumption is 1500 Wh, self-consumed solar 1500 Wh.
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0)}, DAY)
    # The grid meter is read first: its export shows before the production that caused it.
    # Clamping this interval (-1000 Wh) to 0 would count the production twice below.
    state = acc.update({GRID: ch(0, 0, 1000), SOLAR: ch(0, 0, 0)}, DAY)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (0.0, 0.0)
    state = acc.update({GRID: ch(0, 0, 1000), SOLAR: ch(0, 0, 2500)}, DAY)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (1500.0, 1500.0)


def test_consumption_read_ahead_holds_until_the_rest_catches_up() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 0)}, DAY)
    # The solar meter is read first this time: 2500 Wh look consumed until the export shows.
    state = acc.update({GRID: ch(0, 0, 0), SOLAR: ch(0, 0, 2500)}, DAY)
    assert state.energy.home_consumption == 2500.0
    state = acc.update({GRID: ch(0, 0, 1000), SOLAR: ch(0, 0, 2500)}, DAY)
    assert state.energy.home_consumption == 2500.0  # never decreases: it holds
    # 600 Wh more of import: the running sum (1500 + 600) stays below what was shown.
    state = acc.update({GRID: ch(0, 600, 1000), SOLAR: ch(0, 0, 2500)}, DAY)
    assert state.energy.home_consumption == 2500.0
    state = acc.update({GRID: ch(0, 1500, 1000), SOLAR: ch(0, 0, 2500)}, DAY)
    assert state.energy.home_consumption == 3000.0  # exact again: 1500 + 2500 - 1000


# --- settlement periods ------------------------------------------------------------------------

MADRID = ZoneInfo("Europe/Madrid")
# 2025-06-21 10:00 in Madrid (CEST, +02:00).
TEN = datetime(2025, 6, 21, 10, tzinfo=MADRID).timestamp()


def hourly(metering: GridMetering = GridMetering.PER_PHASE) -> SiteConfig:
    return SiteConfig(
        {PHASE_A: Role.GRID, PHASE_B: Role.GRID, INVERTER: Role.SOLAR},
        metering,
        Settlement.HOUR,
    )


def test_hourly_settlement_books_each_hours_net_across_phases() -> None:
    acc = SiteAccumulator(hourly(), MADRID)
    a_in = a_out = b_in = b_out = 0.0
    states = []
    # Each minute from 10:00: phase A imports 10 Wh; phase B exports 30 Wh until 10:30, then
    # nothing. 10:00-11:00 nets 600 - 900 = -300 Wh; 11:00-11:30 nets +300 Wh so far.
    for minute in range(91):
        readings = {
            PHASE_A: ch(0, a_in, a_out),
            PHASE_B: ch(0, b_in, b_out),
            INVERTER: ch(0, 0, 0),
        }
        states.append(acc.update(readings, DAY, TEN + minute * 60))
        a_in += 10
        b_out += 30 if minute < 30 else 0
    assert states[59].energy.grid_import == 0.0 and states[59].energy.grid_export == 0.0
    assert states[59].period == RunningPeriod(-310.0, 60.0)  # 10:59: 590 in, 900 out
    last = states[-1]
    # 11:00 booked the hour's 300 Wh of export; phase A's 600 Wh of import is not billed.
    assert (last.energy.grid_import, last.energy.grid_export) == (0.0, 300.0)
    assert last.period == RunningPeriod(300.0, 1800.0)
    assert last.period.to_offset == 300.0
    assert RunningPeriod(-5.0, 1.0).to_offset == 0.0
    # Consumption stays physical: 900 Wh imported on A over the 90 minutes, 900 exported on B.
    assert last.energy.home_consumption == 0.0
    # Stored and restored, the running hour goes on.
    restored = SiteAccumulator.from_dict(hourly(), json.loads(json.dumps(acc.to_dict())), MADRID)
    state = restored.update(
        {PHASE_A: ch(0, a_in, a_out), PHASE_B: ch(0, b_in, b_out), INVERTER: ch(0, 0, 0)},
        DAY,
        TEN + 91 * 60,
    )
    assert state.period == RunningPeriod(310.0, 1740.0)


def grid(phase_a_in: float, phase_b_out: float) -> dict[ChannelRef, ChannelInput | None]:
    return {PHASE_A: ch(0, phase_a_in, 0), PHASE_B: ch(0, 0, phase_b_out), INVERTER: ch(0, 0, 0)}


def test_switching_settlement_books_the_running_period_and_keeps_the_totals() -> None:
    acc = SiteAccumulator(hourly(), MADRID)
    for minute in range(11):  # 10:00-10:10: 100 Wh in
        acc.update(
            {PHASE_A: ch(0, 10 * minute, 0), PHASE_B: ch(0, 0, 0), INVERTER: ch(0, 0, 0)},
            DAY,
            TEN + minute * 60,
        )
    instant = SiteConfig(hourly().roles, GridMetering.PER_PHASE)
    acc.update_config(instant)
    state = acc.update(
        {PHASE_A: ch(0, 110, 0), PHASE_B: ch(0, 0, 5), INVERTER: ch(0, 0, 0)}, DAY, TEN + 660
    )
    assert (state.energy.grid_import, state.energy.grid_export) == (110.0, 5.0)
    assert state.period is None
    # Back to 15 minutes, through storage: counting goes on from the totals. 10:11-10:15
    # exports 20 Wh: the quarter from 10:00 closes with it; 10:15-10:16 exports 10 Wh.
    quarters = SiteConfig(hourly().roles, GridMetering.PER_PHASE, Settlement.MINUTES_15)
    acc = SiteAccumulator.from_dict(quarters, acc.to_dict(), MADRID)
    state = acc.update(grid(110, 25), DAY, TEN + 900)
    assert (state.energy.grid_import, state.energy.grid_export, state.period) == (110, 25, None)
    state = acc.update(grid(110, 35), DAY, TEN + 960)
    assert state.period == RunningPeriod(-10.0, 840.0)
    assert (state.energy.grid_import, state.energy.grid_export) == (110.0, 25.0)
    # A total Home Assistant recorded before a restart stands (shown as 40 Wh).
    acc.hold_at_least("grid_export", 40.0)
    acc.update(grid(110, 35), DAY, TEN + 1020)
    state = acc.update(grid(110, 35), DAY, TEN + 1080)
    assert state.energy.grid_export == 39.501


# --- capacity peaks ----------------------------------------------------------------------------


def quarter_peaks(
    metering: GridMetering = GridMetering.PER_PHASE,
    settlement: Settlement = Settlement.INSTANT,
    rule: PeakRule = PeakRule.HIGHEST,
) -> SiteConfig:
    return SiteConfig(
        {PHASE_A: Role.GRID, PHASE_B: Role.GRID, INVERTER: Role.SOLAR},
        metering,
        settlement,
        CapacitySettings(15, rule),
    )


def draw_quarter(acc: SiteAccumulator, start: float, a_in: float, b_out: float) -> SiteState:
    """Phase A imports `a_in` Wh and phase B exports `b_out` Wh a minute for 15 minutes, from 0."""
    state = None
    for minute in range(16):
        readings = {
            PHASE_A: ch(a_in * 60, a_in * minute, 0),
            PHASE_B: ch(-b_out * 60, 0, b_out * minute),
            INVERTER: ch(0, 0, 0),
        }
        state = acc.update(readings, DAY, start + minute * 60)
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("metering", "settlement", "peak_kw"),
    [
        # Per phase, A's import counts whatever B exports: 150 Wh in the quarter is 0.6 kW.
        (GridMetering.PER_PHASE, Settlement.INSTANT, 0.6),
        # Settled hourly, demand is still the metering's import: the settlement bills energy.
        (GridMetering.PER_PHASE, Settlement.HOUR, 0.6),
        # Balanced, B's export nets A's import: 150 - 50 Wh is 0.4 kW.
        (GridMetering.BALANCED, Settlement.INSTANT, 0.4),
    ],
)
def test_a_quarters_demand_is_the_grid_metering_s_import(
    metering: GridMetering, settlement: Settlement, peak_kw: float
) -> None:
    acc = SiteAccumulator(quarter_peaks(metering, settlement), MADRID)
    state = draw_quarter(acc, TEN, 10.0, 50 / 15)
    capacity = state.capacity
    assert capacity is not None
    assert capacity.peak_kw == pytest.approx(peak_kw)
    assert capacity.period_end == TEN + 1800 and capacity.seconds_left == 900.0


def test_capacity_state_at_each_update_with_the_grid_import_power() -> None:
    acc = SiteAccumulator(quarter_peaks(), MADRID)
    draw_quarter(acc, TEN, 20.0, 0.0)  # 10:00-10:15: 300 Wh, a 1.2 kW peak
    # 10:15-10:20: 5 Wh a minute (25 Wh); now A draws 600 W and B exports 300 W.
    for minute in range(1, 6):
        state = acc.update(
            {PHASE_A: ch(600, 300 + 5 * minute, 0), PHASE_B: ch(-300, 0, 0), INVERTER: ch(0, 0, 0)},
            DAY,
            TEN + 900 + minute * 60,
        )
    capacity = state.capacity
    assert capacity is not None
    # Per phase the import power is A's 600 W: 25 Wh + 600 W for 10 minutes = 125 Wh: 0.5 kW.
    assert capacity.demand_kw == pytest.approx(0.5)
    # 1.2 kW allows 300 Wh in the quarter: 275 Wh left in 10 minutes is 1.65 kW, 1.05 kW more.
    assert capacity.headroom_kw == pytest.approx(1.05)
    assert capacity.peak_kw == pytest.approx(1.2)
    assert capacity.seconds_left == 600.0
    # A grid channel without power: the peak is known, the demand and headroom are not.
    state = acc.update(
        {PHASE_A: ch(None, 330, 0), PHASE_B: ch(-300, 0, 0), INVERTER: ch(0, 0, 0)},
        DAY,
        TEN + 1260,
    )
    assert state.capacity is not None
    assert (state.capacity.demand_kw, state.capacity.headroom_kw) == (None, None)
    assert state.capacity.peak_kw == pytest.approx(1.2)
    # A grid meter away: what it draws meanwhile is not known yet.
    state = acc.update({PHASE_B: ch(-300, 0, 0), INVERTER: ch(0, 0, 0)}, DAY, TEN + 1320)
    assert state.capacity is None
    # Without a time there is nothing to tell; without capacity peaks neither.
    assert acc.update({}, DAY).capacity is None
    assert SiteAccumulator(hourly(), MADRID).update({}, DAY, TEN).capacity is None


def test_capacity_peaks_survive_a_restart_and_a_change_of_rule() -> None:
    acc = SiteAccumulator(quarter_peaks(), MADRID)
    draw_quarter(acc, TEN, 20.0, 0.0)  # a 1.2 kW peak
    restored = SiteAccumulator.from_dict(
        quarter_peaks(), json.loads(json.dumps(acc.to_dict())), MADRID
    )
    state = restored.update(
        {PHASE_A: ch(0, 300, 0), PHASE_B: ch(0, 0, 0), INVERTER: ch(0, 0, 0)}, DAY, TEN + 960
    )
    assert state.capacity is not None and state.capacity.peak_kw == pytest.approx(1.2)
    june = datetime(2025, 6, 1, tzinfo=MADRID).timestamp()
    assert restored.capacity_peak(june) == pytest.approx(1.2)
    assert SiteAccumulator(hourly(), MADRID).capacity_peak(june) is None
    # The mean of the three highest days: today's is the only day so far.
    restored.update_config(quarter_peaks(rule=PeakRule.MEAN_OF_DAYS))
    state = restored.update(
        {PHASE_A: ch(0, 300, 0), PHASE_B: ch(0, 0, 0), INVERTER: ch(0, 0, 0)}, DAY, TEN + 1020
    )
    assert state.capacity is not None and state.capacity.peak_kw == pytest.approx(1.2)
    # Turned off, and a stored state that cannot be read: the peaks start anew, the totals stay.
    restored.update_config(hourly())
    assert restored.update({}, DAY, TEN + 1080).capacity is None
    saved = acc.to_dict()
    saved["capacity"] = {"version": 99}
    broken = SiteAccumulator.from_dict(quarter_peaks(), saved, MADRID)
    state = broken.update(
        {PHASE_A: ch(0, 300, 0), PHASE_B: ch(0, 0, 0), INVERTER: ch(0, 0, 0)}, DAY, TEN + 960
    )
    assert state.capacity is not None and state.capacity.peak_kw == 0.0
    assert state.energy.grid_import == 300.0


def test_periods_a_gap_covered_are_rebuilt_with_the_records() -> None:
    acc = SiteAccumulator(quarter_peaks(settlement=Settlement.HOUR), MADRID)
    assert acc.records_wanted() is None
    readings = {PHASE_A: ch(0, 0, 0), PHASE_B: ch(0, 0, 0), INVERTER: ch(0, 0, 0)}
    acc.update(readings, DAY, TEN)
    # Down from 10:00 to 11:30: phase A counted 900 Wh, B exported 300 Wh meanwhile.
    gap = {PHASE_A: ch(0, 900, 0), PHASE_B: ch(0, 0, 300), INVERTER: ch(0, 0, 0)}
    state = acc.update(gap, DAY, TEN + 5400)
    assert state.energy.grid_import == pytest.approx(400.0)  # 10:00's share of the net: 2/3
    # The hour from 10:00 and the six quarters to 11:30 await the records.
    assert acc.records_wanted() == (TEN, TEN + 5400)
    # The records: 10:00 imported 700 Wh and exported 300 (a net of 400), all of it in the
    # first quarter; 11:00-11:30 imported 200 Wh.
    nets = {TEN: 400.0, TEN + 3600: 200.0}
    imports = {TEN + 900 * index: (700.0 if index == 0 else 0.0) for index in range(4)}
    imports.update({TEN + 3600: 100.0, TEN + 4500: 100.0})
    # Not before the hour it was booked in is over: the quarters are measured at once.
    result = acc.rebuild(nets, imports, TEN + 5400, booked_before=TEN + 3600)
    assert result.rebuilt == ()
    assert result.before == result.after == pytest.approx((400.0, 0.0))
    assert acc.records_wanted() == (TEN, TEN + 3600)
    result = acc.rebuild(nets, imports, TEN + 7200, booked_before=TEN + 7200)
    assert [(period.start, period.booked_at) for period in result.rebuilt] == [(TEN, TEN + 5400)]
    assert result.after == pytest.approx((400.0, 0.0))  # the guess was right by chance
    assert acc.records_wanted() is None
    state = acc.update(gap, DAY, TEN + 5460)
    assert state.capacity is not None
    assert state.capacity.peak_kw == pytest.approx(2.8)  # 700 Wh in the quarter from 10:00


def test_a_site_without_settlement_rebuilds_only_its_demand() -> None:
    acc = SiteAccumulator(quarter_peaks(), MADRID)
    result = acc.rebuild({TEN: 5.0}, {}, TEN)
    assert (result.rebuilt, result.before, result.after) == ((), (0.0, 0.0), (0.0, 0.0))


def pv_readings(exported: float, produced: float, spans: int) -> dict[ChannelRef, ChannelInput]:
    """The single-meter PV site's counters (Wh), with its meter's span count, each the latest's."""
    return {
        GRID: ChannelInput(0.0, 1_000.0, exported, spans, spans),
        SOLAR: ChannelInput(0.0, 0.0, produced, spans, spans),
    }


def take(acc: SiteAccumulator, spans: list[tuple[str, int]]) -> dict[str, ShortCount]:
    """Return and forget how the net flows accrued spans, as a history run does."""
    told = acc.short_counts(spans)
    acc.forget_short_counts(spans, told, {})
    return told


def test_a_net_sum_lowered_makes_the_fall_up_before_it_publishes_again() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=0), DAY, 60.0)
    state = acc.update(pv_readings(200.0, 5_300.0, spans=0), DAY, 120.0)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (100.0, 100.0)
    # The records tell that self-consumed solar fell 30 Wh where the site did not see it fall.
    acc.lower_net_sums({"self_consumed_solar": 30.0})
    acc = restarted(acc, PV_SITE)  # kept across a restart
    state = acc.update(pv_readings(250.0, 5_400.0, spans=0), DAY, 180.0)
    # Both rose 50: consumption publishes it, self-consumed solar first makes up the 30.
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (150.0, 120.0)


def test_a_counter_that_counted_short_holds_back_no_consumption_to_come() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=3), DAY, 60.0)  # spans before: none to forgive
    state = acc.update(pv_readings(200.0, 5_300.0, spans=3), DAY, 120.0)
    # Consumption: -200 + 300 = 100; self-consumed: 300 - 200 = 100.
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (100.0, 100.0)
    # The solar's meter rebooted and forgot: its counter counted 50 of what the grid exported
    # 200 of. Both sums fall 150 below what they published, and are forgiven that.
    state = acc.update(pv_readings(400.0, 5_350.0, spans=4), DAY, 180.0)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (100.0, 100.0)
    acc = restarted(acc, PV_SITE)
    # Consumption goes on at once: -100 + 150 = 50 (it would have waited for 150 more).
    state = acc.update(pv_readings(500.0, 5_500.0, spans=4), DAY, 240.0)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (150.0, 150.0)
    # How the flows accrued the span (booked nothing since 120 s), for the records' correction
    # of it: taken once.
    assert take(acc, [("EM0001", 4), ("EM0001", 9)]) == {
        "home_consumption": ShortCount(120.0, 150.0),
        "self_consumed_solar": ShortCount(120.0, 150.0),
    }
    assert take(acc, [("EM0001", 4)]) == {}


def test_a_short_count_is_forgiven_only_the_fall_it_made() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=0), DAY)
    acc.update(pv_readings(200.0, 5_300.0, spans=0), DAY)  # published 100
    # The solar's reading lags: the sums fall 100 below what they published.
    acc.update(pv_readings(400.0, 5_400.0, spans=0), DAY)
    # Then a span: 40 more of fall, the only part forgiven. The records' correction of the
    # span is told the 100 the sums were below before it: their rise makes it up first.
    state = acc.update(pv_readings(500.0, 5_460.0, spans=1), DAY)
    assert take(acc, [("EM0001", 1)]) == {
        "home_consumption": ShortCount(None, 40.0, 100.0),
        "self_consumed_solar": ShortCount(None, 40.0, 100.0),
    }
    # The lag's 100 is still made up before anything more is published.
    state = acc.update(pv_readings(500.0, 5_600.0, spans=1), DAY)
    assert state.energy.home_consumption == 140.0
    # A meter whose counters start anew counts its spans from 0: no short count.
    acc.update(pv_readings(500.0, 5_600.0, spans=0), DAY)
    acc.update(pv_readings(600.0, 5_600.0, spans=0), DAY)
    assert take(acc, [("EM0001", 0), ("EM0001", 1)]) == {}


def test_spans_accrued_together_are_taken_together() -> None:
    acc = SiteAccumulator(BATTERY_SITE)
    battery = ChannelInput(0.0, 0.0, 0.0, 0, 0)
    acc.update({**pv_readings(0.0, 5_000.0, spans=0), BATTERY: battery}, DAY, 60.0)
    # Both meters' counters counted short; consumption accrues both at once, falling 150.
    short = ChannelInput(0.0, 0.0, 0.0, 1, 1)
    acc.update({**pv_readings(200.0, 5_050.0, spans=1), BATTERY: short}, DAY, 120.0)
    # Consumption's accrual took both meters' spans (self-consumed solar's only the first's):
    # either tells it.
    (both,) = acc.accruals([("EM0002", 1)])
    assert both in acc.accruals([("EM0001", 1)])
    assert take(acc, [("EM0001", 1), ("EM0002", 1)]) == {
        "home_consumption": ShortCount(60.0, 150.0),
        "self_consumed_solar": ShortCount(60.0, 150.0),
    }


def test_a_fault_is_told_by_any_span_it_opened() -> None:
    def after_reboot(
        exported: float, produced: float, spans: int
    ) -> dict[ChannelRef, ChannelInput]:
        # A reboot opened spans 4 to 6: the solar's counter, the grid's and the meter's total
        # (read by no site).
        return {
            GRID: ChannelInput(0.0, 1_000.0, exported, spans, 5),
            SOLAR: ChannelInput(0.0, 0.0, produced, spans, 4),
        }

    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=3), DAY, 60.0)
    acc.update(after_reboot(200.0, 5_050.0, spans=6), DAY, 120.0)  # the sums fall 150: forgiven
    # The history asks with the numbers of the site's counters: any of them tells the fault.
    assert take(acc, [("EM0001", 5)]) == {
        "home_consumption": ShortCount(60.0, 150.0),
        "self_consumed_solar": ShortCount(60.0, 150.0),
    }
    assert take(acc, [("EM0001", 4)]) == {}  # taken once
    # The sums fall 100 while the meter's total counts short (span 7), not the site's channels:
    # nothing is forgiven, and the rise of 200 after makes the fall up first.
    acc.update(after_reboot(300.0, 5_050.0, spans=7), DAY, 180.0)
    assert acc.accruals([("EM0001", 7)]) == []
    state = acc.update(after_reboot(300.0, 5_250.0, spans=7), DAY, 240.0)
    assert (state.energy.home_consumption, state.energy.self_consumed_solar) == (100.0, 100.0)


# The PV site with a battery on a meter of its own.
PV_AND_BATTERY_METER = SiteConfig(
    {GRID: Role.GRID, SOLAR: Role.SOLAR, BATTERY: Role.BATTERY}, PV_SITE.grid_metering
)


def solar_short_while_the_battery_is_away() -> tuple[SiteAccumulator, ChannelInput]:
    """Return `PV_AND_BATTERY_METER`'s accumulator and the battery's counters.

    The solar counted short (its span 1) while the battery's meter is away: consumption waits.
    """
    acc = SiteAccumulator(PV_AND_BATTERY_METER)
    battery = ChannelInput(0.0, 0.0, 0.0, 0, 0)
    acc.update({**pv_readings(0.0, 5_000.0, spans=0), BATTERY: battery}, DAY)
    acc.update({**pv_readings(200.0, 5_050.0, spans=1), BATTERY: None}, DAY)
    return acc, battery


def two_short_counts() -> SiteAccumulator:
    """Return `PV_SITE`'s accumulator after two spans that self-consumed solar accrued.

    It falls 150 while the meter counts short (span 1, forgiven), 50 more, then rises 50 as
    the meter counts short again (span 2).
    """
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=0), DAY, 60.0)
    acc.update(pv_readings(200.0, 5_050.0, spans=1), DAY, 120.0)
    acc.update(pv_readings(300.0, 5_100.0, spans=1), DAY, 180.0)
    acc.update(pv_readings(300.0, 5_150.0, spans=2), DAY, 240.0)
    return acc


def test_a_short_count_noted_after_a_fall_the_records_took_back_grows_its_deficit() -> None:
    acc = two_short_counts()
    assert acc.short_counts([("EM0001", 2)])["self_consumed_solar"] == ShortCount(180.0, 0.0, 50.0)
    # The records tell that the first fall was real: its corrections take the 150 back, and
    # the sum had been 200 below its highest at the second span, not 50.
    told = acc.short_counts([("EM0001", 1)])
    acc.forget_short_counts([("EM0001", 1)], told, {"self_consumed_solar": 150.0})
    assert acc.short_counts([("EM0001", 2)])["self_consumed_solar"] == ShortCount(180.0, 0.0, 200.0)


def test_a_short_count_noted_before_the_one_taken_back_keeps_its_deficit() -> None:
    acc = two_short_counts()
    told = acc.short_counts([("EM0001", 2)])
    acc.forget_short_counts([("EM0001", 2)], told, {"self_consumed_solar": 30.0})
    assert acc.short_counts([("EM0001", 1)])["self_consumed_solar"] == ShortCount(60.0, 150.0, 0.0)


def test_a_short_count_the_records_corrected_first_is_not_forgiven() -> None:
    acc, battery = solar_short_while_the_battery_is_away()
    # Self-consumed solar needs no battery: it fell 150 and was forgiven. The records corrected
    # the span before consumption could: all that consumption missed is given there.
    assert take(acc, [("EM0001", 1)]) == {"self_consumed_solar": ShortCount(None, 150.0)}
    state = acc.update({**pv_readings(200.0, 5_050.0, spans=1), BATTERY: battery}, DAY)
    # Consumption: -200 + 50 = -150, not forgiven: nothing published.
    assert state.energy.home_consumption == 0.0
    assert take(acc, [("EM0001", 1)]) == {}


def test_a_flow_that_accrues_a_span_while_the_history_plans_takes_its_forgiveness_back() -> None:
    acc, battery = solar_short_while_the_battery_is_away()
    # The history plans the span's correction while consumption still waits for the battery.
    told = acc.short_counts([("EM0001", 1)])
    assert told == {"self_consumed_solar": ShortCount(None, 150.0)}
    # Consumption accrues the span meanwhile: it falls 150 and is forgiven that.
    acc.update({**pv_readings(200.0, 5_050.0, spans=1), BATTERY: battery}, DAY)
    acc.forget_short_counts([("EM0001", 1)], told, {})
    assert acc.short_counts([("EM0001", 1)]) == {}
    # The correction gives all that consumption missed: the 150 forgiven is made up first.
    state = acc.update({**pv_readings(200.0, 5_250.0, spans=1), BATTERY: battery}, DAY)
    assert state.energy.home_consumption == 50.0


def test_short_counts_stored_with_one_span_number_are_told_by_it() -> None:
    acc, battery = solar_short_while_the_battery_is_away()
    saved = json.loads(json.dumps(acc.to_dict()))
    for entry in saved["short_counts"]:  # as stored before 2026-12-07: a meter's last number
        ((meter_id, _, last),) = entry.pop("spans")
        entry.update(meter_id=meter_id, span=last)
    saved["net_flows"]["home_consumption"]["counted_short"] = ["EM0001", 1]
    restored = SiteAccumulator.from_dict(PV_AND_BATTERY_METER, saved)
    # Consumption accrues the span it waited with, once the battery's meter is back.
    restored.update({**pv_readings(200.0, 5_050.0, spans=1), BATTERY: battery}, DAY)
    assert take(restored, [("EM0001", 1)]) == {
        "self_consumed_solar": ShortCount(None, 150.0),
        "home_consumption": ShortCount(None, 150.0),
    }


def test_a_short_counts_deficit_is_stored_and_0_where_it_was_not() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=0), DAY)
    acc.update(pv_readings(200.0, 5_300.0, spans=0), DAY)
    acc.update(pv_readings(400.0, 5_400.0, spans=0), DAY)  # 100 below its highest
    acc.update(pv_readings(500.0, 5_460.0, spans=1), DAY)  # then a span
    saved = json.loads(json.dumps(acc.to_dict()))
    restored = SiteAccumulator.from_dict(PV_SITE, saved)
    assert take(restored, [("EM0001", 1)])["home_consumption"] == ShortCount(None, 40.0, 100.0)
    for entry in saved["short_counts"]:  # as stored before 2026-12-07: [since, forgiven]
        entry["flows"] = {name: values[:2] for name, values in entry["flows"].items()}
    older = SiteAccumulator.from_dict(PV_SITE, saved)
    assert take(older, [("EM0001", 1)])["home_consumption"] == ShortCount(None, 40.0, 0.0)


def test_span_counts_stored_without_each_channels_latest_tell_from_the_next_reading() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=2), DAY)
    saved = json.loads(json.dumps(acc.to_dict()))
    for entry in saved["spans"]:  # as stored before 2026-12-07: the meter's count only
        del entry["latest"]
    restored = SiteAccumulator.from_dict(PV_SITE, saved)
    # The first reading after tells each channel's latest; it forgives nothing, even a rise.
    restored.update(pv_readings(200.0, 5_050.0, spans=3), DAY)
    assert restored.accruals([("EM0001", 3)]) == []
    restored.update(pv_readings(300.0, 5_050.0, spans=4), DAY)  # then a span: forgiven
    assert take(restored, [("EM0001", 4)]) == {
        "home_consumption": ShortCount(None, 100.0, 150.0),
        "self_consumed_solar": ShortCount(None, 100.0, 150.0),
    }


def test_short_counts_no_history_takes_are_kept_to_a_bound() -> None:
    acc = SiteAccumulator(PV_SITE)
    acc.update(pv_readings(0.0, 5_000.0, spans=0), DAY)
    for span in range(1, SHORT_COUNTS_KEPT + 2):
        acc.update(pv_readings(10.0 * span, 5_000.0, spans=span), DAY)
    assert take(acc, [("EM0001", 1)]) == {}  # the oldest went
    assert take(acc, [("EM0001", 2)]) == {
        "home_consumption": ShortCount(None, 10.0),
        "self_consumed_solar": ShortCount(None, 10.0),
    }


def test_a_solar_or_battery_flow_starts_with_its_role() -> None:
    """A role added later starts its flow then: its history comes from the records (day one)."""
    grid_only = SiteConfig({GRID: Role.GRID}, GridMetering.PER_PHASE)
    acc = SiteAccumulator(grid_only)
    acc.update({GRID: ch(300, 1_000, 0)}, DAY, 60.0)
    assert (acc.started, acc.flow_started("solar"), acc.flow_started("battery")) == (
        60.0,
        None,
        None,
    )
    with_solar = SiteConfig({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    acc = restarted(acc, with_solar)
    acc.update({GRID: ch(300, 1_010, 0), SOLAR: ch(-500, 0, 100)}, DAY, 120.0)
    assert (acc.started, acc.flow_started("solar"), acc.flow_started("battery")) == (
        60.0,
        120.0,
        None,
    )


def test_flow_starts_saved_by_earlier_versions() -> None:
    site = SiteConfig({GRID: Role.GRID, SOLAR: Role.SOLAR}, GridMetering.PER_PHASE)
    acc = SiteAccumulator(site)
    acc.update({GRID: ch(300, 1_000, 0), SOLAR: ch(-500, 0, 100)}, DAY, 60.0)
    saved = json.loads(json.dumps(acc.to_dict()))
    # Before 2026-12 no start was saved: the flows of the saved roles started with the site.
    del saved["flows_started"]
    restored = SiteAccumulator.from_dict(site, saved)
    assert (restored.flow_started("solar"), restored.flow_started("battery")) == (60.0, None)
    # A start saved without its role (2026-12-06) is forgotten: the flow starts with the role.
    saved["flows_started"] = {"solar": 60.0, "battery": 60.0}
    restored = SiteAccumulator.from_dict(site, saved)
    assert (restored.flow_started("solar"), restored.flow_started("battery")) == (60.0, None)


def test_solar_and_battery_start_without_the_grids_energy() -> None:
    site = SiteConfig(
        {GRID: Role.GRID, SOLAR: Role.SOLAR, BATTERY: Role.BATTERY}, GridMetering.PER_PHASE
    )
    acc = SiteAccumulator(site)
    # A grid of power only (a Home Assistant power sensor): the flows that need it wait.
    no_energy = ChannelInput(300.0, None, None)
    acc.update({GRID: no_energy, SOLAR: ch(-500, 0, 100), BATTERY: None}, DAY, 60.0)
    acc.update({GRID: no_energy, SOLAR: ch(-500, 0, 200), BATTERY: ch(0, 10, 0)}, DAY, 120.0)
    acc = restarted(acc, site)
    acc.update({GRID: no_energy, SOLAR: ch(-500, 0, 300), BATTERY: ch(0, 20, 0)}, DAY, 180.0)
    assert (acc.started, acc.flow_started("solar"), acc.flow_started("battery")) == (
        None,
        60.0,
        120.0,
    )
