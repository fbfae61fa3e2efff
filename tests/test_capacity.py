"""Capacity peaks of a site end to end: the options, the simulated house's demand, the sensors."""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import dt as dt_util

from custom_components.shelly_energy.const import (
    CONF_CAPACITY,
    CONF_DEMAND_PERIOD,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
)
from simulator import Simulator

from . import test_site
from .conftest import poll, state_of
from .test_site import House, add_site, roles, site_states

house = test_site.house  # the fixture: the site tests' two-meter house

CAPACITY_SENSORS = (
    "capacity_period_demand",
    "capacity_peak",
    "headroom_before_a_new_capacity_peak",
)
STEP_S = 300
# Quarter-hours of the simulated house, 5 minutes a step: the pins of phases a, b and c (W).
QUARTERS: list[list[tuple[float, float, float]]] = [
    # Phase a imports 3 kW for ten minutes while b exports: per phase, b nets nothing away.
    [(3000.0, -1000.0, 0.0), (3000.0, -1000.0, 0.0), (0.0, 0.0, 0.0)],
    # 1.2 kW on each phase all quarter.
    [(1200.0, 1200.0, 1200.0)] * 3,
    # The running quarter: 2.4 kW on a for its first five minutes.
    [(2400.0, 0.0, 0.0)],
]


async def configure(hass: HomeAssistant, entry_id: str, step: str, answer: dict[str, Any]) -> Any:
    """Open a site's options, choose a step and answer it; return the last result."""
    result: Any = await hass.config_entries.options.async_init(entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    assert result["step_id"] == step
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    await hass.async_block_till_done()
    return result


async def test_capacity_peaks_over_the_simulator(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    # From a whole quarter (the house stands still until then).
    await poll(hass, freezer, 900 - dt_util.utcnow().timestamp() % 900)
    site = await add_site(hass, roles(house))
    assert hass.states.get("sensor.home_capacity_peak") is None  # off by default
    # The form shows off; the answer turns quarter-hour peaks on.
    result: Any = await hass.config_entries.options.async_init(site.entry_id)
    assert result["menu_options"] == ["roles", "tariff", "capacity"]
    answer = {CONF_DEMAND_PERIOD: "15", CONF_PEAK_RULE: "highest", CONF_PEAK_DAYS: 3}
    result = await configure(hass, site.entry_id, "capacity", answer)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert site.options[CONF_CAPACITY] == answer
    for quarter in QUARTERS:
        for a, b, c in quarter:
            house.set(a, b, c, solar=-800.0, battery=300.0)
            simulator.clock.advance(STEP_S)
            await poll(hass, freezer, STEP_S)
    # Each quarter's demand, from the pins: import per phase over a quarter of an hour.
    demands = [
        sum(max(pin, 0.0) for pins in quarter for pin in pins) * STEP_S / 3600 / 0.25 / 1000
        for quarter in QUARTERS
    ]
    assert demands == [2.0, 3.6, 0.8]
    peak = max(demands[:2])
    # The running quarter at 2.4 kW: 200 Wh so far and 400 Wh to come is 2.4 kW; the peak of
    # 3.6 kW allows 900 Wh, 700 Wh in the 10 minutes left: 4.2 kW, 1.8 kW above the 2.4 kW.
    assert site_states(hass, *CAPACITY_SENSORS) == {
        "capacity_period_demand": "2.4",
        "capacity_peak": str(peak),
        "headroom_before_a_new_capacity_peak": "1.8",
    }
    peak_sensor = hass.states.get("sensor.home_capacity_peak")
    assert peak_sensor is not None
    assert peak_sensor.attributes["unit_of_measurement"] == "kW"
    # Turned off again: the sensors go, the site's totals stay.
    result = await configure(hass, site.entry_id, "capacity", {**answer, CONF_DEMAND_PERIOD: "off"})
    assert CONF_CAPACITY not in site.options
    assert all(hass.states.get(f"sensor.home_{name}") is None for name in CAPACITY_SENSORS)
    assert state_of(hass, "sensor.home_grid_import_energy") == "1.6"
