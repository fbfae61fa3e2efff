"""State written within a bounded time of every change, however often changes come."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.shelly_energy.storage import DurableStore

from .conftest import full_disk

KEY = "shelly_energy.test"


class State:
    def __init__(self) -> None:
        self.value = 0
        self.snapshots = 0

    def snapshot(self) -> dict[str, int]:
        self.snapshots += 1
        return {"value": self.value}


def on_disk(hass_storage: dict[str, Any]) -> int | None:
    stored = hass_storage.get(KEY)
    return None if stored is None else int(stored["data"]["value"])


async def tick(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float) -> None:
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    # A due write is handed to the Store on a timer of no delay: the frozen clock fires it.
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def test_changes_every_few_seconds_reach_the_disk_within_the_bound(
    hass: HomeAssistant, hass_storage: dict[str, Any], freezer: FrozenDateTimeFactory
) -> None:
    state = State()
    store = DurableStore(hass, KEY, within=60, snapshot=state.snapshot)
    written: list[int | None] = []
    for second in range(0, 300, 5):  # a change every 5 s for 5 minutes
        state.value = second
        store.changed()
        await tick(hass, freezer, 5)
        written.append(on_disk(hass_storage))
    # The first write comes 60 s after the first change, with what was there then.
    assert written[10] is None
    assert written[11] == 55
    # Then at most a minute later each time, although changes never stop.
    assert written[23] == 115
    assert written[-1] == 295
    assert state.snapshots == 5  # one snapshot a write, not one a change


async def test_an_urgent_change_is_written_sooner(
    hass: HomeAssistant, hass_storage: dict[str, Any], freezer: FrozenDateTimeFactory
) -> None:
    state = State()
    store = DurableStore(hass, KEY, within=600, snapshot=state.snapshot)
    store.changed()
    await tick(hass, freezer, 5)
    assert on_disk(hass_storage) is None
    state.value = 7
    store.changed(1)
    assert store.pending
    await tick(hass, freezer, 2)
    assert on_disk(hass_storage) == 7
    assert not store.pending


async def test_a_pending_change_is_written_at_stop(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    state = State()
    state.value = 3
    store = DurableStore(hass, KEY, within=600, snapshot=state.snapshot)
    store.changed()
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    await hass.async_stop(force=True)
    assert on_disk(hass_storage) == 3


async def test_save_now_load_and_remove(
    hass: HomeAssistant, hass_storage: dict[str, Any], freezer: FrozenDateTimeFactory
) -> None:
    state = State()
    store = DurableStore(hass, KEY, within=60, snapshot=state.snapshot)
    state.value = 9
    store.changed()
    await store.async_save()
    assert on_disk(hass_storage) == 9
    assert not store.pending  # the write that was due is not needed any more
    assert await store.async_load() == {"value": 9}
    store.changed()
    await store.async_remove()
    await tick(hass, freezer, 120)
    assert KEY not in hass_storage


async def test_a_write_the_full_disk_refused_is_tried_again_within_the_bound(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = State()
    store = DurableStore(hass, KEY, within=60, snapshot=state.snapshot)
    state.value = 4
    store.changed()
    with full_disk(), caplog.at_level(logging.ERROR):
        await tick(hass, freezer, 61)
        assert on_disk(hass_storage) is None
        assert f"Error writing config for {KEY}: [Errno 28] No space left on device" in caplog.text
        assert store.pending  # no other change comes: the store itself tries again
        await tick(hass, freezer, 61)
    assert on_disk(hass_storage) is None
    state.value = 5  # changed meanwhile; written as it is once there is room again
    await tick(hass, freezer, 61)
    assert on_disk(hass_storage) == 5
    assert not store.pending


async def test_a_failed_save_is_not_tried_again(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    """The entry unloads after it: no timer may outlive it."""
    store = DurableStore(hass, KEY, within=60, snapshot=State().snapshot)
    store.changed()
    with full_disk():
        await store.async_save()
    assert not store.pending
    assert on_disk(hass_storage) is None


async def test_a_failed_final_write_is_not_tried_again(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    """Home Assistant stops: nothing would write it."""
    store = DurableStore(hass, KEY, within=600, snapshot=State().snapshot)
    store.changed()
    with full_disk():
        await hass.async_stop(force=True)
    assert not store.pending
    assert on_disk(hass_storage) is None
