"""Small pieces both protocol modules (gen1.py, rpc.py) share."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(payload: Any) -> str:
    """Serialise compactly, like the devices do."""
    return json.dumps(payload, separators=(",", ":"))


def fahrenheit(celsius: float) -> float:
    """Convert a temperature as the devices publish it (1 decimal)."""
    return round(celsius * 9 / 5 + 32, 1)


def local_hhmm(timestamp: float, utc_offset: int) -> str:
    """Return the device's local ``HH:MM`` (its ``time`` field)."""
    local = time.gmtime(timestamp + utc_offset)
    return f"{local.tm_hour:02d}:{local.tm_min:02d}"


class DeferredCalls:
    """Calls a device makes a little after answering (a reboot), cancelled when it stops.

    Add `lifetime` to an application's ``cleanup_ctx``.
    """

    def __init__(self) -> None:
        """Start with nothing pending."""
        self._pending: set[asyncio.TimerHandle] = set()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` after `delay` seconds of real time."""

        def run() -> None:
            self._pending.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_later(delay, run)
        self._pending.add(handle)

    async def lifetime(self, _app: web.Application) -> AsyncIterator[None]:
        """Cancel what is still pending when the application stops."""
        yield
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()


def request_counter(requests: Counter[str]) -> Any:
    """Return a middleware that counts every HTTP request in `requests`, by path."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        requests[request.path] += 1
        return await handler(request)

    return count
