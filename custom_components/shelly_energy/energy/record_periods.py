"""Settlement and demand periods from the meters' records, and the statistics of rebuilt periods.

The site's history (`energy.history_plan.SiteHours`) computes its grid flows for every interval of
its meters' records (1 minute, usually). `RecordPeriods` takes each interval's grid import and
export, as the live site takes each update's (`energy.site`), and sums them into periods of the
local clock (`energy.periods`):

- settlement periods: each period's net (import less export), and what the settled grid sensors
  book in each UTC hour: a period's net goes to import or export at its end, as the live
  settlement books it at the first update that reaches the end (the period 10:00-11:00 is
  booked in the hour from 11:00);
- demand periods: each period's grid import (Wh), whose demand a capacity tariff charges.

Only periods the records cover whole are told (`nets`, `imports`): those are what
`GridSettlement.rebuild` and `CapacityTracker.rebuild` take for the periods a gap covered.

`settlement_moves` tells how the statistics of a settled grid sensor move when provisional
periods are rebuilt: each period's estimate leaves the hour it was booked in, its exact net goes
to the hour of its end. The sensor's published total changed by the rebuild (`GridSettlement`
publishes an increase at once, and keeps a decrease as a surplus that later bookings make up);
the recorder counts that change in the hour it is published, so the statistics take it back
there once that hour is compiled (`later`), and a surplus stays in the hour the estimates were
booked in: no hour is negative and the statistics' total keeps following the sensor's.

The recorder's 5-minute rows (the Energy dashboard's bars of a day) show each rise in the row of
the moment it was published: what a move takes back leaves the sums from that row on, not from
the start of its hour, or the rows of the hour before the rise would fall. A move is therefore
keyed by the moment it applies from (a 5-minute row's start; the hourly rows move from its hour).

Time is unix seconds; energy Wh, statistics kWh (per UTC hour, and per 5 minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .periods import PeriodClock, PeriodSums
from .settlement import Rebuilt, changed_by, settled

HOUR = 3600
# The site's flows a settlement books by period, in the order `RecordPeriods.booked` holds them.
SETTLED_FLOWS = ("grid_import", "grid_export")
FIVE_MINUTES = 300  # the recorder's short-term statistics


def hour_of(moment: float) -> int:
    """Return the start of the UTC hour holding a moment."""
    return int(moment - moment % HOUR)


def five_minutes_of(moment: float) -> int:
    """Return the start of the recorder's 5-minute row holding a moment."""
    return int(moment - moment % FIVE_MINUTES)


class RecordPeriods:
    """A site's grid flows per interval of its records, summed into settlement and demand periods.

    `settlement` and `demand` are the periods' clocks (None: not wanted). Feed every interval
    from `start` on, oldest first, with `add`.
    """

    def __init__(
        self, settlement: PeriodClock | None, demand: PeriodClock | None, start: float
    ) -> None:
        """Start at `start`, where the records begin."""
        self.start = start
        self._settlement = None if settlement is None else PeriodSums(settlement)
        self._demand = None if demand is None else PeriodSums(demand)
        self.nets: dict[float, float] = {}  # whole settlement periods' nets (Wh), by start
        self.imports: dict[float, float] = {}  # whole demand periods' import (Wh), by start
        # What the settled import and export book in each UTC hour (Wh): [import, export].
        self.booked: dict[int, list[float]] = {}

    @property
    def settles(self) -> bool:
        """Return whether settlement periods are summed."""
        return self._settlement is not None

    def booked_between(self, start: float, end: float) -> tuple[float, float]:
        """Return what the settled import and export book (Wh) in [start, end).

        The nets of the whole periods that end then: the live settlement books a period at the
        first update that reaches its end, so one ending at `end` is not booked before it.
        """
        if self._settlement is None:
            raise ValueError("no settlement periods are summed")
        clock = self._settlement.clock
        totals = [0.0, 0.0]
        for period_start, net in self.nets.items():
            if period_start < end and start <= clock.bounds(period_start)[1] < end:
                booked = settled(net)
                totals[0] += booked[0]
                totals[1] += booked[1]
        return totals[0], totals[1]

    def add(self, start: float, end: float, grid_import: float, grid_export: float) -> None:
        """Add the grid import and export (Wh) of the interval [start, end)."""
        if self._settlement is not None:
            for period in self._settlement.add(start, end, grid_import - grid_export):
                hour = self.booked.setdefault(hour_of(period.end), [0.0, 0.0])
                booked = settled(period.amount)
                hour[0] += booked[0]
                hour[1] += booked[1]
                if period.start >= self.start:
                    self.nets[period.start] = period.amount
        if self._demand is not None:
            for period in self._demand.add(start, end, grid_import):
                if period.start >= self.start:
                    self.imports[period.start] = period.amount


@dataclass(frozen=True, slots=True)
class StatisticMoves:
    """How a settled grid sensor's statistics move (kWh), keyed by the moment they apply from.

    A move from a moment is added to the sums of the 5-minute rows from the row starting then,
    and to those of the hourly rows from its hour (`hour_of`) on. `now`: now (those hours are
    compiled). `later`: once the recorder compiled the row of its moment (None: nothing).
    """

    now: dict[int, float]
    later: tuple[int, float] | None


def settlement_moves(
    rebuilt: Sequence[Rebuilt], index: int, published_change: float, rebuilt_at: float
) -> StatisticMoves:
    """Return how the statistics of settled import (`index` 0) or export (1) move.

    `rebuilt`: the periods a rebuild settled again; `published_change`: how much the sensor's
    published total rose by it (Wh); `rebuilt_at`: when it rose (the sensor showed it).
    """
    if not rebuilt:
        return StatisticMoves({}, None)
    moves: dict[int, float] = {}
    for period in rebuilt:
        # The estimate leaves the 5-minute row it rose in; the exact net comes in its hour.
        booked, ends = five_minutes_of(period.booked_at), hour_of(period.end)
        moves[booked] = moves.get(booked, 0.0) - settled(period.was)[index] / 1000
        moves[ends] = moves.get(ends, 0.0) + settled(period.exact)[index] / 1000
    # What was booked, less what is published: a surplus kept (or made up) where it was booked.
    last_booked = max(five_minutes_of(period.booked_at) for period in rebuilt)
    unpublished = (changed_by(list(rebuilt))[index] - published_change) / 1000
    moves[last_booked] -= unpublished
    later = (
        None if not published_change else (five_minutes_of(rebuilt_at), -published_change / 1000)
    )
    return StatisticMoves(moves, later)
