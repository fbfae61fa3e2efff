"""The energy totals Home Assistant last recorded, read at a meter's or a site's setup."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.shelly_energy import recorded_states
from custom_components.shelly_energy.const import DOMAIN
from custom_components.shelly_energy.recorded_states import async_last_recorded_totals

WAIT_S = 5.0
UNIQUE_IDS = {
    "imported": "A0DD6C9E9190_total_energy_in",
    "exported": "A0DD6C9E9190_total_energy_out",
}


def register(hass: HomeAssistant) -> dict[str, str]:
    """Register the two energy sensors; return their entity ids by key."""
    registry = er.async_get(hass)
    return {
        key: registry.async_get_or_create("sensor", DOMAIN, unique_id).entity_id
        for key, unique_id in UNIQUE_IDS.items()
    }


async def test_the_totals_are_the_last_recorded_states_in_wh(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    entity_ids = register(hass)
    hass.states.async_set(entity_ids["imported"], "12.3")
    hass.states.async_set(entity_ids["imported"], "12.345")
    hass.states.async_set(entity_ids["exported"], "unavailable")  # no total: not held
    await async_wait_recording_done(hass)
    last_set = hass.states.get(entity_ids["imported"])
    assert last_set is not None
    # Shown rounded to the Wh, the total was at least 12,344.501 Wh.
    assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {
        "imported": (12344.501, last_set.last_updated.timestamp())
    }


async def test_nothing_is_read_for_sensors_not_registered(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {}


def blocked_read(started: threading.Event, release: threading.Event) -> Any:
    def read(_hass: HomeAssistant, entity_ids: dict[str, str]) -> dict[str, tuple[float, float]]:
        started.set()
        assert release.wait(WAIT_S)
        return dict.fromkeys(entity_ids, (1.0, 0.0))

    return read


async def test_a_cancelled_setup_stops_only_after_its_query(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    """Home Assistant closes the database after cancelling setups: SQLite would crash under it."""
    register(hass)
    started, release = threading.Event(), threading.Event()
    with patch.object(recorded_states, "_read", blocked_read(started, release)):
        task = hass.async_create_task(async_last_recorded_totals(hass, UNIQUE_IDS))
        assert await hass.async_add_executor_job(started.wait, WAIT_S)
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done()  # the query still runs in the recorder's thread
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_recorder_that_does_not_answer_in_time_leaves_the_stored_totals(
    recorder_mock: Recorder, hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    register(hass)
    started, release = threading.Event(), threading.Event()
    threading.Timer(0.3, release.set).start()
    with (
        patch.object(recorded_states, "RECORDER_WAIT_S", 0.1),
        patch.object(recorded_states, "_read", blocked_read(started, release)),
        caplog.at_level(logging.WARNING),
    ):
        assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {}
    assert started.is_set() and release.is_set()  # its query ended before the setup went on
    assert "The recorder did not answer in time: energy totals continue as stored" in caplog.text
