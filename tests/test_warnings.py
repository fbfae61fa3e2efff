"""Warnings before a period closes, end to end: options, the simulated house, the events."""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_get_device_automations,
)

from custom_components.shelly_energy.const import (
    CONF_CAPACITY,
    CONF_PEAK_WARNING_KW,
    CONF_PEAK_WARNING_MINUTES,
    CONF_PERIOD_WARNING_KWH,
    CONF_PERIOD_WARNING_MINUTES,
    CONF_SETTLEMENT,
    CONF_WARNINGS,
    DOMAIN,
    EVENT_GRID,
)
from custom_components.shelly_energy.logbook import describe_grid_event
from simulator import Simulator

from . import test_site
from .conftest import device_with, poll
from .test_capacity import QUARTER_PEAKS, configure
from .test_contract import events_seen
from .test_site import House, add_site, roles

house = test_site.house  # the fixture: the site tests' two-meter house

WARNINGS = {
    CONF_PERIOD_WARNING_MINUTES: 10.0,
    CONF_PERIOD_WARNING_KWH: 0.5,
    CONF_PEAK_WARNING_MINUTES: 5.0,
    CONF_PEAK_WARNING_KW: 0.5,
}
STEP_S = 300
# Phase a's power (W) in each 5-minute step from a whole hour (called 10:00), settled hourly, with
# 15-minute demand periods.
STEPS = [2000.0] * 3 + [1000.0] + [3000.0] * 2 + [0.0] * 5


async def test_warnings_before_periods_close_over_the_simulator(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    await poll(hass, freezer, 3600 - dt_util.utcnow().timestamp() % 3600)
    site = await add_site(
        hass, roles(house, **{CONF_SETTLEMENT: "60", CONF_CAPACITY: QUARTER_PEAKS})
    )
    await configure(hass, site.entry_id, "warnings", WARNINGS)
    assert site.options[CONF_WARNINGS] == WARNINGS
    events = async_capture_events(hass, EVENT_GRID)
    seen: list[list[dict[str, Any]]] = []
    for watts in STEPS:
        house.set(watts, 0.0, 0.0)
        simulator.clock.advance(STEP_S)
        await poll(hass, freezer, STEP_S)
        seen.append(events_seen(events))
        events.clear()
    # 10:10, 5 minutes before the first quarter ends, warns of nothing: the month has no peak.
    assert [index for index, found in enumerate(seen) if found] == [4, 9]
    # 10:25: 83 Wh at 1 kW and 250 Wh at 3 kW so far; at 3 kW the quarter ends at 2.333 kW.
    # The 2 kW peak allows 500 Wh: 167 Wh in 5 minutes is 2 kW, 1 kW less than drawn.
    assert seen[4] == [
        {"type": "peak_imminent", "demand_kw": 2.333, "peak_kw": 2.0, "headroom_kw": -1.0,
         "threshold_kw": 0.5, "seconds_left": 300}
    ]  # fmt: skip
    # 10:50: 10 minutes before the hour closes its net import is 500 + 83 + 500 Wh.
    assert seen[9] == [
        {"type": "period_closing", "net_kwh": 1.083, "threshold_kwh": 0.5, "seconds_left": 600}
    ]
    assert describe_grid_event(seen[9][0]) == (
        "the settlement period closes in 600 s with 1.083 kWh imported (above 0.5 kWh)"
    )
    assert describe_grid_event(seen[4][0]) == (
        "a new capacity peak is near: 2.333 kW projected against the peak of 2.0 kW"
        " (headroom -1.0 kW), 300 s left"
    )
    device = device_with(hass, f"site_{site.entry_id}")
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert [t["type"] for t in triggers if t["domain"] == DOMAIN] == [
        "period_closing",
        "peak_imminent",
    ]
    entity = hass.states.get("event.home_grid_events")
    assert entity is not None
    assert entity.attributes["event_type"] == "period_closing"


async def test_a_warning_needs_what_it_watches(hass: HomeAssistant, house: House) -> None:
    site = await add_site(hass, roles(house))
    result: Any = await configure(hass, site.entry_id, "warnings", WARNINGS)
    assert result["errors"] == {CONF_PERIOD_WARNING_MINUTES: "needs_settlement"}
    peak_only = {
        key: value for key, value in WARNINGS.items() if key != CONF_PERIOD_WARNING_MINUTES
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], peak_only)
    assert result["errors"] == {CONF_PEAK_WARNING_MINUTES: "needs_capacity"}
    # With capacity peaks the peak warning is taken; without minutes none is stored.
    await configure(hass, site.entry_id, "capacity", QUARTER_PEAKS)
    await configure(hass, site.entry_id, "warnings", peak_only)
    assert site.options[CONF_WARNINGS] == peak_only
    assert hass.states.get("event.home_grid_events") is not None
    result = await configure(
        hass, site.entry_id, "warnings", {CONF_PERIOD_WARNING_KWH: 0, CONF_PEAK_WARNING_KW: 0}
    )
    assert CONF_WARNINGS not in site.options
    assert hass.states.get("event.home_grid_events") is None
