"""What Home Assistant last recorded for energy sensors: the totals shown before a restart.

After a crash the integration's own stored state can be a little older than what the recorder
already wrote; energy totals must never be published lower than that (the statistics would get
a negative hour), so the counters hold at least the recorded value (`EnergyCounter.hold_at_least`).

And when a sensor's last reading before an outage was (`async_last_readings`): the history
import fills the hours an outage went on past from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from homeassistant.components.recorder.history import (
    get_last_state_changes,
    state_changes_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance

from .const import DOMAIN, MAX_POLL_INTERVAL
from .recorder_query import async_query

_LOGGER = logging.getLogger(__name__)

# Setup waits at most this long for the recorder (it may still be starting).
RECORDER_WAIT_S: Final = 10.0
# The last state changes read of each sensor: the last total shown may be followed by
# "unavailable" (its meter went away, or its entry was unloaded, before the crash).
STATES_READ: Final = 4
# An hour's last reading is at most a polling interval before its sensor went unavailable, in
# its last 5-minute row: searched in the last three polling intervals (at most) before the stop.
READINGS_WINDOW_S: Final = 3 * MAX_POLL_INTERVAL


def _read(hass: HomeAssistant, entity_ids: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """Return each entity's last recorded state in Wh (from kWh) and when it was set."""
    found: dict[str, tuple[float, float]] = {}
    for key, entity_id in entity_ids.items():
        states = get_last_state_changes(hass, STATES_READ, entity_id).get(entity_id, [])
        for state in reversed(states):
            # None: unavailable (its meter away, or its entry unloaded) or unknown.
            if (kwh := _number(state.state)) is not None:
                found[key] = (kwh * 1000, state.last_updated.timestamp())
                break
    return found


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


async def async_last_recorded_totals(
    hass: HomeAssistant, unique_ids: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    """Return the last recorded total (Wh, as shown: rounded) and its time of each sensor, by key.

    `unique_ids` maps keys to the sensors' unique ids. Empty without the recorder, for
    sensors never recorded, or when the recorder does not answer in time (a query already
    running is waited for: the wait can exceed `RECORDER_WAIT_S` by that query's time).
    """
    if "recorder" not in hass.config.components:
        return {}
    registry = er.async_get(hass)
    entity_ids = {
        key: entity_id
        for key, unique_id in unique_ids.items()
        if (entity_id := registry.async_get_entity_id("sensor", DOMAIN, unique_id))
    }
    if not entity_ids:
        return {}
    instance = get_instance(hass)
    try:
        async with asyncio.timeout(RECORDER_WAIT_S):
            if not await instance.async_db_ready:
                return {}
            # Stopping during a setup cancels it: the query must end before the database closes.
            return await async_query(hass, _read, hass, entity_ids)
    except TimeoutError:
        _LOGGER.warning("The recorder did not answer in time: energy totals continue as stored")
        return {}


def _last_readings(
    hass: HomeAssistant, stops: Mapping[str, Mapping[int, int]]
) -> dict[str, dict[int, float]]:
    found: dict[str, dict[int, float]] = {}
    for entity_id, hours in stops.items():
        for hour, stop in hours.items():
            states = state_changes_during_period(
                hass,
                datetime.fromtimestamp(max(hour, stop - READINGS_WINDOW_S), UTC),
                datetime.fromtimestamp(stop, UTC),
                entity_id,
                no_attributes=True,
                include_start_time_state=False,
            ).get(entity_id, [])
            readings = [
                state.last_updated.timestamp()
                for state in states
                if _number(state.state) is not None
            ]
            found.setdefault(entity_id, {})[hour] = max(readings, default=float(stop))
    return found


async def async_last_readings(
    hass: HomeAssistant, stops: Mapping[str, Mapping[int, int]]
) -> dict[str, dict[int, float]]:
    """Return when a sensor's last reading of each of these hours was (unix s), by entity id.

    `stops`: by entity id, the hours (their starts) and where their rows stop (the end of the
    last 5-minute row: the reading before is at most a polling interval older). Without a
    recorded change there (a counter that did not move), the stop.
    """
    if "recorder" not in hass.config.components or not stops:
        return {}
    return await async_query(hass, _last_readings, hass, stops)
