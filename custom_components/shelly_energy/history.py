"""History from the meters' stored records, written into the energy sensors' statistics.

Each meter's `MeterHistory` reads the records the device keeps (about 60 days) and imports them
as hourly long-term statistics of the meter's own energy sensors, by the rules of
`energy.history.plan_fill`: everything before the first live hour on day one, and every gap
Home Assistant left (down, or the meter unreachable) afterwards, never counting twice what it
recorded live. A `SiteHistory` does the same for an energy site's energy sensors, from its
meters' records interval by interval.

Runs: when an entry is set up (day one, in the background), every hour, and when a meter answers
again after being unreachable; `async_run` with a date for the backfill action. A run reads
records only from the first hour that needs them; a meter's day-one progress is stored, so that
an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import (
    async_import_statistics,
    statistics_during_period,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import MAJOR_VERSION, MINOR_VERSION, UnitOfEnergy
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_connect, async_dispatcher_send
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .const import (
    CONF_REVERSED_CHANNELS,
    DOMAIN,
    EVENT_HISTORY_IMPORTED,
    HISTORY_CHECK_INTERVAL,
)
from .coordinator import MeterCoordinator, SiteCoordinator
from .devices import entry_device
from .energy.history import (
    IMPORTED,
    SITE_SERIES,
    MeterHours,
    MeterIntervals,
    SiteHours,
    StatRow,
    meter_series,
    plan_fill,
    records_needed_since,
    site_series,
)
from .energy.site import Role
from .meter.client import MeterError
from .meter.records import NoStoredRecordsError

_LOGGER = logging.getLogger(__name__)

STORAGE_VERSION: Final = 1
# How far back the statistics are read to find gaps: the devices keep about 60 days.
LOOKBACK: Final = timedelta(days=62)
# How often a run's progress is shown and a day-one import's kept, at most (seconds), and how
# soon after it is kept it is written.
PROGRESS_INTERVAL: Final = 1.0
SAVE_DELAY: Final = 10
# Writing statistics from this version on needs the unit class, which older versions refuse.
UNIT_CLASS_SINCE: Final = (2025, 11)

_HISTORIES: HassKey[dict[str, MeterHistory]] = HassKey(f"{DOMAIN}_histories")


def signal_history_updated(entry_id: str) -> str:
    """Return the signal sent when an entry's history progress changes."""
    return f"{DOMAIN}_history_{entry_id}"


SIGNAL_METER_HISTORY_DONE: Final = f"{DOMAIN}_meter_history_done"


class HistoryStatus(StrEnum):
    """Where an entry's history import stands."""

    WAITING = "waiting"
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"


@dataclass(slots=True)
class HistoryProgress:
    """What the History import sensor and diagnostics show."""

    status: HistoryStatus = HistoryStatus.WAITING
    percent: float = 0.0
    imported_until: datetime | None = None  # the end of the records read so far
    records: int = 0  # records read by the current or last run
    hours: int = 0  # hours written by the last run
    last_run: datetime | None = None  # when the last run ended
    error: str | None = None  # why the last run failed


def statistic_metadata(statistic_id: str) -> dict[str, Any]:
    """Return the metadata of an energy sensor's statistics, for the running version."""
    metadata: dict[str, Any] = {
        "mean_type": StatisticMeanType.NONE,
        "has_sum": True,
        "name": None,
        "source": "recorder",
        "statistic_id": statistic_id,
        "unit_of_measurement": UnitOfEnergy.KILO_WATT_HOUR,
    }
    if (MAJOR_VERSION, MINOR_VERSION) >= UNIT_CLASS_SINCE:
        metadata["unit_class"] = "energy"
    return metadata


async def _async_rows(
    hass: HomeAssistant, statistic_ids: set[str], start: int
) -> dict[str, list[StatRow]]:
    """Return the hourly rows of statistics from `start` on, oldest first."""
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        dt_util.utc_from_timestamp(start),
        None,
        statistic_ids,
        "hour",
        None,
        {"state", "sum"},
    )
    return {
        statistic_id: [
            StatRow(int(row["start"]), row.get("state") or 0.0, row.get("sum") or 0.0)
            for row in found.get(statistic_id, [])
        ]
        for statistic_id in statistic_ids
    }


