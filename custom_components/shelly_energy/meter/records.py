"""The energy records meters keep on the device, in one vocabulary for every family.

Gen2+ meters keep 1-minute records (5-minute on the 3EM-63 Gen3), read as `data.csv` downloads
or with `EMData` / `EM1Data.GetData`; Gen1 meters keep 10-minute buckets served as
`em_data.csv`. Both become
`EnergyRecord`s: the Wh one record period moved, per channel, exactly as the device stored them.
Nothing is corrected here (no reversed CTs, no deadband): the consumer applies the user's
corrections, as it does to live readings.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import values
from .errors import MalformedReplyError
from .values import LATEST_VALID_TS, integer, number

_LOGGER = logging.getLogger(__name__)

# Records stamped before it are dropped: the meter had not synced its clock yet.
EARLIEST_VALID_TS = values.EARLIEST_VALID_TS
# The longest record period a meter keeps (Gen1: 10 minutes); a longer one is garbage.
MAX_RECORD_PERIOD_S = 3600


@dataclass(frozen=True, slots=True)
class EnergyRecord:
    """Energy a meter measured over one record period, per channel."""

    ts: int  # unix seconds, start of the period
    period: int  # seconds (60 Gen2+, 300 3EM-63 Gen3, 600 Gen1)
    energy_in: tuple[
        float, ...
    ]  # Wh imported in the period, per channel in MeterInfo.channel_ids order
    energy_out: tuple[float, ...]  # Wh exported in the period, same order


def energy(value: Any) -> float | None:
    """Return a record's energy (a finite, non-negative number of Wh), anything else as None."""
    result = number(value)
    return result if result is not None and result >= 0 else None


class GarbageLog:
    """Logs the first unusable row of a read at debug level, and counts the rest."""

    __slots__ = ("_source", "dropped")

    def __init__(self, source: str) -> None:
        """Start counting for the records of `source` (a meter's host, for the log)."""
        self._source = source
        self.dropped = 0

    def drop(self, ts: int | None, row: object) -> None:
        """Note one row skipped because it holds no usable energy."""
        if not self.dropped:
            _LOGGER.debug(
                "%s: skipping record rows without usable energy, e.g. %s at %s",
                self._source,
                row,
                ts,
            )
        self.dropped += 1


class RecordMerger:
    """Collects the rows of one or several record series (one per channel, or one for all) by stamp.

    A record one channel holds and another lacks reads 0.0 Wh for the channel without it: a
    meter stores every channel's row together, so this only happens at the edges of its
    retention. A stamp with an unusable row in any series is dropped as a whole.

    The rows wait in flat arrays, not in objects per record: a batch waits through a thousand
    calls, and that many objects outliving them would make Python's full garbage collection of
    Home Assistant's whole heap (a pause of the event loop) come sooner.
    """

    __slots__ = ("_bad", "_energy_in", "_energy_out", "_periods", "_row_of", "_zeros", "channels")

    def __init__(self, channels: int) -> None:
        """Start empty, for records of `channels` channels."""
        self.channels = channels
        self._zeros = array("d", bytes(8 * channels))
        self._start()

    def _start(self) -> None:
        self._row_of: dict[int, int] = {}  # stamp -> row
        self._periods = array("q")  # per row
        self._energy_in = array("d")  # `channels` values per row
        self._energy_out = array("d")
        self._bad: set[int] = set()

    def add(
        self,
        ts: int,
        period: int,
        positions: Sequence[int],
        energy_in: Sequence[float],
        energy_out: Sequence[float],
    ) -> None:
        """Set the energies of the channels at `positions` of the record at `ts`."""
        row = self._row_of.get(ts)
        if row is None:
            row = self._row_of[ts] = len(self._periods)
            self._periods.append(period)
            self._energy_in.extend(self._zeros)
            self._energy_out.extend(self._zeros)
        first = row * self.channels
        for position, imported, exported in zip(positions, energy_in, energy_out, strict=True):
            self._energy_in[first + position] = imported
            self._energy_out[first + position] = exported

    def drop(self, ts: int) -> None:
        """Leave out the record at `ts`: one of its rows was unusable."""
        self._bad.add(ts)

    def take(self, batch: int) -> Iterator[list[EnergyRecord]]:
        """Hand the collected records on, oldest first, `batch` at a time; start empty again.

        The records of a batch are made when it is asked for: made all at once, a day's
        records would outlive the young generations' collections that making them sets off,
        and bring the full collection closer (see above).
        """
        rows, bad, periods = self._row_of, self._bad, self._periods
        energy_in, energy_out, channels = self._energy_in, self._energy_out, self.channels
        self._start()
        stamps = sorted(rows.keys() - bad)

        def batches() -> Iterator[list[EnergyRecord]]:
            for first_stamp in range(0, len(stamps), batch):
                records = []
                for ts in stamps[first_stamp : first_stamp + batch]:
                    row = rows[ts]
                    first, end = row * channels, (row + 1) * channels
                    records.append(
                        EnergyRecord(
                            ts,
                            periods[row],
                            tuple(energy_in[first:end]),
                            tuple(energy_out[first:end]),
                        )
                    )
                yield records

        return batches()


