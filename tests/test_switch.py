"""The relay output of meters that have one."""

from __future__ import annotations

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.switch.const import DOMAIN as SWITCH_DOMAIN
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_OFF, SERVICE_TURN_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry, state_of


def relay_of(meter: SimulatedMeter) -> bool:
    return meter.relay_on


@pytest.mark.parametrize("kind", ["gen1_em", "proem50"])
async def test_relay_follows_the_meter_and_switches_it(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, kind: str
) -> None:
    meter = await serve(simulator, kind)
    meter.set_relay(True)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    assert state_of(hass, "switch.m_relay") == "on"
    await hass.services.async_call(
        SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: "switch.m_relay"}, blocking=True
    )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert relay_of(meter) is False
    assert state_of(hass, "switch.m_relay") == "off"
    await hass.services.async_call(
        SWITCH_DOMAIN, SERVICE_TURN_ON, {ATTR_ENTITY_ID: "switch.m_relay"}, blocking=True
    )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert relay_of(meter) is True
    meter.set_relay(False)  # someone pressed the button on the device
    await poll(hass, freezer)
    assert state_of(hass, "switch.m_relay") == "off"


async def test_switching_an_unreachable_meter_fails_clearly(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "proem50")
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    meter.set_online(False)
    with pytest.raises(HomeAssistantError, match="Could not switch the relay"):
        await hass.services.async_call(
            SWITCH_DOMAIN, SERVICE_TURN_ON, {ATTR_ENTITY_ID: "switch.m_relay"}, blocking=True
        )
