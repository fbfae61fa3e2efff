"""Every watt-hour counted once through half a day of faults: a two-meter site against the truth.

A Pro 3EM on the mains and a Pro EM-50 on the solar and battery inverters, polled every five
minutes for twelve simulated hours (the night and the morning's production) during which the
meters reboot with counters rolled back, the inverter's data is reset, a reply carries 1e308 (the
mains' first after two hours off the network), a counter overflows and the inverters' meter is off
the network for two hours, then for 42 minutes. At the end the recorder's hourly statistics of
every energy sensor (meters and site) hold the simulator's own truth, within the Wh its published
state rounds at both ends, and no hour is negative; each hour holds what flowed in it, within a
poll's worth at its ends.

The same holds when each entry is reloaded while its history run is about to fix what the
reboots missed (the fix is planned again after the reload, once), and when both meters reboot
together (a power cut, a firmware update), Home Assistant killed with them or running on.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.shelly_energy import history_import
from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_GRID,
    CONF_KIND,
    CONF_POLL_INTERVAL,
    CONF_SOLAR,
    DOMAIN,
    KIND_SITE,
)
from custom_components.shelly_energy.coordinator import SiteCoordinator
from custom_components.shelly_energy.energy.site import ShortCount
from custom_components.shelly_energy.history_import import MeterHistory, SiteHistory
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, setup_entry

MINUTE = 60
STEP = 300  # the polling interval: every step a poll and the recorder's 5-minute statistics
DAY_START = datetime(2025, 6, 1, tzinfo=UTC)
HOURS = 12  # how long the faults go on


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
        """Return the truth of an hour's bar (kWh), as the recorder compiles it.

        A poll at a whole hour counts in that hour: the bar holds what flowed from the poll
        before the hour to the one before the next.
        """
        return (self._wh(key, hour + 3600 - STEP) - self._wh(key, hour - STEP)) / 1000

    def hour_bar_tolerance(self, key: str, hour: float) -> float:
        """Return how far an hour's bar may be from `hour_bar`.

        The records place what a span missed in the hours it flowed in: up to a poll's worth
        of energy at either end of the hour; and a Wh of rounding.
        """
        before = self._wh(key, hour) - self._wh(key, hour - STEP)
        last = self._wh(key, hour + 3600) - self._wh(key, hour + 3600 - STEP)
        return (before + last) / 1000 + 0.002

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
            do_adhoc_statistics(self.hass, start=datetime.fromtimestamp(step_end - STEP, UTC))
            await settle(self.hass)


async def start_day(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> tuple[Day, dict[str, float]]:
    """Set up the mains' Pro 3EM, the inverters' Pro EM-50 and a site over both, at DAY_START.

    Returns the day, and its truth at the start.
    """
    freezer.move_to(DAY_START)
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


async def test_hours_of_faults_count_every_watt_hour_once(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    sim_clock: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    day, start_truth = await start_day(hass, simulator, sim_clock, freezer)
    mains, inverters = day.mains, day.inverters
    faults = {
        # 01:07 the mains reboots and forgets the last 2 minutes of its counters.
        1 * 60 + 7: lambda: mains.reboot(invalid_for=30, rollback=True),
        # 02:22 the inverter's data is cleared (its counters restart at 0).
        2 * 60 + 22: inverters.reset_counters,
        # 04:31 a corrupt reply: phase a's counters read 1e308 once.
        4 * 60 + 31: lambda: mains.corrupt_counters("a", 1e308),
        # 06:46 the solar counter overflows for two reads.
        6 * 60 + 46: lambda: inverters.corrupt_counters("0", 4294967295.0, reads=2),
        # 09:53 the inverter reboots in the middle of the morning's production.
        9 * 60 + 53: lambda: inverters.reboot(invalid_for=90, rollback=True),
        # 11:04 the mains reboots while exporting, and misses a poll.
        11 * 60 + 4: lambda: mains.reboot(invalid_for=1, rollback=True),
        # 03:12 to 05:08 the mains is off the network (the corrupt reply is its first).
        3 * 60 + 12: lambda: mains.set_online(False),
        5 * 60 + 8: lambda: mains.set_online(True),
        # 07:33 to 09:21 the inverters' meter is too, in the morning's production, and from
        # 10:37 to 11:19 (an outage that leaves no hour without a reading).
        7 * 60 + 33: lambda: inverters.set_online(False),
        9 * 60 + 21: lambda: inverters.set_online(True),
        10 * 60 + 37: lambda: inverters.set_online(False),
        11 * 60 + 19: lambda: inverters.set_online(True),
    }
    await day.run(HOURS * 60 + 75, faults)  # the hours, and long enough for the records to tell
    await assert_counted_once(day, start_truth, HOURS)


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
        assert counted == pytest.approx(expected, abs=within_wh / 1000), entity_id
        for hour in range(int(DAY_START.timestamp()), int(last_hour) + 1, 3600):
            assert result.get(hour, 0.0) == pytest.approx(
                day.hour_bar(key, hour), abs=day.hour_bar_tolerance(key, hour)
            ), (entity_id, datetime.fromtimestamp(hour, UTC))


def reload_while_correcting(hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Reload each entry once, while its history run reads the recorder after planning a fix.

    The read (slow on a big database) waits until the reload cancelled the run. Returns the
    entries reloaded.
    """
    reloaded: set[str] = set()
    due: list[str] = []
    for history in (MeterHistory, SiteHistory):

        def corrections(
            self: MeterHistory | SiteHistory,
            planned: Callable[[Any], dict[str, dict[int, float]]] = history._span_corrections,
        ) -> dict[str, dict[int, float]]:
            found = planned(self)
            if found and self.entry.entry_id not in reloaded:
                reloaded.add(self.entry.entry_id)
                due.append(self.entry.entry_id)
            return found

        monkeypatch.setattr(history, "_span_corrections", corrections)
    read = history_import._async_rows

    async def rows(*args: Any, **kwargs: Any) -> Any:
        if due:
            hass.async_create_task(hass.config_entries.async_reload(due.pop()))
            await asyncio.Event().wait()
        return await read(*args, **kwargs)

    monkeypatch.setattr(history_import, "_async_rows", rows)
    return reloaded


