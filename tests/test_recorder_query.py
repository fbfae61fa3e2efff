"""A recorder query outlives no cancelled caller: Home Assistant closes the database after."""

from __future__ import annotations

import pytest
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant

from custom_components.shelly_energy.recorder_query import async_query

from .blocked_query import BlockedQuery, assert_cancelled_only_after_the_query


async def test_a_query_returns_its_result(recorder_mock: Recorder, hass: HomeAssistant) -> None:
    query = BlockedQuery("rows")
    query.release.set()
    assert await async_query(hass, query, "SELECT") == "rows"


async def test_a_cancelled_caller_stops_only_after_its_query(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    query = BlockedQuery("rows")
    task = hass.async_create_task(async_query(hass, query, "SELECT"))
    await assert_cancelled_only_after_the_query(hass, task, query)


async def test_a_failed_query_raises_to_its_caller(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    def failing() -> None:
        raise ValueError("no such table")

    with pytest.raises(ValueError, match="no such table"):
        await async_query(hass, failing)