class DataColumns:
    """Where each channel's energies sit in the rows of a `GetData` reply, found by its keys."""

    __slots__ = ("_keys", "exported", "imported", "names")

    def __init__(self, names: Sequence[tuple[str, str]]) -> None:
        """Look for these (imported, exported) key pairs, one per channel of the series."""
        self.names = names
        self._keys: list[Any] | None = None
        self.imported: tuple[int, ...] = ()
        self.exported: tuple[int, ...] = ()

    def update(self, keys: Any) -> None:
        """Find the columns in a reply's `keys` (once: every reply repeats the same keys)."""
        if not isinstance(keys, list):
            raise MalformedReplyError("keys", "is not a list")
        if keys == self._keys:
            return
        try:
            self.imported = tuple(keys.index(name) for name, _ in self.names)
            self.exported = tuple(keys.index(name) for _, name in self.names)
        except ValueError as err:
            raise MalformedReplyError("keys", "lacks the energy keys") from err
        self._keys = keys


def read_data_reply(
    reply: dict[str, Any],
    columns: DataColumns,
    positions: Sequence[int],
    merger: RecordMerger,
    garbage: GarbageLog,
    *,
    since: int,
    until: int,
) -> None:
    """Collect the records of one `GetData` reply stamped in [since, until) into `merger`.

    `positions` are the channels (indices into `MeterInfo.channel_ids`) of the series' columns.
    """
    columns.update(reply.get("keys"))
    blocks = reply.get("data")
    if not isinstance(blocks, list):
        raise MalformedReplyError("data", "is not a list")
    imported_at, exported_at = columns.imported, columns.exported
    for position, block in enumerate(blocks):
        field = f"data[{position}]"
        if not isinstance(block, dict):
            raise MalformedReplyError(field, "is not an object")
        ts = integer(block.get("ts"), 0, LATEST_VALID_TS)
        period = integer(block.get("period"), 1, MAX_RECORD_PERIOD_S)
        rows = block.get("values")
        if ts is None:
            raise MalformedReplyError(f"{field}.ts", "is not a time")
        if period is None:
            raise MalformedReplyError(f"{field}.period", "is not a period in seconds")
        if not isinstance(rows, list):
            raise MalformedReplyError(f"{field}.values", "is not a list")
        for row_number, row in enumerate(rows):
            stamp = ts + row_number * period
            if not since <= stamp < until:
                continue
            imported = _energies(row, imported_at)
            exported = _energies(row, exported_at)
            if imported is None or exported is None:
                garbage.drop(stamp, row)
                merger.drop(stamp)
            else:
                merger.add(stamp, period, positions, imported, exported)


def read_data_csv_line(
    line: str,
    columns: DataColumns,
    positions: Sequence[int],
    merger: RecordMerger,
    garbage: GarbageLog,
    *,
    period: int,
    since: int,
    until: int,
) -> None:
    """Collect one record row of a Gen2+ `data.csv` stamped in [since, until) into `merger`.

    A row is the record's stamp (unix seconds), then its values in the order of the header's
    keys (`columns`); an empty cell is a value the meter does not have.
    """
    fields = line.split(",")
    try:
        stamp = int(fields[0])
    except ValueError:
        garbage.drop(None, line)
        return
    if not since <= stamp < until:
        return
    values = fields[1:]
    imported = _csv_energies(values, columns.imported)
    exported = _csv_energies(values, columns.exported)
    if imported is None or exported is None:
        garbage.drop(stamp, line)
        merger.drop(stamp)
    else:
        merger.add(stamp, period, positions, imported, exported)


def _csv_energies(cells: list[str], indices: tuple[int, ...]) -> list[float] | None:
    """Return the energies at `indices` of a data.csv row; None unless every one is usable."""
    values = []
    for index in indices:
        value = _csv_energy(cells[index]) if index < len(cells) else None
        if value is None:
            return None
        values.append(value)
    return values


def _energies(row: Any, indices: tuple[int, ...]) -> list[float] | None:
    """Return the energies at `indices` of a GetData row; None unless every one is usable."""
    values = []
    try:
        for index in indices:
            value = energy(row[index])
            if value is None:
                return None
            values.append(value)
    except (IndexError, KeyError, TypeError):
        return None
    return values


def read_csv_line(line: str) -> tuple[int, float | None, float | None] | None:
    """Read one row of a Gen1 `em_data.csv`: (stamp, Wh imported, Wh exported).

    Rows look like `2025-06-01 00:10,12.34,0.00,229.1,231.0` (UTC, to the minute). None when
    the row has no readable stamp; an energy that is not a usable number reads None.
    """
    fields = line.split(",", 3)
    try:
        stamp = datetime.fromisoformat(fields[0].strip()).replace(tzinfo=UTC)
    except ValueError:
        return None
    if len(fields) < 3:
        return int(stamp.timestamp()), None, None
    return int(stamp.timestamp()), _csv_energy(fields[1]), _csv_energy(fields[2])


def _csv_energy(text: str) -> float | None:
    try:
        return energy(float(text))
    except ValueError:
        return None
