"""Small pieces both protocol modules (gen1.py, rpc.py) share."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DOWNLOAD_CHUNK_BYTES = 16 * 1024  # how much of a download is written (and waited for) at a time


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


async def send_throttled(
    response: web.StreamResponse,
    chunks: Iterable[bytes],
    bytes_per_second: float | None,
    part_bytes: int = DOWNLOAD_CHUNK_BYTES,
) -> None:
    """Write `chunks` to a prepared response at `bytes_per_second` (None: at once), then end it.

    The body goes out `part_bytes` at a time. A client that goes away (or a device that drops
    its connections) just ends the transfer.
    """
    pending = bytearray()
    try:
        for chunk in chunks:
            pending += chunk
            while len(pending) >= part_bytes:
                await _write_part(response, bytes(pending[:part_bytes]), bytes_per_second)
                del pending[:part_bytes]
        if pending:
            await _write_part(response, bytes(pending), bytes_per_second)
        await response.write_eof()
    except ConnectionError:
        pass


async def _write_part(
    response: web.StreamResponse, part: bytes, bytes_per_second: float | None
) -> None:
    await response.write(part)
    if bytes_per_second:
        await asyncio.sleep(len(part) / bytes_per_second)


def request_counter(requests: Counter[str]) -> Any:
    """Return a middleware that counts every HTTP request in `requests`, by path."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        requests[request.path] += 1
        return await handler(request)

    return count
