"""Fixed-length periods on the local clock (15 minutes, 30 minutes, an hour), in real time.

Utilities settle and measure demand in periods of the wall clock: the hour from 10:00 to 11:00
local time, the quarter from 10:45. Their lengths are real time, so a daylight-saving day has 23
or 25 hourly periods (the repeated hour is two periods). Where the clock jumps by a part of a
period (Lord Howe Island moves by 30 minutes) the period that holds the jump is cut there: a
period is the longest stretch of time whose local clock reads the same period start at the same
UTC offset.

Time is unix seconds; the time zone is a `tzinfo` (a `zoneinfo.ZoneInfo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

MINUTE = 60


class PeriodClock:
    """Tells which period of `minutes` (a divisor of a day) holds a moment, in a time zone."""

    __slots__ = ("length", "zone")

    def __init__(self, minutes: int, zone: tzinfo) -> None:
        """Periods of `minutes` minutes, starting at local midnight."""
        if minutes <= 0 or (24 * 60) % minutes:
            raise ValueError(f"a period must divide a day, not {minutes} minutes")
        self.length = minutes * MINUTE
        self.zone = zone

    def _offset(self, moment: float) -> int:
        offset = datetime.fromtimestamp(moment, self.zone).utcoffset()
        return 0 if offset is None else int(offset.total_seconds())

    def _change(self, before: float, after: float) -> float:
        """Return when the UTC offset became what it is at `after` (it differs at `before`)."""
        target = self._offset(after)
        low, high = int(before), int(after)  # offset(low) != target == offset(high)
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == target:
                high = middle
            else:
                low = middle
        return float(high)

    def bounds(self, moment: float) -> tuple[float, float]:
        """Return the start (inclusive) and end (exclusive) of the period holding `moment`."""
        offset = self._offset(moment)
        local = moment + offset
        start = local - local % self.length - offset
        end = start + self.length
        if self._offset(start) != offset:  # the clock changed inside the period, before now
            start = self._change(start, moment)
        if self._offset(end - 1) != offset:  # ... or changes inside it after now
            end = self._change(moment, end - 1)
        return start, end

    def day(self, moment: float) -> date:
        """Return the local calendar day of a moment."""
        return datetime.fromtimestamp(moment, self.zone).date()


# An interval longer than this (s) that reaches into more than one period is a gap: how its energy
# fell into the periods is a guess (spread by time) until the meters' records tell.
GAP_S = 120.0


@dataclass(slots=True)
class Period:
    """A period's bounds, what was added to it (an amount of Wh) and whether a gap touched it."""

    start: float
    end: float
    amount: float = 0.0
    provisional: bool = False


class PeriodSums:
    """Sums an amount per period from intervals, each spread over the periods it covers by time.

    Power is taken as even within an interval. A period is closed (returned by `add`) once an
    interval reaches its end.
    """

    __slots__ = ("clock", "running")

    def __init__(self, clock: PeriodClock) -> None:
        """Start with no period running."""
        self.clock = clock
        self.running: Period | None = None

    def add(self, start: float, end: float, amount: float) -> list[Period]:
        """Add `amount` over [start, end); return the periods that closed, oldest first."""
        closed: list[Period] = []
        duration = end - start
        if duration <= 0:  # no time passed (or the clock went back): the running period takes it
            if self.running is None:
                self.running = Period(*self.clock.bounds(end))
            self.running.amount += amount
            return closed
        gap = duration > GAP_S and self.clock.bounds(start)[1] < end
        moment = start
        while moment < end:
            running = self.running
            if running is not None and moment >= running.end:
                closed.append(running)  # an interval began after its end: nothing more comes
                running = None
            if running is None:
                running = Period(*self.clock.bounds(moment))
                self.running = running
            # A running period from a later time (the clock went back) takes the rest whole.
            piece_end = min(end, running.end)
            running.amount += amount * (piece_end - moment) / duration
            running.provisional = running.provisional or gap
            if end < running.end:
                break
            closed.append(running)
            self.running = None
            moment = piece_end
        return closed

    def close_running(self) -> Period | None:
        """Close the running period as it stands; return it (None: none was running)."""
        running, self.running = self.running, None
        return running

    def to_list(self) -> list[Any] | None:
        """Return the running period as JSON-safe data."""
        running = self.running
        if running is None:
            return None
        return [running.start, running.end, running.amount, running.provisional]

    def restore(self, data: Sequence[Any] | None) -> None:
        """Continue the running period `to_list` returned."""
        self.running = None if data is None else Period(*data)
