"""Gen2+ meters push first: their NotifyStatus updates the entities, with polling as the safety net.

Every pushed snapshot takes the way a polled one takes: the user's corrections, the supply watch,
change detection. Entities write their state only when what they show changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.entity import Entity
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.shelly_energy.const import (
    CONF_POLL_INTERVAL,
    CONF_REVERSED_CHANNELS,
    EVENT_ANOMALY,
)
from custom_components.shelly_energy.coordinator import MeterCoordinator
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry, state_of

STATUS = "Shelly.GetStatus"


def coordinator_of(entry: MockConfigEntry) -> MeterCoordinator:
    coordinator: MeterCoordinator = entry.runtime_data.coordinator
    return coordinator


def published_import(entry: MockConfigEntry, channel_id: str) -> float:
    """Return the import total a meter's coordinator publishes for a phase or channel (Wh)."""
    reading = coordinator_of(entry).data.channel(channel_id)
    assert reading is not None
    assert reading.energy_in is not None
    return reading.energy_in


async def push(
    hass: HomeAssistant,
    simulator: Simulator,
    meter: SimulatedMeter,
    entry: MockConfigEntry,
    **kinds: bool,
) -> None:
    """Have the meter send its NotifyStatus; wait until Home Assistant took it in."""
    arrived = asyncio.Event()
    remove = coordinator_of(entry).async_add_listener(arrived.set)
    try:
        assert await simulator.server(meter).notify_status(**kinds) == 1
        async with asyncio.timeout(5):
            await arrived.wait()
    finally:
        remove()
    await hass.async_block_till_done()


@pytest.fixture
def written() -> Iterator[list[str]]:
    """Return the entity ids whose state is written, in order (every write, changed or not)."""
    writes: list[str] = []
    original = Entity.async_write_ha_state

    def write(entity: Entity) -> None:
        writes.append(entity.entity_id)
        original(entity)

    with patch.object(Entity, "async_write_ha_state", write):
        yield writes


def changed_entities(hass: HomeAssistant) -> list[str]:
    """Return a list that collects the entity ids whose state changes from now on."""
    changes: list[str] = []

    @callback
    def changed(event: Event[EventStateChangedData]) -> None:
        changes.append(event.data["entity_id"])

    hass.bus.async_listen("state_changed", changed)
    return changes


async def pushing_meter(
    hass: HomeAssistant, simulator: Simulator, **options: Any
) -> tuple[SimulatedMeter, MockConfigEntry]:
    meter = await serve(simulator, "pro3em")
    meter.set_frequency(50.0)
    for phase in "abc":
        meter.set_voltage(phase, 230.0)
        meter.set_power(phase, 100.0)
    entry = meter_entry(simulator, meter, title="M", options=options)
    await setup_entry(hass, entry)
    return meter, entry


