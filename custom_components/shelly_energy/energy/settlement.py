"""Settlement periods: a site's grid import and export as the utility bills them.

Many utilities bill the *net* of each period rather than the energy that crossed the meter:
Spain nets every hour, Portugal every 15 minutes. At the end of each period the period's net
(import less export, across every phase and meter) goes to import if positive, to export if
negative. Instantaneous settlement is what the site's grid metering already does (per phase, or
balanced at every update): each update's import and export count as they are.

A `GridSettlement` takes the grid import and export the site's metering counted in each interval
between two updates (`energy.site`), and publishes totals of its own:

- Instantaneous: the interval's import and export count at once.
- Periods: the interval's net is spread over it by time and added to the periods it covers
  (`energy.periods.PeriodSums`); a period's net is booked when an interval reaches its end. The
  running period's net so far, and the time left, are for people and automations that want to
  bring it to zero.

Gaps: an interval longer than `energy.periods.GAP_S` that covers more than one period (Home
Assistant was down, a grid meter was away) cannot tell how its energy fell into the periods. The
periods it covered are *provisional* until `rebuild` gets their nets from the meters' stored
records (`energy.history_plan.SiteHours`): the totals then move by what the records tell, never
below what was published (a published total never decreases; later bookings make up a surplus
first).

Switching settlement (another period length, or to or from instantaneous) keeps the totals: the
running period is booked as it stands, and counting goes on under the new settlement. After a
restart the totals continue from what was stored, and never below what Home Assistant last
recorded (`hold_at_least`).

Time is unix seconds; periods follow the local clock (`energy.periods.PeriodClock`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from .periods import Period, PeriodClock, PeriodSums

STORAGE_VERSION: Final = 1
# Provisional periods older than this (s) are dropped: no meter keeps records that long.
PROVISIONAL_KEPT_S: Final = 62 * 86400


class Settlement(StrEnum):
    """How often the utility settles a site's grid energy (the period in minutes)."""

    INSTANT = "instant"
    MINUTES_15 = "15"
    MINUTES_30 = "30"
    HOUR = "60"

    @property
    def minutes(self) -> int | None:
        """Return the period's length in minutes (None: instantaneous)."""
        return None if self is Settlement.INSTANT else int(self.value)


def settled(net: float) -> tuple[float, float]:
    """Return what a period's net (Wh) books as import and as export."""
    return max(net, 0.0), max(-net, 0.0)


class GridSettlement:
    """A site's grid import and export, settled (see the module).

    `clock` None settles instantaneously. Feed every interval with `add`; read `imported` and
    `exported` (Wh).
    """

    def __init__(
        self, clock: PeriodClock | None, imported: float = 0.0, exported: float = 0.0
    ) -> None:
        """Start at the given totals (Wh)."""
        self.clock = clock
        self._sums = None if clock is None else PeriodSums(clock)
        self._booked = [imported, exported]  # what the periods booked (rebuilds move it)
        self._published = [imported, exported]  # never decreasing: the most booked so far
        # Closed periods a gap covered, by start: the net booked for each.
        self.provisional: dict[float, float] = {}

    @property
    def imported(self) -> float:
        """Return the settled import total (Wh)."""
        return self._published[0]

    @property
    def exported(self) -> float:
        """Return the settled export total (Wh)."""
        return self._published[1]

    @property
    def booked(self) -> tuple[float, float]:
        """Return the import and export the periods booked (Wh): published less any surplus.

        A rebuild can lower them below what was published; later bookings make that up first.
        """
        return self._booked[0], self._booked[1]

    @property
    def running(self) -> Period | None:
        """Return the period being settled (None: instantaneous, or none yet)."""
        return None if self._sums is None else self._sums.running

    def seconds_left(self, now: float) -> float | None:
        """Return the time left in the running period (None: none)."""
        running = self.running
        return None if running is None else max(running.end - now, 0.0)

    def hold_at_least(self, imported: float | None, exported: float | None) -> None:
        """Never publish totals below these (Wh): what was shown before a restart."""
        for index, floor in enumerate((imported, exported)):
            if floor is not None:
                self._published[index] = max(self._published[index], floor)

    def add(self, start: float, end: float, imported: float, exported: float) -> list[Period]:
        """Count what the metering counted over [start, end) (Wh); return the periods closed.

        A closed period's `amount` is its net (Wh, positive: imported).
        """
        if self._sums is None:
            self._book(imported, exported)
            return []
        closed = self._sums.add(start, end, imported - exported)
        for period in closed:
            self._settle(period)
        return closed

    def _settle(self, period: Period) -> None:
        self._book(*settled(period.amount))
        if period.provisional:
            self.provisional[period.start] = period.amount

    def _book(self, imported: float, exported: float) -> None:
        booked, published = self._booked, self._published
        booked[0] += imported
        booked[1] += exported
        published[0] = max(published[0], booked[0])
        published[1] = max(published[1], booked[1])

    def close_running(self) -> Period | None:
        """Book the running period as it stands (the settlement changes); return it."""
        period = None if self._sums is None else self._sums.close_running()
        if period is not None:
            self._settle(period)
        return period

    def needs_records_since(self) -> float | None:
        """Return the start of the oldest provisional period (None: none)."""
        return min(self.provisional, default=None)

    def rebuild(self, nets: Mapping[float, float], now: float) -> tuple[float, float]:
        """Settle provisional periods again with the nets the records tell (Wh, by start).

        Return what that changed the booked import and export by (Wh, either may be negative).
        """
        changed = [0.0, 0.0]
        for start in sorted(self.provisional):
            if start in nets:
                was, exact = settled(self.provisional.pop(start)), settled(nets[start])
                changed[0] += exact[0] - was[0]
                changed[1] += exact[1] - was[1]
        for start in [start for start in self.provisional if start < now - PROVISIONAL_KEPT_S]:
            del self.provisional[start]
        if changed != [0.0, 0.0]:
            self._book(*changed)
        return changed[0], changed[1]

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-safe data."""
        return {
            "version": STORAGE_VERSION,
            "length": None if self.clock is None else self.clock.length,
            "booked": list(self._booked),
            "published": list(self._published),
            "running": None if self._sums is None else self._sums.to_list(),
            "provisional": [[start, net] for start, net in sorted(self.provisional.items())],
        }

    @classmethod
    def from_dict(cls, clock: PeriodClock | None, data: Mapping[str, Any]) -> GridSettlement:
        """Continue a stored state under `clock`; raise ValueError for data that is not one.

        A changed settlement books the running period as it stands and goes on under the new
        one (its provisional periods stay as booked: the records' periods are others now).
        """
        if data.get("version") != STORAGE_VERSION:
            raise ValueError(f"unsupported settlement storage version {data.get('version')!r}")
        settlement = cls(clock)
        try:
            settlement._booked = [float(value) for value in data["booked"]]
            settlement._published = [float(value) for value in data["published"]]
            running = data["running"]
            provisional = {float(start): float(net) for start, net in data["provisional"]}
            unchanged = data["length"] == (None if clock is None else clock.length)
            if running is not None and not unchanged:
                settlement._book(*settled(float(running[2])))
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ValueError(f"not a stored settlement: {err!r}") from err
        if unchanged:
            settlement.provisional = provisional
            if settlement._sums is not None:
                settlement._sums.restore(running)
        return settlement
