"""Contracted power of a site end to end: options, simulated readings in; sensors, events out."""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation.const import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.core import Event, HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_get_device_automations,
)

from custom_components.shelly_energy.const import (
    CONF_CLEAR_DELAY,
    CONF_CONTRACT,
    CONF_CONTRACTED_POWER,
    CONF_FUSE,
    CONF_MARGIN,
    CONF_START_DELAY,
    DOMAIN,
    EVENT_GRID,
)
from custom_components.shelly_energy.logbook import async_describe_events, describe_grid_event
from simulator import Simulator

from . import test_site
from .conftest import device_with, poll
from .test_capacity import configure
from .test_site import House, add_site, roles, site_states

house = test_site.house  # the fixture: the site tests' two-meter house

# Italy's rules on 3.3 kW: 10 % over it trips after two hours, 27 % over after two minutes.
CONTRACT = {
    CONF_CONTRACTED_POWER: 3.3,
    CONF_FUSE: 20.0,
    "rule_1_above": 10.0,
    "rule_1_after": 120.0,
    "rule_2_above": 27.0,
    "rule_2_after": 2.0,
    CONF_START_DELAY: 10.0,
    CONF_CLEAR_DELAY: 30.0,
    CONF_MARGIN: 5.0,
}
HEADROOM = ("contracted_power_headroom", "mains_phase_a_fuse_headroom")


def events_seen(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in event.data.items() if k not in ("device_id", "entry_id")}
        for event in events
    ]


async def test_contracted_power_over_the_simulator(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    for phase in "abc":
        house.mains.set_voltage(phase, 230.0)  # currents of exactly power / 230 V
    site = await add_site(hass, roles(house))
    result = await configure(hass, site.entry_id, "contract", CONTRACT)
    assert site.options[CONF_CONTRACT] == CONTRACT
    device = device_with(hass, f"site_{site.entry_id}")
    events = async_capture_events(hass, EVENT_GRID)
    # Each poll is 6 s. 2 kW on phase a: 1.3 kW below the contracted power.
    house.set(2000.0, 0.0, 0.0)
    await poll(hass, freezer)
    assert site_states(hass, *HEADROOM) == {
        "contracted_power_headroom": "1.3",
        "mains_phase_a_fuse_headroom": str(round(20 - 2000 / 230, 3)),
    }
    # 4 kW, 21 % over: exceeded once it lasted the 10 s start delay (the third poll); the
    # 10 % rule leaves two hours from its first reading.
    house.set(4000.0, 0.0, 0.0)
    for _ in range(2):
        await poll(hass, freezer)
    assert events == []
    await poll(hass, freezer)
    assert events_seen(events) == [
        {
            "type": "power_exceeded",
            "channel": None,
            "value": 4.0,
            "limit": 3.3,
            "trips_in": 7200 - 12,
            "duration": None,
        }
    ]
    assert events[0].data["device_id"] == device.id
    # 5 kW: 21.739 A on phase a is over its 20 A fuse from the fourth poll on.
    house.set(5000.0, 0.0, 0.0)
    for _ in range(3):
        await poll(hass, freezer)
    assert events_seen(events[1:]) == [
        {
            "type": "fuse_exceeded",
            "channel": "Mains phase A",
            "value": 21.739,
            "limit": 20.0,
            "trips_in": None,
            "duration": None,
        }
    ]
    assert site_states(hass, *HEADROOM) == {
        "contracted_power_headroom": "-1.7",
        "mains_phase_a_fuse_headroom": "-1.739",
    }
    event_entity = hass.states.get("event.home_grid_events")
    assert event_entity is not None
    assert event_entity.attributes["event_type"] == "fuse_exceeded"
    assert event_entity.attributes["event_types"] == [
        "power_exceeded", "power_cleared", "fuse_exceeded", "fuse_cleared"
    ]  # fmt: skip
    # 3.2 kW: 13.913 A is below the fuse by more than the 5 % margin: it clears after 30 s
    # below (the sixth poll), over from the fourth poll to the ninth. 3.2 kW is below the
    # contracted power, but not by the margin: the power stays exceeded.
    house.set(3200.0, 0.0, 0.0)
    for _ in range(6):
        await poll(hass, freezer)
    assert events_seen(events[2:]) == [
        {"type": "fuse_cleared", "channel": "Mains phase A", "value": 13.913, "limit": 20.0,
         "trips_in": None, "duration": 48},
    ]  # fmt: skip
    # 2 kW: the power clears after 30 s below; it was over from the first 4 kW reading.
    house.set(2000.0, 0.0, 0.0)
    for _ in range(5):
        await poll(hass, freezer)
    assert len(events) == 3
    await poll(hass, freezer)
    assert events_seen(events[3:]) == [
        {"type": "power_cleared", "channel": None, "value": 2.0, "limit": 3.3,
         "trips_in": None, "duration": 102},
    ]  # fmt: skip
    # The logbook tells it.
    described: dict[str, Any] = {}
    async_describe_events(hass, lambda _domain, kind, describe: described.update({kind: describe}))
    assert described[EVENT_GRID](events[0]) == {
        "name": "Home",
        "message": (
            "exceeded its contracted power: 4.0 kW (limit 3.3 kW); the supply trips in 7188 s"
        ),
    }
    assert described[EVENT_GRID](events[2])["message"] == (
        "back within the fuse on Mains phase A: the excess lasted 48 s"
    )
    # Without limits the site has no headroom sensors nor grid events.
    empty = {CONF_START_DELAY: 10.0, CONF_CLEAR_DELAY: 30.0, CONF_MARGIN: 5.0}
    result = await configure(hass, site.entry_id, "contract", empty)
    assert CONF_CONTRACT not in site.options
    assert hass.states.get("sensor.home_contracted_power_headroom") is None
    assert hass.states.get("event.home_grid_events") is None
    assert result["type"] == "create_entry"


async def test_a_site_s_device_triggers(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    site = await add_site(hass, roles(house, **{CONF_CONTRACT: {**CONTRACT, CONF_FUSE: None}}))
    device = device_with(hass, f"site_{site.entry_id}")
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert [t["type"] for t in triggers if t["domain"] == DOMAIN] == [
        "power_exceeded",
        "power_cleared",
    ]
    assert hass.states.get("sensor.home_mains_phase_a_fuse_headroom") is None  # no fuse
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: {
                "triggers": [
                    {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device.id,
                        "type": "power_exceeded",
                    }
                ],
                "actions": [
                    {"event": "shed", "event_data": {"value": "{{ trigger.event.data.value }}"}}
                ],
            }
        },
    )
    shed = async_capture_events(hass, "shed")
    house.set(3500.0, 0.0, 0.0)
    for _ in range(3):
        await poll(hass, freezer)
    assert [event.data for event in shed] == [{"value": 3.5}]


def test_logbook_lines_of_grid_events() -> None:
    exceeded = {"type": "fuse_exceeded", "channel": "Mains phase B", "value": 26.1, "limit": 25.0}
    assert describe_grid_event(exceeded) == (
        "exceeded the fuse on Mains phase B: 26.1 A (limit 25.0 A)"
    )
    cleared = {"type": "power_cleared", "channel": None, "duration": 75.4}
    assert (
        describe_grid_event(cleared) == "back within its contracted power: the excess lasted 75 s"
    )
