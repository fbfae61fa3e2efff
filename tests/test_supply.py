"""Supply anomalies end to end: simulated voltages in, events, sensors, triggers and repairs out."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation.const import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    async_get_device_automations,
)

from custom_components.shelly_energy.const import (
    CONF_NOMINAL_FREQUENCY,
    CONF_NOMINAL_VOLTAGE,
    CONF_SUPPLY,
    DOMAIN,
    EVENT_ANOMALY,
)
from custom_components.shelly_energy.logbook import async_describe_events, describe_anomaly
from simulator import SimulatedMeter, Simulator

from .conftest import device_with, meter_entry, poll, serve, setup_entry, state_of

pytestmark = pytest.mark.usefixtures("all_entities_enabled")

BLUEPRINT = (
    Path(__file__).parent.parent / "blueprints/automation/shelly_energy/supply_protection.yaml"
)


async def steady_meter(
    hass: HomeAssistant, simulator: Simulator, kind: str = "pro3em", **options: Any
) -> SimulatedMeter:
    """Serve and add a meter whose voltages and frequency are pinned (no noise)."""
    meter = await serve(simulator, kind)
    meter.set_frequency(50.0)
    for channel in range(meter.channel_count):
        meter.set_voltage(str(channel), 230.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M", options=options))
    return meter


def kinds(events: list[Any]) -> list[tuple[str, str | None]]:
    return [(event.data["type"], event.data["phase"]) for event in events]


async def polls(hass: HomeAssistant, freezer: FrozenDateTimeFactory, count: int) -> None:
    for _ in range(count):
        await poll(hass, freezer, 5)


async def test_sustained_overvoltage_starts_after_10_s_and_ends_after_10_s(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    started_at = dt_util.utcnow().timestamp() + 5
    meter.set_voltage("a", 260.0)
    await polls(hass, freezer, 2)  # seen at +5 s and +10 s: 5 s long, not yet 10
    assert events == []
    assert state_of(hass, "binary_sensor.m_phase_a_voltage_problem") == STATE_OFF
    await polls(hass, freezer, 1)  # +15 s: 10 s beyond the limit
    # One phase 30 V above the others is also an imbalance (8.3 % from their mean).
    assert kinds(events) == [("overvoltage", "a"), ("imbalance", None)]
    device = device_with(hass, meter.mac)
    assert events[0].data == {
        "device_id": device.id,
        "type": "overvoltage",
        "phase": "a",
        "value": 260.0,
        "limit": 253.0,
        "duration": None,
        "restored_type": None,
        "active": ["overvoltage", "imbalance"],
    }
    problem = hass.states.get("binary_sensor.m_phase_a_voltage_problem")
    assert problem is not None
    assert problem.state == STATE_ON
    assert problem.attributes["kind"] == "overvoltage"
    assert problem.attributes["value"] == 260.0
    assert problem.attributes["limit"] == 253.0
    assert problem.attributes["since"] == dt_util.utc_from_timestamp(started_at).isoformat()
    phase_b = hass.states.get("binary_sensor.m_phase_b_voltage_problem")
    assert phase_b is not None
    assert (phase_b.state, phase_b.attributes["kind"]) == (STATE_ON, "imbalance")
    event_entity = hass.states.get("event.m_supply")
    assert event_entity is not None
    # The entity shows the latest event of the poll: the imbalance, fired after the overvoltage.
    assert event_entity.attributes["event_type"] == "imbalance"
    assert event_entity.attributes["phase"] is None

    meter.set_voltage("a", 231.0)
    await polls(hass, freezer, 2)  # back inside for 5 s
    assert len(events) == 2
    await polls(hass, freezer, 1)  # 10 s: both end, 15 s after they started
    assert kinds(events[2:]) == [("restored", "a"), ("restored", None)]
    assert events[2].data["restored_type"] == "overvoltage"
    assert events[2].data["duration"] == 15.0
    assert events[3].data["restored_type"] == "imbalance"
    assert state_of(hass, "binary_sensor.m_phase_a_voltage_problem") == STATE_OFF
    assert state_of(hass, "sensor.m_phase_a_highest_voltage_today") == "260.0"
    assert state_of(hass, "sensor.m_phase_a_lowest_voltage_today") == "230.0"


async def test_a_single_spike_is_one_event_and_no_state(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    meter.set_voltage("b", 266.0)
    await polls(hass, freezer, 1)
    meter.set_voltage("b", 230.0)
    await polls(hass, freezer, 5)
    assert kinds(events) == [("spike", "b")]
    assert (events[0].data["value"], events[0].data["limit"]) == (266.0, 264.5)
    assert state_of(hass, "binary_sensor.m_phase_b_voltage_problem") == STATE_OFF


@pytest.mark.parametrize(
    ("phase", "volts", "kind"),
    [("b", 200.0, "undervoltage"), ("c", 0.0, "interruption")],
)
async def test_sag_and_interruption_and_their_return_on_the_whole_supply(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    phase: str,
    volts: float,
    kind: str,
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    for each in "abc":  # the whole supply sags: no imbalance
        meter.set_voltage(each, volts)
    await polls(hass, freezer, 3)
    assert kinds(events) == [(kind, each) for each in "abc"]
    assert state_of(hass, f"binary_sensor.m_phase_{phase}_voltage_problem") == STATE_ON
    for each in "abc":
        meter.set_voltage(each, 230.0)
    await polls(hass, freezer, 3)
    assert kinds(events[3:]) == [("restored", each) for each in "abc"]


async def test_a_phase_never_connected_is_no_interruption(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_frequency(50.0)
    meter.set_voltage("a", 230.0)
    meter.set_voltage("b", 230.0)
    meter.disconnect_phase("c")
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    events = async_capture_events(hass, EVENT_ANOMALY)
    await polls(hass, freezer, 6)
    assert events == []
    assert state_of(hass, "binary_sensor.m_phase_c_voltage_problem") == STATE_OFF


async def test_frequency_drift_is_a_problem_on_every_phase(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    meter.set_frequency(50.8)
    await polls(hass, freezer, 3)
    assert kinds(events) == [("frequency_deviation", None)]
    assert (events[0].data["value"], events[0].data["limit"]) == (50.8, 50.5)
    for phase in "abc":
        sensor = hass.states.get(f"binary_sensor.m_phase_{phase}_voltage_problem")
        assert sensor is not None
        assert (sensor.state, sensor.attributes["kind"]) == (STATE_ON, "frequency_deviation")


async def test_imbalance(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    meter.set_voltage("c", 220.0)  # 6.67 V from the mean of 226.67 V: 2.94 %
    await polls(hass, freezer, 3)
    assert kinds(events) == [("imbalance", None)]
    assert events[0].data["value"] == pytest.approx(2.941, abs=0.001)


async def test_device_flags_count_as_the_condition(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    meter.set_flags("a", ["overvoltage"])
    await polls(hass, freezer, 3)
    assert kinds(events) == [("overvoltage", "a")]


async def test_noise_inside_the_limits_produces_nothing(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")  # voltages and frequency with their noise
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    events = async_capture_events(hass, EVENT_ANOMALY)
    for _ in range(30):
        simulator.clock.advance(10)  # a new noise sample every 10 s
        await poll(hass, freezer, 5)
    assert events == []


async def test_configured_limits_for_a_120_v_60_hz_supply(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    supply = {CONF_SUPPLY: {CONF_NOMINAL_VOLTAGE: "120", CONF_NOMINAL_FREQUENCY: "60"}}
    meter = await serve(simulator, "proem50", nominal_voltage=120.0, frequency=60.0)
    meter.set_frequency(60.0)
    meter.set_voltage("0", 120.0)
    meter.set_voltage("1", 120.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M", options=supply))
    events = async_capture_events(hass, EVENT_ANOMALY)
    await polls(hass, freezer, 3)
    assert events == []
    meter.set_voltage("0", 133.0)  # above 132 V
    await polls(hass, freezer, 3)
    assert kinds(events) == [("overvoltage", "1")]
    assert events[0].data["limit"] == 132.0


async def test_hardware_errors_raise_a_repair_issue_until_they_clear(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    issues = ir.async_get(hass)
    meter.set_errors(["power_meter_failure", "phase_sequence"])
    await polls(hass, freezer, 1)
    ours = {issue_id for (domain, issue_id) in issues.issues if domain == DOMAIN}
    assert ours == {f"{meter.mac}_power_meter_failure", f"{meter.mac}_phase_sequence"}
    issue = issues.async_get_issue(DOMAIN, f"{meter.mac}_power_meter_failure")
    assert issue is not None
    assert issue.translation_placeholders == {"name": "M"}
    meter.set_errors(["phase_sequence"])
    await polls(hass, freezer, 1)
    ours = {issue_id for (domain, issue_id) in issues.issues if domain == DOMAIN}
    assert ours == {f"{meter.mac}_phase_sequence"}
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert not any(domain == DOMAIN for (domain, _) in issues.issues)


async def test_device_triggers(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await steady_meter(hass, simulator)
    device = device_with(hass, meter.mac)
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    assert sorted(trigger["type"] for trigger in triggers if trigger["domain"] == DOMAIN) == [
        "frequency_deviation",
        "imbalance",
        "interruption",
        "overvoltage",
        "restored",
        "spike",
        "undervoltage",
    ]
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
                        "type": "undervoltage",
                    }
                ],
                "actions": [{"event": "undervoltage_seen", "event_data": {"x": 1}}],
            }
        },
    )
    seen = async_capture_events(hass, "undervoltage_seen")
    meter.set_voltage("a", 260.0)
    await polls(hass, freezer, 3)
    assert seen == []
    meter.set_voltage("a", 230.0)
    meter.set_voltage("b", 200.0)
    await polls(hass, freezer, 3)
    assert len(seen) == 1


async def test_sites_have_no_supply_triggers(hass: HomeAssistant) -> None:
    registry = dr.async_get(hass)
    entry_id = "e"
    MockConfigEntry(domain=DOMAIN, entry_id=entry_id).add_to_hass(hass)
    site = registry.async_get_or_create(config_entry_id=entry_id, identifiers={(DOMAIN, "site_x")})
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, site.id)
    assert [t for t in triggers if t["domain"] == DOMAIN] == []


def test_logbook_lines() -> None:
    start = {"type": "overvoltage", "phase": "a", "value": 260.04, "limit": 253.0}
    assert describe_anomaly(start) == "detected overvoltage on a: 260.0 V (limit 253.0 V)"
    drift = {"type": "frequency_deviation", "phase": None, "value": 50.8, "limit": 50.5}
    assert describe_anomaly(drift) == "detected frequency deviation: 50.8 Hz (limit 50.5 Hz)"
    end = {"type": "restored", "phase": None, "restored_type": "imbalance", "duration": 42.4}
    assert describe_anomaly(end) == "supply normal again: the imbalance lasted 42 s"


async def settle_until(predicate: Callable[[], bool]) -> None:
    """Let the event loop run (network replies included) until predicate holds.

    Not hass.async_block_till_done(): it waits for automation runs, and a run waiting in its
    delay never finishes.
    """
    for _ in range(20_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_supply_protection_blueprint_with_a_simulated_meter(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    tmp_path: Path,
) -> None:
    meter = await steady_meter(hass, simulator, "proem50")
    meter.set_relay(True)
    device = device_with(hass, meter.mac)
    hass.config.config_dir = str(tmp_path)
    installed = tmp_path / "blueprints/automation/shelly_energy/supply_protection.yaml"
    installed.parent.mkdir(parents=True)
    shutil.copy(BLUEPRINT, installed)
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: {
                "use_blueprint": {
                    "path": "shelly_energy/supply_protection.yaml",
                    "input": {
                        "meter": device.id,
                        "switches": ["switch.m_relay"],
                        "normal_minutes": 2,
                    },
                }
            }
        },
    )
    coordinator = hass.config_entries.async_entries(DOMAIN)[0].runtime_data.coordinator

    async def polls_without_waiting(count: int) -> None:
        for _ in range(count):
            freezer.tick(timedelta(seconds=5))
            await coordinator.async_refresh()

    meter.set_voltage("0", 260.0)
    await polls_without_waiting(3)
    await settle_until(lambda: not meter.relay_on)

    meter.set_voltage("0", 230.0)
    await polls_without_waiting(3)  # the supply is normal again: the two minutes start
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=110))
    for _ in range(200):
        await asyncio.sleep(0)
    assert not meter.relay_on
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=125))
    await settle_until(lambda: meter.relay_on)


async def test_logbook_describes_the_bus_event(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await steady_meter(hass, simulator)
    device = device_with(hass, meter.mac)
    described: dict[str, Callable[[Event], dict[str, str]]] = {}

    def register(domain: str, event_type: str, describe: Callable[[Event], dict[str, str]]) -> None:
        assert domain == DOMAIN
        described[event_type] = describe

    async_describe_events(hass, register)
    data = {"type": "spike", "phase": "a", "value": 270.0, "limit": 264.5}
    describe = described[EVENT_ANOMALY]
    assert describe(Event(EVENT_ANOMALY, {"device_id": device.id, **data})) == {
        "name": "M",
        "message": "detected spike on a: 270.0 V (limit 264.5 V)",
    }
    assert describe(Event(EVENT_ANOMALY, {"device_id": None, **data}))["name"] == "Shelly meter"
