"""Energy sites end to end: simulated meters, their entries, a site entry and its sensors."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.shelly_energy import coordinator
from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_KIND,
    CONF_LOAD,
    CONF_REVERSED_CHANNELS,
    CONF_SETTLEMENT,
    CONF_SOLAR,
    CONF_SUPPLY,
    DOMAIN,
    KIND_SITE,
)
from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry, state_of


class House:
    """A Pro 3EM on the mains (phases a, b, c) and a Shelly EM: channel 1 solar, 2 battery."""

    def __init__(self, mains: SimulatedMeter, inverters: SimulatedMeter) -> None:
        self.mains = mains
        self.inverters = inverters

    def set(self, a: float, b: float, c: float, solar: float = 0.0, battery: float = 0.0) -> None:
        """Pin every CT's power (W, as the CTs read it)."""
        for phase, watts in (("a", a), ("b", b), ("c", c)):
            self.mains.set_power(phase, watts)
        self.inverters.set_power("0", solar)
        self.inverters.set_power("1", battery)


@pytest.fixture
async def house(hass: HomeAssistant, simulator: Simulator) -> House:
    mains = await serve(simulator, "pro3em")
    inverters = await serve(simulator, "gen1_em")
    house = House(mains, inverters)
    house.set(0, 0, 0)
    for meter in (mains, inverters):
        for channel in range(meter.channel_count):
            meter.set_counters(str(channel), 1000.0, 1000.0)
    await setup_entry(hass, meter_entry(simulator, mains, title="Mains"))
    await setup_entry(hass, meter_entry(simulator, inverters, title="Inverters"))
    return house


def roles(house: House, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        CONF_GRID: [f"{house.mains.mac}:{phase}" for phase in "abc"],
        CONF_SOLAR: [f"{house.inverters.mac}:1"],
        CONF_BATTERY: [f"{house.inverters.mac}:2"],
        CONF_LOAD: [],
        CONF_GRID_METERING: "per_phase",
    }
    options.update(overrides)
    return options


async def add_site(hass: HomeAssistant, options: dict[str, Any]) -> MockConfigEntry:
    site = MockConfigEntry(
        domain=DOMAIN, title="Home", data={CONF_KIND: KIND_SITE}, options=options
    )
    await setup_entry(hass, site)
    return site


async def run_for(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, seconds: float
) -> None:
    """Let the simulated house run, then poll every meter once."""
    simulator.clock.advance(seconds)
    await poll(hass, freezer)


def site_states(hass: HomeAssistant, *names: str) -> dict[str, str]:
    return {name: state_of(hass, f"sensor.home_{name}") for name in names}


ENERGY = (
    "grid_import_energy",
    "grid_export_energy",
    "solar_energy",
    "battery_charged_energy",
    "battery_discharged_energy",
    "consumption_energy",
    "self_consumed_solar_energy",
)
POWER = (
    "grid_power",
    "grid_import_power",
    "grid_export_power",
    "solar_power",
    "battery_charging_power",
    "battery_discharging_power",
    "battery_power",
    "consumption_power",
    "self_consumed_solar_power",
)


def kwh(*values: float) -> dict[str, str]:
    return {name: str(value) for name, value in zip(ENERGY, values, strict=True)}


def watts(*values: float) -> dict[str, str]:
    return {name: str(value) for name, value in zip(POWER, values, strict=True)}


