"""A recorder query outlives no cancelled caller: Home Assistant closes the database after."""

from __future__ import annotations

import asyncio
import threading

import pytest
from homeassistant.components.recorder.core import Recorder
from homeassistant.core import HomeAssistant

from custom_components.shelly_energy.recorder_query import async_query

WAIT_S = 5.0


def blocking_query(started: threading.Event, release: threading.Event) -> str:
    started.set()
    assert release.wait(WAIT_S)
    return "rows"


async def test_a_query_returns_its_result(recorder_mock: Recorder, hass: HomeAssistant) -> None:
    started, release = threading.Event(), threading.Event()
    release.set()
    assert await async_query(hass, blocking_query, started, release) == "rows"


async def test_a_cancelled_caller_stops_only_after_its_query(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    started, release = threading.Event(), threading.Event()
    task = hass.async_create_task(async_query(hass, blocking_query, started, release))
    assert await hass.async_add_executor_job(started.wait, WAIT_S)
    task.cancel()
    await asyncio.sleep(0.1)
    assert not task.done()  # the query still runs in the recorder's thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_query_raises_to_its_caller(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    def failing() -> None:
        raise ValueError("no such table")

    with pytest.raises(ValueError, match="no such table"):
        await async_query(hass, failing)
