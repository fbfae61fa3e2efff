"""Fixtures shared by the integration's tests: Home Assistant, the simulator, meter entries."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest.mock import MagicMock, PropertyMock, patch

import aiohasupervisor  # noqa: F401  (see below)
import pytest
import pytest_socket
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.storage import Store
from homeassistant.util.file import WriteError
from hypothesis import settings
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.shelly_energy.const import CONF_GENERATION, CONF_MODEL, DOMAIN
from simulator import Clock, SimulatedMeter, Simulator

from .batteries import BROADCAST, LOOPBACK

# aiohasupervisor is imported here, before any test freezes the clock: imported first under
# freezegun (diagnostics import it), its mashumaro models name freezegun's datetime class and fail.

# Property tests are the same on every run (CI stays deterministic) and leave no example
# database behind; HYPOTHESIS_PROFILE=explore draws new examples, ten times as many.
settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", max_examples=1000, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _integration_test_setup(
    recorder_db_url: str, enable_custom_integrations: None, socket_enabled: None
) -> None:
    """Load custom integrations and allow loopback sockets (the simulator's) in every test.

    The recorder's database URL comes first: tests with `recorder_mock` need it before the
    `hass` fixture exists.
    """


# Home Assistant's test harness logs every SQL statement the recorder runs; writing them costs
# the recorder's thread more than the statements do.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
# Tests with `caplog` log at DEBUG: the recorder's threads then log each task and connection
# checkout, some after the test's capture ended, straight into the run's output.
logging.getLogger("homeassistant.components.recorder").setLevel(logging.INFO)


@pytest.fixture(autouse=True)
async def _timers_due_now_run_under_a_frozen_clock() -> None:
    """Let the event loop run a timer due at the frozen instant itself.

    Under `freezer` the loop's clock reads seconds since 1970 (about 1.7e9), where the loop's
    1 ns resolution is below a float's step: a timer due "now" (a zero delay, as a Store's
    write uses) is never run until the test moves the clock, and the loop spins at full CPU
    meanwhile, starving the recorder's thread (the day-of-faults test took 20 minutes).
    """
    loop = asyncio.get_running_loop()
    loop._clock_resolution = 1e-6  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_usage_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test that makes Home Assistant report a deprecated or wrong use.

    Most reports raise in tests already; this catches those Home Assistant only logs.
    """
    yield
    reports = [
        record.getMessage()
        for when in ("setup", "call")
        for record in caplog.get_records(when)
        if record.name == "homeassistant.helpers.frame"
    ]
    assert not reports, reports


@pytest.fixture
def ipv6_loopback() -> None:
    """Allow connections to ::1 too (Home Assistant's test plugin allows only 127.0.0.1)."""
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1"])


@pytest.fixture(autouse=True)
def _virtual_meters_on_loopback(mock_async_zeroconf: MagicMock) -> Iterator[MagicMock]:
    """Virtual meters listen on loopback only and announce through a mocked zeroconf.

    UDP listens on loopback's broadcast address too, for the batteries' discovery broadcast.
    """
    with (
        patch("custom_components.shelly_energy.virtual_meter_entry.HTTP_HOST", LOOPBACK),
        patch(
            "custom_components.shelly_energy.virtual_meter_entry.UDP_HOSTS",
            (LOOPBACK, BROADCAST),
        ),
    ):
        yield mock_async_zeroconf


@pytest.fixture
def all_entities_enabled() -> Iterator[None]:
    """Create every entity enabled, including those disabled by default."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


@pytest.fixture
def sim_clock() -> Clock:
    """Return the simulator's manual clock (2025-06-01 00:00 UTC); tests move it."""
    return Clock.manual()


@pytest.fixture
async def simulator(sim_clock: Clock) -> AsyncIterator[Simulator]:
    """Return a running simulator; add meters, then `await simulator.start()` to serve them."""
    sim = Simulator(sim_clock, seed=7)
    yield sim
    await sim.stop()


async def serve(simulator: Simulator, kind: str, **options: Any) -> SimulatedMeter:
    """Add a meter to the simulator and serve it."""
    meter = simulator.add_meter(kind, **options)
    await simulator.start()
    return meter


def meter_entry(
    simulator: Simulator,
    meter: SimulatedMeter,
    *,
    password: str | None = None,
    options: dict[str, Any] | None = None,
    title: str = "Meter",
) -> MockConfigEntry:
    """Return a config entry for a served meter, as the setup wizard would create it."""
    data: dict[str, Any] = {
        CONF_HOST: simulator.server(meter).host,
        CONF_PORT: simulator.server(meter).port,
        CONF_GENERATION: meter.gen,
        CONF_MODEL: meter.model,
    }
    if password is not None:
        data[CONF_PASSWORD] = password
        if meter.gen == 1:
            data[CONF_USERNAME] = "admin"
    return MockConfigEntry(
        domain=DOMAIN, title=title, unique_id=meter.mac, data=data, options=options or {}
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add an entry to Home Assistant and set it up."""
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory, seconds: float = 6) -> None:
    """Let Home Assistant's time pass so that the meters are polled once more."""
    freezer.tick(timedelta(seconds=seconds))
    async_fire_time_changed(hass)
    # Interval refreshes run as background tasks, and the simulator answers over real sockets.
    await hass.async_block_till_done(wait_background_tasks=True)


@contextmanager
def full_disk() -> Iterator[None]:
    """Have every write to the disk fail as on a full disk (the Store logs the error)."""
    error = WriteError(OSError(errno.ENOSPC, "No space left on device"))
    with patch.object(Store, "_async_write_data", side_effect=error):
        yield


def state_of(hass: HomeAssistant, entity_id: str) -> str:
    """Return an entity's state, failing clearly when the entity does not exist."""
    state = hass.states.get(entity_id)
    assert state is not None, f"{entity_id} does not exist"
    return state.state


def device_with(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry:
    """Return the integration's one device with `identifier`, whichever entry it belongs to.

    Through each entry's devices: the lookup that every supported release has undeprecated.
    """
    registry = dr.async_get(hass)
    found = [
        device
        for entry in hass.config_entries.async_entries(DOMAIN)
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
        if (DOMAIN, identifier) in device.identifiers
    ]
    assert len(found) == 1, f"{len(found)} devices have the identifier {identifier}"
    return found[0]