@pytest.mark.parametrize(
    ("scenario", "pins", "metering", "power", "energy"),
    [
        # Night: the house imports 600 W, nothing else happens.
        (
            "night",
            {"a": 300.0, "b": 200.0, "c": 100.0},
            "per_phase",
            watts(600.0, 600.0, 0.0, 0.0, 0.0, 0.0, 0.0, 600.0, 0.0),
            kwh(0.6, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0),
        ),
        # Sunny midday: phase a exports 1 kW while b and c import 100 W each; 2.5 kW of solar.
        # Per phase: import 0.2, export 1.0; home = 0.2 + 2.5 - 1.0 = 1.7; self-consumed 1.5.
        (
            "midday per phase",
            {"a": -1000.0, "b": 100.0, "c": 100.0, "solar": -2500.0},
            "per_phase",
            watts(-800.0, 200.0, 1000.0, 2500.0, 0.0, 0.0, 0.0, 1700.0, 1500.0),
            kwh(0.2, 1.0, 2.5, 0.0, 0.0, 1.7, 1.5),
        ),
        # The same hour, balanced: the phases net to an export of 800 W.
        (
            "midday balanced",
            {"a": -1000.0, "b": 100.0, "c": 100.0, "solar": -2500.0},
            "balanced",
            watts(-800.0, 0.0, 800.0, 2500.0, 0.0, 0.0, 0.0, 1700.0, 1700.0),
            kwh(0.0, 0.8, 2.5, 0.0, 0.0, 1.7, 1.7),
        ),
        # The battery charges 1 kW from 3 kW of solar; the grid stands still: home = 3 - 1 = 2.
        (
            "battery charging",
            {"solar": -3000.0, "battery": 1000.0},
            "per_phase",
            watts(0.0, 0.0, 0.0, 3000.0, 1000.0, 0.0, -1000.0, 2000.0, 3000.0),
            kwh(0.0, 0.0, 3.0, 1.0, 0.0, 2.0, 3.0),
        ),
        # Night on the battery: it gives 800 W, the grid 200 W: home = 1 kW.
        (
            "battery discharging",
            {"a": 200.0, "battery": -800.0},
            "per_phase",
            watts(200.0, 200.0, 0.0, 0.0, 0.0, 800.0, 800.0, 1000.0, 0.0),
            kwh(0.2, 0.0, 0.0, 0.0, 0.8, 1.0, 0.0),
        ),
    ],
)
async def test_scenarios(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    house: House,
    scenario: str,
    pins: dict[str, float],
    metering: str,
    power: dict[str, str],
    energy: dict[str, str],
) -> None:
    await add_site(hass, roles(house, **{CONF_GRID_METERING: metering}))
    house.set(**{"a": 0.0, "b": 0.0, "c": 0.0, **pins})
    await run_for(hass, simulator, freezer, 3600)
    assert site_states(hass, *POWER) == power
    assert site_states(hass, *ENERGY) == energy


