"""Meters that misbehave never harm Home Assistant: no reload storms, no tracebacks."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import MagicMock, patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.shelly_energy.const import DOMAIN
from custom_components.shelly_energy.meter.stability import SETUPS_PER_WINDOW
from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry, state_of

POLLS_IN_A_MINUTE = 10  # polls 6 s apart: a minute at the default interval of 5 s


@contextmanager
def counting_reloads(hass: HomeAssistant) -> Iterator[MagicMock]:
    """Count the entry reloads Home Assistant is asked for."""
    entries = hass.config_entries
    with patch.object(entries, "async_reload", wraps=entries.async_reload) as reload:
        yield reload


async def a_minute_of_polls(
    hass: HomeAssistant,
    simulator: Simulator,
    meter: SimulatedMeter,
    freezer: FrozenDateTimeFactory,
    title: str = "M",
) -> tuple[MockConfigEntry, int, int]:
    """Set a meter up and poll it for a minute: return its entry, reloads and requests."""
    entry = meter_entry(simulator, meter, title=title)
    with counting_reloads(hass) as reload:
        await setup_entry(hass, entry)
        for _ in range(POLLS_IN_A_MINUTE):
            await poll(hass, freezer)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.state is ConfigEntryState.LOADED
    return entry, reload.call_count, sum(meter.requests.values())


def unstable_issue(hass: HomeAssistant, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"meter_unstable_{entry.entry_id}")


async def normal_polling(
    hass: HomeAssistant, simulator: Simulator, kind: str, freezer: FrozenDateTimeFactory
) -> int:
    """Return the requests a well-behaved meter of `kind` sees in a minute (setup included)."""
    meter = await serve(simulator, kind)
    entry, reloads, requests = await a_minute_of_polls(hass, simulator, meter, freezer, "Ok")
    assert reloads == 0
    assert await hass.config_entries.async_remove(entry.entry_id)
    return requests


async def test_a_meter_flapping_at_every_read_is_polled_as_set_up_with_one_issue(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    normal = await normal_polling(hass, simulator, "pro3em", freezer)
    meter = await serve(simulator, "pro3em")
    meter.flap_components(every=1)
    meter.set_power("0", 700.0)
    entry, reloads, requests = await a_minute_of_polls(hass, simulator, meter, freezer)
    assert reloads == 0
    assert requests == normal  # what polling a well-behaved meter costs, not one more
    issue = unstable_issue(hass, entry)
    assert issue is not None
    assert issue.translation_key == "meter_unstable"
    assert issue.translation_placeholders == {
        "name": "M",
        "what": "components",
        "was": "channels 1, 2, 3",  # as set up (the first read had flipped already)
        "now": "phases a, b, c",
    }
    seen = set()
    for _ in range(2):  # still polled: readings in the set-up layout, the others unavailable
        await poll(hass, freezer)
        seen.add(state_of(hass, "sensor.m_channel_1_power"))
    assert seen == {"700.0", STATE_UNAVAILABLE}

    meter.flap_components(None)
    meter.set_profile("monophase")  # settled on the set-up layout
    with counting_reloads(hass) as reload:
        for _ in range(13):  # more than 10 minutes of the same
            await poll(hass, freezer, seconds=60)
    assert reload.call_count == 0
    assert unstable_issue(hass, entry) is None
    assert state_of(hass, "sensor.m_channel_1_power") == "700.0"


async def test_a_meter_settling_on_another_layout_is_set_up_again_once(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.flap_components(every=1)
    entry, _, _ = await a_minute_of_polls(hass, simulator, meter, freezer)
    assert unstable_issue(hass, entry) is not None
    meter.flap_components(None)
    meter.set_profile("triphase")  # not what it was set up as
    with counting_reloads(hass) as reload:
        for _ in range(13):  # more than 10 minutes of the same
            await poll(hass, freezer, seconds=60)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert reload.call_count == 1
    assert unstable_issue(hass, entry) is None
    assert entry.runtime_data.coordinator.info.channel_ids == ("a", "b", "c")


async def test_a_slowly_flapping_meter_is_set_up_again_a_few_times_only(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    normal = await normal_polling(hass, simulator, "pro3em", freezer)
    setup_cost = normal - POLLS_IN_A_MINUTE
    meter = await serve(simulator, "pro3em")
    meter.flap_components(every=3)  # each layout long enough to look like a real change
    entry, reloads, requests = await a_minute_of_polls(hass, simulator, meter, freezer)
    assert 1 <= reloads <= SETUPS_PER_WINDOW
    assert requests <= normal + reloads * setup_cost
    issue = unstable_issue(hass, entry)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["what"] == "components"


async def test_removing_an_unstable_meter_removes_its_issue(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.flap_components(every=1)
    entry, _, _ = await a_minute_of_polls(hass, simulator, meter, freezer)
    assert unstable_issue(hass, entry) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert unstable_issue(hass, entry) is None  # an unloaded meter is not watched
    await hass.config_entries.async_setup(entry.entry_id)
    await poll(hass, freezer)
    assert unstable_issue(hass, entry) is not None  # what it showed is remembered
    assert await hass.config_entries.async_remove(entry.entry_id)
    assert unstable_issue(hass, entry) is None


async def test_gen1_firmware_strings_that_differ_are_no_change(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    normal = await normal_polling(hass, simulator, "gen1_3em", freezer)
    meter = await serve(simulator, "gen1_3em")
    meter.set_status_firmware("20230913-114244/v1.14.0-beta2")  # /shelly keeps the real one
    entry, reloads, requests = await a_minute_of_polls(hass, simulator, meter, freezer)
    assert (reloads, requests) == (0, normal)
    assert unstable_issue(hass, entry) is None
    assert entry.runtime_data.coordinator.info.firmware == meter.firmware


@pytest.mark.parametrize("kind", ["gen1_3em", "pro3em"])
async def test_a_firmware_update_sets_the_meter_up_again_once(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, kind: str
) -> None:
    meter = await serve(simulator, kind)
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    simulator.clock.advance(600)  # up for ten minutes
    await poll(hass, freezer)
    meter.set_firmware("20260101-000000/1.9.0-gnew")
    meter.reboot(invalid_for=0)
    with counting_reloads(hass) as reload:
        for _ in range(POLLS_IN_A_MINUTE):
            await poll(hass, freezer)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert reload.call_count == 1
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.coordinator.info.firmware in (meter.firmware, meter.version)
    assert unstable_issue(hass, entry) is None


# A minute and a half of polls, every reply damaged in three places.
GARBLED_POLLS = 15


@pytest.mark.parametrize("kind", ["gen1_em", "gen1_3em", "pro3em", "proem50"])
async def test_garbled_replies_never_raise_and_good_values_return(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    meter = await serve(simulator, kind)
    meter.set_power("0", 700.0)
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    channel = "phase_a" if meter.preset.three_phase else "channel_1"
    assert state_of(hass, f"sensor.m_{channel}_power") == "700.0"
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    for seed in range(4):
        # aioshelly refuses a whole frame for a NaN (the poll then times out): Gen1 only.
        meter.override_reply(
            "garble", count=GARBLED_POLLS, fields=3, seed=seed, non_finite=meter.gen == 1
        )
        for _ in range(GARBLED_POLLS):
            await poll(hass, freezer)
    if meter.gen == 1:
        meter.override_reply("invalid_json", count=3)  # bodies cut off mid-way
        for _ in range(3):
            await poll(hass, freezer)
    for _ in range(2):
        await poll(hass, freezer)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.state is ConfigEntryState.LOADED
    assert state_of(hass, f"sensor.m_{channel}_power") == "700.0"
    unhandled = [
        record
        for record in caplog.records
        # Newer Home Assistant traces a failed update at debug level ("Full error:"): handled.
        if (record.exc_info and record.getMessage() != "Full error:")
        or "Unexpected error" in record.getMessage()
        or "Traceback" in record.getMessage()
        or "never retrieved" in record.getMessage()
    ]
    assert unhandled == []


@pytest.mark.usefixtures("all_entities_enabled")
async def test_nan_in_a_gen1_reply_costs_only_that_value(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "gen1_em")
    meter.set_power("0", 700.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    # One damaged reply each (the simulator uses an override per reply, in order).
    meter.override_reply("set", path="emeters.0.power", value=math.nan)
    meter.override_reply("set", path="emeters.1.voltage", value=math.inf)
    await poll(hass, freezer)
    assert state_of(hass, "sensor.m_channel_1_power") == STATE_UNAVAILABLE
    assert state_of(hass, "sensor.m_channel_1_voltage") != STATE_UNAVAILABLE
    assert state_of(hass, "sensor.m_channel_2_power") != STATE_UNAVAILABLE
    await poll(hass, freezer)
    assert state_of(hass, "sensor.m_channel_2_voltage") == STATE_UNAVAILABLE
    assert state_of(hass, "sensor.m_channel_1_power") == "700.0"
    assert state_of(hass, "sensor.m_channel_2_power") != STATE_UNAVAILABLE


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize(
    ("path", "value", "unknown"),
    [
        ("uptime", -1e12, True),
        ("uptime", 2**31, True),  # a restart 68 years ago: before any synced clock
        ("uptime", 1e300, True),
        ("unixtime", -1e12, False),  # the poll's own time stands in, as for an unsynced clock
        ("unixtime", 1e300, False),
    ],
)
async def test_absurd_clocks_never_crash_the_last_restart(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    path: str,
    value: float,
    unknown: bool,
) -> None:
    meter = await serve(simulator, "gen1_em")
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    started = state_of(hass, "sensor.m_last_restart")
    meter.override_reply("set", path=path, value=value)
    await poll(hass, freezer)
    assert (state_of(hass, "sensor.m_last_restart") == STATE_UNAVAILABLE) is unknown
    assert entry.state is ConfigEntryState.LOADED
    await poll(hass, freezer)
    assert state_of(hass, "sensor.m_last_restart") == started


async def test_a_gen1_restart_asks_once_what_firmware_runs(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "gen1_em")
    entry = meter_entry(simulator, meter, title="M")
    await setup_entry(hass, entry)
    simulator.clock.advance(600)
    await poll(hass, freezer)
    asked = meter.requests["/shelly"]
    meter.reboot(invalid_for=0)  # the same firmware as before
    with counting_reloads(hass) as reload:
        for _ in range(3):
            await poll(hass, freezer)
    assert meter.requests["/shelly"] == asked + 1
    assert reload.call_count == 0


async def test_a_gen1_update_while_away_longer_than_its_uptime_is_noticed(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    """Its uptime is above the last one read: only its boot time tells the restart."""
    meter = await serve(simulator, "gen1_em")
    meter.reboot(invalid_for=0)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    simulator.clock.advance(6)
    await poll(hass, freezer)  # uptime 6 s
    meter.set_online(False)
    simulator.clock.advance(600)
    meter.set_firmware("20260101-000000/1.9.0-gnew")
    meter.reboot(invalid_for=0)
    simulator.clock.advance(60)
    meter.set_online(True)  # uptime 60 s
    with patch.object(hass.config_entries, "async_schedule_reload") as schedule:
        for _ in range(3):
            await poll(hass, freezer)
    schedule.assert_called_once()


async def test_polls_before_the_new_setup_ask_for_no_second_one(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    meter = await serve(simulator, "pro3em")
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    meter.set_firmware("20260101-000000/1.9.0-gnew")
    meter.reboot(invalid_for=0)
    with patch.object(hass.config_entries, "async_schedule_reload") as schedule:
        for _ in range(5):  # the new setup is slow to come
            await poll(hass, freezer)
    schedule.assert_called_once()


async def test_a_stored_address_that_is_no_address_fails_clearly(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter, title="M")
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, "host": "meter..local"})
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None
    assert "meter..local is not a valid address" in entry.reason
