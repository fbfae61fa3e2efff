"""Fixtures of the export tests: the Emoncms double and a real HTTP session, over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from simulator.emoncms import EmoncmsDouble

WRITE_KEY = "0123456789abcdef0123456789abcdef"
READ_KEY = "fedcba9876543210fedcba9876543210"
T0 = 1_700_000_000  # 2023-11-14T22:13:20+00:00


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def double(socket_enabled: None) -> AsyncIterator[EmoncmsDouble]:
    async with EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY, clock=lambda: T0) as server:
        yield server


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session
