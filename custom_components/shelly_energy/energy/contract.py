"""Contracted power: the limit a supply may draw, and when the utility's meter trips it.

Some utilities limit a connection to its contracted power, and their meter cuts the supply when
it is exceeded for too long: in Italy the meter tolerates 10 % above the contracted power for good,
and trips after about two hours above that, or within two minutes above 27 %. Such rules are the
user's to enter (`TripRule`: above a percentage of the contracted power for a time). A per-phase
fuse (or main breaker) limits the current of each phase.

`ContractWatch` watches the site's grid power (net, positive importing) and its grid channels'
currents. A limit is *exceeded* once its value has stayed above it for `start_delay` seconds, and
*cleared* once the value has stayed at or below the limit less `margin_percent` for
`clear_delay` seconds: a value hovering around the limit does not flap. A reading that is missing
neither starts nor ends anything (nor counts towards the delays).

While the power is above a rule's threshold, `trips_in` tells how long the supply has left at
this rate: the rule's time less how long the power has stayed above its threshold (the least of
the rules that apply).

Time is unix seconds; power in W, current in A.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class LimitEventType(StrEnum):
    """What a contracted power event tells."""

    POWER_EXCEEDED = "power_exceeded"
    POWER_CLEARED = "power_cleared"
    FUSE_EXCEEDED = "fuse_exceeded"
    FUSE_CLEARED = "fuse_cleared"


@dataclass(frozen=True, slots=True)
class TripRule:
    """The supply trips when the power stays above `above_percent` over the limit `after_s`."""

    above_percent: float
    after_s: float


# Italy's meters: 10 % over the contracted power for good, 27 % for two minutes (ARERA).
DEFAULT_RULES = (TripRule(10.0, 7200.0), TripRule(27.0, 120.0))


@dataclass(frozen=True, slots=True)
class ContractLimits:
    """The contracted power (W) and the fuse of each phase (A), either optional, and timings."""

    power_w: float | None = None
    fuse_a: float | None = None
    rules: tuple[TripRule, ...] = DEFAULT_RULES
    start_delay: float = 10.0
    clear_delay: float = 30.0
    margin_percent: float = 5.0

    def __post_init__(self) -> None:
        """Reject limits that could never be exceeded or cleared."""
        for limit in (self.power_w, self.fuse_a):
            if limit is not None and limit <= 0:
                raise ValueError("a contracted power or fuse must be positive")
        if min(self.start_delay, self.clear_delay) < 0 or not 0 <= self.margin_percent < 100:
            raise ValueError("delays cannot be negative; the margin is a percentage below 100")
        for rule in self.rules:
            if rule.above_percent < 0 or rule.after_s < 0:
                raise ValueError("a trip rule's percentage and time cannot be negative")


@dataclass(frozen=True, slots=True)
class LimitEvent:
    """A limit exceeded or cleared: the value then, the limit, and for power the time left."""

    type: LimitEventType
    channel: str | None  # the fuse's channel; None for the contracted power
    value: float
    limit: float
    trips_in: float | None = None  # exceeded power: seconds left before a rule trips the supply
    duration: float | None = None  # cleared: how long the limit was exceeded

    def event_data(self) -> dict[str, str | float | None]:
        """Return the event as JSON-safe data for an event bus: power in kW, current in A."""
        scale = 1000.0 if self.channel is None else 1.0
        return {
            "type": self.type.value,
            "channel": self.channel,
            "value": round(self.value / scale, 3),
            "limit": round(self.limit / scale, 3),
            "trips_in": None if self.trips_in is None else round(self.trips_in),
            "duration": None if self.duration is None else round(self.duration),
        }


class _Limit:
    """One limit, debounced: idle -> pending -> exceeded -> clearing -> idle."""

    __slots__ = ("_above_since", "_below_since", "exceeded_since", "limit", "limits", "margin")

    def __init__(self, limit: float, limits: ContractLimits) -> None:
        self.limit = limit
        self.limits = limits
        self.margin = limit * (1 - limits.margin_percent / 100)
        self._above_since: float | None = None
        self._below_since: float | None = None
        self.exceeded_since: float | None = None

    def observe(self, now: float, value: float | None) -> bool | None:
        """Take a reading; return True when the limit is now exceeded, False when cleared."""
        if value is None:  # nothing is known: pending starts and ends begin again
            self._above_since = self._below_since = None
            return None
        if self.exceeded_since is None:
            if value <= self.limit:
                self._above_since = None
                return None
            if self._above_since is None:
                self._above_since = now
            if now - self._above_since < self.limits.start_delay:
                return None
            self.exceeded_since, self._above_since = self._above_since, None
            return True
        if value > self.margin:
            self._below_since = None
            return None
        if self._below_since is None:
            self._below_since = now
        if now - self._below_since < self.limits.clear_delay:
            return None
        self.exceeded_since = self._below_since = None
        return False


class ContractWatch:
    """The contracted power and fuses of one site, watched (see the module)."""

    def __init__(self, limits: ContractLimits) -> None:
        """Watch the limits that are set."""
        self.limits = limits
        self._power = None if limits.power_w is None else _Limit(limits.power_w, limits)
        self._fuses: dict[str, _Limit] = {}
        # When the power rose above each rule's threshold (and stayed there).
        self._rule_since: list[float | None] = [None] * len(limits.rules)
        self.trips_in: float | None = None

    def update(
        self, now: float, power_w: float | None, currents: Mapping[str, float | None]
    ) -> list[LimitEvent]:
        """Take the site's grid power and its channels' currents at `now`; return the events."""
        events: list[LimitEvent] = []
        limit = self._power
        if limit is not None:
            self.trips_in = self._trip_time(now, power_w)
            events.extend(
                self._events(
                    limit,
                    now,
                    power_w,
                    None,
                    exceeded=LimitEventType.POWER_EXCEEDED,
                    cleared=LimitEventType.POWER_CLEARED,
                )
            )
        fuse = self.limits.fuse_a
        if fuse is not None:
            for channel, current in currents.items():
                watched = self._fuses.setdefault(channel, _Limit(fuse, self.limits))
                events.extend(
                    self._events(
                        watched,
                        now,
                        None if current is None else abs(current),
                        channel,
                        exceeded=LimitEventType.FUSE_EXCEEDED,
                        cleared=LimitEventType.FUSE_CLEARED,
                    )
                )
        return events

    def _events(
        self,
        limit: _Limit,
        now: float,
        value: float | None,
        channel: str | None,
        *,
        exceeded: LimitEventType,
        cleared: LimitEventType,
    ) -> list[LimitEvent]:
        since = limit.exceeded_since
        change = limit.observe(now, value)
        if change is None or value is None:
            return []
        if change:
            trips_in = self.trips_in if channel is None else None
            return [LimitEvent(exceeded, channel, value, limit.limit, trips_in)]
        duration = None if since is None else now - since
        return [LimitEvent(cleared, channel, value, limit.limit, None, duration)]

    def _trip_time(self, now: float, power_w: float | None) -> float | None:
        """Return how long the supply has left at this power by the trip rules (None: for good)."""
        contracted = self.limits.power_w
        if power_w is None or contracted is None:
            self._rule_since = [None] * len(self.limits.rules)
            return None
        left: list[float] = []
        for index, rule in enumerate(self.limits.rules):
            if power_w <= contracted * (1 + rule.above_percent / 100):
                self._rule_since[index] = None
                continue
            since = self._rule_since[index]
            if since is None:
                since = self._rule_since[index] = now
            left.append(max(rule.after_s - (now - since), 0.0))
        return min(left, default=None)

    def headroom_w(self, power_w: float | None) -> float | None:
        """Return how far the power is below the contracted power (W; None: no limit or power)."""
        if self.limits.power_w is None or power_w is None:
            return None
        return self.limits.power_w - power_w

    def fuse_headroom_a(self, current: float | None) -> float | None:
        """Return how far a current is below the fuse (A; None: no fuse or current)."""
        if self.limits.fuse_a is None or current is None:
            return None
        return self.limits.fuse_a - abs(current)

    def exceeded(self) -> list[str | None]:
        """Return what is exceeded now: None for the power, channels for the fuses."""
        found: list[str | None] = []
        if self._power is not None and self._power.exceeded_since is not None:
            found.append(None)
        found.extend(
            channel for channel, limit in self._fuses.items() if limit.exceeded_since is not None
        )
        return found
