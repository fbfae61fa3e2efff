"""Energy history from the meters' stored records: hourly energy, and how to fill the statistics.

A meter keeps fixed-period records (1, 5 or 10 minutes) of the energy each channel counted in and
out. `MeterHours` sums them per UTC hour for each of the meter's energy series (a phase's or
channel's import and export, and the three-phase total), and optionally keeps them per record
interval (`MeterIntervals`, compact arrays) so that `SiteHours` can apply a site's flow math to
every interval that its meters measured together, and count its loads in the same intervals.

`plan_day_one` and `plan_fill` decide which hourly statistics rows to write for one series,
given the rows that exist and the device's energy per hour. Rows are (hour start, state, sum); a
row's *bar* is its sum minus the previous row's sum (the first row's bar is its sum). Rules:

- Day one: the hours before the series' first live reading are written from a sum of 0 (the hour
  before the records) upwards, and every row the recorder made since that reading moves up by
  what came before it (`FillPlan.shift`, applied with the recorder's adjustment of sums): the
  first live hour's bar is the device's whole hour and no hour is negative.
- Live rows are never double counted: a gap is a run of hours without a row (Home Assistant was
  down) or with a bar of about 0 (the meter was unreachable), ending at an *anchor*: a row whose
  bar exceeds the device's energy of that hour by more than `JUMP_KWH` (the catch-up jump).
  Hours whose bars fall short of the device's energy are in the gap too (the hour the outage
  began in, or one a span's correction gave a channel's share to). The gap's rows get sums going
  backwards from the anchor: sum(h - 1) = sum(h) - energy(h). The anchor's bar becomes the
  device's energy of its hour, each filled hour's bar the device's energy of that hour, and the
  gap's first hour keeps what remains; sums never fall below the row before the gap, so the
  total is unchanged.
- Spans a counter could not count (`span_corrections`, `site_span_corrections`): each hour the
  span touches gains the records' energy of its part, less what the counter counted.

Running a plan again on its own result writes nothing: every bar then matches the device.
Time is unix seconds throughout; hours start on multiples of 3600 (UTC).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from itertools import pairwise
from typing import Any, Final

from ..meter.records import EARLIEST_VALID_TS, EnergyRecord
from .counter import Unaccounted
from .periods import PeriodClock
from .record_periods import FIVE_MINUTES, SETTLED_FLOWS, RecordPeriods, hour_of
from .site import ChannelRef, Role, ShortCount, SiteConfig, SiteEnergy, interval_energy

_BALANCE_ROLES: Final = (Role.GRID, Role.SOLAR, Role.BATTERY)

HOUR: Final = 3600
# A bar up to this is "about 0" (kWh).
ZERO_KWH: Final = 0.001
# A bar this much above the device's energy of its hour is a catch-up jump (kWh). Larger than
# what a poll falling just after the hour moves between hours. After an hour the series was
# missing from (no row, or an outage), more than `ZERO_KWH` is (`_jump_above`).
JUMP_KWH: Final = 0.02

IMPORTED: Final = "energy_imported"
EXPORTED: Final = "energy_exported"
TOTAL: Final = "total"


def meter_series(channel_ids: Sequence[str], *, three_phase: bool) -> tuple[str, ...]:
    """Return a meter's energy series keys ("a_energy_imported", ..., "total_energy_exported")."""
    ids = (*channel_ids, TOTAL) if three_phase else tuple(channel_ids)
    return tuple(f"{channel_id}_{key}" for channel_id in ids for key in (IMPORTED, EXPORTED))


def site_series() -> tuple[str, ...]:
    """Return a site's energy series keys, as its energy sensors are keyed."""
    return tuple(SITE_SERIES.values())


# The site's energy sensors' keys by `SiteEnergy` field.
SITE_SERIES: Final = {
    "grid_import": "grid_import_energy",
    "grid_export": "grid_export_energy",
    "solar_production": "solar_energy",
    "battery_charged": "battery_charged_energy",
    "battery_discharged": "battery_discharged_energy",
    "home_consumption": "home_energy",
    "self_consumed_solar": "self_consumed_energy",
}
# The site series that publish the highest value of a signed running sum (`energy.site`).
NET_SERIES: Final = (SITE_SERIES["home_consumption"], SITE_SERIES["self_consumed_solar"])


