"""A simulated day of a two-meter site, polled and compiled by the recorder, against the truth.

A Pro 3EM on the mains and a Pro EM-50 on the solar and battery inverters (one household seen by
two devices), a site over both, polled every five minutes from 2025-06-01 00:00 UTC. The day moves
both clocks a poll at a time, makes faults happen at their minute, notes the simulator's own truth
at each poll and has the recorder compile its statistics; `assert_counted_once` holds every energy
sensor's hourly statistics against that truth.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_GRID,
    CONF_KIND,
    CONF_POLL_INTERVAL,
    CONF_SOLAR,
    DOMAIN,
    KIND_SITE,
)
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, setup_entry

MINUTE = 60
STEP = 300  # the polling interval: every step a poll and the recorder's 5-minute statistics
DAY_START = datetime(2025, 6, 1, tzinfo=UTC)
# The entries are set up a second before the first 5 minutes end, so each hour's last poll is
# a second before its end: the recorder's hours hold about what flowed in them, as with the
# reading every second of a real meter, and the records' hours can be held against them.
SETUP_AT = DAY_START + timedelta(seconds=STEP - 1)


async def settle(hass: HomeAssistant) -> None:
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)


async def bars(hass: HomeAssistant, entity_id: str) -> dict[float, float]:
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        DAY_START - timedelta(days=1),
        None,
        {entity_id},
        "hour",
        None,
        {"sum"},
    )
    rows = found.get(entity_id, [])
    result = {rows[0]["start"]: rows[0]["sum"] or 0.0} if rows else {}
    result.update(
        (row["start"], (row["sum"] or 0.0) - (before["sum"] or 0.0))
        for before, row in pairwise(rows)
    )
    return result


class Day:
    """The simulated day: both clocks move a minute at a time; the truth is noted at each poll."""

    def __init__(
        self,
        hass: HomeAssistant,
        clock: Clock,
        freezer: FrozenDateTimeFactory,
        mains: SimulatedMeter,
        inverters: SimulatedMeter,
    ) -> None:
        self.hass = hass
        self.clock = clock
        self.freezer = freezer
        self.mains = mains
        self.inverters = inverters
        self.truth: dict[float, dict[str, float]] = {}
        self._first: dict[str, float] = {}
        self._highest_seen: dict[str, float] = {}

    def reload(self, title: str) -> None:
        """Reload the entry of that title, in the background (as the user's button does)."""
        hass = self.hass
        (entry,) = (e for e in hass.config_entries.async_entries(DOMAIN) if e.title == title)
        hass.async_create_task(hass.config_entries.async_reload(entry.entry_id))

    def note_truth(self) -> None:
        grid = [self.mains.true_energy(phase) for phase in "abc"]
        solar = self.inverters.true_energy("0")
        battery = self.inverters.true_energy("1")
        self.truth[self.clock.now()] = {
            "mains_phase_a_energy_imported": grid[0][0],
            "mains_phase_b_energy_exported": grid[1][1],
            "mains_total_energy_imported": sum(flows[0] for flows in grid),
            "inverters_channel_1_energy_exported": solar[1],
            "inverters_channel_2_energy_imported": battery[0],
            "home_grid_import_energy": sum(flows[0] for flows in grid),
            "home_grid_export_energy": sum(flows[1] for flows in grid),
            "home_solar_energy": solar[1] - solar[0],
            "home_battery_charged_energy": battery[0],
            "home_battery_discharged_energy": battery[1],
            "home_consumption_energy": sum(flows[0] - flows[1] for flows in grid)
            + solar[1]
            - solar[0]
            + battery[1]
            - battery[0],
            # The highest value so far of what the solar made less what went to the grid: the
            # inverter's own use at night lowers the running sum, and the morning makes it up.
            "home_self_consumed_solar_energy": self._highest(
                "self_consumed", solar[1] - solar[0] - sum(flows[1] for flows in grid)
            ),
        }

    def _highest(self, name: str, running: float) -> float:
        """Return how far a running sum's highest value rose since the first poll (Wh)."""
        first = self._first.setdefault(name, running)
        self._highest_seen[name] = max(self._highest_seen.get(name, running), running)
        return self._highest_seen[name] - first

    def _wh(self, key: str, moment: float) -> float:
        """Return the truth noted last at `moment`, or the first noted."""
        noted = max((time for time in self.truth if time <= moment), default=min(self.truth))
        return self.truth[noted][key]

    def hour_bar(self, key: str, hour: float) -> float:
        """Return the truth of an hour's bar (kWh): what flowed up to its last poll since the
        last poll of the hour before."""
        return (self._wh(key, hour + 3600) - self._wh(key, hour)) / 1000

    def hour_bar_tolerance(self, key: str, hour: float) -> float:
        """Return how far an hour's bar may be from `hour_bar`.

        The records place what a span missed in the hours it flowed in: up to a poll's worth
        of energy at either end of the hour. And a Wh of rounding.
        """
        chunks = [self._wh(key, end) - self._wh(key, end - STEP) for end in (hour, hour + 3600)]
        return sum(chunks) / 1000 + 0.002

    async def run(self, minutes: int, at: dict[int, Callable[[], None]]) -> None:
        """Let `minutes` pass, a step at a time; a fault happens at its minute."""
        end = self.clock.now() + minutes * MINUTE
        while self.clock.now() < end:
            step_end = self.clock.now() + STEP
            for minute, fault in sorted(at.items()):
                moment = DAY_START.timestamp() + minute * MINUTE
                if self.clock.now() < moment <= step_end:
                    self.clock.advance(moment - self.clock.now())
                    fault()
            self.clock.advance(step_end - self.clock.now())
            self.freezer.tick(timedelta(seconds=STEP))
            async_fire_time_changed(self.hass)
            await self.hass.async_block_till_done(wait_background_tasks=True)
            self.note_truth()
            period_end = step_end - step_end % STEP  # the last 5 minutes that ended
            do_adhoc_statistics(self.hass, start=datetime.fromtimestamp(period_end - STEP, UTC))
            await settle(self.hass)


async def start_day(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> tuple[Day, dict[str, float]]:
    """Set up the mains' Pro 3EM, the inverters' Pro EM-50 and a site over both, at DAY_START.

    Returns the day, and its truth at the start.
    """
    freezer.move_to(SETUP_AT)
    sim_clock.set(SETUP_AT.timestamp())
    # One household (the same seed and sizes) seen by two devices (two MACs).
    mains = simulator.add_meter(
        "pro3em",
        seed=11,
        solar_peak_w=5000.0,
        battery_wh=8000.0,
        wiring=["grid@a", "grid@b", "grid@c"],
        flash_save_s=300,
    )
    inverters = simulator.add_meter(
        "proem50",
        seed=11,
        solar_peak_w=5000.0,
        battery_wh=8000.0,
        mac="A0DD6C000002",
        wiring=["solar", "battery"],
        flash_save_s=300,
    )
    await simulator.start()
    options = {CONF_POLL_INTERVAL: STEP}
    await setup_entry(hass, meter_entry(simulator, mains, title="Mains", options=options))
    await setup_entry(hass, meter_entry(simulator, inverters, title="Inverters", options=options))
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={
            CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
            CONF_SOLAR: [f"{inverters.mac}:1"],
            CONF_BATTERY: [f"{inverters.mac}:2"],
        },
    )
    await setup_entry(hass, site)
    await settle(hass)
    day = Day(hass, sim_clock, freezer, mains, inverters)
    day.note_truth()
    return day, day.truth[sim_clock.now()]


async def assert_counted_once(
    day: Day, start_truth: dict[str, float], hours: int, within_wh: float = 1.0
) -> None:
    """Assert every sensor's hourly statistics of the first `hours` against the truth.

    Their sum is within `within_wh` of it: half a Wh of the published state's rounding at each
    end, however many faults were corrected.
    """
    last_hour = DAY_START.timestamp() + (hours - 1) * 3600
    end = max(time for time in day.truth if time < last_hour + 3600)
    for key, truth in day.truth[end].items():
        entity_id = f"sensor.{key}"
        result = await bars(day.hass, entity_id)
        assert all(bar >= -1e-9 for bar in result.values()), (entity_id, result)
        counted = sum(bar for hour, bar in result.items() if hour <= last_hour)
        expected = (truth - start_truth[key]) / 1000
        assert counted == pytest.approx(expected, abs=within_wh / 1000), (
            entity_id,
            counted,
            expected,
        )
        hours_counted = {
            datetime.fromtimestamp(hour, UTC).strftime("%H:%M"): (
                round(result.get(hour, 0.0) * 1000, 2),
                round(day.hour_bar(key, hour) * 1000, 2),
                round(day.hour_bar_tolerance(key, hour) * 1000, 2),
            )
            for hour in range(int(DAY_START.timestamp()), int(last_hour) + 1, 3600)
        }
        wrong = [
            hour
            for hour, (bar, truth, tolerance) in hours_counted.items()
            if abs(bar - truth) > tolerance + 0.01
        ]
        assert not wrong, (entity_id, wrong, "hour: (counted, truth, tolerance) Wh", hours_counted)


class Restarts:
    """Kill Home Assistant and start it again, in the test's one process.

    A kill unloads every entry at once, and only what its stores had written to disk at that
    moment survives it: each start has them as they were at the last kill.
    """

    def __init__(self, hass: HomeAssistant, hass_storage: dict[str, Any]) -> None:
        self.hass = hass
        self.storage = hass_storage
        self.kills = 0
        self._on_disk: dict[str, Any] = {}

    def _entries(self) -> tuple[list[ConfigEntry], list[ConfigEntry]]:
        """Return the meters' entries and the sites'."""
        entries = self.hass.config_entries.async_entries(DOMAIN)
        sites = [entry for entry in entries if entry.data.get(CONF_KIND) == KIND_SITE]
        return [entry for entry in entries if entry not in sites], sites

    def kill(self) -> None:
        self.kills += 1
        self._on_disk = {
            key: copy.deepcopy(data) for key, data in self.storage.items() if DOMAIN in key
        }
        meters, sites = self._entries()
        self.hass.async_create_task(
            self._each(self.hass.config_entries.async_unload, sites + meters)
        )

    def start(self) -> None:
        for key in [key for key in self.storage if DOMAIN in key]:
            del self.storage[key]
        self.storage.update(self._on_disk)
        meters, sites = self._entries()
        self.hass.async_create_task(
            self._each(self.hass.config_entries.async_setup, meters + sites)
        )

    @staticmethod
    async def _each(step: Callable[[str], Awaitable[bool]], entries: list[ConfigEntry]) -> None:
        for entry in entries:
            await step(entry.entry_id)
