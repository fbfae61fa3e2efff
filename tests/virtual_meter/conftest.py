"""A virtual meter with manual clocks, fed directly (no Home Assistant)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from custom_components.shelly_energy.virtual_meter.guard import GridReading, GuardSettings
from custom_components.shelly_energy.virtual_meter.identity import Identity, MeterModel
from custom_components.shelly_energy.virtual_meter.meter import VirtualMeter

MAC = "02A1B2C3D4E5"
WALL_START = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC


class ManualClock:
    """A clock that moves only when told: monotonic and wall time together."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = WALL_START

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_meter(
    clock: ManualClock,
    model: MeterModel = MeterModel.PRO_3EM,
    settings: GuardSettings | None = None,
) -> VirtualMeter:
    return VirtualMeter(
        Identity(model, MAC),
        settings or GuardSettings(),
        clock=clock.monotonic,
        wall_clock=clock.time,
    )


@pytest.fixture
def meter(clock: ManualClock) -> VirtualMeter:
    """Return a Pro 3EM serving 1000 W on phase A, -250.5 W on phase C, read just now."""
    served = make_meter(clock)
    served.update(GridReading((1000.0, 0.0, -250.5), time=clock.now, voltage=(229.5, 230.1, None)))
    return served


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
