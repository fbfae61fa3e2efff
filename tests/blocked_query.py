"""A recorder query held in the recorder's thread until the test releases it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from homeassistant.core import HomeAssistant

WAIT_S = 5.0


class BlockedQuery:
    """Stands in for a query: returns `result` once released (a thread waits for that)."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, *_args: Any) -> Any:
        self.started.set()
        assert self.release.wait(WAIT_S)
        return self.result


async def assert_cancelled_only_after_the_query(
    hass: HomeAssistant, task: asyncio.Task[Any], query: BlockedQuery
) -> None:
    """Cancel `task` while its query runs: it must stop only once the query ended."""
    assert await hass.async_add_executor_job(query.started.wait, WAIT_S)
    task.cancel()
    await asyncio.sleep(0.1)
    assert not task.done()  # the query still runs in the recorder's thread
    query.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
