"""Capacity peaks: the demand a capacity tariff charges, and the headroom before a new peak.

Capacity tariffs charge a grid connection's peak demand. Flanders charges the month's highest
15-minute demand; Norway steps the monthly charge by the mean of the three highest days' hourly
peaks. A period's *demand* is the grid import in it (as the site's grid metering counts import)
divided by its length, in kW: 0.6 kWh imported in a quarter of an hour is a demand of 2.4 kW.

The *peak* of a billing period (`PeakRule`):

- HIGHEST: the highest demand of any of its periods.
- MEAN_OF_DAYS: each local day's highest demand, and the mean of the `days` highest of those
  (of all of them while fewer days have one).

The running period's *projected* demand is what it ends at if the power stays as it is now; the
*threshold* is the demand above which it would raise the peak (today's peak, or the lowest of the
days that count, whichever is higher); the *headroom* is how much more power could be drawn, on
average, for the rest of the period before it reaches the threshold (negative: it will, unless the
power falls).

Gaps: a period that a gap covered (`energy.periods.GAP_S`) has a provisional demand until
`rebuild` gets its import from the meters' records. A billing period's peak is final once it
ends: what the records tell later of its last day is not applied.

Time is unix seconds; periods and days follow the local clock, billing periods the tariff's cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from enum import StrEnum
from typing import Any, Final

from .periods import Period, PeriodClock, PeriodSums
from .tariff import BillingCycle

STORAGE_VERSION: Final = 1
HISTORY_LENGTH: Final = 12  # closed billing periods whose peak is kept
DEFAULT_DAYS: Final = 3


class PeakRule(StrEnum):
    """Which demand of a billing period a capacity tariff charges."""

    HIGHEST = "highest"
    MEAN_OF_DAYS = "mean_of_days"


@dataclass(frozen=True, slots=True)
class Demand:
    """A period's demand: when the period started, and its average import power (kW)."""

    start: float
    kw: float


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """How a site's capacity peak is measured: the demand period, the rule, the billing cycle."""

    minutes: int
    rule: PeakRule = PeakRule.HIGHEST
    days: int = DEFAULT_DAYS
    cycle: BillingCycle = field(default_factory=BillingCycle)

    def tracker(self, zone: tzinfo) -> CapacityTracker:
        """Return a tracker measuring this way on the local clock of `zone`."""
        return CapacityTracker(PeriodClock(self.minutes, zone), self.cycle, self.rule, self.days)


@dataclass(frozen=True, slots=True)
class CapacityState:
    """The demand period holding a moment, and the billing period's peak so far (kW).

    `demand_kw` and `headroom_kw` are at the grid import power of that moment (None: unknown).
    """

    demand_kw: float | None  # projected to the period's end
    peak_kw: float
    threshold_kw: float  # the demand above which the period raises the peak (0: any demand)
    headroom_kw: float | None
    period_end: float
    seconds_left: float


def demand_of(period: Period) -> Demand:
    """Return the demand of a period whose amount is its import (Wh)."""
    hours = (period.end - period.start) / 3600
    return Demand(period.start, period.amount / 1000 / hours if hours > 0 else 0.0)


@dataclass(slots=True)
class _Day:
    """A day's demand: its highest period outside gaps, and each period a gap covered (kW)."""

    peak: Demand | None = None
    gaps: dict[float, float] = field(default_factory=dict)

    def highest(self) -> Demand | None:
        candidates = [Demand(start, kw) for start, kw in self.gaps.items()]
        if self.peak is not None:
            candidates.append(self.peak)
        return max(candidates, key=lambda demand: demand.kw, default=None)