def history_store(hass: HomeAssistant, entry: ConfigEntry) -> Store[dict[str, Any]]:
    """Return where a meter's or site's history progress is stored."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.history.{entry.entry_id}")


def _write(hass: HomeAssistant, statistic_id: str, rows: tuple[StatRow, ...]) -> None:
    async_import_statistics(
        hass,
        statistic_metadata(statistic_id),  # type: ignore[arg-type]
        [
            {"start": dt_util.utc_from_timestamp(row.start), "state": row.state, "sum": row.sum}
            for row in rows
        ],
    )


class _History:
    """What meters and sites share: one run at a time, the statistics, progress and the event."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self.progress = HistoryProgress()
        self._store = history_store(hass, entry)
        self._state: dict[str, Any] = {}  # as stored: day one done, hours checked, own rows
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None  # the last run started in the background

    def _series(self) -> tuple[str, ...]:
        """Return the keys of the entry's energy series."""
        raise NotImplementedError

    def _unique_id_prefix(self) -> str:
        """Return what the unique ids of the entry's entities start with."""
        raise NotImplementedError

    def device_identifier(self) -> str:
        """Return the identifier of the entry's device in the integration's domain."""
        raise NotImplementedError

    async def _async_read(self, since: int | None) -> dict[str, dict[int, float]]:
        """Return each series' energy (kWh) per complete hour from `since` on (None: all)."""
        raise NotImplementedError

    def _counter(self, key: str) -> float:
        """Return a series' counter now (kWh), for provisional rows."""
        raise NotImplementedError

    @callback
    def _after_run(self) -> None:
        """Tell whom it concerns that a run ended."""

    def _ready(self) -> bool:
        """Return whether a run can start now."""
        return True

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Run now (if ready) in the background and every hour, until the returned callback."""
        if self._ready():
            self.run_in_background()
        return async_track_time_interval(
            self.hass,
            self._hourly,
            HISTORY_CHECK_INTERVAL,
            name=f"Shelly Energy history of {self.entry.title}",
        )

    @callback
    def _hourly(self, _now: datetime) -> None:
        self.run_in_background()

    @callback
    def run_in_background(self) -> None:
        """Start a run, unless one is on its way or the device keeps no records."""
        if (
            self._task is not None and not self._task.done()
        ) or self.progress.status is HistoryStatus.UNSUPPORTED:
            return
        self._task = self.entry.async_create_background_task(
            self.hass, self.async_run(), f"Shelly Energy history of {self.entry.title}"
        )

    def _statistic_ids(self) -> dict[str, str]:
        """Return the entity ids of the series that have an energy sensor, by series."""
        registry = er.async_get(self.hass)
        prefix = self._unique_id_prefix()
        found = {
            key: registry.async_get_entity_id("sensor", DOMAIN, f"{prefix}_{key}")
            for key in self._series()
        }
        return {key: entity_id for key, entity_id in found.items() if entity_id is not None}

    async def async_run(self, since: int | None = None) -> None:
        """Import what is missing, from `since` on if given; the progress says how it went."""
        async with self._lock:
            started = time.monotonic()
            self._state = await self._store.async_load() or {}
            progress = self.progress
            progress.status, progress.records, progress.percent = HistoryStatus.IMPORTING, 0, 0.0
            self._updated()
            try:
                progress.hours = await self._async_import(since)
            except NoStoredRecordsError:
                progress.status = HistoryStatus.UNSUPPORTED
                self._updated()
                return
            except (MeterError, OSError) as err:
                _LOGGER.warning(
                    "The history of %s could not be imported: %s", self.entry.title, err
                )
                progress.status, progress.error = HistoryStatus.FAILED, str(err)
                self._updated()
                return
            except asyncio.CancelledError:
                await self._store.async_save(self._state)  # resume from here next time
                raise
            progress.status, progress.percent, progress.error = HistoryStatus.DONE, 100.0, None
            progress.last_run = dt_util.utcnow()
            self._updated()
            device = entry_device(self.hass, self.entry.entry_id, self.device_identifier())
            self.hass.bus.async_fire(
                EVENT_HISTORY_IMPORTED,
                {
                    "entry_id": self.entry.entry_id,
                    "device_id": device.id if device else None,
                    "records": progress.records,
                    "hours": progress.hours,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            self._after_run()

    async def _async_import(self, since: int | None) -> int:
        """Plan and write the rows of every series; return the hours written."""
        statistic_ids = self._statistic_ids()
        if not statistic_ids:
            return 0
        window = int(dt_util.utcnow().timestamp() - LOOKBACK.total_seconds())
        own_until: dict[str, int] = self._state.setdefault("own_until", {})
        if since is None and self._state.get("day_one_done"):
            rows = await _async_rows(self.hass, set(statistic_ids.values()), window)
            after = self._state.get("checked_until", 0)
            wanted = [
                hour
                for key, statistic_id in statistic_ids.items()
                if (
                    hour := records_needed_since(
                        rows[statistic_id], after=after, own_until=own_until.get(key)
                    )
                )
                is not None
            ]
            if not wanted:
                return 0
            since = min(wanted)
        energy = await self._async_read(since)
        rows = await _async_rows(self.hass, set(statistic_ids.values()), window)
        written: set[int] = set()
        for key, statistic_id in statistic_ids.items():
            plan = plan_fill(
                rows[statistic_id],
                energy.get(key, {}),
                own_until=own_until.get(key),
                state=self._counter(key),
            )
            if plan.own_until is None:
                own_until.pop(key, None)
            else:
                own_until[key] = plan.own_until
            if plan.rows:
                _write(self.hass, statistic_id, plan.rows)
                written.update(row.start for row in plan.rows)
        self._state["day_one_done"] = True
        self._state.pop("partial", None)
        last_hours = [max(hours) for hours in energy.values() if hours]
        if last_hours:
            self._state["checked_until"] = max(self._state.get("checked_until", 0), *last_hours)
        await self._store.async_save(self._state)
        return len(written)

    @callback
    def _updated(self) -> None:
        async_dispatcher_send(self.hass, signal_history_updated(self.entry.entry_id))

    def _read_until(self, since: int, end: int) -> None:
        """Show that a run reading from `since` has read the records up to `end`."""
        span = max(time.time() - since, 1.0)
        self.progress.imported_until = dt_util.utc_from_timestamp(end)
        self.progress.percent = round(min(100.0 * (end - since) / span, 99.9), 1)
        self._updated()

    def diagnostics(self) -> dict[str, Any]:
        """Return the progress and what is stored, for diagnostics."""
        progress = self.progress
        return {
            "status": progress.status,
            "percent": progress.percent,
            "imported_until": progress.imported_until,
            "records": progress.records,
            "hours": progress.hours,
            "last_run": progress.last_run,
            "error": progress.error,
            "stored": {key: value for key, value in self._state.items() if key != "partial"},
        }


def meter_histories(hass: HomeAssistant) -> dict[str, MeterHistory]:
    """Return the histories of the loaded meters, by MAC."""
    return hass.data.setdefault(_HISTORIES, {})


class MeterHistory(_History):
    """A meter's stored records as statistics of its energy sensors."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, coordinator: MeterCoordinator
    ) -> None:
        """Prepare the history of a loaded meter."""
        super().__init__(hass, entry)
        self.coordinator = coordinator
        info = coordinator.info
        self._series_keys = meter_series(info.channel_ids, three_phase=info.three_phase)
        # The records per interval of the last read, for the meter's sites, and since when.
        self.intervals: MeterIntervals | None = None
        self._intervals_since: int | None = None
        self._reachable = True

    def _series(self) -> tuple[str, ...]:
        return self._series_keys

    def _unique_id_prefix(self) -> str:
        return self.coordinator.info.mac

    def device_identifier(self) -> str:
        """Return the meter's device identifier: its MAC."""
        return self.coordinator.info.mac

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Run now, every hour and when the meter answers again; serve the meter's sites."""
        stop_runs = super().async_start()
        stop_listening = self.coordinator.async_add_listener(self._meter_updated)
        histories = meter_histories(self.hass)
        mac = self.coordinator.info.mac
        histories[mac] = self

        @callback
        def stop() -> None:
            stop_runs()
            stop_listening()
            histories.pop(mac, None)

        return stop

    @callback
    def _meter_updated(self) -> None:
        reachable = self.coordinator.last_update_success
        if reachable and not self._reachable:
            self.run_in_background()
        self._reachable = reachable

    @callback
    def _after_run(self) -> None:
        async_dispatcher_send(self.hass, SIGNAL_METER_HISTORY_DONE, self.coordinator.info.mac)

    def _new_hours(self) -> MeterHours:
        info = self.coordinator.info
        return MeterHours(
            info.channel_ids,
            three_phase=info.three_phase,
            reversed_channels=frozenset(self.entry.options.get(CONF_REVERSED_CHANNELS, ())),
            keep_intervals=True,
        )

    async def _async_read(self, since: int | None) -> dict[str, dict[int, float]]:
        hours = self._new_hours()
        day_one = not self._state.get("day_one_done")
        if day_one and (partial := self._state.get("partial")) is not None:
            try:
                hours.restore(partial)  # resume the interrupted day-one import
                since = hours.end
            except ValueError:
                _LOGGER.debug("%s: the saved import is of another layout", self.entry.title)
        start, shown = since, 0.0
        async for batch in self.coordinator.client.records(since):
            hours.add(batch)
            del batch  # not kept while the next one is read (see RecordMerger)
            start = start if start is not None else hours.first_hour
            # Batches can be a few records each: show and keep the progress now and then.
            if start is None or time.monotonic() - shown < PROGRESS_INTERVAL:
                continue
            shown = time.monotonic()
            self.progress.records = hours.records
            self._read_until(start, hours.end)
            if day_one:
                self._state["partial"] = hours.to_dict()
                self._store.async_delay_save(lambda: self._state, SAVE_DELAY)
        self.progress.records = hours.records
        self.intervals, self._intervals_since = hours.intervals, since
        return hours.complete_hours()

    async def async_intervals(self, since: int | None) -> MeterIntervals | None:
        """Return the records per interval from `since` on (None: all), reading if needed.

        Raises NoStoredRecordsError for a meter that keeps none.
        """
        async with self._lock:
            covered = self._intervals_since is None or (
                since is not None and self._intervals_since <= since
            )
            if self.intervals is None or not covered:
                hours = self._new_hours()
                async for batch in self.coordinator.client.records(since):
                    hours.add(batch)
                self.intervals, self._intervals_since = hours.intervals, since
            return self.intervals

    def _counter(self, key: str) -> float:
        channel_id, _, quantity = key.partition("_")
        reading = self.coordinator.data.channel(channel_id)
        value = (
            None
            if reading is None
            else (reading.energy_in if quantity == IMPORTED else reading.energy_out)
        )
        return 0.0 if value is None else value / 1000