async def test_a_reload_while_the_history_fixes_reboots_counts_every_watt_hour_once(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    sim_clock: Clock,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run cancelled after it planned what reboots missed plans it again after the reload."""
    day, start_truth = await start_day(hass, simulator, sim_clock, freezer)
    mains, inverters = day.mains, day.inverters
    reloaded = reload_while_correcting(hass, monkeypatch)
    forgotten: dict[frozenset[tuple[str, int]], Mapping[str, ShortCount]] = {}
    forget = SiteCoordinator.forget_short_counts

    def noting(
        self: SiteCoordinator, spans: Iterable[tuple[str, int]], told: Mapping[str, ShortCount]
    ) -> None:
        forgotten[frozenset(spans)] = told  # the last time each
        forget(self, spans, told)

    monkeypatch.setattr(SiteCoordinator, "forget_short_counts", noting)
    faults = {
        # 01:09 the mains reboots and forgets the last 4 minutes of its counters, and at 01:39
        # the inverters' meter.
        1 * 60 + 9: lambda: mains.reboot(invalid_for=30, rollback=True),
        1 * 60 + 39: lambda: inverters.reboot(invalid_for=30, rollback=True),
    }
    # On into the morning: what the site's consumption and self-consumed solar were forgiven at
    # night must not be given again when their sums rise.
    await day.run(7 * 60 + 75, faults)
    # The meters' runs and the site's were each cancelled once.
    assert len(reloaded) == 3
    await assert_counted_once(day, start_truth, 7)
    # The run that corrected each reboot's span was told what the site forgave of it, and forgot
    # it: the inverters' was planned again after the reload (lost with the cancelled run, it
    # would be given again by the morning: 17 Wh more self-consumed solar); the mains numbered
    # its total's span after its phases' (the site reads those).
    forgiven = {
        meter_id: told["self_consumed_solar"].forgiven
        for spans, told in forgotten.items()
        if "self_consumed_solar" in told
        for meter_id, _ in spans
    }
    assert forgiven.keys() == {mains.mac, inverters.mac}
    assert min(forgiven.values()) > 0


async def test_a_meter_reloaded_while_away_and_back_with_a_refused_reading_is_filled_once(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    sim_clock: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The refused first reply makes the outage a span of phase a's counters and the total's.
    Set up again after it, the mains' hourly runs come at another minute of the hour: one finds
    the gap in the statistics before the records tell the span, and leaves it to the span."""
    day, start_truth = await start_day(hass, simulator, sim_clock, freezer)
    mains = day.mains
    (entry,) = (
        entry for entry in hass.config_entries.async_entries(DOMAIN) if entry.title == "Mains"
    )

    def reload_mains() -> None:
        hass.async_create_task(hass.config_entries.async_reload(entry.entry_id))

    faults = {
        # 02:12 to 04:08 the mains is off the network, its first reply back carries 1e308 on
        # phase a, and at 02:54 its entry is reloaded (set up again once it answers).
        2 * 60 + 12: lambda: mains.set_online(False),
        2 * 60 + 40: lambda: mains.corrupt_counters("a", 1e308),
        2 * 60 + 54: reload_mains,
        4 * 60 + 8: lambda: mains.set_online(True),
    }
    await day.run(5 * 60 + 75, faults)
    await assert_counted_once(day, start_truth, 5)


@pytest.mark.parametrize(
    ("cut", "back", "inverters_away", "hours"),
    [
        # 02:17 a power cut; Home Assistant is up again at 02:55, the meters answer from 02:37.
        pytest.param(2 * 60 + 17, 2 * 60 + 55, 20, 7, id="home-assistant-down-38-minutes"),
        # 03:17 to 05:40, into the morning's production.
        pytest.param(3 * 60 + 17, 5 * 60 + 40, 20, 8, id="home-assistant-down-into-the-morning"),
        # 03:17 the meters update their firmware, Home Assistant runs on: the mains answers
        # from 03:37, the inverters' meter from 03:57.
        pytest.param(3 * 60 + 17, None, 40, 8, id="home-assistant-up"),
    ],
)
async def test_both_meters_rebooting_together_count_every_watt_hour_once(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    sim_clock: Clock,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    cut: int,
    back: int | None,
    inverters_away: int,
    hours: int,
) -> None:
    """Both meters reboot at minute `cut` with their counters rolled back, and Home Assistant
    is killed with them (what it had not written is lost) until minute `back` (None: it runs
    on). The site's consumption and self-consumed solar wait for both meters: one accrual, one
    correction.
    """
    day, start_truth = await start_day(hass, simulator, sim_clock, freezer)
    mains, inverters = day.mains, day.inverters
    entries = hass.config_entries.async_entries(DOMAIN)
    site = next(entry for entry in entries if entry.data.get(CONF_KIND) == KIND_SITE)
    meters = [entry for entry in entries if entry is not site]

    async def stopped() -> None:
        for entry in (site, *meters):
            await hass.config_entries.async_unload(entry.entry_id)

    async def started() -> None:
        for entry in (*meters, site):
            await hass.config_entries.async_setup(entry.entry_id)

    on_disk: dict[str, Any] = {}

    def reboot() -> None:
        mains.reboot(invalid_for=20 * MINUTE, rollback=True)
        inverters.reboot(invalid_for=inverters_away * MINUTE, rollback=True)
        if back is not None:
            on_disk.update(
                {key: copy.deepcopy(data) for key, data in hass_storage.items() if DOMAIN in key}
            )
            hass.async_create_task(stopped())

    def restart() -> None:
        # Only what was on disk at the cut survives it.
        for key in [key for key in hass_storage if DOMAIN in key]:
            del hass_storage[key]
        hass_storage.update(on_disk)
        hass.async_create_task(started())

    faults = {cut: reboot} if back is None else {cut: reboot, back: restart}
    await day.run(hours * 60 + 75, faults)  # into the morning: the net flows' sums rise again
    # After the kill the counters restart from the totals recorded, which are rounded to the Wh.
    await assert_counted_once(day, start_truth, hours, within_wh=1.0 if back is None else 1.5)