class MeterIntervals:
    """One meter's records per interval: what each channel counted in and out (Wh).

    Interval i starts at ``start + i * period``; an interval without a record counted nothing
    (the meter was off). Arrays keep 60 days of 1-minute records of three phases in about 4 MB.
    """

    __slots__ = ("channel_ids", "energy_in", "energy_out", "period", "start")

    def __init__(self, channel_ids: Sequence[str], period: int, start: int) -> None:
        """Start empty at `start` (a multiple of `period`)."""
        self.channel_ids = tuple(channel_ids)
        self.period = period
        self.start = start
        self.energy_in = [array("d") for _ in self.channel_ids]
        self.energy_out = [array("d") for _ in self.channel_ids]

    @property
    def end(self) -> int:
        """Return the end of the last interval."""
        return self.start + len(self.energy_in[0]) * self.period

    def add(self, ts: int, energy_in: Sequence[float], energy_out: Sequence[float]) -> None:
        """Add one (corrected) record, stamped at or after the last one's start."""
        index = (ts - self.start) // self.period
        length = len(self.energy_in[0])
        if index >= length:
            padding = array("d", bytes(8 * (index + 1 - length)))
            for column in (*self.energy_in, *self.energy_out):
                column.extend(padding)
        for channel, value in enumerate(energy_in):
            self.energy_in[channel][index] += value
        for channel, value in enumerate(energy_out):
            self.energy_out[channel][index] += value

    def extend(self, later: MeterIntervals) -> None:
        """Add the intervals of a later read (the same channels and period) from this one's end."""
        for index in range(len(later.energy_in[0])):
            ts = later.start + index * later.period
            if ts >= self.end:
                self.add(
                    ts,
                    [column[index] for column in later.energy_in],
                    [column[index] for column in later.energy_out],
                )

    def energy_between(self, channel: int, start: float, end: float) -> tuple[float, float]:
        """Return what a channel counted in and out (Wh) over [start, end).

        A record the span covers in part counts in proportion (power is taken as even within a
        record period).
        """
        period = self.period
        first = max(int((start - self.start) // period), 0)
        last = min(-int(-(end - self.start) // period), len(self.energy_in[0]))
        energy_in = energy_out = 0.0
        for index in range(first, last):
            begins = self.start + index * period
            share = (min(end, begins + period) - max(start, begins)) / period
            if share > 0:
                energy_in += self.energy_in[channel][index] * share
                energy_out += self.energy_out[channel][index] * share
        return energy_in, energy_out

    def series_between(self, series: str, start: float, end: float) -> float:
        """Return a meter series' energy (Wh) over [start, end): a channel's or the total's."""
        channel_id, _, key = series.partition("_")
        channels = (
            range(len(self.channel_ids))
            if channel_id == TOTAL
            else (self.channel_ids.index(channel_id),)
        )
        energies = [self.energy_between(channel, start, end) for channel in channels]
        return sum(pair[0 if key == IMPORTED else 1] for pair in energies)

    def counted(self, channel: int, start: int, end: int) -> tuple[float, float]:
        """Return what a channel counted in and out (Wh) in intervals starting in [start, end)."""
        first = max((start - self.start + self.period - 1) // self.period, 0)
        last = min((end - self.start + self.period - 1) // self.period, len(self.energy_in[0]))
        if first >= last:
            return 0.0, 0.0
        return (
            math.fsum(self.energy_in[channel][first:last]),
            math.fsum(self.energy_out[channel][first:last]),
        )


class MeterHours:
    """One meter's records summed per hour for each of its energy series (Wh).

    Records arrive oldest first, as the device gives them (raw: a reversed CT counts the other
    way round until `reversed_channels` swaps it). Records stamped before the device synced its
    clock, or before the last one, are dropped.
    """

    def __init__(
        self,
        channel_ids: Sequence[str],
        *,
        three_phase: bool,
        reversed_channels: frozenset[str] = frozenset(),
        keep_intervals: bool = False,
    ) -> None:
        """Start empty; with `keep_intervals`, also keep the records per interval for sites."""
        self.channel_ids = tuple(channel_ids)
        self.three_phase = three_phase
        self.series = meter_series(self.channel_ids, three_phase=three_phase)
        self._reversed = tuple(channel_id in reversed_channels for channel_id in self.channel_ids)
        self._keep_intervals = keep_intervals
        self.intervals: MeterIntervals | None = None
        self.first_hour: int | None = None
        self.end = 0  # the end of the last record (unix seconds)
        self.records = 0
        # Per series, Wh per hour from `first_hour` on.
        self._wh: dict[str, list[float]] = {key: [] for key in self.series}
        self._bind_columns()

    def _bind_columns(self) -> None:
        """Look the columns up once: `add` runs for every record."""
        self._columns_in = [self._wh[f"{channel_id}_{IMPORTED}"] for channel_id in self.channel_ids]
        self._columns_out = [
            self._wh[f"{channel_id}_{EXPORTED}"] for channel_id in self.channel_ids
        ]
        self._total_columns = (
            (self._wh[f"{TOTAL}_{IMPORTED}"], self._wh[f"{TOTAL}_{EXPORTED}"])
            if self.three_phase
            else None
        )

    def add(self, records: Sequence[EnergyRecord]) -> None:
        """Add a batch of records."""
        for record in records:
            if record.ts < EARLIEST_VALID_TS or record.ts < self.end:
                continue
            energy_in, energy_out = record.energy_in, record.energy_out
            if any(self._reversed):
                pairs = zip(energy_in, energy_out, self._reversed, strict=True)
                swapped = [(o, i) if r else (i, o) for i, o, r in pairs]
                energy_in = tuple(pair[0] for pair in swapped)
                energy_out = tuple(pair[1] for pair in swapped)
            hour = record.ts - record.ts % HOUR
            if self.first_hour is None:
                self.first_hour = hour
            index = (hour - self.first_hour) // HOUR
            for column, value in zip(self._columns_in, energy_in, strict=True):
                _add(column, index, value)
            for column, value in zip(self._columns_out, energy_out, strict=True):
                _add(column, index, value)
            if self._total_columns is not None:
                _add(self._total_columns[0], index, sum(energy_in))
                _add(self._total_columns[1], index, sum(energy_out))
            if self._keep_intervals:
                if self.intervals is None:
                    start = record.ts - record.ts % record.period
                    self.intervals = MeterIntervals(self.channel_ids, record.period, start)
                self.intervals.add(record.ts, energy_in, energy_out)
            self.end = record.ts + record.period
            self.records += 1

    def complete_hours(self) -> dict[str, dict[int, float]]:
        """Return each series' energy (kWh) per hour that the records cover to its end."""
        if self.first_hour is None:
            return {key: {} for key in self.series}
        count = (self.end - self.end % HOUR - self.first_hour) // HOUR
        return {
            key: {
                self.first_hour + index * HOUR: (column[index] if index < len(column) else 0.0)
                / 1000
                for index in range(count)
            }
            for key, column in self._wh.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the hourly sums as JSON-safe data (to resume an interrupted import).

        A copy: it may be written out while more records arrive.
        """
        return {
            "first_hour": self.first_hour,
            "end": self.end,
            "records": self.records,
            "wh": {key: list(column) for key, column in self._wh.items()},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from what `to_dict` returned (for the same series); intervals restart."""
        if set(data["wh"]) != set(self.series):
            raise ValueError("the saved hours are of other series")
        self.first_hour = data["first_hour"]
        self.end = data["end"]
        self.records = data["records"]
        self._wh = {key: list(data["wh"][key]) for key in self.series}
        self._bind_columns()


def _add(column: list[float], index: int, value: float) -> None:
    if index >= len(column):
        column.extend([0.0] * (index + 1 - len(column)))
    column[index] += value


# What a load's `LoadEnergy` fields count of its channel: (energy in, energy out)[index].
_LOAD_DIRECTION: Final = {"consumed": 0, "returned": 1}


def load_energy_between(
    meters: Mapping[str, MeterIntervals], ref: ChannelRef, field: str, start: float, end: float
) -> float:
    """Return a load's `LoadEnergy` field (Wh) over [start, end) from its meter's records."""
    if (meter := meters.get(ref.meter_id)) is None:
        return 0.0
    energy = meter.energy_between(meter.channel_ids.index(ref.channel_id), start, end)
    return energy[_LOAD_DIRECTION[field]]


class SiteHours:
    """A site's energy flows per hour (Wh), from its meters' records, interval by interval.

    The meters' intervals are summed to a common interval (the least common multiple of the
    balance meters' record periods) over the time all of them cover, then each interval gets the
    site's flow math (`interval_energy`). Loads (`loads`: series key -> channel and `LoadEnergy`
    field) count what their channels counted in the same intervals, so that no hour of a load
    lies outside the site's consumption; a load whose meter keeps no records (not in `meters`)
    has no hours. The grid flows also go to the site's settlement and demand periods on the
    local clock of `zone` (`periods`); with a settlement period, the grid import and export
    hours are what the periods book in them, as the settled sensors count. Run `steps` to the
    end; it yields between chunks of intervals so that a caller on an event loop can let others
    run.
    """

    def __init__(
        self,
        config: SiteConfig,
        meters: Mapping[str, MeterIntervals],
        loads: Mapping[str, tuple[ChannelRef, str]] | None = None,
        zone: tzinfo = UTC,
    ) -> None:
        """Prepare; `meters` maps the meter ids of the site's channels to their intervals."""
        self.config = config
        refs = [
            ref
            for ref, role in config.roles.items()
            if role in (Role.GRID, Role.SOLAR, Role.BATTERY)
        ]
        self._channels: list[tuple[ChannelRef, MeterIntervals, int]] = [
            (ref, meters[ref.meter_id], meters[ref.meter_id].channel_ids.index(ref.channel_id))
            for ref in refs
        ]
        self._loads: list[tuple[str, MeterIntervals, int, str]] = [
            (key, meter, meter.channel_ids.index(ref.channel_id), field)
            for key, (ref, field) in (loads or {}).items()
            if (meter := meters.get(ref.meter_id)) is not None
        ]
        self.hours: dict[str, dict[int, float]] = {
            key: {} for key in (*site_series(), *(load[0] for load in self._loads))
        }
        # The balance meters set the intervals; a load's meter may end them sooner.
        used = {ref.meter_id for ref in refs}
        self.period = math.lcm(*(meters[meter_id].period for meter_id in used)) if used else HOUR
        start = max((meters[meter_id].start for meter_id in used), default=0)
        self.start = -(-start // self.period) * self.period
        ends = [meters[meter_id].end for meter_id in used]
        self.end = min((*ends, *(meter.end for _, meter, _, _ in self._loads))) if used else 0
        self.intervals = 0  # computed so far
        settlement, capacity = config.settlement.minutes, config.capacity
        self.periods = RecordPeriods(
            None if settlement is None else PeriodClock(settlement, zone),
            None if capacity is None else PeriodClock(capacity.minutes, zone),
            self.start,
        )
        # The series the periods book (settled), and those each interval adds to.
        settled = SETTLED_FLOWS if self.periods.settles else ()
        self._interval_series = {
            name: key for name, key in SITE_SERIES.items() if name not in settled
        }

    def steps(self, chunk: int = 1440) -> Iterator[None]:
        """Compute the hours, yielding after every `chunk` intervals."""
        start = self.start
        while start + self.period <= self.end:
            end = start + self.period
            flows = interval_energy(
                self.config,
                {ref: meter.counted(channel, start, end) for ref, meter, channel in self._channels},
            )
            hour = start - start % HOUR
            for name, key in self._interval_series.items():
                series = self.hours[key]
                series[hour] = series.get(hour, 0.0) + getattr(flows, name)
            self.periods.add(start, end, flows.grid_import or 0.0, flows.grid_export or 0.0)
            for key, meter, channel, field in self._loads:
                series = self.hours[key]
                counted = meter.counted(channel, start, end)[_LOAD_DIRECTION[field]]
                series[hour] = series.get(hour, 0.0) + counted
            start = end
            self.intervals += 1
            if self.intervals % chunk == 0:
                yield

    def complete_hours(self) -> dict[str, dict[int, float]]:
        """Return each flow's energy (kWh) per hour up to the last that all records cover.

        The first hour may be partial, as a meter's own first hour is: nothing is known of it
        before the records start.
        """
        first = self.start - self.start % HOUR
        last = self.end - self.end % HOUR
        if self.periods.settles:
            booked = self.periods.booked
            for index, name in enumerate(SETTLED_FLOWS):
                self.hours[SITE_SERIES[name]] = {
                    hour: booked[hour][index] if hour in booked else 0.0
                    for hour in range(first, max(last, first), HOUR)
                }
        return {
            key: {hour: wh / 1000 for hour, wh in series.items() if first <= hour < last}
            for key, series in self.hours.items()
        }


@dataclass(frozen=True, slots=True)
class StatRow:
    """One statistics row of an energy series (hourly or 5-minute): start, state and sum (kWh)."""

    start: int
    state: float
    sum: float


@dataclass(frozen=True, slots=True)
class FillPlan:
    """The rows to write (oldest first), and how the recorder's own rows move (from, kWh)."""

    rows: tuple[StatRow, ...]
    shift: tuple[int, float] | None = None


def _backwards(
    anchor: StatRow, low: int, energy: Mapping[int, float], floor: float = -math.inf
) -> list[StatRow]:
    """Return rows for the hours [low, anchor) with sums going backwards from the anchor."""
    rows: list[StatRow] = []
    total, state, hour = anchor.sum, anchor.state, anchor.start
    while hour > low:
        counted = energy.get(hour, 0.0)
        total, state, hour = max(total - counted, floor), state - counted, hour - HOUR
        rows.append(StatRow(hour, state, total))
    return rows


def _bars(rows: Sequence[StatRow]) -> dict[int, float]:
    """Return each row's bar (the first row has none)."""
    return {row.start: row.sum - before.sum for before, row in pairwise(rows)}


def _gap_start(
    anchor: int,
    rows: Mapping[int, StatRow],
    bars: Mapping[int, float],
    low: int,
    energy: Mapping[int, float] | None = None,
) -> int:
    """Return the first hour of the gap before an anchor (the anchor itself: no gap).

    A gap's hours have no row, a bar of about 0 or, where the device's `energy` is known, a bar
    short of it (the hour an outage began in, or one a span's correction gave a channel's share
    to). Where it is not known yet (None), the hour before a run of missing or empty hours may
    be in it too.
    """

    def in_gap(hour: int) -> bool:
        bar = bars.get(hour)
        if hour not in rows or (bar is not None and bar <= ZERO_KWH):
            return True
        return energy is not None and bar is not None and bar < energy.get(hour, 0.0) - ZERO_KWH

    hour = anchor - HOUR
    while hour >= low and in_gap(hour):
        hour -= HOUR
    if energy is None and hour + HOUR < anchor and hour >= low and hour in bars:
        return hour
    return hour + HOUR


def plan_day_one(
    energy: Mapping[int, float], first_live: float, before_live: float, live_state: float
) -> FillPlan:
    """Return the rows of the hours before a series' first live reading, and the live rows' move.

    ``energy``: the device's energy (kWh) per complete hour. ``first_live``: when the series
    published its first value: from its hour on the rows are the recorder's own, summed from 0
    at that value. ``before_live``: the device's energy (kWh) of that hour before the reading.
    ``live_state``: the value the series published then (kWh), for the rows' states.

    The imported rows start at a sum of 0 (the hour before the records) and add each hour's
    energy; the recorder's rows then move by the imported total plus ``before_live``, so the
    first live hour's bar is the device's whole hour and no hour is ever negative.
    """
    live_hour = int(first_live - first_live % HOUR)
    hours = sorted(hour for hour in energy if hour < live_hour)
    total_before = math.fsum(energy[hour] for hour in hours)
    rows: list[StatRow] = []
    if hours:
        base_state = live_state - before_live - total_before
        rows.append(StatRow(hours[0] - HOUR, base_state, 0.0))
        running = 0.0
        for hour in range(hours[0], live_hour, HOUR):
            running += energy.get(hour, 0.0)
            rows.append(StatRow(hour, base_state + running, running))
    return FillPlan(tuple(rows), (live_hour, total_before + before_live))


def _jump_above(hour: int, rows: Mapping[int, StatRow], outages: Collection[int]) -> float:
    """Return how far an hour's bar must pass its energy to be a catch-up jump (kWh).

    After an hour with no row or an outage, whatever the bar has beyond the hour's own energy
    was booked late, however little (a battery's few Wh at dawn); after an hour recorded whole,
    a poll just after its end moves a little across.
    """
    before = hour - HOUR
    return ZERO_KWH if before not in rows or before in outages else JUMP_KWH


def _kept(
    anchor: StatRow,
    following: StatRow | None,
    energy: Mapping[int, float],
    recorded: Mapping[int, float],
) -> float:
    """Return the energy (kWh) an anchor keeps of its hour when it fills the gap before it.

    The device's whole hour, unless an outage went on past its end: the device had counted
    `recorded` by its last reading, and the rest was booked when the series came back, in the
    surplus of the `following` row (None: not compiled yet) over its own hours. A span's
    correction may have given that rest back to its hour already: then no surplus shows and it
    keeps all, as it does while the following row's energy is not known (held for a span).
    """
    whole = energy.get(anchor.start, 0.0)
    if (upto := recorded.get(anchor.start)) is None:
        return whole
    if following is None:
        return upto
    own_hours = range(anchor.start + HOUR, following.start + HOUR, HOUR)
    if any(hour not in energy for hour in own_hours):
        return whole  # held for a span: its correction moves what was booked late
    surplus = following.sum - anchor.sum - math.fsum(energy[hour] for hour in own_hours)
    return whole - min(whole - upto, max(surplus, 0.0))


def plan_fill(
    rows: Sequence[StatRow],
    energy: Mapping[int, float],
    outages: Collection[int] = (),
    recorded: Mapping[int, float] | None = None,
) -> FillPlan:
    """Return the rows that fill one series' gaps from the device's energy.

    ``rows``: the series' rows, oldest first, from far enough back to hold the row before any
    gap. ``energy``: the device's energy (kWh) per complete hour, from its first to its last
    hour (a missing hour counted 0). ``outages``: hours an outage went on past the end of
    (`outage_hours`); ``recorded``: the device's energy of such an hour up to its last reading
    (kWh). As a gap's anchor, such an hour keeps only what was not booked later (`_kept`); the
    hour after, an anchor then, gives it the rest.
    """
    recorded = recorded or {}
    if not energy or not rows:
        return FillPlan(())
    first_hour, last_hour = min(energy), max(energy)
    planned: dict[int, StatRow] = {}
    by_hour = {row.start: row for row in rows}
    starts = [row.start for row in rows]
    bars = _bars(rows)
    for index, row in enumerate(rows[1:], start=1):
        if not first_hour < row.start <= last_hour:
            continue
        own = _kept(row, rows[index + 1] if index + 1 < len(rows) else None, energy, recorded)
        if bars[row.start] <= own + _jump_above(row.start, by_hour, outages):
            continue
        gap_start = _gap_start(row.start, by_hour, bars, first_hour, energy)
        if gap_start == row.start:
            continue
        previous = by_hour.get(gap_start - HOUR)
        if previous is None:
            before = bisect.bisect_left(starts, gap_start) - 1
            previous = rows[before] if before >= 0 else None
        floor = -math.inf if previous is None else previous.sum
        filled = _backwards(row, gap_start, {**energy, row.start: own}, floor)
        planned.update((fill.start, fill) for fill in filled)
        # Later anchors see the rows as filled: an anchor that kept only what its rows recorded
        # is then short, and in the next one's gap.
        by_hour.update((fill.start, fill) for fill in filled)
        bars.update(_bars([*([] if previous is None else [previous]), *reversed(filled), row]))
    return FillPlan(tuple(planned[hour] for hour in sorted(planned)))


def records_needed_since(
    rows: Sequence[StatRow], *, after: int, outages: Collection[int] = ()
) -> int | None:
    """Return the first hour whose device energy a plan may need; None: nothing to fill.

    Looks for anchors later than ``after`` (the last hour already checked): a row with a
    positive jump after a run of hours without rows or with bars of about 0, or right after an
    hour of ``outages`` (`outage_hours`): an outage shorter than two hours may leave no hour
    empty.
    """
    by_hour = {row.start: row for row in rows}
    bars = _bars(rows)
    low = rows[0].start if rows else 0
    needed: int | None = None
    for row in rows[1:]:
        if row.start <= after or bars[row.start] <= _jump_above(row.start, by_hour, outages):
            continue
        gap_start = _gap_start(row.start, by_hour, bars, low)
        before = row.start - HOUR
        if gap_start == row.start and before >= low and before in outages:
            gap_start = before
        if gap_start < row.start and (needed is None or gap_start < needed):
            needed = gap_start
    return needed


def outage_hours(short_rows: Iterable[StatRow], start: int, end: int) -> set[int]:
    """Return the hours in [start, end) with 5-minute rows, but none for their last 5 minutes.

    The recorder makes none while the series is unavailable (its meter away, or one its site
    waits for) or Home Assistant is down: an outage went on past the end of such an hour. (An
    hour without any is one it did not record live: empty, or imported.)
    """
    present = {row.start for row in short_rows}
    recorded = {start - start % HOUR for start in present}
    last = HOUR - FIVE_MINUTES
    return {
        hour for hour in range(start, end, HOUR) if hour in recorded and hour + last not in present
    }


def hour_pieces(start: float, end: float) -> list[tuple[int, float, float]]:
    """Return the UTC hours that [start, end) touches, each with the part of it inside."""
    pieces = []
    moment = start
    while moment < end:
        hour = int(moment - moment % HOUR)
        piece_end = min(end, hour + HOUR)
        pieces.append((hour, moment, piece_end))
        moment = piece_end
    return pieces


def span_corrections(
    start: float, end: float, counted_wh: float, energy_between: Callable[[float, float], float]
) -> dict[int, float]:
    """Return what one series must gain per hour (kWh) for a span its counter could not count.

    The records' energy of each hour's part of the span, less what the counter did count over
    it, which the recorder booked in the hour of the span's end (the reading that ended it).
    """
    corrections = {
        hour: energy_between(piece_start, piece_end) / 1000
        for hour, piece_start, piece_end in hour_pieces(start, end)
    }
    end_hour = int(end - end % HOUR)
    corrections[end_hour] = corrections.get(end_hour, 0.0) - counted_wh / 1000
    return corrections


def site_energy_between(
    config: SiteConfig, meters: Mapping[str, MeterIntervals], start: float, end: float
) -> SiteEnergy:
    """Return a site's flows (Wh) over [start, end) from its meters' records."""
    return interval_energy(config, _recorded(config, meters, start, end))


def _recorded(
    config: SiteConfig, meters: Mapping[str, MeterIntervals], start: float, end: float
) -> dict[ChannelRef, tuple[float, float]]:
    """Return what each of a site's balance channels counted in and out (Wh) over [start, end)."""
    return {
        ref: meters[ref.meter_id].energy_between(
            meters[ref.meter_id].channel_ids.index(ref.channel_id), start, end
        )
        for ref, role in config.roles.items()
        if role in _BALANCE_ROLES and ref.meter_id in meters
    }


class _HighestSum:
    """A signed running sum that publishes its highest value: what each addition raises it by."""

    __slots__ = ("highest", "running")

    def __init__(self, below_highest: float = 0.0) -> None:
        self.highest = 0.0
        self.running = -below_highest

    def add(self, signed: float) -> float:
        self.running += signed
        rise = max(self.running - self.highest, 0.0)
        self.highest += rise
        return rise


def site_span_corrections(
    config: SiteConfig,
    meters: Mapping[str, MeterIntervals],
    faulted: Mapping[ChannelRef, tuple[float | None, float | None]],
    start: float,
    end: float,
    *,
    short_counts: Mapping[str, ShortCount],
    running_since: float = -math.inf,
) -> dict[str, dict[int, float]]:
    """Return what each site series must gain per hour (kWh) for a span of some counters.

    `faulted` maps channels to what their counters counted in and out (Wh) over the span, None
    for a direction whose counter counted normally. The site counted its flows with those
    amounts, booked in the hour of the span's end; the records tell the flows with what really
    flowed, hour by hour. `short_counts`: how the site's consumption and self-consumed solar
    accrued the span (by series, `SiteAccumulator.short_counts`): nothing booked from
    their accrual before its end (from before the span too: it waited for another meter), and
    what they were forgiven never to be given again. `running_since`: when the site last
    started; of a wait from before it, the hours it was down are the restart's to fill.
    """

    def live(
        recorded: dict[ChannelRef, tuple[float, float]], share: float
    ) -> dict[ChannelRef, tuple[float, float]]:
        """Return the channels' energy as the site counted it: a `share` of the counted."""
        counted = dict(recorded)
        for ref, (counted_in, counted_out) in faulted.items():
            if ref in counted:
                counted[ref] = (
                    counted[ref][0] if counted_in is None else counted_in * share,
                    counted[ref][1] if counted_out is None else counted_out * share,
                )
        return counted

    def flows(energy: Mapping[ChannelRef, tuple[float, float]]) -> dict[str, float]:
        """Return the flows, consumption and self-consumed solar signed as the site keeps them.

        A short-counted interval is a deficit the live site makes up later, not a 0.
        """
        result = interval_energy(config, energy)
        found: dict[str, float] = {name: float(getattr(result, name)) for name in SITE_SERIES}
        found["home_consumption"] = (
            found["grid_import"]
            - found["grid_export"]
            + found["solar_production"]
            + found["battery_discharged"]
            - found["battery_charged"]
        )
        found["self_consumed_solar"] = found["solar_production"] - found["grid_export"]
        return {SITE_SERIES[name]: value for name, value in found.items()}

    corrections: dict[str, dict[int, float]] = {key: {} for key in site_series()}
    whole = _recorded(config, meters, start, end)
    counted = flows(live(whole, 1.0))
    missed = {key: (true - counted[key]) / 1000 for key, true in flows(whole).items()}
    # Each hour gains what flowed in it that the site did not book there; the hour of the span's
    # end, where the site booked what the counters did count, takes the rest. Consumption and
    # self-consumed solar publish their signed running sums' highest value, both as they flowed
    # and as the site booked them: where a sum fell (the solar counted nothing while the export
    # did), nothing was booked, and its rise makes the fall up first, a fall from before the
    # span too (the solar's use at night, made up at dawn); from their accrual before the span's
    # end (a meter they waited for) nothing was booked at all.
    waited = {key: count.since for key, count in short_counts.items() if count.since is not None}
    below = {key: count.deficit for key, count in short_counts.items()}
    true_sums = {key: _HighestSum(below.get(key, 0.0)) for key in NET_SERIES}
    booked_sums = {key: _HighestSum(below.get(key, 0.0)) for key in NET_SERIES}
    since = min(start, max(min([start, *waited.values()]), running_since))
    # A wait from before the restart counts from the state stored then; Home Assistant ran on
    # and booked what flowed up to `since` as it flowed: the sums start there as it left them.
    for key, moment in waited.items():
        if moment < since:
            before = flows(_recorded(config, meters, moment, since))[key]
            true_sums[key].add(before)
            booked_sums[key].add(before)
    for hour, piece_start, piece_end in _cut(hour_pieces(since, end), [start, *waited.values()]):
        recorded = _recorded(config, meters, piece_start, piece_end)
        # Before the span, its counters counted normally.
        booked = flows(recorded if piece_start < start else live(recorded, 0.0))
        true_flows = flows(recorded)
        for key in NET_SERIES:
            true_flows[key] = true_sums[key].add(true_flows[key])
            if piece_start >= waited.get(key, end):
                booked[key] = 0.0
                continue
            booked[key] = booked_sums[key].add(booked[key])
        for key, true in true_flows.items():
            if delta := (true - booked[key]) / 1000:
                corrections[key][hour] = corrections[key].get(hour, 0.0) + delta
                missed[key] -= delta
    for key, count in short_counts.items():
        missed[key] -= count.forgiven / 1000
    end_hour = int(end - end % HOUR)
    for key, rest in missed.items():
        if rest:
            corrections[key][end_hour] = corrections[key].get(end_hour, 0.0) + rest
    return corrections


# One meter's fault: the span of each counter it hit, by channel and side (0 in, 1 out).
MeterFault = Mapping[tuple[ChannelRef, int], Unaccounted]


def _as_one_span(
    meter: MeterIntervals, fault: MeterFault
) -> tuple[float, dict[ChannelRef, tuple[float | None, float | None]]]:
    """Return a meter's fault as one span: its start, and each counter's count since.

    The meter was read whole at the latest start (a counter whose total was not recorded before
    a restart starts where it was stored, earlier; one whose base held over jitter, where it was
    read last): up to it, every counter counted what its records tell. But a counter that
    refused readings held the site's flows over the meter's channels from its last accepted
    reading: none of them was booked from there, so the fault starts at the latest start of
    such a span (the counters a reply's refusal hit were read together before it; one starting
    earlier still is one that did not move since it was recorded).
    """
    starts = [span.start for span in fault.values() if span.refused] or [
        span.start for span in fault.values()
    ]
    start = max(starts)
    channels: dict[ChannelRef, list[float | None]] = {}
    for (ref, side), span in fault.items():
        index = meter.channel_ids.index(ref.channel_id)
        if span.start <= start:
            count = span.counted - meter.energy_between(index, span.start, start)[side]
        else:  # booked with the others at the fault's end
            count = span.counted + meter.energy_between(index, start, span.start)[side]
        channels.setdefault(ref, [None, None])[side] = max(count, 0.0)
    return start, {ref: (pair[0], pair[1]) for ref, pair in channels.items()}


def _fault_meter(fault: MeterFault) -> str:
    return next(iter(fault))[0].meter_id


def _fault_end(fault: MeterFault) -> float:
    return next(iter(fault.values())).end


def _held_together(
    config: SiteConfig, meters: Mapping[str, MeterIntervals], faults: Sequence[MeterFault]
) -> list[MeterFault]:
    """Return the faults, each counter's span joined with the next fault that held its booking.

    A counter that refused readings held the site's flow of its role: a span of its meter's
    counters of that role that ended meanwhile (a meter back from an absence, one phase's
    counters still unreadable) was booked with it, at its end. Joined, each counter's spans
    are one span to that end, counting what its records tell between them and after them.
    """
    ordered = sorted(faults, key=_fault_end)

    def booked_with(index: int, role: Role | None) -> int:
        meter_id, end = _fault_meter(ordered[index]), _fault_end(ordered[index])
        for later in range(index + 1, len(ordered)):
            if _fault_meter(ordered[later]) == meter_id and any(
                span.refused and span.start <= end < span.end and config.roles.get(ref) == role
                for (ref, _), span in ordered[later].items()
            ):
                return booked_with(later, role)
        return index

    booked: dict[int, dict[tuple[ChannelRef, int], list[Unaccounted]]] = {}
    for index, fault in enumerate(ordered):
        for (ref, side), span in fault.items():
            at = booked_with(index, config.roles.get(ref))
            booked.setdefault(at, {}).setdefault((ref, side), []).append(span)
    joined: list[MeterFault] = []
    for at, spans in sorted(booked.items()):
        meter, end = meters[_fault_meter(ordered[at])], _fault_end(ordered[at])
        merged: dict[tuple[ChannelRef, int], Unaccounted] = {}
        for (ref, side), found in spans.items():
            channel = meter.channel_ids.index(ref.channel_id)
            counted = 0.0
            for span, following in zip(found, [*found[1:], None], strict=True):
                until = end if following is None else following.start
                counted += span.counted + meter.energy_between(channel, span.end, until)[side]
            refused = any(span.refused for span in found)
            merged[ref, side] = Unaccounted(found[0].start, end, counted, refused)
        joined.append(merged)
    return joined


def site_fault_corrections(
    config: SiteConfig,
    meters: Mapping[str, MeterIntervals],
    faults: Sequence[MeterFault],
    *,
    short_counts: Mapping[str, ShortCount],
    running_since: float = -math.inf,
) -> dict[str, dict[int, float]]:
    """Return what each site series must gain per hour (kWh) for meters' faults (spans).

    `faults`: those of one accrual of the net flows (`SiteAccumulator.accruals`), or one fault
    no accrual took. A flow of one meter's channels booked each fault where it ended (or where
    a refused counter of its meter let it, `_held_together`): corrected fault by fault
    (`site_span_corrections`). Consumption and self-consumed solar waited for every meter and
    booked them all at once: corrected once, over all of them, each counter counting what its
    records tell outside its own span. `running_since`: see `site_span_corrections`.
    """
    spans = []  # each fault's meter, start, counters' counts and end
    for fault in _held_together(config, meters, faults):
        meter_id = _fault_meter(fault)
        start, channels = _as_one_span(meters[meter_id], fault)
        spans.append((meter_id, start, channels, _fault_end(fault)))
    if len(spans) == 1:
        ((_, start, channels, end),) = spans
        return site_span_corrections(
            config,
            meters,
            channels,
            start,
            end,
            short_counts=short_counts,
            running_since=running_since,
        )
    corrections: dict[str, dict[int, float]] = {}
    missed: dict[tuple[ChannelRef, int], float] = {}
    for meter_id, start, channels, end in spans:
        fixes = site_span_corrections(config, meters, channels, start, end, short_counts={})
        for key, hours in fixes.items():
            if key not in NET_SERIES:
                merge_corrections(corrections, key, hours)
        meter = meters[meter_id]
        for ref, pair in channels.items():
            recorded = meter.energy_between(meter.channel_ids.index(ref.channel_id), start, end)
            for side, counted in enumerate(pair):
                if counted is not None:
                    missed[ref, side] = missed.get((ref, side), 0.0) + recorded[side] - counted
    first = min(start for _, start, _, _ in spans)
    last = max(end for _, _, _, end in spans)
    together: dict[ChannelRef, list[float | None]] = {}
    for (ref, side), short in missed.items():
        meter = meters[ref.meter_id]
        recorded = meter.energy_between(meter.channel_ids.index(ref.channel_id), first, last)
        together.setdefault(ref, [None, None])[side] = max(recorded[side] - short, 0.0)
    fixes = site_span_corrections(
        config,
        meters,
        {ref: (pair[0], pair[1]) for ref, pair in together.items()},
        first,
        last,
        short_counts=short_counts,
        running_since=running_since,
    )
    for key, hours in fixes.items():
        if key in NET_SERIES:
            merge_corrections(corrections, key, hours)
    return corrections


def merge_corrections(
    corrections: dict[str, dict[int, float]], key: str, hours: Mapping[int, float]
) -> None:
    """Add a series' corrections per hour (kWh) to those found so far."""
    found = corrections.setdefault(key, {})
    for hour, kwh in hours.items():
        found[hour] = found.get(hour, 0.0) + kwh


def sharing[Key, Shared](shared: Mapping[Key, Collection[Shared]]) -> list[list[Key]]:
    """Return the keys in sets, each set the keys that share something (transitively), in order."""
    sets: list[tuple[list[Key], set[Shared]]] = []
    for key, found in shared.items():
        keys, together = [key], set(found)
        for index in range(len(sets) - 1, -1, -1):
            if sets[index][1] & together:
                earlier, theirs = sets.pop(index)
                keys, together = [*earlier, *keys], together | theirs
        sets.append((keys, together))
    return [keys for keys, _ in sets]


def _cut(
    pieces: Sequence[tuple[int, float, float]], moments: Iterable[float]
) -> list[tuple[int, float, float]]:
    """Return the pieces of `hour_pieces` cut at each of `moments` inside them."""
    cuts = sorted(moments)
    result: list[tuple[int, float, float]] = []
    for hour, start, end in pieces:
        inside = [moment for moment in cuts if start < moment < end]
        result.extend(
            (hour, piece_start, piece_end)
            for piece_start, piece_end in pairwise([start, *inside, end])
        )
    return result


def without_negative_bar(
    rows: Sequence[StatRow], corrections: Mapping[int, float]
) -> tuple[dict[int, float], float]:
    """Return `never_negative`'s corrections without what leaves an hour negative, and that.

    What it takes back beyond all that the rows hold (kWh, positive), for the caller to take back
    otherwise. It is left in the last corrected hour, which may come before hours that gave it
    what they held.
    """
    moved = dict(corrections)
    bars = {row.start: row.sum - before.sum for before, row in pairwise(rows)}
    unplaced = 0.0
    for hour, kwh in moved.items():
        if (short := -(bars.get(hour, 0.0) + kwh)) > 0:
            moved[hour] += short
            unplaced += short
    return moved, unplaced


def taken_from_bars(rows: Sequence[StatRow], kwh: float) -> tuple[dict[int, float], float]:
    """Return a take-back of `kwh` from the rows' bars, and what they could not give (kWh).

    The take-back is by row start (a correction from it lowers its bar): earliest first, each
    row giving at most its bar. ``rows``: oldest first, from a row before the first that may
    give (it gives the next its bar).
    """
    taken: dict[int, float] = {}
    for before, row in pairwise(rows):
        if kwh <= 0:
            break
        if (take := min(row.sum - before.sum, kwh)) > 0:
            taken[row.start] = -take
            kwh -= take
    return taken, max(kwh, 0.0)


def never_negative(rows: Sequence[StatRow], corrections: Mapping[int, float]) -> dict[int, float]:
    """Return the corrections moved so that no hour's bar falls below 0; the total stays.

    Where the records and the live counting place energy in different hours (a site that waited
    for a meter booked a whole span at its end), a correction could take more from an hour than
    it holds. The excess is taken from the corrected hours before it, latest first, then from
    those after it, earliest first (the first corrected hour has none before it: the site booked
    the span's energy in a later one). What all of them together cannot give (the live counting
    booked it in another hour) comes from the other hours, each giving at most its bar: those
    before the last corrected hour, latest first, then those after it. Only a take-back beyond
    all that the rows hold leaves the last corrected hour negative. A corrected hour without a
    row (Home Assistant was down) gets one from `missing_rows`, its corrections as its bar.
    """
    bars = {row.start: row.sum - before.sum for before, row in pairwise(rows)}
    hours = sorted(corrections)
    moved = dict(corrections)
    after = {  # each corrected hour's bar, corrected
        hour: bars.get(hour, 0.0) + moved[hour]
        for hour in hours
        if hour in bars or (rows and rows[0].start < hour < rows[-1].start)
    }

    def pass_on(hour: int, to: int) -> None:
        """Move a negative bar's excess to the corrected hour `to`."""
        if (bar := after.get(hour, 0.0)) < 0:
            moved[hour] -= bar
            after[hour] = 0.0
            moved[to] += bar
            if to in after:
                after[to] += bar

    for index in range(len(hours) - 1, 0, -1):
        pass_on(hours[index], hours[index - 1])
    for index in range(len(hours) - 1):
        pass_on(hours[index], hours[index + 1])
    if hours and (excess := -after.get(last := hours[-1], 0.0)) > 0:
        earlier = sorted((hour for hour in bars if hour < last), reverse=True)
        later = sorted(hour for hour in bars if hour > last)
        for hour in (*earlier, *later):
            if (take := min(after.get(hour, bars[hour]), excess)) > 0:
                moved[hour] = moved.get(hour, 0.0) - take
                moved[last] += take
                excess -= take
    return moved


def per_hour(corrections: Mapping[int, float]) -> dict[int, float]:
    """Return corrections keyed by the moment they apply from, summed per hour.

    A correction from a moment moves the 5-minute rows from that moment on, the hourly rows
    from its hour on (`energy.record_periods.StatisticMoves`).
    """
    hours: dict[int, float] = {}
    for moment, kwh in corrections.items():
        hour = moment - moment % HOUR
        hours[hour] = hours.get(hour, 0.0) + kwh
    return hours


def within_hours(corrections: Mapping[int, float], hours: Mapping[int, float]) -> dict[int, float]:
    """Return corrections by moment that add up to `hours` per hour (`never_negative` moved them).

    An hour's change goes to its last moment: after the rises in it that its moves take back.
    """
    result = dict(corrections)
    summed = per_hour(corrections)
    for hour, kwh in hours.items():
        if change := kwh - summed.get(hour, 0.0):
            last = max((at for at in corrections if at - at % HOUR == hour), default=hour)
            result[last] = result.get(last, 0.0) + change
    return result


def within_five_minutes(
    rows: Sequence[StatRow], corrections: Mapping[int, float]
) -> dict[int, float]:
    """Return corrections by moment, moved within their hours so that no 5-minute bar falls.

    ``rows``: the series' 5-minute rows, oldest first, from a row before the first corrected
    hour's (the first row only gives the next one its bar). A correction from a moment changes
    the bar of the first row from it on; a take-back can exceed what that row showed (a rebuild
    that only makes up a surplus takes from a booking the sensor never showed rising). Where an
    hour's corrections leave one of its rows negative, they become one correction per row of the
    hour: a negative bar's excess comes from the rows before it, latest first, then from those
    after it. Each hour's corrections keep their total, so the hourly rows stay.
    """
    starts = [row.start for row in rows]
    bars = {row.start: row.sum - before.sum for before, row in pairwise(rows)}
    lands: dict[int, int] = {}  # a correction's moment -> the row whose bar it changes
    for moment in corrections:
        index = bisect.bisect_left(starts, moment)
        if 0 < index < len(starts):  # before the rows read all move alike; after the last none
            lands[moment] = starts[index]
    corrected = dict(bars)
    for moment, start in lands.items():
        corrected[start] += corrections[moment]
    result = dict(corrections)
    for hour in {hour_of(start) for start in lands.values()}:
        hour_rows = [start for start in bars if hour_of(start) == hour]
        if min(corrected[start] for start in hour_rows) >= 0:
            continue
        fixed = [corrected[start] for start in hour_rows]
        for index in range(len(fixed) - 1, 0, -1):  # from the rows before, latest first
            if fixed[index] < 0:
                fixed[index - 1] += fixed[index]
                fixed[index] = 0.0
        for index in range(len(fixed) - 1):  # then from those after
            if fixed[index] < 0:
                fixed[index + 1] += fixed[index]
                fixed[index] = 0.0
        # The hour's own corrections (from moments in it, of its rows) become one per row.
        own = [
            moment for moment, start in lands.items() if hour_of(moment) == hour_of(start) == hour
        ]
        for moment in own:
            del result[moment]
        for start, bar in zip(hour_rows, fixed, strict=True):
            landed = math.fsum(corrections[moment] for moment in own if lands[moment] == start)
            if kwh := landed + bar - corrected[start]:
                result[start] = kwh
    return result


def rows_left_behind(
    rows: Sequence[StatRow], corrections: Mapping[int, float]
) -> tuple[StatRow, ...]:
    """Return the hourly rows a correction from within their hour does not move, to be written.

    The recorder moves the rows from a moment on: an hour's row starts before a moment inside it.
    ``rows``: the series' rows, corrected (`with_corrections` of `per_hour`).
    """
    hours = {moment - moment % HOUR for moment in corrections if moment % HOUR}
    return tuple(row for row in rows if row.start in hours)


def with_corrections(rows: Sequence[StatRow], corrections: Mapping[int, float]) -> list[StatRow]:
    """Return rows as they are once each correction was added to the sums from its hour on."""
    changes = sorted(corrections.items())
    result = []
    for row in rows:
        shift = sum(kwh for hour, kwh in changes if hour <= row.start)
        result.append(StatRow(row.start, row.state, row.sum + shift) if shift else row)
    return result


def missing_rows(rows: Sequence[StatRow], corrections: Mapping[int, float]) -> tuple[StatRow, ...]:
    """Return rows for the hours between corrected hours that have none.

    Home Assistant was down: the recorder has no rows for those hours, and a correction of such
    an hour would land in the next row. ``rows``: the series' rows, oldest first, corrected
    (`with_corrections`). A missing hour's sum is the row before it, with the corrections up to
    that hour; only hours between two rows are written (the recorder makes the later ones).
    """
    if not rows or not corrections:
        return ()
    by_hour = {row.start: row for row in rows}
    first = min(corrections)
    before = next((row for row in reversed(rows) if row.start < first), None)
    missing: list[StatRow] = []
    for hour in range(first, min(max(corrections) + HOUR, rows[-1].start), HOUR):
        if (row := by_hour.get(hour)) is not None:
            before = row
        elif before is not None:
            added = math.fsum(kwh for at, kwh in corrections.items() if before.start < at <= hour)
            missing.append(StatRow(hour, before.state, before.sum + added))
    return tuple(missing)


def normalized(rows: Sequence[StatRow], planned: Sequence[StatRow]) -> float:
    """Return how much every sum must move so that the series' first row has no negative sum.

    The Energy dashboard shows a series' first hour as that row's sum: a negative one (left by
    rows filled backwards from a later row) reads as a huge negative bar. Only a first row
    within `rows` counts (older rows than those read may exist otherwise).
    """
    by_hour = {row.start: row for row in rows}
    by_hour.update((row.start, row) for row in planned)
    if not by_hour:
        return 0.0
    first = by_hour[min(by_hour)]
    return -first.sum if first.sum < 0 else 0.0