class SiteHistory(_History):
    """An energy site's flows, from its meters' records, as statistics of its energy sensors."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, coordinator: SiteCoordinator
    ) -> None:
        """Prepare the history of a loaded site."""
        super().__init__(hass, entry)
        self.coordinator = coordinator
        self._meter_ids = {
            ref.meter_id
            for ref, role in coordinator.config.roles.items()
            if role in (Role.GRID, Role.SOLAR, Role.BATTERY)
        }

    def _series(self) -> tuple[str, ...]:
        return site_series()

    def _unique_id_prefix(self) -> str:
        return self.entry.entry_id

    def device_identifier(self) -> str:
        """Return the site's device identifier."""
        return f"site_{self.entry.entry_id}"

    def _ready(self) -> bool:
        """Return whether all the site's meters are set up (at startup they may come later)."""
        return self._meter_ids <= meter_histories(self.hass).keys()

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Run now, every hour, and after each of the site's meters imported its history."""
        stop_runs = super().async_start()

        @callback
        def meter_done(mac: str) -> None:
            if mac in self._meter_ids:
                self.run_in_background()

        stop_listening = async_dispatcher_connect(self.hass, SIGNAL_METER_HISTORY_DONE, meter_done)

        @callback
        def stop() -> None:
            stop_runs()
            stop_listening()

        return stop

    async def _async_read(self, since: int | None) -> dict[str, dict[int, float]]:
        histories = meter_histories(self.hass)
        if missing := sorted(self._meter_ids - histories.keys()):
            raise MeterError(f"the site's meters {', '.join(missing)} are not set up")
        meters: dict[str, MeterIntervals] = {}
        for meter_id in sorted(self._meter_ids):
            intervals = await histories[meter_id].async_intervals(since)
            if intervals is None:
                return {}  # a meter without records yet
            meters[meter_id] = intervals
        site_hours = SiteHours(self.coordinator.config, meters)
        for _ in site_hours.steps():
            await asyncio.sleep(0)  # let the event loop breathe between chunks
        self.progress.records = site_hours.intervals
        return site_hours.complete_hours()

    def _counter(self, key: str) -> float:
        field = next(name for name, series in SITE_SERIES.items() if series == key)
        value = getattr(self.coordinator.data.energy, field) if self.coordinator.data else None
        return 0.0 if value is None else value / 1000
