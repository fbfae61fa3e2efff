"""Tests for the supply-protection blueprint: a real automation driven by anomaly bus events."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

BLUEPRINT = Path(__file__).parents[2] / "blueprints/automation/shelly_energy/supply_protection.yaml"
METER = "0123456789abcdef0123456789abcdef"
SWITCHES = ["switch.heat_pump", "switch.boiler"]


class Site:
    """The automation under test, with the calls it made."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.turned_off = async_mock_service(hass, "switch", "turn_off")
        self.turned_on = async_mock_service(hass, "switch", "turn_on")
        self.messages = async_mock_service(hass, "test", "notify")

    async def anomaly(self, device_id: str = METER, **data: Any) -> None:
        event = {"phase": "a", "value": 256.0, "limit": 253.0, "duration": None}
        event |= {"restored_type": None, "active": [], **data, "device_id": device_id}
        self.hass.bus.async_fire("shelly_energy_anomaly", event)
        await self.settle()

    async def minutes_pass(self, minutes: float) -> None:
        async_fire_time_changed(self.hass, dt_util.utcnow() + timedelta(minutes=minutes))
        await self.settle()

    async def settle(self) -> None:
        # A run waiting in its delay never finishes, so hass.async_block_till_done() would
        # wait forever: let the event loop run the automation as far as it goes instead (as
        # Home Assistant's own blueprint tests do).
        for _ in range(50):
            await asyncio.sleep(0)

    def switched(self, calls: list[ServiceCall]) -> list[list[str]]:
        return [call.data["entity_id"] for call in calls]


async def protect(hass: HomeAssistant, tmp_path: Path, **inputs: Any) -> Site:
    """Install the blueprint in a scratch configuration and set up one automation from it."""
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints/automation/shelly_energy/supply_protection.yaml"
    target.parent.mkdir(parents=True)
    shutil.copy(BLUEPRINT, target)
    site = Site(hass)
    notify = [{"action": "test.notify", "data": {"message": "{{ message }}"}}]
    config = {
        "use_blueprint": {
            "path": "shelly_energy/supply_protection.yaml",
            "input": {"meter": METER, "switches": SWITCHES, "notify": notify, **inputs},
        }
    }
    assert await async_setup_component(hass, "automation", {"automation": config})
    await hass.async_block_till_done()
    return site


async def test_an_anomaly_turns_the_switches_off_and_its_end_back_on(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await protect(hass, tmp_path)
    await site.anomaly(type="overvoltage", active=["overvoltage"])
    assert site.switched(site.turned_off) == [SWITCHES]
    assert [call.data["message"] for call in site.messages] == [
        "Supply overvoltage on a: 256.0 V (limit 253.0 V). Switches turned off."
    ]
    await site.minutes_pass(60)
    assert site.turned_on == []

    await site.anomaly(type="restored", restored_type="overvoltage", duration=40.0)
    await site.minutes_pass(4.9)
    assert site.turned_on == []
    await site.minutes_pass(5.1)
    assert site.switched(site.turned_on) == [SWITCHES]
    assert site.messages[-1].data["message"] == (
        "Supply normal for 5 min. Switches turned back on."
    )


async def test_a_new_anomaly_during_the_wait_restarts_it(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await protect(hass, tmp_path, normal_minutes=10)
    await site.anomaly(type="undervoltage", phase="b", value=190.0, limit=207.0)
    await site.anomaly(type="restored", restored_type="undervoltage")
    await site.minutes_pass(8)
    await site.anomaly(type="interruption", phase="c", value=0.0, limit=11.5)
    await site.minutes_pass(30)
    assert site.turned_on == []
    assert site.switched(site.turned_off) == [SWITCHES, SWITCHES]
    await site.anomaly(type="restored", restored_type="interruption")
    await site.minutes_pass(10.1)
    assert site.switched(site.turned_on) == [SWITCHES]


async def test_a_spike_turns_off_and_counts_as_ended_at_once(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await protect(hass, tmp_path)
    await site.anomaly(type="spike", value=266.0, limit=264.5)
    assert site.switched(site.turned_off) == [SWITCHES]
    await site.minutes_pass(5.1)
    assert site.switched(site.turned_on) == [SWITCHES]


async def test_nothing_goes_back_on_while_a_chosen_anomaly_is_still_active(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await protect(hass, tmp_path)
    await site.anomaly(type="overvoltage", phase="a", active=["overvoltage"])
    await site.anomaly(type="undervoltage", phase="b", active=["overvoltage", "undervoltage"])
    await site.anomaly(type="restored", restored_type="undervoltage", active=["overvoltage"])
    await site.anomaly(type="spike", phase="c", active=["overvoltage"])
    await site.minutes_pass(60)
    assert site.turned_on == []
    # Anomalies not chosen do not hold the switches off.
    await site.anomaly(type="restored", restored_type="overvoltage", active=["imbalance"])
    await site.minutes_pass(5.1)
    assert site.switched(site.turned_on) == [SWITCHES]


async def test_anomalies_not_chosen_and_other_meters_change_nothing(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    site = await protect(hass, tmp_path)
    await site.anomaly(type="undervoltage", phase="b", value=190.0, limit=207.0)
    await site.anomaly(type="restored", restored_type="undervoltage")
    await site.minutes_pass(3)
    # Neither may cancel the wait that is running.
    await site.anomaly(type="imbalance", phase=None, value=3.0, limit=2.0, active=["imbalance"])
    await site.anomaly(type="restored", restored_type="frequency_deviation")
    await site.anomaly("another meter", type="overvoltage")
    await site.minutes_pass(5.1)
    assert site.switched(site.turned_off) == [SWITCHES]
    assert site.switched(site.turned_on) == [SWITCHES]


@pytest.mark.parametrize("anomaly", ["frequency_deviation", "imbalance"])
async def test_chosen_meter_wide_anomalies_turn_off(
    hass: HomeAssistant, tmp_path: Path, anomaly: str
) -> None:
    site = await protect(hass, tmp_path, anomaly_types=["frequency_deviation", "imbalance"])
    await site.anomaly(type="overvoltage")
    assert site.turned_off == []
    await site.anomaly(type=anomaly, phase=None, value=50.7049, limit=50.5, active=[anomaly])
    assert site.switched(site.turned_off) == [SWITCHES]
    unit = "Hz" if anomaly == "frequency_deviation" else "%"
    assert site.messages[0].data["message"] == (
        f"Supply {anomaly.replace('_', ' ')}: 50.7 {unit} (limit 50.5 {unit}). Switches turned off."
    )


async def test_the_switches_can_stay_off(hass: HomeAssistant, tmp_path: Path) -> None:
    site = await protect(hass, tmp_path, turn_back_on=False, notify=[])
    await site.anomaly(type="spike", value=266.0, limit=264.5)
    await site.anomaly(type="interruption", value=0.0, limit=11.5)
    await site.anomaly(type="restored", restored_type="interruption")
    await site.minutes_pass(60)
    assert site.switched(site.turned_off) == [SWITCHES, SWITCHES]
    assert site.turned_on == []
    assert site.messages == []
