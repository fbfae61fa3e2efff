"""Meters served on loopback by the simulator, for the tests of the simulator and of the clients.

Each test directory that uses them imports them into its conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Unpack

import aiohttp
import pytest

from simulator import Clock, MeterOptions, MeterServer, SimulatedMeter

type Serve = Callable[..., Awaitable[tuple[SimulatedMeter, MeterServer]]]


@pytest.fixture
def clock() -> Clock:
    """Return a manual clock at 2025-06-01 00:00:00 UTC."""
    return Clock.manual()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """Return an HTTP client session, closed afterwards."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def serve(clock: Clock) -> AsyncIterator[Serve]:
    """Return a function serving one meter on loopback; everything stops afterwards."""
    servers: list[MeterServer] = []

    async def start(
        kind: str, *, seed: int = 1, **options: Unpack[MeterOptions]
    ) -> tuple[SimulatedMeter, MeterServer]:
        meter = SimulatedMeter(kind, clock=clock, seed=seed, **options)
        server = MeterServer(meter)
        await server.start()
        servers.append(server)
        return meter, server

    yield start
    for server in servers:
        await server.stop()
