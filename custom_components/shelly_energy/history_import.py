"""History from the meters' stored records, written into the energy sensors' statistics.

Each meter's `MeterHistory` reads the records the device keeps (about 60 days) and imports them
as hourly long-term statistics of the meter's own energy sensors, by the rules of
`energy.history_plan.plan_fill`: everything before the first live hour on day one, and every gap
Home Assistant left (down, or the meter unreachable) afterwards, never counting twice what it
recorded live. A `SiteHistory` does the same for an energy site's energy sensors, from its
meters' records interval by interval, and settles and measures again the periods a gap covered
(`energy.record_periods`), moving the settled grid sensors' statistics with them.

Runs: when an entry is set up (day one, in the background), every hour, and when a meter answers
again after being unreachable; `async_run` with a date for the backfill action. A run reads
records only from the first hour that needs them; a meter's day-one progress is stored, so that
an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Final, Literal

from homeassistant.components.recorder.core import Recorder
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
from homeassistant.helpers.event import async_call_later, async_track_time_interval
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .const import (
    CONF_REVERSED_CHANNELS,
    DOMAIN,
    EVENT_HISTORY_IMPORTED,
    HISTORY_CHECK_INTERVAL,
)
from .coordinator import (
    SENSOR_METER_ID,
    MeterCoordinator,
    SiteCoordinator,
    load_series,
    loaded_meters,
)
from .devices import entry_device
from .energy.counter import Unaccounted
from .energy.history_plan import (
    EXPORTED,
    HOUR,
    IMPORTED,
    NET_SERIES,
    SITE_SERIES,
    FillPlan,
    MeterHours,
    MeterIntervals,
    SiteHours,
    StatRow,
    load_energy_between,
    merge_corrections,
    meter_series,
    missing_rows,
    never_negative,
    outage_hours,
    per_hour,
    plan_day_one,
    plan_fill,
    records_needed_since,
    rows_left_behind,
    sharing,
    site_energy_between,
    site_fault_corrections,
    site_series,
    span_corrections,
    taken_from_bars,
    with_corrections,
    within_five_minutes,
    within_hours,
    without_negative_bar,
)
from .energy.record_periods import (
    FIVE_MINUTES,
    SETTLED_FLOWS,
    RecordPeriods,
    five_minutes_of,
    hour_of,
    settlement_moves,
)
from .energy.site import ChannelRef, Role
from .meter.counters import CounterSpan
from .meter.errors import MeterError, NoStoredRecordsError
from .recorded_states import async_last_readings
from .recorder_query import async_query
from .storage import DurableStore

_LOGGER = logging.getLogger(__name__)

# How far back the statistics are read to find gaps: the devices keep about 60 days.
LOOKBACK: Final = timedelta(days=62)
# How often a run's progress is shown and a day-one import's kept, at most (seconds), and how
# soon after it is kept it is written.
PROGRESS_INTERVAL: Final = 1.0
SAVE_DELAY: Final = 10
# A correction smaller than this (kWh) is the records' rounding, not energy the counter missed.
MIN_CORRECTION_KWH: Final = 0.0005
# A span is corrected once the hour it ended in was over this long ago (seconds): the recorder
# has compiled that hour's statistics by then.
SPAN_SETTLE_S: Final = 900
# How long a site's span correction waits for the site's rows of its hour or later (seconds): a
# site that waits for another meter has none meanwhile.
SITE_ROWS_WAIT_S: Final = 6 * 3600
# How soon day one checks again for the recorder's first rows of a new series (seconds): after
# its next 5-minute statistics.
CONTINUATION_CHECK_S: Final = 360
CONTINUATION_GIVE_UP_S: Final = 86_400
# Writing statistics from this version on needs the unit class, which older versions refuse.
UNIT_CLASS_SINCE: Final = (2025, 11)

_HISTORIES: HassKey[dict[str, MeterHistory]] = HassKey(f"{DOMAIN}_histories")
# A counter's direction and the energy series it is in.
_SERIES_KEY: Final = {"in": IMPORTED, "out": EXPORTED}
# A site's energy series by key, and the `SiteEnergy` field behind each.
_SITE_FIELDS: Final = {key: field for field, key in SITE_SERIES.items()}
# The site series that need no grid: each with its flow (`SiteAccumulator.flow_started`) and role.
_GRIDLESS_SERIES: Final = {
    SITE_SERIES["solar_production"]: ("solar", Role.SOLAR),
    SITE_SERIES["battery_charged"]: ("battery", Role.BATTERY),
    SITE_SERIES["battery_discharged"]: ("battery", Role.BATTERY),
}


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
    hass: HomeAssistant,
    statistic_ids: set[str],
    start: int,
    period: Literal["5minute", "hour"] = "hour",
) -> dict[str, list[StatRow]]:
    """Return the rows of statistics (hourly, or 5-minute) from `start` on, oldest first."""
    found = await async_query(
        hass,
        statistics_during_period,
        hass,
        dt_util.utc_from_timestamp(start),
        None,
        statistic_ids,
        period,
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


def history_store_key(entry: ConfigEntry) -> str:
    """Return where a meter's or site's history progress is stored."""
    return f"{DOMAIN}.history.{entry.entry_id}"


def _series_of(counter: str) -> str:
    """Return the series a meter counter's total shows in ("a_in" shows in "a_imported")."""
    channel_id, _, direction = counter.rpartition("_")
    return f"{channel_id}_{_SERIES_KEY[direction]}"


def _compiled_before() -> int:
    """Return the hour before which the recorder has compiled every hour's statistics."""
    compiled = dt_util.utcnow().timestamp() - SPAN_SETTLE_S
    return hour_of(compiled)


