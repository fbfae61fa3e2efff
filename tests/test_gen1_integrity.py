"""A polled Gen1 meter's counters against its own: every watt-hour counted once, end to end."""

from __future__ import annotations

from datetime import UTC, datetime

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry
from .test_push import coordinator_of

STEP = 10  # seconds between polls


def published_import(entry: MockConfigEntry, channel_id: str) -> float | None:
    reading = coordinator_of(entry).data.channel(channel_id)
    assert reading is not None
    return reading.energy_in


def meter_import(meter: SimulatedMeter, channel: str) -> float:
    """Return a channel's import counter as the Gen1 meter reports it (Wh, one decimal)."""
    return round(meter.counters(channel)[0], 1)


async def step(hass: HomeAssistant, clock: Clock, freezer: FrozenDateTimeFactory) -> None:
    """Let both clocks move on by a step, and poll."""
    clock.advance(STEP)
    await poll(hass, freezer, STEP)


async def test_a_reboot_rolling_back_under_a_watt_hour_behind_an_invalid_reading_is_no_jitter(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    """A Gen1 meter's counters read invalid right after a boot: the reboot the uptime told
    still holds for the first valid reading, whose small drop is a rollback, not jitter."""
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))  # both clocks agree
    meter = await serve(simulator, "gen1_em")
    meter.set_power("0", 60.0)  # 1 Wh a minute
    entry = meter_entry(simulator, meter, title="EM")
    await setup_entry(hass, entry)
    for _ in range(33):  # the meter saves its counters every 5 minutes: 30 s past a save
        await step(hass, sim_clock, freezer)
    before = meter_import(meter, "0")
    assert published_import(entry, "1") == before
    meter.reboot(rollback=True)  # counters invalid for the first read
    assert before - meter_import(meter, "0") == 0.5
    await step(hass, sim_clock, freezer)
    assert published_import(entry, "1") == before  # invalid: held
    await step(hass, sim_clock, freezer)
    first = meter_import(meter, "0")
    assert first < before  # still below: jitter would wait for the counter to pass it
    # A rollback: what flowed since the last reading before the reboot is a span for the
    # records; counting resumes from the first valid reading.
    assert published_import(entry, "1") == before
    for _ in range(6):
        await step(hass, sim_clock, freezer)
    assert published_import(entry, "1") == round(before + meter_import(meter, "0") - first, 1)
