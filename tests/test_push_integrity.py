"""A pushing meter's counters against its own: every watt-hour counted once, end to end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant

from simulator import Clock, SimulatedMeter, Simulator

from .conftest import poll
from .test_push import STATUS, coordinator_of, published_import, push, pushing_meter


def meter_import(meter: SimulatedMeter, phase: str) -> float:
    """Return the phase's import counter as the meter reports it (Wh, two decimals)."""
    return round(meter.counters(phase)[0], 2)


def elapse(clock: Clock, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    clock.advance(seconds)
    freezer.tick(timedelta(seconds=seconds))


async def test_a_notification_stamped_a_day_ahead_loses_nothing_of_a_later_outage(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))  # both clocks agree
    meter, entry = await pushing_meter(hass, simulator)
    await poll(hass, freezer)  # read whole: the day starts
    meter.override_reply("set", method="NotifyStatus", path="ts", value=sim_clock.now() + 86_400)
    meter.set_power("a", 3000.0)
    await push(hass, simulator, meter, entry)  # its clock jumped a day ahead, for one stamp
    elapse(sim_clock, freezer, 1)
    meter.set_power("b", 200.0)
    await push(hass, simulator, meter, entry)  # and back
    assert published_import(entry, "a") == meter_import(meter, "a")
    meter.set_online(False)
    await poll(hass, freezer, 1)  # the lost WebSocket is read again at once: away
    elapse(sim_clock, freezer, 600)  # 3 kW for ten minutes: 500 Wh on phase A
    meter.set_online(True)
    # Read whole again: the first read may still find the dropped WebSocket (a broken pipe).
    for _ in range(5):
        await poll(hass, freezer)
        if coordinator_of(entry).last_update_success:
            break
    assert coordinator_of(entry).last_update_success
    for _ in range(4):
        elapse(sim_clock, freezer, 1)
        await push(hass, simulator, meter, entry)
    assert published_import(entry, "a") == meter_import(meter, "a")


async def test_a_reboot_rolling_back_the_counters_under_a_watt_hour_is_no_jitter(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    """Only the meter's new uptime tells a small rollback from jitter (which would lose it)."""
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))
    meter, entry = await pushing_meter(hass, simulator)
    await poll(hass, freezer)
    meter.set_power("a", 60.0)  # 1 Wh a minute
    for _ in range(33):  # the meter saves its counters every 5 minutes: 30 s past a save
        elapse(sim_clock, freezer, 10)
        await push(hass, simulator, meter, entry)
    before = meter_import(meter, "a")
    assert published_import(entry, "a") == before
    reads = meter.requests[STATUS]
    meter.reboot(invalid_for=0, rollback=True)
    after = meter_import(meter, "a")
    assert before - after == 0.5
    for _ in range(1000):  # the lost WebSocket is read again at once, connecting again
        await asyncio.sleep(0)
        if meter.requests[STATUS] > reads:
            break
    await hass.async_block_till_done(wait_background_tasks=True)
    assert published_import(entry, "a") == before
    for _ in range(6):
        elapse(sim_clock, freezer, 10)
        await push(hass, simulator, meter, entry)
    assert published_import(entry, "a") == round(before + meter_import(meter, "a") - after, 2)


async def test_a_corrupt_counter_that_later_notifications_leave_out_is_not_a_new_level(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))
    meter, entry = await pushing_meter(hass, simulator)
    await poll(hass, freezer)
    meter.set_power("a", 3000.0)
    elapse(sim_clock, freezer, 1)
    await push(hass, simulator, meter, entry)
    meter.override_reply(
        "set", method="NotifyStatus", path="emdata:0.a_total_act_energy", value=5e5
    )
    elapse(sim_clock, freezer, 1)
    await push(hass, simulator, meter, entry)
    # Notifications without the counters: the corrupt one stays in the status they merge into.
    meter.override_reply("delete", method="NotifyStatus", path="emdata:0", count=3)
    for _ in range(8):
        elapse(sim_clock, freezer, 1)
        await push(hass, simulator, meter, entry)
    assert published_import(entry, "a") == meter_import(meter, "a")
