"""Stored history: fixed-period energy records, one implementation for every record kind.

Gen2+ meters keep 1-minute records (5-minute on the 3EM-63 Gen3), Gen1 meters 10-minute
buckets for `em_data.csv`. A `RecordStore` holds contiguous *blocks* of records (a new block
starts after a power loss); row i of a block is stamped `block.ts + i * period`.

Energies are stored as integer mWh per period, taken as differences of the *rounded running
counter* (see `to_mwh`), so the records of any stretch add up exactly to the counter's growth
over it. Per channel the store keeps 8 compact columns; the 16 (triphase) or 14 (EM1) values a
row publishes are derived from them when read.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from operator import truediv
from typing import Any, NamedTuple

JOULES_PER_MWH = 3.6

# Per phase, in the order a Pro 3EM publishes them.
_PHASE_KEYS = (
    "total_act_energy",
    "fund_act_energy",
    "total_act_ret_energy",
    "fund_act_ret_energy",
    "lag_react_energy",
    "lead_react_energy",
    "max_act_power",
    "min_act_power",
    "max_aprt_power",
    "min_aprt_power",
    "max_voltage",
    "min_voltage",
    "avg_voltage",
    "max_current",
    "min_current",
    "avg_current",
)
_FUNDAMENTAL_KEYS = frozenset({"fund_act_energy", "fund_act_ret_energy"})
TRIPHASE_KEYS: tuple[str, ...] = (
    *(f"{phase}_{key}" for phase in "abc" for key in _PHASE_KEYS),
    "n_max_current",
    "n_min_current",
    "n_avg_current",
)
EM1_KEYS: tuple[str, ...] = tuple(key for key in _PHASE_KEYS if key not in _FUNDAMENTAL_KEYS)
# Below this average power a load is taken to be capacitive (LED drivers, standby supplies).
LEADING_BELOW_W = 50.0


def to_mwh(joules: float) -> int:
    """Round a running energy counter (J) to whole mWh, the resolution records are kept in."""
    return round(joules / JOULES_PER_MWH)


def to_mwh_all(joules: Iterable[float]) -> list[int]:
    """Return `to_mwh` of every value, fast."""
    return list(map(round, map(truediv, joules, repeat(JOULES_PER_MWH))))


class RecordColumns(NamedTuple):
    """Stored values of consecutive records of one channel (one list entry per record)."""

    import_mwh: list[int]
    export_mwh: list[int]
    min_power: list[float]  # W, signed
    max_power: list[float]
    min_voltage: list[float]
    max_voltage: list[float]
    avg_voltage: list[float]
    power_factor: list[float]  # average |P| / average S, 0 when idle


class _ChannelStore:
    """The columns of one channel, compactly: energies as int64, the rest as float32."""

    __slots__ = RecordColumns._fields

    def __init__(self) -> None:
        self.import_mwh = array("q")
        self.export_mwh = array("q")
        self.min_power = array("f")
        self.max_power = array("f")
        self.min_voltage = array("f")
        self.max_voltage = array("f")
        self.avg_voltage = array("f")
        self.power_factor = array("f")

    def columns(self) -> list[array[Any]]:
        return [getattr(self, name) for name in RecordColumns._fields]


@dataclass(slots=True)
class Block:
    """A contiguous run of records: `count` rows from `ts`, stored from position `start`."""

    ts: int
    start: int
    count: int


@dataclass(slots=True)
class Segment:
    """A selected run of rows within one block: `count` rows from `ts`, at `start`."""

    ts: int
    start: int
    count: int

    @property
    def end(self) -> int:
        """Return the position after the run's last row."""
        return self.start + self.count


