"""Setting meters up and down, losing and regaining them, and what their counters do."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from custom_components.shelly_energy.const import (
    CONF_DEADBAND,
    CONF_POLL_INTERVAL,
    CONF_REVERSED_CHANNELS,
    COUNTER_SAVE_S,
    DOMAIN,
)
from custom_components.shelly_energy.coordinator import counter_store_key
from simulator import Simulator

from .conftest import full_disk, meter_entry, poll, serve, setup_entry, state_of


async def test_unreachable_meter_is_retried(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_online(False)
    entry = meter_entry(simulator, meter)
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_wrong_password_starts_reauth(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em", password="right")
    entry = meter_entry(simulator, meter, password="wrong")
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [(flow["handler"], flow["context"]["source"]) for flow in flows] == [
        (DOMAIN, SOURCE_REAUTH)
    ]


@pytest.mark.parametrize("kind", ["pro3em", "gen1_em"])
async def test_password_protected_meter(
    hass: HomeAssistant, simulator: Simulator, kind: str
) -> None:
    meter = await serve(simulator, kind, password="secret")
    entry = meter_entry(simulator, meter, password="secret", title="M")
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED


async def test_password_change_while_running_starts_reauth(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "gen1_em", password="old")
    entry = meter_entry(simulator, meter, password="old", title="M")
    await setup_entry(hass, entry)
    meter.set_password("new")
    await poll(hass, freezer)
    assert any(
        flow["context"]["source"] == SOURCE_REAUTH
        for flow in hass.config_entries.flow.async_progress()
    )


@pytest.mark.parametrize("kind", ["pro3em", "gen1_3em"])
async def test_offline_and_recovery_log_once_each(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    meter = await serve(simulator, kind)
    meter.set_power("a", 700.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    caplog.clear()
    caplog.set_level(logging.INFO, logger="custom_components.shelly_energy")
    meter.set_online(False)
    for _ in range(3):
        await poll(hass, freezer)
        assert state_of(hass, "sensor.m_phase_a_power") == STATE_UNAVAILABLE
    meter.set_online(True)
    for _ in range(2):
        await poll(hass, freezer)
    assert state_of(hass, "sensor.m_phase_a_power") == "700.0"
    ours = [r for r in caplog.records if r.name.startswith("custom_components.shelly_energy")]
    assert [r.levelname for r in ours] == ["ERROR", "INFO"]
    assert "Cannot read the meter" in ours[0].getMessage()
    assert "recovered" in ours[1].getMessage()


async def test_gen1_reboot_counters_hold_their_value(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "gen1_em")
    meter.set_power("0", 100.0)
    meter.set_counters("0", 5000.0, 0.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="EM"))
    entity = "sensor.em_channel_1_energy_imported"
    assert state_of(hass, entity) == "5.0"
    meter.reboot(invalid_for=10, invalid_reads=1, counter_value=0.0)
    await poll(hass, freezer)
    assert state_of(hass, entity) == "5.0"  # marked invalid: the total holds
    simulator.clock.advance(36)  # 100 W for 36 s = 1 Wh
    await poll(hass, freezer)
    assert state_of(hass, entity) == "5.001"


async def test_counter_jitter_is_not_published(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_power("a", 0.0)
    meter.set_counters("a", 2000.0, 0.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    entity = "sensor.m_phase_a_energy_imported"
    states: list[str] = []
    hass.bus.async_listen("state_changed", lambda e: states.append(e.data["new_state"].state))
    meter.jitter("a", mwh=30, reads=1)  # 0.03 Wh down: visible on the wire
    await poll(hass, freezer)
    await poll(hass, freezer)
    assert state_of(hass, entity) == "2.0"
    assert states == []  # nothing changed, so nothing was written


async def test_counter_reset_continues_the_total(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_power("a", 3600.0)
    meter.set_counters("a", 9000.0, 0.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    meter.reset_counters()
    simulator.clock.advance(10)  # 3600 W for 10 s = 10 Wh after the reset
    await poll(hass, freezer)
    # Never a decrease of a total_increasing sensor, never the old total booked again: the
    # total holds and counts on from the new value (the 10 Wh before it are the records').
    entity = "sensor.m_phase_a_energy_imported"
    assert state_of(hass, entity) == "9.0"
    simulator.clock.advance(10)
    await poll(hass, freezer)
    assert state_of(hass, entity) == "9.01"


async def test_a_full_disk_loses_no_counted_energy(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_power("a", 3600.0)
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    key = counter_store_key(entry)

    def stored_wh() -> float | None:
        stored = hass_storage.get(key)
        return None if stored is None else float(stored["data"]["counters"]["a_in"]["total"])

    with full_disk():
        simulator.clock.advance(10)  # 3600 W for 10 s = 10 Wh
        await poll(hass, freezer)
        assert state_of(hass, "sensor.m_phase_a_energy_imported") == "0.01"
        meter.set_online(False)  # the last reading for a while: no change follows
        await poll(hass, freezer, COUNTER_SAVE_S)  # the write comes due, and fails
        await poll(hass, freezer)
    assert f"Error writing config for {key}: [Errno 28] No space left on device" in caplog.text
    assert stored_wh() is None
    # Room again: the counters reach the disk although the meter has not changed them since.
    await poll(hass, freezer, COUNTER_SAVE_S)
    await poll(hass, freezer)
    assert stored_wh() == 10.0


async def test_options_take_effect(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "gen1_em")
    meter.set_power("0", 2.0)
    meter.set_power("1", -800.0)
    meter.set_counters("1", 10.0, 4000.0)
    entry = meter_entry(simulator, meter, title="EM")
    await setup_entry(hass, entry)
    hass.config_entries.async_update_entry(
        entry,
        options={CONF_POLL_INTERVAL: 60, CONF_REVERSED_CHANNELS: ["2"], CONF_DEADBAND: 5.0},
    )
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.update_interval.total_seconds() == 60
    assert state_of(hass, "sensor.em_channel_1_power") == "0.0"
    assert state_of(hass, "sensor.em_channel_2_power") == "800.0"
    # The energy the meter counted stays where it was shown; from now on it counts as corrected.
    assert state_of(hass, "sensor.em_channel_2_energy_imported") == "0.01"
    assert state_of(hass, "sensor.em_channel_2_energy_exported") == "4.0"
    simulator.clock.advance(3600)
    await poll(hass, freezer, 60)
    assert state_of(hass, "sensor.em_channel_2_energy_imported") == "0.81"
    assert state_of(hass, "sensor.em_channel_2_energy_exported") == "4.0"


async def test_data_only_update_does_not_reload(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data.coordinator
    hass.config_entries.async_update_entry(entry, title="Renamed")
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator is coordinator


async def test_profile_switch_reloads_and_removes_stale_entities(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    assert hass.states.get("sensor.m_phase_a_power") is not None
    meter.set_profile("monophase")
    await poll(hass, freezer)  # the connection dropped
    await poll(hass, freezer)  # reconnected: the meter has channels now
    await poll(hass, freezer)  # and still has: it is set up again
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.coordinator.info.channel_ids == ("1", "2", "3")
    registry = er.async_get(hass)
    entity_ids = {e.entity_id for e in er.async_entries_for_config_entry(registry, entry.entry_id)}
    assert "sensor.m_channel_1_power" in entity_ids
    assert not any("phase" in entity_id for entity_id in entity_ids)


@pytest.mark.parametrize(
    ("kind", "firmware", "seen_as"),
    [
        ("gen1_3em", "20240101-000000/v1.15.0-gnew", "20240101-000000/v1.15.0-gnew"),
        ("pro3em", "20250901-000000/1.7.0-gnew", "1.7.0"),
    ],
)
async def test_firmware_change_reloads(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    kind: str,
    firmware: str,
    seen_as: str,
) -> None:
    meter = await serve(simulator, kind)
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    simulator.clock.advance(60)
    await poll(hass, freezer)
    meter.set_firmware(firmware)
    meter.reboot(invalid_for=0)  # a firmware update restarts the device
    for _ in range(3):
        await poll(hass, freezer)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.coordinator.info.firmware == seen_as


async def test_unload_and_stop_close_the_connection(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert state_of(hass, "sensor.m_phase_a_power") == STATE_UNAVAILABLE
    await hass.config_entries.async_setup(entry.entry_id)
    client = entry.runtime_data.coordinator.client
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert client._device is None
