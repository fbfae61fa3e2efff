"""Tests for the load-shedding blueprint: a real automation driven by a site's grid events."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

BLUEPRINT = Path(__file__).parents[2] / "blueprints/automation/shelly_energy/load_shedding.yaml"
SITE = "fedcba9876543210fedcba9876543210"
HEADROOM = "sensor.home_contracted_power_headroom"
# The order of shedding: the charger first, the heat pump last.
SWITCHES = ["switch.charger", "switch.water_heater", "switch.heat_pump"]


class Site:
    """The automation under test, the switches' states and the calls it made."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.turned_off = async_mock_service(hass, "switch", "turn_off")
        self.turned_on = async_mock_service(hass, "switch", "turn_on")
        self.messages = async_mock_service(hass, "test", "notify")
        self.now = dt_util.utcnow()  # the time the test has let pass

    async def headroom(self, kw: float) -> None:
        self.hass.states.async_set(HEADROOM, str(kw), {"unit_of_measurement": "kW"})
        await self.settle()

    async def switch(self, entity_id: str, state: str) -> None:
        self.hass.states.async_set(entity_id, state)
        await self.settle()

    async def event(self, kind: str, data: dict[str, Any], site: str = SITE) -> None:
        event = {"device_id": site, "entry_id": "e", "type": kind, "channel": None}
        self.hass.bus.async_fire("shelly_energy_grid", {**event, **data})
        await self.settle()

    async def seconds_pass(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        async_fire_time_changed(self.hass, self.now)
        await self.settle()

    async def settle(self) -> None:
        # A run waiting in its delay never finishes: let the loop run it as far as it goes.
        for _ in range(50):
            await asyncio.sleep(0)

    def switched(self, calls: list[ServiceCall]) -> list[str]:
        # A target of one entity arrives as a list of one.
        return [entity_id for call in calls for entity_id in call.data["entity_id"]]


async def shed(hass: HomeAssistant, tmp_path: Path, **inputs: Any) -> Site:
    """Install the blueprint in a scratch configuration and set up one automation from it."""
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints/automation/shelly_energy/load_shedding.yaml"
    target.parent.mkdir(parents=True)
    shutil.copy(BLUEPRINT, target)
    site = Site(hass)
    for entity_id in SWITCHES:
        hass.states.async_set(entity_id, "on")
    hass.states.async_set(HEADROOM, "1.0", {"unit_of_measurement": "kW"})
    notify = [{"action": "test.notify", "data": {"message": "{{ message }}"}}]
    config = {
        "use_blueprint": {
            "path": "shelly_energy/load_shedding.yaml",
            "input": {
                "site": SITE,
                "headroom": HEADROOM,
                "switches": SWITCHES,
                "notify": notify,
                **inputs,
            },
        }
    }
    assert await async_setup_component(hass, "automation", {"automation": config})
    await hass.async_block_till_done()
    return site


EXCEEDED = {"value": 4.2, "limit": 3.3, "trips_in": 7188, "duration": None}
CLEARED = {"value": 2.0, "limit": 3.3, "trips_in": None, "duration": 95}


async def test_loads_go_off_in_order_until_there_is_headroom_and_come_back(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await shed(hass, tmp_path)
    await site.headroom(-0.9)
    await site.event("power_exceeded", EXCEEDED)
    assert site.switched(site.turned_off) == ["switch.charger"]
    assert [call.data["message"] for call in site.messages] == [
        "Contracted power exceeded: 4.2 kW (limit 3.3 kW). Turning loads off."
    ]
    await site.switch("switch.charger", "off")
    await site.headroom(-0.2)  # still over: the next one goes after the 30 s
    await site.seconds_pass(29)
    assert site.switched(site.turned_off) == ["switch.charger"]
    await site.seconds_pass(2)
    assert site.switched(site.turned_off) == ["switch.charger", "switch.water_heater"]
    await site.switch("switch.water_heater", "off")
    await site.headroom(1.1)  # enough: the heat pump stays on
    await site.seconds_pass(31)
    assert site.switched(site.turned_off) == ["switch.charger", "switch.water_heater"]

    # Back within the limit: the water heater (shed last) waits for 2 kW of headroom.
    await site.event("power_cleared", CLEARED)
    assert site.turned_on == []
    await site.headroom(2.4)
    assert site.switched(site.turned_on) == ["switch.water_heater"]
    await site.switch("switch.water_heater", "on")
    await site.headroom(0.6)
    await site.seconds_pass(31)
    assert site.switched(site.turned_on) == ["switch.water_heater"]
    await site.headroom(2.1)
    assert site.switched(site.turned_on) == ["switch.water_heater", "switch.charger"]
    await site.seconds_pass(31)
    assert site.messages[-1].data["message"] == (
        "Back within the contracted power: loads turned back on."
    )


async def test_exceeding_again_while_restoring_sheds_again(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await shed(hass, tmp_path, step_seconds=10, restore_headroom=1.5)
    await site.switch("switch.charger", "off")  # already off: nothing to shed there
    await site.headroom(-0.5)
    await site.event("power_exceeded", EXCEEDED)
    assert site.switched(site.turned_off) == ["switch.water_heater"]
    await site.switch("switch.water_heater", "off")
    await site.headroom(0.4)
    await site.seconds_pass(11)
    await site.event("power_cleared", CLEARED)
    # The restore waits for 1.5 kW; meanwhile the power rises over the limit again.
    await site.headroom(-0.3)
    await site.event("power_exceeded", EXCEEDED)
    assert site.switched(site.turned_off) == ["switch.water_heater", "switch.heat_pump"]
    await site.headroom(3.0)
    assert site.turned_on == []  # the restore was replaced by the new shedding


async def test_other_sites_and_events_change_nothing(hass: HomeAssistant, tmp_path: Path) -> None:
    site = await shed(hass, tmp_path, notify=[])
    await site.headroom(-1.0)
    await site.event("power_exceeded", EXCEEDED, "another site")
    await site.event("fuse_exceeded", {**EXCEEDED, "channel": "Mains phase A"})
    await site.seconds_pass(60)
    assert site.turned_off == []
    assert site.messages == []