class RecordStore:
    """Fixed-period records of `channels` channels, at most `capacity` kept (oldest dropped)."""

    def __init__(self, channels: int, period: int, capacity: int) -> None:
        """Create an empty store."""
        self.period = period
        self.capacity = capacity
        self.blocks: list[Block] = []
        self._channels = [_ChannelStore() for _ in range(channels)]
        # Dropped records stay at the front of the columns until there are enough of them to
        # be worth moving the rest: trimming one record a minute must not copy the columns.
        self._dead = 0

    def __len__(self) -> int:
        """Return the number of stored records."""
        return sum(block.count for block in self.blocks)

    def clear(self) -> None:
        """Drop every record."""
        self.blocks.clear()
        self._dead = 0
        for channel in self._channels:
            for column in channel.columns():
                del column[:]

    def extend(self, ts: int, columns: list[RecordColumns]) -> None:
        """Append consecutive records from `ts` (one `RecordColumns` per channel).

        They continue the last block when `ts` is where it ends, else open a new block.
        """
        count = len(columns[0].import_mwh)
        if count == 0:
            return
        last = self.blocks[-1] if self.blocks else None
        if last is not None and ts < last.ts + last.count * self.period:
            raise ValueError("records must be appended in time order")
        if last is not None and ts == last.ts + last.count * self.period:
            last.count += count
        else:
            self.blocks.append(Block(ts, self._size(), count))
        self._write(columns, at_end=True)
        self._trim()

    def prepend(self, ts: int, columns: list[RecordColumns]) -> None:
        """Insert records as a new first block (records stamped before the clock was synced)."""
        count = len(columns[0].import_mwh)
        first = self.blocks[0] if self.blocks else None
        if first is not None and ts + count * self.period > first.ts:
            raise ValueError("prepended records must end before the first block")
        self._compact()
        for block in self.blocks:
            block.start += count
        self.blocks.insert(0, Block(ts, 0, count))
        self._write(columns, at_end=False)
        self._trim()

    def last_import_mwh(self, channel: int, count: int) -> list[int]:
        """Return the import energy of the newest `count` records of a channel, newest first."""
        column = self._channels[channel].import_mwh
        return [column[-1 - back] for back in range(min(count, len(column) - self._dead))]

    def data_blocks(self, since: int | None = None) -> list[dict[str, int]]:
        """Return the `EMData.GetRecords` blocks, only rows stamped at or after `since`."""
        result: list[dict[str, int]] = []
        for segment in self.select(since, None, None)[0]:
            result.append({"ts": segment.ts, "period": self.period, "records": segment.count})
        return result

    def select(
        self, since: int | None, until: int | None, limit: int | None
    ) -> tuple[list[Segment], int | None]:
        """Pick the rows stamped in [since, until], at most `limit` of them.

        Return the selected runs (one per block touched) and, when the limit cut the answer
        short, the stamp of the first row left out.
        """
        segments: list[Segment] = []
        remaining = math.inf if limit is None else limit
        period = self.period
        for block in self.blocks:
            first = 0 if since is None else max(0, -((block.ts - since) // period))
            last = block.count - 1
            if until is not None:
                last = min(last, (until - block.ts) // period)
            if first > last:
                continue
            if remaining <= 0:
                return segments, block.ts + first * period
            take = int(min(last - first + 1, remaining))
            segments.append(Segment(block.ts + first * period, block.start + first, take))
            remaining -= take
            if take < last - first + 1:
                return segments, block.ts + (first + take) * period
        return segments, None

    def row(self, position: int, channel: int, *, fundamental: bool) -> list[float]:
        """Return the published values of one record of one channel.

        The 16 triphase values per phase with `fundamental`, else the 14 EM1 values
        (`EM1_KEYS`); energies in Wh per period, powers W, voltages V, currents A.
        """
        store = self._channels[channel]
        imported = store.import_mwh[position] / 1000
        exported = store.export_mwh[position] / 1000
        min_power = float(store.min_power[position])
        max_power = float(store.max_power[position])
        avg_voltage = float(store.avg_voltage[position])
        power_factor = float(store.power_factor[position])
        moved = imported + exported
        mean_power = moved * 3600 / self.period
        if power_factor > 0:
            reactive = moved * math.tan(math.acos(min(power_factor, 1.0)))
            max_apparent = max(abs(min_power), abs(max_power)) / power_factor
            crosses_zero = min_power < 0 < max_power
            min_apparent = 0.0 if crosses_zero else min(abs(min_power), abs(max_power))
            min_apparent /= power_factor
            mean_apparent = mean_power / power_factor
        else:
            reactive = max_apparent = min_apparent = mean_apparent = 0.0
        leading = mean_power < LEADING_BELOW_W

        def amps(apparent: float) -> float:
            return round(apparent / avg_voltage, 3) if avg_voltage > 0 else 0.0

        values = [round(imported, 3)]
        if fundamental:
            values.append(round(imported, 3))
        values.append(round(exported, 3))
        if fundamental:
            values.append(round(exported, 3))
        values += [
            0.0 if leading else round(reactive, 3),
            round(reactive, 3) if leading else 0.0,
            round(max_power, 1),
            round(min_power, 1),
            round(max_apparent, 1),
            round(min_apparent, 1),
            round(float(store.max_voltage[position]), 1),
            round(float(store.min_voltage[position]), 1),
            round(avg_voltage, 1),
            amps(max_apparent),
            amps(min_apparent),
            amps(mean_apparent),
        ]
        return values

    def channel_energy_mwh(self, channel: int) -> tuple[int, int]:
        """Return the summed import and export energy of every record of a channel (mWh)."""
        store = self._channels[channel]
        return sum(store.import_mwh[self._dead :]), sum(store.export_mwh[self._dead :])

    def voltage_range(self, position: int, channel: int) -> tuple[float, float]:
        """Return the (min, max) voltage of one record of a channel."""
        store = self._channels[channel]
        return float(store.min_voltage[position]), float(store.max_voltage[position])

    def energy_mwh(self, position: int, channel: int) -> tuple[int, int]:
        """Return the (import, export) energy of one record of a channel, in mWh."""
        store = self._channels[channel]
        return store.import_mwh[position], store.export_mwh[position]

    def _size(self) -> int:
        return len(self._channels[0].import_mwh)

    def _write(self, columns: list[RecordColumns], *, at_end: bool) -> None:
        if len(columns) != len(self._channels):
            raise ValueError(f"expected {len(self._channels)} channels, got {len(columns)}")
        for store, given in zip(self._channels, columns, strict=True):
            for column, name in zip(store.columns(), RecordColumns._fields, strict=True):
                values = getattr(given, name)
                if at_end:
                    column.extend(values)
                else:
                    column[0:0] = array(column.typecode, values)

    def _trim(self) -> None:
        excess = self._size() - self._dead - self.capacity
        if excess <= 0:
            return
        self._dead += excess
        while excess:
            first = self.blocks[0]
            if first.count <= excess:
                excess -= first.count
                self.blocks.pop(0)
                continue
            first.ts += excess * self.period
            first.start += excess
            first.count -= excess
            excess = 0
        if self._dead > max(4096, self.capacity // 4):
            self._compact()

    def _compact(self) -> None:
        """Physically remove the dropped records from the front of the columns."""
        if not self._dead:
            return
        for channel in self._channels:
            for column in channel.columns():
                del column[: self._dead]
        for block in self.blocks:
            block.start -= self._dead
        self._dead = 0