async def test_ratios_today(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    await add_site(hass, roles(house))
    house.set(-1000.0, 100.0, 100.0, solar=-2500.0)
    await run_for(hass, simulator, freezer, 3600)
    # self-consumed 1.5 of 2.5 produced = 60 %; 1 - import 0.2 / consumption 1.7 = 88.2 %.
    assert site_states(hass, "self_consumption_rate_today", "self_sufficiency_today") == {
        "self_consumption_rate_today": "60.0",
        "self_sufficiency_today": "88.2",
    }


async def test_reversed_solar_ct(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    inverters_entry = hass.config_entries.async_entry_for_domain_unique_id(
        DOMAIN, house.inverters.mac
    )
    assert inverters_entry is not None
    hass.config_entries.async_update_entry(inverters_entry, options={CONF_REVERSED_CHANNELS: ["1"]})
    await hass.async_block_till_done()
    await add_site(hass, roles(house))
    house.set(0.0, 0.0, -500.0, solar=2000.0)  # the solar CT reads positive: it is reversed
    await run_for(hass, simulator, freezer, 1800)
    assert site_states(hass, "solar_power", "solar_energy", "consumption_energy") == {
        "solar_power": "2000.0",
        "solar_energy": "1.0",
        "consumption_energy": "0.75",
    }


async def test_marking_a_ct_reversed_after_it_counted_moves_no_energy(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    """The swapped sensors go on from what they showed; the site sees no jump in its grid flows.

    Phase a's CT was installed the wrong way round on a meter that had counted 27 kWh in: the
    user notices an hour of "export" at night and marks it reversed, then (to check) unmarks it.
    """
    mains = await serve(simulator, "pro3em")
    mains.set_counters("a", 27000.0, 3.0)
    for phase in "bc":
        mains.set_counters(phase, 0.0, 0.0)
        mains.set_power(phase, 0.0)
    mains.set_power("a", -500.0)  # the house imports 500 W; the reversed CT reads it negative
    entry = meter_entry(simulator, mains, title="Mains")
    await setup_entry(hass, entry)
    await add_site(
        hass,
        {
            CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
            CONF_SOLAR: [],
            CONF_BATTERY: [],
            CONF_LOAD: [],
            CONF_GRID_METERING: "per_phase",
        },
    )
    meter_energy = tuple(
        f"sensor.mains_{channel}_energy_{direction}"
        for channel in ("phase_a", "total")
        for direction in ("imported", "exported")
    )

    def energy() -> dict[str, str]:
        return {
            **{entity_id: state_of(hass, entity_id) for entity_id in meter_energy},
            **site_states(hass, "grid_import_energy", "grid_export_energy"),
        }

    def shown(imported: str, exported: str, grid_import: str, grid_export: str) -> dict[str, str]:
        return dict(
            zip(
                (*meter_energy, "grid_import_energy", "grid_export_energy"),
                (imported, exported, imported, exported, grid_import, grid_export),
                strict=True,
            )
        )

    await run_for(hass, simulator, freezer, 3600)
    assert energy() == shown("27.0", "0.503", "0.0", "0.5")

    async def mark_reversed(channels: list[str]) -> None:
        result: Any = await hass.config_entries.options.async_init(entry.entry_id)
        form = result["data_schema"]({CONF_SUPPLY: {}})
        await hass.config_entries.options.async_configure(
            result["flow_id"], {**form, CONF_REVERSED_CHANNELS: channels}
        )
        await hass.async_block_till_done()
        assert entry.options[CONF_REVERSED_CHANNELS] == channels
        await run_for(hass, simulator, freezer, 0)

    await mark_reversed(["a"])
    assert energy() == shown("27.0", "0.503", "0.0", "0.5")  # nothing moved at the switch
    await run_for(hass, simulator, freezer, 3600)
    assert energy() == shown("27.5", "0.503", "0.5", "0.5")  # the night's 500 W imported

    await mark_reversed([])
    assert energy() == shown("27.5", "0.503", "0.5", "0.5")
    await run_for(hass, simulator, freezer, 3600)
    assert energy() == shown("27.5", "1.003", "0.5", "1.0")


async def test_offline_meter_makes_its_values_unavailable_and_catches_up(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    await add_site(hass, roles(house))
    house.set(300.0, 0.0, 0.0, solar=-1000.0)
    await run_for(hass, simulator, freezer, 600)
    house.inverters.set_online(False)
    await run_for(hass, simulator, freezer, 3000)
    assert site_states(hass, "grid_import_energy", "solar_energy", "consumption_energy") == {
        "grid_import_energy": "0.3",
        "solar_energy": STATE_UNAVAILABLE,
        "consumption_energy": STATE_UNAVAILABLE,
    }
    assert state_of(hass, "sensor.home_grid_power") == "300.0"
    house.inverters.set_online(True)
    await run_for(hass, simulator, freezer, 0)
    await run_for(hass, simulator, freezer, 0)
    # One hour in all: 1 kWh of solar, all of it used at home with 0.3 kWh from the grid.
    assert site_states(hass, "grid_import_energy", "solar_energy", "consumption_energy") == {
        "grid_import_energy": "0.3",
        "solar_energy": "1.0",
        "consumption_energy": "1.3",
    }


async def test_a_meter_back_from_an_outage_is_paired_with_the_others_of_its_poll(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    """After a missed poll, the site still combines readings of the same poll, not a poll apart.

    Read a poll apart, one meter's solar would meet the other's export of the poll before: home
    consumption would jump by the solar of a poll, and never give it back (it only rises).
    """
    await add_site(hass, roles(house))
    # 1 kW of solar: 700 W exported on phase a, 300 W used at home.
    house.set(-700.0, 0.0, 0.0, solar=-1000.0)
    await run_for(hass, simulator, freezer, 360)
    assert site_states(hass, "consumption_energy") == {"consumption_energy": "0.03"}
    coordinators = {
        entry.title: entry.runtime_data.coordinator
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.title in ("Mains", "Inverters")
    }
    house.mains.set_online(False)
    simulator.clock.advance(360)
    await coordinators["Mains"].async_refresh()  # missed
    await coordinators["Inverters"].async_refresh()  # the site computes without the mains
    house.mains.set_online(True)
    await coordinators["Mains"].async_refresh()  # back: the site computes with this poll
    assert site_states(hass, "consumption_energy") == {"consumption_energy": "0.06"}
    # The next poll: the inverters answer first, then the mains.
    simulator.clock.advance(360)
    await coordinators["Inverters"].async_refresh()
    await coordinators["Mains"].async_refresh()
    assert site_states(hass, "consumption_energy", "solar_energy", "grid_export_energy") == {
        "consumption_energy": "0.09",
        "solar_energy": "0.3",
        "grid_export_energy": "0.21",
    }


async def test_restart_loses_and_double_counts_nothing(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    site = await add_site(hass, roles(house))
    house.set(300.0, 200.0, 100.0)
    await run_for(hass, simulator, freezer, 1800)
    assert await hass.config_entries.async_unload(site.entry_id)
    await run_for(hass, simulator, freezer, 1800)  # the house goes on while the site is down
    assert await hass.config_entries.async_setup(site.entry_id)
    await hass.async_block_till_done()
    await run_for(hass, simulator, freezer, 0)
    assert site_states(hass, "grid_import_energy", "consumption_energy") == {
        "grid_import_energy": "0.6",
        "consumption_energy": "0.6",
    }


async def test_role_change_keeps_totals_and_loads_get_sensors(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    site = await add_site(hass, roles(house, **{CONF_BATTERY: []}))
    house.set(500.0, 0.0, 0.0, battery=250.0)
    await run_for(hass, simulator, freezer, 3600)
    assert state_of(hass, "sensor.home_grid_import_energy") == "0.5"
    hass.config_entries.async_update_entry(
        site, options=roles(house, **{CONF_BATTERY: [], CONF_LOAD: [f"{house.inverters.mac}:2"]})
    )
    await hass.async_block_till_done()
    assert site.state is ConfigEntryState.LOADED
    assert state_of(hass, "sensor.home_grid_import_energy") == "0.5"
    assert state_of(hass, "sensor.home_inverters_channel_2_power") == "250.0"
    registry = er.async_get(hass)
    assert registry.async_get("sensor.home_battery_charged_energy") is None


@pytest.mark.usefixtures("all_entities_enabled")
async def test_a_load_counts_its_energy_in_and_out_across_a_restart(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    load = ("inverters_channel_2_energy", "inverters_channel_2_returned_energy")
    site = await add_site(
        hass, roles(house, **{CONF_BATTERY: [], CONF_LOAD: [f"{house.inverters.mac}:2"]})
    )
    assert site_states(hass, *load) == dict.fromkeys(load, "0.0")
    house.set(500.0, 0.0, 0.0, battery=250.0)  # the circuit draws 250 W for an hour
    await run_for(hass, simulator, freezer, 3600)
    house.set(500.0, 0.0, 0.0, battery=-100.0)  # then feeds the home 100 W for half an hour
    await run_for(hass, simulator, freezer, 1800)
    assert site_states(hass, *load) == dict(zip(load, ("0.25", "0.05"), strict=True))
    # Usable as an individual device in the Energy dashboard: a total in kWh that only rises.
    energy = hass.states.get("sensor.home_inverters_channel_2_energy")
    assert energy is not None
    attributes = energy.attributes
    assert (attributes["device_class"], attributes["state_class"]) == ("energy", "total_increasing")
    assert attributes["unit_of_measurement"] == "kWh"
    assert await hass.config_entries.async_unload(site.entry_id)
    await run_for(hass, simulator, freezer, 1800)  # it goes on feeding while the site is down
    assert await hass.config_entries.async_setup(site.entry_id)
    await hass.async_block_till_done()
    await run_for(hass, simulator, freezer, 0)
    assert site_states(hass, *load) == dict(zip(load, ("0.25", "0.1"), strict=True))


async def test_a_load_whose_stored_totals_were_lost_holds_what_was_recorded(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    house: House,
) -> None:
    load = f"{house.inverters.mac}:2"
    site = await add_site(hass, roles(house, **{CONF_BATTERY: [], CONF_LOAD: [load]}))
    house.set(500.0, 0.0, 0.0, battery=250.0)
    await run_for(hass, simulator, freezer, 3600)
    assert state_of(hass, "sensor.home_inverters_channel_2_energy") == "0.25"
    assert await hass.config_entries.async_unload(site.entry_id)
    del hass_storage[f"{DOMAIN}.site.{site.entry_id}"]  # a crash before the save
    # What the recorder last holds of each sensor, by unique id (Wh as shown, and when).
    recorded = {f"{site.entry_id}_load_{load}_energy": (250.0, 0.0)}

    async def last_recorded(_hass: HomeAssistant, unique_ids: dict[str, str]) -> dict[str, Any]:
        return {key: recorded[uid] for key, uid in unique_ids.items() if uid in recorded}

    with patch(f"{coordinator.__name__}.async_last_recorded_totals", last_recorded):
        assert await hass.config_entries.async_setup(site.entry_id)
        await hass.async_block_till_done()
    await run_for(hass, simulator, freezer, 0)
    # Not 0: what Home Assistant recorded (the statistics would see a negative hour otherwise).
    assert state_of(hass, "sensor.home_inverters_channel_2_energy") == "0.25"
    await run_for(hass, simulator, freezer, 3600)
    assert state_of(hass, "sensor.home_inverters_channel_2_energy") == "0.5"


async def test_removing_a_site_forgets_its_totals(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    site = await add_site(hass, roles(house))
    house.set(1000.0, 0.0, 0.0)
    await run_for(hass, simulator, freezer, 3600)
    assert await hass.config_entries.async_remove(site.entry_id)
    await hass.async_block_till_done()
    site = await add_site(hass, roles(house))
    assert state_of(hass, "sensor.home_grid_import_energy") == "0.0"


async def test_site_diagnostics(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, simulator: Simulator, house: House
) -> None:
    site = await add_site(hass, roles(house, **{CONF_LOAD: [f"{house.inverters.mac}:2"]}))
    house.set(500.0, 0.0, 0.0, battery=250.0)
    simulator.clock.advance(3600)
    # Refreshed directly: the diagnostics download does not work under a frozen clock.
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry is not site:
            await entry.runtime_data.coordinator.async_refresh()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, site)
    assert diagnostics["entry"]["kind"] == "site"
    assert diagnostics["state"]["power"]["loads"] == {f"{house.inverters.mac}:2": 250.0}
    assert diagnostics["state"]["loads"] == {
        f"{house.inverters.mac}:2": {"consumed": 250.0, "returned": 0.0}
    }
    assert diagnostics["state"]["energy"]["grid_import"] == 500.0
    assert diagnostics["site"]["totals"]["grid_import"] == 500.0


# An hourly-settled morning of the simulated house, 15 minutes a step: the pins of phases a, b
# and c (W) in each step, from a whole hour (called 10:00). Solar and battery work on meanwhile.
SETTLED_STEPS: list[tuple[float, float, float]] = [
    # 10:00: the kettle, then the sun on phase b, then the heat pump on a and solar on c.
    (2000.0, 0.0, 0.0),
    (0.0, -1000.0, 0.0),
    (400.0, 0.0, -1200.0),
    (0.0, 0.0, 0.0),
    # 11:00: an hour that exports and imports as much.
    (-3000.0, 0.0, 0.0),
    (-3000.0, 0.0, 0.0),
    (1000.0, 1000.0, 1000.0),
    (1000.0, 1000.0, 1000.0),
    # 12:00: exports on two phases all hour.
    *[(-800.0, -400.0, 0.0)] * 4,
    # 13:00: the first quarter of the hour imports on phase a.
    (1200.0, 0.0, 0.0),
]
STEP_S = 900


async def test_hourly_settlement_over_the_simulator(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    # From a whole hour (the house stands still until then).
    await poll(hass, freezer, 3600 - dt_util.utcnow().timestamp() % 3600)
    site = await add_site(hass, roles(house))
    # The settlement chosen in the site's options; the totals so far (none) carry over.
    result: Any = await hass.config_entries.options.async_init(site.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "roles"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**roles(house), CONF_SETTLEMENT: "60"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert site.options[CONF_SETTLEMENT] == "60"
    # Each hour's net, computed here from the pins: every step lies within one hour.
    nets: dict[int, float] = {}
    for index, pins in enumerate(SETTLED_STEPS):
        hour = index * STEP_S // 3600
        nets[hour] = nets.get(hour, 0.0) + sum(pins) * STEP_S / 3600
    assert nets == {0: 50.0, 1: 0.0, 2: -1200.0, 3: 300.0}
    for index, (a, b, c) in enumerate(SETTLED_STEPS):
        house.set(a, b, c, solar=-1500.0, battery=500.0)
        simulator.clock.advance(STEP_S)
        await poll(hass, freezer, STEP_S)
        if index == 5:  # 11:30: a restart in the middle of an hour loses nothing
            assert await hass.config_entries.async_reload(site.entry_id)
            await hass.async_block_till_done()
    closed = [net for hour, net in nets.items() if hour < 3]
    expected_import = sum(max(net, 0.0) for net in closed) / 1000
    expected_export = sum(max(-net, 0.0) for net in closed) / 1000
    states = site_states(
        hass,
        "grid_import_energy",
        "grid_export_energy",
        "settlement_period_net_energy",
        "export_to_balance_the_settlement_period",
        "settlement_period_time_left",
    )
    assert states == {
        "grid_import_energy": str(expected_import),  # 0.05: 10:00's net
        "grid_export_energy": str(expected_export),  # 1.2: 12:00's; 11:00 netted to 0
        "settlement_period_net_energy": "0.3",
        "export_to_balance_the_settlement_period": "0.3",
        "settlement_period_time_left": "2700.0",
    }
    # Consumption stays what the home used: the settlement bills only the grid.
    solar_and_battery = len(SETTLED_STEPS) * (1500.0 - 500.0) * STEP_S / 3600
    grid_net = sum(nets.values())
    assert state_of(hass, "sensor.home_consumption_energy") == str(
        round((grid_net + solar_and_battery) / 1000, 3)
    )
