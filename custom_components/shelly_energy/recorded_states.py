"""What Home Assistant last recorded for energy sensors: the totals shown before a restart.

After a crash the integration's own stored state can be a little older than what the recorder
already wrote; energy totals must never be published lower than that (the statistics would get
a negative hour), so the counters hold at least the recorded value (`EnergyCounter.hold_at_least`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

from homeassistant.components.recorder.history import get_last_state_changes
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance

from .const import DOMAIN
from .recorder_query import async_query

_LOGGER = logging.getLogger(__name__)

# Setup waits at most this long for the recorder (it may still be starting).
RECORDER_WAIT_S: Final = 10.0
# The last state changes read of each sensor: the last total shown may be followed by
# "unavailable" (its meter went away, or its entry was unloaded, before the crash).
STATES_READ: Final = 4


def _read(hass: HomeAssistant, entity_ids: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """Return each entity's last recorded state in Wh (from kWh) and when it was set."""
    found: dict[str, tuple[float, float]] = {}
    for key, entity_id in entity_ids.items():
        states = get_last_state_changes(hass, STATES_READ, entity_id).get(entity_id, [])
        for state in reversed(states):
            try:
                kwh = float(state.state)
            except ValueError:
                continue  # unavailable (its meter away, or its entry unloaded) or unknown
            found[key] = (kwh * 1000, state.last_updated.timestamp())
            break
    return found


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
