"""The energy totals Home Assistant last recorded, read at a meter's or a site's setup."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.shelly_energy import recorded_states
from custom_components.shelly_energy.const import DOMAIN
from custom_components.shelly_energy.recorded_states import (
    async_last_readings,
    async_last_recorded_totals,
)

from .blocked_query import BlockedQuery, assert_cancelled_only_after_the_query

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


async def test_the_totals_are_the_last_recorded_totals_in_wh(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    entity_ids = register(hass)
    hass.states.async_set(entity_ids["imported"], "12.3")
    hass.states.async_set(entity_ids["imported"], "12.345")
    last_set = hass.states.get(entity_ids["imported"])
    assert last_set is not None
    # Its entry unloaded (or its meter away), then Home Assistant killed: the total still holds.
    hass.states.async_set(entity_ids["imported"], "unavailable")
    hass.states.async_set(entity_ids["exported"], "unavailable")  # no total: not held
    await async_wait_recording_done(hass)
    # As shown: rounded to the Wh (the counters allow for that).
    assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {
        "imported": (12345.0, last_set.last_updated.timestamp())
    }


async def test_nothing_is_read_for_sensors_not_registered(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {}


async def test_a_cancelled_setup_stops_only_after_its_query(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    """Home Assistant closes the database after cancelling setups: SQLite would crash under it."""
    register(hass)
    query = BlockedQuery({"imported": (1.0, 0.0)})
    with patch.object(recorded_states, "_read", query):
        task = hass.async_create_task(async_last_recorded_totals(hass, UNIQUE_IDS))
        await assert_cancelled_only_after_the_query(hass, task, query)


async def test_a_recorder_that_does_not_answer_in_time_leaves_the_stored_totals(
    recorder_mock: Recorder, hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    register(hass)
    query = BlockedQuery({"imported": (1.0, 0.0)})
    threading.Timer(0.3, query.release.set).start()
    with (
        patch.object(recorded_states, "RECORDER_WAIT_S", 0.1),
        patch.object(recorded_states, "_read", query),
        caplog.at_level(logging.WARNING),
    ):
        assert await async_last_recorded_totals(hass, UNIQUE_IDS) == {}
    assert query.started.is_set() and query.release.is_set()  # its query ended before
    assert "The recorder did not answer in time: energy totals continue as stored" in caplog.text


async def test_an_hours_last_reading_is_its_last_number_where_its_rows_stop(
    recorder_mock: Recorder, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Meters away from about 05:50: their 5-minute rows of the hour stop at 05:55."""
    hour = datetime(2025, 6, 1, 5, tzinfo=UTC)
    stop = hour + timedelta(minutes=55)
    moves = {
        # Read every 5 minutes until 05:45, unavailable from 05:51; back at 05:58.
        "sensor.polled": ((40, "0.5"), (45, "0.6"), (51, "unavailable"), (58, "0.9")),
        # Quiet since 05:10 (the total did not change), then unavailable.
        "sensor.quiet": ((10, "1.0"), (52, "unavailable")),
    }
    for minute in range(60):
        freezer.move_to(hour + timedelta(minutes=minute))
        for entity_id, states in moves.items():
            for at, value in states:
                if at == minute:
                    hass.states.async_set(entity_id, value)
    await async_wait_recording_done(hass)
    stops = {entity_id: {int(hour.timestamp()): int(stop.timestamp())} for entity_id in moves}
    assert await async_last_readings(hass, stops) == {
        "sensor.polled": {int(hour.timestamp()): (hour + timedelta(minutes=45)).timestamp()},
        "sensor.quiet": {int(hour.timestamp()): stop.timestamp()},
    }
    assert await async_last_readings(hass, {}) == {}


async def test_no_reading_is_known_without_the_recorder(hass: HomeAssistant) -> None:
    assert await async_last_readings(hass, {"sensor.polled": {0: 300}}) == {}