class CapacityTracker:
    """The demand of each period and the peak of the billing period (see the module)."""

    def __init__(
        self,
        clock: PeriodClock,
        cycle: BillingCycle,
        rule: PeakRule = PeakRule.HIGHEST,
        days: int = DEFAULT_DAYS,
    ) -> None:
        """Measure periods of `clock` in the billing periods of `cycle`."""
        if days < 1:
            raise ValueError(f"the peak is the mean of at least one day, not {days}")
        self.clock = clock
        self.cycle = cycle
        self.rule = rule
        self.days = days
        self._sums = PeriodSums(clock)
        self.month: tuple[float, float] | None = None  # the billing period measured
        self._days: dict[date, _Day] = {}
        self.last: Demand | None = None  # the last closed period's demand
        self.history: list[tuple[float, float]] = []  # (billing period start, peak kW)
        self.pending: set[float] = set()  # starts of gap periods the records have not told

    @property
    def running(self) -> Period | None:
        """Return the period being measured (None: none yet)."""
        return self._sums.running

    def _month_of(self, moment: float) -> tuple[float, float]:
        period = self.cycle.period(datetime.fromtimestamp(moment, self.clock.zone))
        return period.start.timestamp(), period.end.timestamp()

    def _in_month(self, moment: float) -> bool:
        return self.month is not None and self.month[0] <= moment < self.month[1]

    def add(self, start: float, end: float, imported: float) -> list[Demand]:
        """Count the grid import (Wh) over [start, end); return the demands of closed periods."""
        closed = []
        for period in self._sums.add(start, end, imported):
            demand = demand_of(period)
            self._enter_month(period.start)
            day = self._days.setdefault(self.clock.day(period.start), _Day())
            if period.provisional:
                day.gaps[period.start] = demand.kw
                self.pending.add(period.start)
            elif day.peak is None or demand.kw > day.peak.kw:
                day.peak = demand
            self.last = demand
            closed.append(demand)
        return closed

    def _enter_month(self, moment: float) -> None:
        if self._in_month(moment):
            return
        if self.month is not None:
            self.history = [*self.history, (self.month[0], self._peak())][-HISTORY_LENGTH:]
        self.month = self._month_of(moment)
        self._days = {}
        self.pending = set()

    def day_peaks(self) -> dict[date, Demand]:
        """Return each day's highest demand in the billing period measured."""
        return {day: highest for day, peaks in self._days.items() if (highest := peaks.highest())}

    def counted(self) -> list[Demand]:
        """Return the demands the peak is made of, highest first."""
        peaks = sorted(self.day_peaks().values(), key=lambda demand: demand.kw, reverse=True)
        return peaks[: 1 if self.rule is PeakRule.HIGHEST else self.days]

    def _peak(self) -> float:
        counted = self.counted()
        return sum(demand.kw for demand in counted) / len(counted) if counted else 0.0

    def peak(self, now: float) -> float:
        """Return the peak (kW) of the billing period holding `now` so far."""
        return self._peak() if self._in_month(now) else 0.0

    def peak_of(self, start: float) -> float | None:
        """Return the peak (kW) of the billing period that began at `start` (None: not known)."""
        if self.month is not None and self.month[0] == start:
            return self._peak()
        return dict(self.history).get(start)

    def threshold(self, now: float) -> float:
        """Return the demand (kW) above which the running period raises the peak."""
        if not self._in_month(now):
            return 0.0  # a new billing period: any demand is its first peak
        peaks = {day: demand.kw for day, demand in self.day_peaks().items()}
        if self.rule is PeakRule.HIGHEST:
            return max(peaks.values(), default=0.0)
        today = self.clock.day(self.running.start if self.running else now)
        others = sorted((kw for day, kw in peaks.items() if day != today), reverse=True)
        today_peak = peaks.get(today, 0.0)
        if len(others) < self.days:
            return today_peak
        return max(today_peak, others[self.days - 1])

    def demand_so_far(self) -> float | None:
        """Return the running period's demand as it stands (its import so far over its length)."""
        running = self.running
        return None if running is None else demand_of(running).kw

    def _running_at(self, now: float) -> Period:
        """Return the period holding `now`: the running one, or a new one with nothing yet.

        The running period is closed by the first interval that reaches its end: until then a
        moment after its end belongs to a period that has drawn nothing.
        """
        running = self.running
        if running is not None and running.start <= now < running.end:
            return running
        return Period(*self.clock.bounds(now))

    def projected(self, power_w: float, now: float) -> float:
        """Return the demand (kW) the period holding `now` ends at if the import stays `power_w`."""
        running = self._running_at(now)
        left = running.end - now
        return demand_of(
            Period(running.start, running.end, running.amount + power_w * left / 3600)
        ).kw

    def headroom(self, power_w: float, now: float) -> float:
        """Return how much more power (kW) could be drawn before the period raises the peak.

        On average over the rest of the period holding `now`; negative: the period raises the
        peak unless the power falls.
        """
        running = self._running_at(now)
        hours = (running.end - running.start) / 3600
        allowed_wh = self.threshold(now) * 1000 * hours - running.amount
        return (allowed_wh * 3600 / (running.end - now) - power_w) / 1000

    def state(self, power_w: float | None, now: float) -> CapacityState:
        """Return the period holding `now` and the peak; the grid import power is `power_w` W."""
        running = self._running_at(now)
        return CapacityState(
            demand_kw=None if power_w is None else self.projected(power_w, now),
            peak_kw=self.peak(now),
            threshold_kw=self.threshold(now),
            headroom_kw=None if power_w is None else self.headroom(power_w, now),
            period_end=running.end,
            seconds_left=running.end - now,
        )

    def needs_records_since(self) -> float | None:
        """Return the start of the oldest gap period the records have not told (None: none)."""
        return min(self.pending, default=None)

    def rebuild(self, imports: Mapping[float, float]) -> None:
        """Measure gap periods again with the import (Wh, by start) the records tell."""
        length = self.clock.length
        for start in sorted(self.pending & imports.keys()):
            day = self._days.get(self.clock.day(start))
            if day is not None and start in day.gaps:
                day.gaps[start] = demand_of(Period(start, start + length, imports[start])).kw
            self.pending.discard(start)

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-safe data."""
        return {
            "version": STORAGE_VERSION,
            "length": self.clock.length,
            "running": self._sums.to_list(),
            "month": None if self.month is None else list(self.month),
            "days": {
                day.isoformat(): {
                    "peak": None if peaks.peak is None else [peaks.peak.start, peaks.peak.kw],
                    "gaps": [[start, kw] for start, kw in sorted(peaks.gaps.items())],
                }
                for day, peaks in sorted(self._days.items())
            },
            "last": None if self.last is None else [self.last.start, self.last.kw],
            "history": [list(entry) for entry in self.history],
            "pending": sorted(self.pending),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from `to_dict` data; raise ValueError for data that is not such a state.

        Data of periods of another length starts the billing period's peak anew (its history
        stays).
        """
        if data.get("version") != STORAGE_VERSION:
            raise ValueError(f"unsupported capacity storage version {data.get('version')!r}")
        try:
            history = [(float(start), float(kw)) for start, kw in data["history"]]
            if data["length"] != self.clock.length:
                self.history = history
                return
            month = data["month"]
            days = {
                date.fromisoformat(day): _Day(
                    None if peaks["peak"] is None else Demand(*peaks["peak"]),
                    {float(start): float(kw) for start, kw in peaks["gaps"]},
                )
                for day, peaks in data["days"].items()
            }
            last = data["last"]
            pending = {float(start) for start in data["pending"]}
            self._sums.restore(data["running"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not a stored capacity state: {err!r}") from err
        self.month = None if month is None else (month[0], month[1])
        self._days = days
        self.last = None if last is None else Demand(*last)
        self.history = history
        self.pending = pending
        self._follow_cycle()

    def _follow_cycle(self) -> None:
        """Measure in this cycle's billing period a state measured in another cycle's.

        The tariff's billing cycle may have changed (a tariff added or edited after the peaks
        were turned on): the days measured in the billing period holding the latest of them stay.
        """
        if self.month is None:
            return

        def midnight(day: date) -> float:
            return datetime.combine(day, time(), self.clock.zone).timestamp()

        latest = max(self._days, default=None)
        bounds = self._month_of(self.month[0] if latest is None else midnight(latest))
        if bounds == self.month:
            return
        self.month = bounds
        self._days = {
            day: peaks
            for day, peaks in self._days.items()
            if bounds[0] <= midnight(day) < bounds[1]
        }
        self.pending = {start for start in self.pending if bounds[0] <= start < bounds[1]}