async def test_a_pushed_reading_updates_the_entities_at_once_without_a_read(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    reads = meter.requests[STATUS]
    meter.set_power("a", 1234.5)
    await push(hass, simulator, meter, entry)
    assert state_of(hass, "sensor.m_phase_a_power") == "1234.5"
    assert state_of(hass, "sensor.m_total_power") == "1434.5"
    assert meter.requests[STATUS] == reads


async def test_only_what_changed_is_written(
    hass: HomeAssistant, simulator: Simulator, written: list[str]
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    changes = changed_entities(hass)
    written.clear()
    await push(hass, simulator, meter, entry, everything=True)  # the same values again
    assert written == []
    assert changes == []
    meter.set_power("b", 250.0)
    await push(hass, simulator, meter, entry)
    # The phase's power and the total power: nothing else shown by default (energies) moved.
    expected = ["sensor.m_phase_b_power", "sensor.m_total_power"]
    assert sorted(written) == sorted(expected)
    assert sorted(changes) == sorted(expected)


async def test_the_platforms_first_write_counts(
    hass: HomeAssistant, simulator: Simulator, written: list[str]
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    first = list(written)
    assert "sensor.m_phase_a_power" in first
    written.clear()
    await push(hass, simulator, meter, entry, everything=True)
    assert written == []  # nothing written again that the setup wrote


async def test_pushed_readings_take_the_users_corrections(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter, entry = await pushing_meter(hass, simulator, **{CONF_REVERSED_CHANNELS: ["a"]})
    meter.set_power("a", -800.0)
    await push(hass, simulator, meter, entry)
    assert state_of(hass, "sensor.m_phase_a_power") == "800.0"
    assert state_of(hass, "sensor.m_total_power") == "1000.0"


@pytest.mark.usefixtures("all_entities_enabled")
async def test_the_supply_watch_sees_every_pushed_reading(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    events = async_capture_events(hass, EVENT_ANOMALY)
    meter.set_voltage("a", 260.0)  # an overvoltage: it starts after 10 s of readings beyond
    for _ in range(11):
        sim_clock.advance(1)
        freezer.tick(timedelta(seconds=1))
        await push(hass, simulator, meter, entry, everything=True)
    assert [event.data["type"] for event in events] == ["overvoltage", "imbalance"]
    assert state_of(hass, "binary_sensor.m_phase_a_voltage_problem") == STATE_ON
    assert state_of(hass, "sensor.m_phase_a_voltage") == "260.0"


async def test_a_pushing_meter_is_read_whole_every_minute(
    hass: HomeAssistant,
    simulator: Simulator,
    sim_clock: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    meter, entry = await pushing_meter(hass, simulator, **{CONF_POLL_INTERVAL: 5})
    reads = meter.requests[STATUS]
    for second in range(1, 131):
        sim_clock.advance(1)
        freezer.tick(timedelta(seconds=1))
        meter.set_power("a", 100.0 + second)
        if second == 70:
            meter.set_update("1.7.0")  # a value no notification carries
        await push(hass, simulator, meter, entry)
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        if second == 62:
            # Read at about 5 s, the interval after setup; then it pushed: next a minute on.
            assert meter.requests[STATUS] - reads == 1
        if second == 120:
            assert meter.requests[STATUS] - reads == 2
            assert state_of(hass, "binary_sensor.m_firmware_update") != STATE_ON
    # Pushed every second for 130 s: read whole three times, and what no push carries shown.
    assert meter.requests[STATUS] - reads == 3
    assert state_of(hass, "binary_sensor.m_firmware_update") == STATE_ON
    assert state_of(hass, "sensor.m_phase_a_power") == "230.0"


async def test_diagnostics_tell_how_the_meter_is_read(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    meter, entry = await pushing_meter(hass, simulator, **{CONF_POLL_INTERVAL: 10})
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["reading"] == {
        "pushing": False,
        "whole_read_interval_s": 10.0,
        "stale_within_s": 10.0,
    }
    meter.set_power("a", 150.0)
    await push(hass, simulator, meter, entry)
    await poll(hass, freezer, 11)  # the read after a push: the next one a minute later
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["reading"] == {
        "pushing": True,
        "whole_read_interval_s": 60.0,
        "stale_within_s": 10.0,
    }


async def test_a_pushing_meter_that_stops_answering_is_unavailable_after_its_whole_read(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    """Its connection stays up, so TCP keepalive sees nothing: the minute's read finds it.

    (A link that drops is the kernel's to find, within the interval: tests/meter/test_keepalive.py.)
    """
    meter, entry = await pushing_meter(hass, simulator)
    meter.set_power("a", 150.0)
    await push(hass, simulator, meter, entry)
    await poll(hass, freezer, 60)  # the whole read that follows the first push
    meter.set_silent(True)
    freezer.tick(timedelta(seconds=60))
    async_fire_time_changed(hass)  # the next whole read goes out, and nothing comes back
    await hass.async_block_till_done()
    assert state_of(hass, "sensor.m_phase_a_power") == "150.0"
    await poll(hass, freezer, 10)  # aioshelly waits 10 s for a reply
    assert state_of(hass, "sensor.m_phase_a_power") == STATE_UNAVAILABLE
    meter.set_silent(False)
    meter.set_power("a", 175.0)
    await push(hass, simulator, meter, entry)
    assert state_of(hass, "sensor.m_phase_a_power") == "175.0"


async def test_a_lost_websocket_is_read_again_at_once(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter, entry = await pushing_meter(hass, simulator, **{CONF_POLL_INTERVAL: 60})
    meter.set_power("a", 150.0)
    await push(hass, simulator, meter, entry)
    reads = meter.requests[STATUS]
    meter.reboot(invalid_for=0)  # the meter closes the WebSocket; it is back at once
    meter.set_power("a", 160.0)
    async with asyncio.timeout(5):
        while state_of(hass, "sensor.m_phase_a_power") != "160.0":
            await asyncio.sleep(0.05)
            await hass.async_block_till_done(wait_background_tasks=True)
    # Connecting reads the status once: that read is the reading (no interval waited).
    assert meter.requests[STATUS] == reads + 1
    assert state_of(hass, "sensor.m_total_power") == "360.0"


async def test_a_meter_that_stops_pushing_is_read_at_the_interval(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter, _entry = await pushing_meter(hass, simulator)
    reads = meter.requests[STATUS]
    meter.set_power("a", 321.0)
    await poll(hass, freezer)
    assert meter.requests[STATUS] == reads + 1
    assert state_of(hass, "sensor.m_phase_a_power") == "321.0"
    meter.set_online(False)
    await poll(hass, freezer)
    assert state_of(hass, "sensor.m_phase_a_power") == STATE_UNAVAILABLE


async def test_a_change_seen_in_pushed_readings_sets_the_meter_up_again(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    meter.set_firmware("20260101-000000/1.9.0-gnew")
    read = asyncio.Event()
    remove = coordinator_of(entry).async_add_listener(read.set)
    with patch.object(hass.config_entries, "async_schedule_reload") as schedule:
        # The connection drops: the meter is read at once, connecting again: the first
        # reading of the new firmware.
        meter.reboot(invalid_for=0)
        async with asyncio.timeout(5):
            await read.wait()
        remove()
        await hass.async_block_till_done(wait_background_tasks=True)
        schedule.assert_not_called()
        meter.set_power("a", 50.0)
        await push(hass, simulator, meter, entry)  # the second: the change is believed
    schedule.assert_called_once_with(entry.entry_id)


async def test_a_notification_that_leaves_no_meter_is_passed_over(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    meter.override_reply("delete", method="NotifyFullStatus", path="em:0")
    meter.set_power("a", 999.0)
    assert await simulator.server(meter).notify_status(full=True) == 1
    await asyncio.sleep(0.1)
    await hass.async_block_till_done()
    assert state_of(hass, "sensor.m_phase_a_power") == "100.0"  # nothing taken from it
    await push(hass, simulator, meter, entry, everything=True)
    assert state_of(hass, "sensor.m_phase_a_power") == "999.0"


async def test_pushed_counters_are_counted_once_through_the_counter_model(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    meter, entry = await pushing_meter(hass, simulator)
    coordinator = coordinator_of(entry)

    def published_wh() -> float | None:
        return coordinator.data.channels[1].energy_in  # phase B's import

    assert published_wh() == 0.0  # day one starts at 0
    meter.corrupt_counters("b", 1e308, reads=1)
    await push(hass, simulator, meter, entry, everything=True)
    assert published_wh() == 0.0  # an implausible pushed counter is held, as a polled one
    sim_clock.advance(60)  # 100 W for a minute: 1.67 Wh
    freezer.tick(timedelta(seconds=60))  # the local clock too: the counters check the time
    reads = meter.requests[STATUS]
    await push(hass, simulator, meter, entry)
    assert published_wh() == 1.67
    assert state_of(hass, "sensor.m_phase_b_energy_imported") == "0.002"  # kWh, as shown
    await poll(hass, freezer)  # the same counters read again (overdue): nothing added
    assert meter.requests[STATUS] > reads
    assert published_wh() == 1.67
    assert coordinator.counters is not None
    assert coordinator.counters.to_dict()["counters"]["total_in"]["total"] == 5.0
