"""Queries of the recorder's database that a cancelled caller does not leave running.

Stopping, Home Assistant cancels the integrations' tasks, then closes the recorder's database.
A query runs on in the recorder's thread after its task is cancelled, and SQLite crashes the
process when its connection is closed under it. So a cancelled caller waits for its query to
end before it stops: Home Assistant waits for the cancelled tasks before its final write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance


async def async_query[T](hass: HomeAssistant, query: Callable[..., T], *args: Any) -> T:
    """Run `query(*args)` in the recorder's executor; when cancelled, after it ended."""
    running = get_instance(hass).async_add_executor_job(query, *args)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await running
        raise