def _span_ready(span: Unaccounted, records_end: float) -> bool:
    """Return whether a span can be corrected: the records tell it, its hour is compiled.

    A correction moves the rows that exist, and must see the bars it changes.
    """
    return span.end <= records_end and span.end < _compiled_before()


def _adjust(recorder: Recorder, statistic_id: str, moment: int, kwh: float) -> None:
    """Add `kwh` to the sums of a series' rows (hourly and 5-minute) starting from `moment` on."""
    recorder.async_adjust_statistics(
        statistic_id, dt_util.utc_from_timestamp(moment), kwh, UnitOfEnergy.KILO_WATT_HOUR
    )


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
        self._state: dict[str, Any] = {}  # as stored: day one done, hours checked, spans done
        self._restored = False
        self._store: DurableStore[dict[str, Any]] = DurableStore(
            hass,
            history_store_key(entry),
            within=SAVE_DELAY,
            snapshot=self._durable_state,
        )
        self._before_run: dict[str, Any] | None = None  # the state before a run's plan
        # What else a plan changes when its changes are queued (none while it plans).
        self._planned: list[Callable[[], None]] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None  # the last run started in the background
        self._cancel_continuation: CALLBACK_TYPE | None = None
        self._started_at = dt_util.utcnow().timestamp()  # set up (a start, a reload)

    def _series(self) -> tuple[str, ...]:
        """Return the keys of the entry's energy series."""
        raise NotImplementedError

    def _unique_id_prefix(self) -> str:
        """Return what the unique ids of the entry's entities start with."""
        raise NotImplementedError

    def device_identifier(self) -> str:
        """Return the identifier of the entry's device in the integration's domain."""
        raise NotImplementedError

    async def _async_read(self, since: int | None, until: float) -> dict[str, dict[int, float]]:
        """Return each series' energy (kWh) per complete hour from `since` on (None: all).

        `until`: the records must reach this far: records read before that end earlier are read
        again.
        """
        raise NotImplementedError

    def _counter(self, key: str) -> float:
        """Return a series' published value now (kWh), for the states of imported rows."""
        raise NotImplementedError

    def _first_live(self, key: str) -> float | None:
        """Return when a series published its first value (None: not yet)."""
        raise NotImplementedError

    def _energy_between(self, key: str, start: float, end: float) -> float:
        """Return a series' energy (Wh) over [start, end) from the records last read."""
        raise NotImplementedError

    def _records_end(self) -> float:
        """Return the end of the records last read (0: none)."""
        raise NotImplementedError

    def _new_spans(self) -> list[tuple[int, float]]:
        """Return the (seq, start) of the spans not handled yet, oldest first."""
        raise NotImplementedError

    def _span_corrections(self) -> dict[str, dict[int, float]]:
        """Return the corrections of the spans the records cover, per series; mark them done."""
        raise NotImplementedError

    def _records_wanted(self) -> tuple[float, float] | None:
        """Return the span of time whose records a run needs besides its gaps and spans."""
        return None

    def _take_back_elsewhere(
        self,
        key: str,
        hourly_rows: Sequence[StatRow],
        five_minute_rows: Sequence[StatRow],
        placed: Mapping[int, float],
        unplaced: float,
    ) -> tuple[dict[int, float], dict[int, float]]:
        """Return a series' corrections by hour, and the moments of those beyond its hourly rows.

        For `unplaced` kWh of a take-back no hourly row holds (`without_negative_bar`), beside
        the `placed` corrections. What the series booked since its hourly rows gives first:
        the hour it booked it in, once compiled, holds the take-back. First its 5-minute rows
        of an hour not compiled yet; then what it booked since its last 5-minute row, taken
        from the next one once the recorder made it (a pending move: the site booked a wait's
        catch-up at the reading that started this run). Then its live sum gives back the rest,
        if it can (`_lower_sum`: a site's net flow fell where it could not see it, at night,
        before any hour published one). What none can is left to the last corrected hour,
        negative.
        """
        hours = dict(placed)
        recent: dict[int, float] = {}
        rest = unplaced
        if hourly_rows:
            since = hourly_rows[-1].start + HOUR - FIVE_MINUTES
            recent, rest = taken_from_bars(
                [row for row in five_minute_rows if row.start >= since], rest
            )
        pending: dict[str, list[float]] = self._state.setdefault("pending_shifts", {})
        if rest and five_minute_rows and key not in pending:
            taken = min(rest, max(self._counter(key) - five_minute_rows[-1].state, 0.0))
            if taken >= MIN_CORRECTION_KWH:
                pending[key] = [five_minutes_of(dt_util.utcnow().timestamp()), -taken]
                rest -= taken
        if rest and not self._lower_sum(key, rest):
            hours[max(hours)] -= rest
        for hour, kwh in per_hour(recent).items():
            hours[hour] = hours.get(hour, 0.0) + kwh
        return hours, recent

    def _lower_sum(self, key: str, kwh: float) -> bool:
        """Have a series' live sum give `kwh` back (when the plan is queued); False: it can't.

        A site's net flows publish their running sum's highest value: lowered, a sum gives it
        back from what it publishes next.
        """
        return False

    def _day_one_series(self, statistic_ids: Mapping[str, str]) -> set[str]:
        """Return the series whose hours before their first value this run imports.

        Every series, until the first run that did (a series with no value yet waits for a
        later run).
        """
        return set() if self._state.get("day_one_done") else set(statistic_ids)

    async def _async_rebuild(self) -> dict[str, dict[int, float]]:
        """Rebuild what the records last read tell; return the statistics' corrections (kWh)."""
        return {}

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
        stop_hourly = async_track_time_interval(
            self.hass,
            self._hourly,
            HISTORY_CHECK_INTERVAL,
            name=f"Shelly Energy history of {self.entry.title}",
        )

        @callback
        def stop() -> None:
            stop_hourly()
            if self._cancel_continuation is not None:
                self._cancel_continuation()
                self._cancel_continuation = None

        return stop

    @callback
    def _hourly(self, _now: datetime) -> None:
        self.run_in_background()

    @callback
    def run_in_background(self) -> None:
        """Start a run, unless one is on its way, the device keeps no records or HA is stopping.

        Stopping, Home Assistant cancels the runs under way, then closes the recorder's database
        while its threads may still be querying it: a run started after the cancelling (by a
        meter's run that ended, or a meter that answered again) could crash the process.
        """
        if (
            (self._task is not None and not self._task.done())
            or self.progress.status is HistoryStatus.UNSUPPORTED
            or self.hass.is_stopping
        ):
            return
        # Not started eagerly: a run that needs no I/O would be over before a second request in
        # the same turn of the loop, which must join it rather than run again.
        self._task = self.entry.async_create_background_task(
            self.hass,
            self.async_run(),
            f"Shelly Energy history of {self.entry.title}",
            eager_start=False,
        )

    def _statistic_ids(self) -> dict[str, str]:
        """Return the entity ids of the series that have an enabled energy sensor, by series.

        A disabled sensor gets no rows: the recorder would sum it from 0 once it is enabled,
        below the imported rows (a negative hour).
        """
        registry = er.async_get(self.hass)
        registered = {
            entity.unique_id: entity
            for entity in er.async_entries_for_config_entry(registry, self.entry.entry_id)
            if entity.domain == "sensor"
        }
        prefix = self._unique_id_prefix()
        return {
            key: entity.entity_id
            for key in self._series()
            if (entity := registered.get(f"{prefix}_{key}")) is not None and not entity.disabled
        }

    async def async_run(self, since: int | None = None) -> None:
        """Import what is missing, from `since` on if given; the progress says how it went."""
        async with self._lock:
            started = time.monotonic()
            if not self._restored:
                # Once: later runs go on from this state, which can be ahead of the file (a
                # change is written within SAVE_DELAY): read again, a move of the recorder's
                # rows done since would be done twice.
                self._state = await self._store.async_load() or {}
                self._restored = True
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
                await self._store.async_save()  # resume from here next time
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
        # A plan marks what it handles (spans, moves, day ones) in the state as it goes, before
        # the recorder has any of it: until the plan's changes are queued to the recorder, all
        # in one turn of the loop, what may be stored is the state before the run. A run
        # cancelled before (a reload, Home Assistant stopping) leaves it to the next.
        self._before_run = {
            key: copy.deepcopy(value) for key, value in self._state.items() if key != "partial"
        }
        try:
            changes, hours = await self._async_plan(statistic_ids, since)
        except BaseException:
            self._state = self._durable_state()
            raise
        finally:
            self._before_run = None
            changes_beside, self._planned = self._planned, []
        changes.extend(changes_beside)
        for change in changes:
            change()
        moved = await self._async_continue(statistic_ids)
        if changes or moved:
            # What the recorder now has is done: on disk at once, not within SAVE_DELAY (killed
            # meanwhile, the next start would do it again).
            await self._store.async_save()
        else:
            self._store.changed()
        return hours

    def _durable_state(self) -> dict[str, Any]:
        """Return a copy of the state that may be stored now (see `_async_import`)."""
        if self._before_run is None:
            return copy.deepcopy(self._state)
        state = copy.deepcopy(self._before_run)
        if (records_read := self._state.get("partial")) is not None:
            state["partial"] = copy.deepcopy(records_read)  # a day one's progress: kept
        return state

    async def _async_plan(
        self, statistic_ids: dict[str, str], since: int | None
    ) -> tuple[list[Callable[[], None]], int]:
        """Plan every series' rows; return the changes to queue and the hours they write."""
        window = int(dt_util.utcnow().timestamp() - LOOKBACK.total_seconds())
        state = self._state
        day_one = self._day_one_series(statistic_ids)
        spans = self._new_spans()
        # The records needed besides the gaps': from the oldest span, or period to rebuild.
        starts = [start for _, start in spans]
        if (periods := self._records_wanted()) is not None:
            starts.append(periods[0])
        needed = None if not starts else int(min(starts))
        outages: dict[str, set[int]] = {}  # by statistic, in the hours not checked yet
        # By statistic: when each outage hour's last reading was (unix s).
        last_reading: dict[str, dict[int, float]] = {}
        if since is None and not day_one:
            ids = set(statistic_ids.values())
            rows = await _async_rows(self.hass, ids, window)
            after = state.get("checked_until", 0)
            # Outages in the hours not checked yet, and the one before: the recorder's 5-minute
            # rows tell them (no row while unavailable).
            first = max(after, window)
            short = await _async_rows(self.hass, ids, first, "5minute")
            # Home Assistant may have been down from the hour before this entry was set up (not
            # when it was set up for the first time: its day one came after): the recorder can
            # compile 5-minute rows for the time it was down from the last state before (it does
            # when it compiles the missed ones once the sensors are back), and an outage that
            # ended in the next hour leaves no hour without a row.
            down_before_start = (
                {hour_of(self._started_at) - HOUR}
                if state.get("day_one_at", 0.0) < self._started_at
                else set()
            )
            outages = {
                statistic_id: outage_hours(short[statistic_id], first, _compiled_before())
                | down_before_start
                for statistic_id in ids
            }
            stops: dict[str, dict[int, int]] = {}  # where each outage hour's rows stop
            for statistic_id, found in short.items():
                for row in found:
                    if (row_hour := hour_of(row.start)) in outages[statistic_id]:
                        stop_of = stops.setdefault(statistic_id, {})
                        stop_of[row_hour] = max(stop_of.get(row_hour, 0), row.start + FIVE_MINUTES)
            # The sensors are the statistics' entities (the recorder's own statistics).
            last_reading = await async_last_readings(self.hass, stops)
            wanted = [
                hour
                for statistic_id in ids
                if (
                    hour := records_needed_since(
                        rows[statistic_id], after=after, outages=outages[statistic_id]
                    )
                )
                is not None
            ]
            if needed is not None:
                wanted.append(needed - needed % HOUR)
            if not wanted:
                # Every compiled hour is checked: the next run looks at the new ones only (and
                # reads their 5-minute rows, not all since the last records read).
                state["checked_until"] = max(after, _compiled_before() - HOUR)
                return [], 0
            since = min(wanted)
        elif since is not None and needed is not None:
            since = min(since, needed - needed % HOUR)
        # The records must reach the last complete hour a plan may fill, and each day one's
        # first value (a site's meters may have been read last long before).
        now = dt_util.utcnow().timestamp()
        live = [self._first_live(key) for key in day_one]
        until = max([hour_of(now), *(moment for moment in live if moment is not None)])
        energy = await self._async_read(since, until)
        corrections = self._span_corrections()
        # From the first hour of a span the records do not tell yet on, gaps are left to it: its
        # correction moves what the counter booked late, a fill before would move it twice.
        waiting = [start for _, start in self._new_spans()]
        held_from = hour_of(min(waiting)) if waiting else None
        for key, hours in (await self._async_rebuild()).items():
            merge_corrections(corrections, key, hours)
        rows = await _async_rows(self.hass, set(statistic_ids.values()), window)
        recorder = get_instance(self.hass)
        pending: dict[str, list[float]] = state.setdefault("pending_shifts", {})
        changes: list[Callable[[], None]] = []
        written: set[int] = set()
        planned_day_one: list[str] = []
        for key, statistic_id in statistic_ids.items():
            await asyncio.sleep(0)  # a series at a time: each is months of hours
            series_rows = rows[statistic_id]
            fixes = {
                hour: kwh
                for hour, kwh in corrections.get(key, {}).items()
                if abs(kwh) >= MIN_CORRECTION_KWH
            }
            # A pending move of the recorder's rows, once it made hourly ones for its hour.
            if (shift := pending.get(key)) is not None and any(
                row.start >= hour_of(shift[0]) for row in series_rows
            ):
                moment = int(shift[0])
                fixes[moment] = fixes.get(moment, 0.0) + shift[1]
                del pending[key]
            if fixes:
                hours = never_negative(series_rows, per_hour(fixes))
                # Nor may a 5-minute row of a corrected hour fall: read from the hour of the
                # hourly row before the first (its last 5-minute row gives the next its bar),
                # an hour that gives to a take-back included.
                first_hour = min(hours)
                read_from = max(
                    (row.start for row in series_rows if row.start < first_hour),
                    default=first_hour,
                )
                read = await _async_rows(self.hass, {statistic_id}, read_from, "5minute")
                five_minute_rows = read[statistic_id]
                placed, unplaced = without_negative_bar(series_rows, hours)
                if unplaced:
                    hours, recent = self._take_back_elsewhere(
                        key, series_rows, five_minute_rows, placed, unplaced
                    )
                    for moment, kwh in recent.items():
                        fixes[moment] = fixes.get(moment, 0.0) + kwh
                fixes = within_five_minutes(five_minute_rows, within_hours(fixes, hours))
                # What the counters could not count, from the records: added to the recorder's
                # rows from each moment on; the plans below see the rows as they will be.
                changes.extend(
                    partial(_adjust, recorder, statistic_id, moment, kwh)
                    for moment, kwh in sorted(fixes.items())
                )
                series_rows = with_corrections(series_rows, hours)
                # The hourly row of a move from within its hour is written, as are rows for
                # hours Home Assistant missed (a correction there needs one).
                missing = missing_rows(series_rows, hours)
                if to_write := (*rows_left_behind(series_rows, fixes), *missing):
                    changes.append(partial(_write, self.hass, statistic_id, to_write))
                    written.update(row.start for row in missing)
                    series_rows = sorted((*series_rows, *missing), key=lambda row: row.start)
            if key in day_one:
                if (first_live := self._first_live(key)) is None:
                    continue  # nothing published yet: the next run does it
                planned_day_one.append(key)
                live_hour = int(first_live - first_live % HOUR)
                plan = plan_day_one(
                    energy.get(key, {}),
                    first_live,
                    self._energy_between(key, live_hour, first_live) / 1000,
                    self._counter(key),
                )

                if plan.shift is not None and plan.shift[1]:
                    pending[key] = list(plan.shift)
            else:
                device_hours = energy.get(key, {})
                if held_from is not None:
                    device_hours = {
                        hour: kwh for hour, kwh in device_hours.items() if hour < held_from
                    }
                recorded = {
                    hour: self._energy_between(key, hour, moment) / 1000
                    for hour, moment in last_reading.get(statistic_id, {}).items()
                }
                plan = plan_fill(series_rows, device_hours, outages.get(statistic_id, ()), recorded)
                # Rows filled backwards by older versions start below 0: lift the series.
                if series_rows and series_rows[0].start > window + HOUR:
                    first = series_rows[0]
                    if first.sum < 0:
                        changes.append(
                            partial(_adjust, recorder, statistic_id, first.start, -first.sum)
                        )
                        plan = FillPlan(
                            tuple(
                                StatRow(row.start, row.state, row.sum - first.sum)
                                for row in plan.rows
                            )
                        )
            if plan.rows:
                changes.append(partial(_write, self.hass, statistic_id, plan.rows))
                written.update(row.start for row in plan.rows)
        if not state.get("day_one_done"):
            state["day_one_done"], state["day_one_at"] = True, dt_util.utcnow().timestamp()
        # A site's series can start later (see SiteHistory._day_one_series).
        state["day_one_series"] = sorted({*state.get("day_one_series", ()), *planned_day_one})
        state.pop("partial", None)
        state.pop("own_until", None)  # provisional rows of older versions: left as they are
        last_hours = [max(hours) for hours in energy.values() if hours]
        if last_hours:
            # Not beyond the hours the recorder has compiled: a gap's last hour (the catch-up)
            # has no row before, and would never be checked.
            checked = min(max(last_hours), _compiled_before() - HOUR)
            if held_from is not None:
                checked = min(checked, held_from - HOUR)
            state["checked_until"] = max(state.get("checked_until", 0), checked)
        return changes, len(written)

    async def _async_continue(self, statistic_ids: dict[str, str]) -> bool:
        """Move the recorder's rows from a pending move's moment on, once they exist.

        Day one: the recorder sums a new series from 0 at its first value; the imported hours
        before it must lead into it. A settled site's rebuild: the rise it published is taken
        back from the 5-minute row that shows it. Rows the recorder has not made yet are waited
        for (a check soon). Returns whether rows were moved.
        """
        pending: dict[str, list[float]] = self._state.get("pending_shifts", {})
        ids = {statistic_ids[key]: key for key in pending if key in statistic_ids}
        if not ids:
            return False
        since = min(int(moment) for moment, _ in pending.values())
        found = await async_query(
            self.hass,
            statistics_during_period,
            self.hass,
            dt_util.utc_from_timestamp(since),
            None,
            set(ids),
            "5minute",
            None,
            {"sum"},
        )
        hourly = await _async_rows(self.hass, set(ids), hour_of(since))
        recorder = get_instance(self.hass)
        now = dt_util.utcnow().timestamp()
        moved = False
        for statistic_id, key in ids.items():
            moment, kwh = int(pending[key][0]), pending[key][1]
            hour = hour_of(moment)
            if moment == hour or now < hour + HOUR:
                # The hourly row is moved too, or compiled after the move (the recorder's
                # tasks run in order) from the 5-minute rows.
                left_behind = None
                ready = any(row["start"] >= moment for row in found.get(statistic_id, []))
            else:
                # The hour is over: its row, once compiled, is not moved from a moment inside it.
                left_behind = next((row for row in hourly[statistic_id] if row.start == hour), None)
                ready = left_behind is not None
            if ready:
                _adjust(recorder, statistic_id, moment, kwh)
                if left_behind is not None:
                    row = replace(left_behind, sum=left_behind.sum + kwh)
                    _write(self.hass, statistic_id, (row,))
                del pending[key]
                moved = True
            elif now - hour > CONTINUATION_GIVE_UP_S:
                del pending[key]  # the recorder keeps no statistics of it (excluded)
        if pending:
            self._schedule_continuation()
        else:
            self._state.pop("pending_shifts", None)
        self._store.changed()
        return moved

    @callback
    def _schedule_continuation(self) -> None:
        """Check again once the recorder compiled its next 5-minute statistics."""
        if self._cancel_continuation is None:
            self._cancel_continuation = async_call_later(
                self.hass, CONTINUATION_CHECK_S, self._continue_later
            )

    @callback
    def _continue_later(self, _now: datetime) -> None:
        self._cancel_continuation = None
        self.run_in_background()

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

    async def _async_read(self, since: int | None, until: float) -> dict[str, dict[int, float]]:
        hours = self._new_hours()  # read from the meter now: as far as its records go
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
            await asyncio.sleep(0)  # a day's records come at once: a batch at a time
            start = start if start is not None else hours.first_hour
            # Batches can be a few records each: show and keep the progress now and then.
            if start is None or time.monotonic() - shown < PROGRESS_INTERVAL:
                continue
            shown = time.monotonic()
            self.progress.records = hours.records
            self._read_until(start, hours.end)
            if day_one:
                self._state["partial"] = hours.to_dict()
                self._store.changed()
        self.progress.records = hours.records
        if start is not None and hours.records:
            self._read_until(start, hours.end)  # the batches since the one last shown too
        self.intervals, self._intervals_since = hours.intervals, since
        return hours.complete_hours()

    async def async_intervals(
        self, since: int | None, until: float | None = None
    ) -> MeterIntervals | None:
        """Return the records per interval from `since` on (None: all), reading if needed.

        `until`: the records must reach this far (the last read may be older: only the records
        since it are read then, once a record can have been completed since: a Gen1 meter's
        file is downloaded whole). Raises NoStoredRecordsError for a meter that keeps none.
        """
        async with self._lock:
            covered = self._intervals_since is None or (
                since is not None and self._intervals_since <= since
            )
            if self.intervals is None or not covered:
                self.intervals, self._intervals_since = await self._async_intervals(since), since
            elif (
                until is not None
                and until - (end := self.intervals.end) >= self.intervals.period
                and (later := await self._async_intervals(end)) is not None
            ):
                self.intervals.extend(later)
            return self.intervals

    async def _async_intervals(self, since: int | None) -> MeterIntervals | None:
        """Read the records from `since` on (None: all) into intervals."""
        hours = self._new_hours()
        async for batch in self.coordinator.client.records(since):
            hours.add(batch)
        return hours.intervals

    def _first_live(self, key: str) -> float | None:
        counters = self.coordinator.counters
        if counters is None:
            return None
        started = [
            time
            for counter in counters
            if _series_of(counter) == key and (time := counters.started(counter)) is not None
        ]
        return min(started, default=None)

    def _energy_between(self, key: str, start: float, end: float) -> float:
        return 0.0 if self.intervals is None else self.intervals.series_between(key, start, end)

    def _new_spans(self) -> list[tuple[int, float]]:
        counters = self.coordinator.counters
        handled = self._state.get("span_seq", 0)
        spans = () if counters is None else counters.spans
        return [(span.seq, span.span.start) for span in spans if span.seq > handled]

    def _span_corrections(self) -> dict[str, dict[int, float]]:
        counters, intervals = self.coordinator.counters, self.intervals
        if counters is None or intervals is None:
            return {}
        corrections: dict[str, dict[int, float]] = {}
        handled = self._state.get("span_seq", 0)
        for counter_span in counters.spans:
            span = counter_span.span
            if counter_span.seq <= handled:
                continue
            if not _span_ready(span, intervals.end):
                break  # not told by the records, or not compiled by the recorder, yet
            series = _series_of(counter_span.key)
            fixes = span_corrections(
                span.start, span.end, span.counted, partial(intervals.series_between, series)
            )
            merged = corrections.setdefault(series, {})
            for hour, kwh in fixes.items():
                merged[hour] = merged.get(hour, 0.0) + kwh
            handled = counter_span.seq
        self._state["span_seq"] = handled
        return corrections

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
    """An energy site's flows and loads, from its meters' records, as statistics of its sensors."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, coordinator: SiteCoordinator
    ) -> None:
        """Prepare the history of a loaded site."""
        super().__init__(hass, entry)
        self.coordinator = coordinator
        # A Home Assistant power sensor in the grid role keeps no records: only the loads get
        # history then (the site's flows need the grid's energy).
        config = self._config = replace(
            coordinator.config,
            roles={
                ref: role
                for ref, role in coordinator.config.roles.items()
                if ref.meter_id != SENSOR_METER_ID
            },
        )
        self._grid_recorded = config.has_role(Role.GRID)
        self._balance_meter_ids = {
            ref.meter_id
            for ref, role in config.roles.items()
            if role in (Role.GRID, Role.SOLAR, Role.BATTERY)
        }
        # The loads' energy series: the channel and the `LoadEnergy` field of each.
        self._loads = {
            key: (ref, field)
            for ref in config.channels(Role.LOAD)
            for field, key in load_series(ref).items()
        }
        self._meter_ids = self._balance_meter_ids | {
            ref.meter_id for ref, _ in self._loads.values()
        }
        self._intervals: dict[str, MeterIntervals] = {}  # the meters' records last read
        self._periods: RecordPeriods | None = None  # their settlement and demand periods
        # The last hour all the site's series have a row for, as the records were last read
        # (`_async_rows_until`).
        self._rows_until: int | None = None

    def _series(self) -> tuple[str, ...]:
        if self._grid_recorded:
            return (*site_series(), *self._loads)
        # Without the grid's records, the flows that need it start nowhere: the solar and
        # battery flows (which need only their own channels) and the loads start at their own.
        own = (key for key, (_, role) in _GRIDLESS_SERIES.items() if self._config.has_role(role))
        return (*own, *self._loads)

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

    async def _async_read(self, since: int | None, until: float) -> dict[str, dict[int, float]]:
        histories = meter_histories(self.hass)
        if missing := sorted(self._meter_ids - histories.keys()):
            raise _meters_not_set_up(missing)
        meters: dict[str, MeterIntervals] = {}
        self._intervals = {}
        # The records must tell the spans the site corrects and the periods it rebuilds too.
        ends = [span.span.end for _, span in self._meter_spans()]
        if (wanted := self._records_wanted()) is not None:
            ends.append(wanted[1])
        until = max([until, *ends])
        for meter_id in sorted(self._meter_ids):
            balance = meter_id in self._balance_meter_ids
            if (history := histories.get(meter_id)) is None:
                raise _meters_not_set_up([meter_id])  # unloaded while another was read
            try:
                intervals = await history.async_intervals(since, until)
            except NoStoredRecordsError:
                if balance:
                    raise
                continue  # a circuit's meter that keeps none: its loads have no history
            if intervals is None:
                if balance:
                    return {}  # a meter without records yet
                continue
            meters[meter_id] = intervals
        self._intervals = meters
        self._rows_until = await self._async_rows_until()
        site_hours = SiteHours(self._config, meters, self._loads, dt_util.get_default_time_zone())
        for _ in site_hours.steps():
            await asyncio.sleep(0)  # let the event loop breathe between chunks
        self._periods = site_hours.periods
        self.progress.records = site_hours.intervals
        if site_hours.intervals:
            self.progress.imported_until = dt_util.utc_from_timestamp(site_hours.end)
        return site_hours.complete_hours()

    def _first_live(self, key: str) -> float | None:
        accumulator = self.coordinator.accumulator
        if (load := self._loads.get(key)) is not None:
            return accumulator.load_started(load[0])
        if (flow := _GRIDLESS_SERIES.get(key)) is not None:
            return accumulator.flow_started(flow[0])
        return accumulator.started

    def _energy_between(self, key: str, start: float, end: float) -> float:
        if not self._intervals:
            return 0.0
        if (load := self._loads.get(key)) is not None:
            return load_energy_between(self._intervals, *load, start, end)
        field = _SITE_FIELDS[key]
        periods = self._periods
        if periods is not None and periods.settles and field in SETTLED_FLOWS:
            # A settled sensor books each period's net at its end, not the flow as it came.
            return periods.booked_between(start, end)[SETTLED_FLOWS.index(field)]
        flows = site_energy_between(self._config, self._intervals, start, end)
        return float(getattr(flows, field))

    def _day_one_series(self, statistic_ids: Mapping[str, str]) -> set[str]:
        """Return the series whose hours before their first value this run imports.

        As a meter's, and a series that started after the first day one: a role or a load
        added to the site since. Not one that started before it without a sensor then (a
        disabled one, enabled later): the recorder sums it from its first state since, not
        from when the series first published.
        """
        state = self._state
        if not state.get("day_one_done"):
            return super()._day_one_series(statistic_ids)
        if "day_one_at" not in state:  # stored since 2026-12: the first day one was before now
            state["day_one_at"] = dt_util.utcnow().timestamp()
            self._store.changed()
        done, day_one_at = set(state.get("day_one_series", ())), state["day_one_at"]
        return {
            key
            for key in statistic_ids
            if key not in done
            and (first_live := self._first_live(key)) is not None
            and first_live > day_one_at
        }

    def _records_wanted(self) -> tuple[float, float] | None:
        if not self._grid_recorded:
            return None  # no periods to rebuild: the records do not tell the grid
        return self.coordinator.accumulator.records_wanted()

    async def _async_rebuild(self) -> dict[str, dict[int, float]]:
        """Settle and measure again the periods gaps covered, from the records last read.

        A settlement period is settled again once the recorder compiled the hour it was booked
        in (its statistics move), and not while a move of the grid sensors' rows waits (one at a
        time) or the grid is unavailable (what the rebuild publishes must show in this hour).
        """
        periods = self._periods
        if periods is None or self._records_wanted() is None:
            return {}
        state = self._state
        pending = state.get("pending_shifts", {})
        keys = (SITE_SERIES["grid_import"], SITE_SERIES["grid_export"])
        now = dt_util.utcnow().timestamp()
        compiled = now - SPAN_SETTLE_S
        booked_before = compiled - compiled % HOUR
        if (
            not state.get("day_one_done")
            or any(key in pending for key in keys)
            or not self.coordinator.grid_available
        ):
            booked_before = -math.inf
        result = await self.coordinator.async_rebuild(periods.nets, periods.imports, booked_before)
        # The sensors show the new totals from now: the recorder counts a rise in this moment's
        # 5-minute row.
        published_at = dt_util.utcnow().timestamp()
        statistic_ids = self._statistic_ids()
        corrections: dict[str, dict[int, float]] = {}
        for index, key in enumerate(keys):
            # What the recorder counts: the change of the value shown (to the Wh).
            shown = round(result.after[index] / 1000, 3) - round(result.before[index] / 1000, 3)
            moves = settlement_moves(result.rebuilt, index, shown * 1000, published_at)
            corrections[key] = moves.now
            if moves.later is not None and key in statistic_ids:
                # The recorder counts the raised total in this 5-minute row: taken back from it
                # once compiled.
                state.setdefault("pending_shifts", {})[key] = list(moves.later)
        return corrections

    def _meter_spans(self) -> list[tuple[str, CounterSpan]]:
        """Return the spans of the site's meters not handled yet, with each meter's MAC."""
        handled: dict[str, int] = self._state.get("span_seq", {})
        meters = loaded_meters(self.hass)
        found: list[tuple[str, CounterSpan]] = []
        for mac in sorted(self._meter_ids):
            counters = None if (meter := meters.get(mac)) is None else meter.counters
            if counters is not None:
                found.extend(
                    (mac, span) for span in counters.spans if span.seq > handled.get(mac, 0)
                )
        return found

    def _new_spans(self) -> list[tuple[int, float]]:
        return [(span.seq, span.span.start) for _, span in self._meter_spans()]

    async def _async_rows_until(self) -> int | None:
        """Return the last hour all the site's series have a row for, since the spans began.

        None without spans to correct. A series without any row since (a sensor enabled later)
        does not count.
        """
        spans = self._meter_spans()
        if not spans:
            return None
        since = hour_of(min(span.span.start for _, span in spans)) - HOUR
        rows = await _async_rows(self.hass, set(self._statistic_ids().values()), since)
        return min((found[-1].start for found in rows.values() if found), default=None)

    def _ready_spans(self, handled: Mapping[str, int]) -> list[tuple[str, CounterSpan]]:
        """Return the spans to correct now, each meter's in order, with each meter's MAC.

        A span waits until the records tell it and its hour is compiled, and so do the spans
        after it on its meter. It waits too while the site has no row for its hour, or a later
        one (it waits for another meter: the correction would move rows that do not exist), up
        to `SITE_ROWS_WAIT_S`. So does one that an accrual of the net flows took with a span
        that waits: the corrections must count that accrual once, over all of its spans.
        """
        records_end = min(intervals.end for intervals in self._intervals.values())
        rows_until = self._rows_until
        waited_long = dt_util.utcnow().timestamp() - SITE_ROWS_WAIT_S
        ready: dict[str, list[CounterSpan]] = {}
        blocked: set[str] = set()
        for mac, counter_span in self._meter_spans():
            span = counter_span.span
            no_rows = (
                rows_until is not None and rows_until < hour_of(span.end) and span.end > waited_long
            )
            if mac in blocked or no_rows or not _span_ready(span, records_end):
                blocked.add(mac)  # not told by the records, not compiled, or no rows, yet
            else:
                ready.setdefault(mac, []).append(counter_span)
        while (waiting := self._taken_with_waiting(ready, handled)) is not None:
            mac, seq = waiting
            ready[mac] = [counter_span for counter_span in ready[mac] if counter_span.seq < seq]
        return [(mac, counter_span) for mac, spans in ready.items() for counter_span in spans]

    def _taken_with_waiting(
        self, ready: Mapping[str, list[CounterSpan]], handled: Mapping[str, int]
    ) -> tuple[str, int] | None:
        """Return the first ready span (MAC, number) an accrual took with one not ready."""
        numbers = {
            (mac, counter_span.seq) for mac, spans in ready.items() for counter_span in spans
        }
        accumulator = self.coordinator.accumulator
        for mac, spans in ready.items():
            for counter_span in spans:
                for accrued in accumulator.accruals([(mac, counter_span.seq)]):
                    for taken in accrued:
                        first = max(taken.first, handled.get(taken.meter_id, 0) + 1)
                        if any(
                            (taken.meter_id, number) not in numbers
                            for number in range(first, taken.last + 1)
                        ):
                            return mac, counter_span.seq
        return None

    def _span_corrections(self) -> dict[str, dict[int, float]]:
        if not self._intervals:
            return {}
        handled: dict[str, int] = self._state.setdefault("span_seq", {})
        roles = self._config.roles
        load_keys = {load: key for key, load in self._loads.items()}
        # A meter's counters that failed together (a reboot) end at the same reading: one fault
        # (`MeterFault`). The faults that one accrual of the net flows took are corrected
        # together.
        faulted: dict[tuple[str, float], dict[tuple[ChannelRef, int], Unaccounted]] = {}
        numbers: dict[tuple[str, float], set[tuple[str, int]]] = {}  # (meter, span number)
        corrections: dict[str, dict[int, float]] = {}
        for mac, counter_span in self._ready_spans(handled):
            span = counter_span.span
            handled[mac] = counter_span.seq
            channel_id, _, direction = counter_span.key.partition("_")
            ref = ChannelRef(mac, channel_id)
            if roles.get(ref) in (Role.GRID, Role.SOLAR, Role.BATTERY):
                side = 0 if direction == "in" else 1  # the index of `energy_between`'s pair
                faulted.setdefault((mac, span.end), {})[ref, side] = span
                numbers.setdefault((mac, span.end), set()).add((mac, counter_span.seq))
            field = "consumed" if direction == "in" else "returned"
            if (series := load_keys.get((ref, field))) is not None and mac in self._intervals:
                # A load counts its channel as the meter does: it missed what the meter missed.
                missed = span_corrections(
                    span.start,
                    span.end,
                    span.counted,
                    partial(load_energy_between, self._intervals, ref, field),
                )
                merge_corrections(corrections, series, missed)
        accumulator = self.coordinator.accumulator
        for groups in sharing({group: accumulator.accruals(numbers[group]) for group in faulted}):
            spans = set().union(*(numbers[group] for group in groups))
            told = accumulator.short_counts(spans)
            overstated: dict[str, float] = {}  # Wh, by flow: what its corrections take back
            fixes = site_fault_corrections(
                self._config, self._intervals, [faulted[group] for group in groups], short_counts={}
            )
            for key, hours in fixes.items():
                if key not in NET_SERIES:
                    merge_corrections(corrections, key, hours)
            # Each net flow booked together the faults its own accruals took together (the site's
            # consumption waits for the battery, its self-consumed solar does not).
            for name, key in SITE_SERIES.items():
                if key not in NET_SERIES:
                    continue
                taken = {group: accumulator.accruals(numbers[group], name) for group in groups}
                for flow_groups in sharing(taken):
                    flow_spans = set().union(*(numbers[group] for group in flow_groups))
                    count = accumulator.short_counts(flow_spans).get(name)
                    fixes = site_fault_corrections(
                        self._config,
                        self._intervals,
                        [faulted[group] for group in flow_groups],
                        short_counts={} if count is None else {key: count},
                        running_since=self._started_at,
                    )
                    merge_corrections(corrections, key, fixes[key])
                    overstated[name] = overstated.get(name, 0.0) - 1000 * math.fsum(
                        fixes[key].values()
                    )
            # Forgotten only when the corrections are queued: a run stopped before (a reload)
            # leaves them to the next, which plans the same.
            self._planned.append(
                partial(self.coordinator.forget_short_counts, spans, told, overstated)
            )
        return corrections

    def _lower_sum(self, key: str, kwh: float) -> bool:
        if key not in NET_SERIES:
            return False
        self._planned.append(
            partial(self.coordinator.lower_net_sums, {_SITE_FIELDS[key]: kwh * 1000})
        )
        return True

    def _counter(self, key: str) -> float:
        data = self.coordinator.data
        if (load := self._loads.get(key)) is not None:
            totals = data.loads.get(load[0]) if data else None
            value = None if totals is None else getattr(totals, load[1])
        else:
            value = getattr(data.energy, _SITE_FIELDS[key]) if data else None
        return 0.0 if value is None else value / 1000


def _meters_not_set_up(macs: list[str]) -> MeterError:
    return MeterError(f"the site's meters {', '.join(macs)} are not set up")
