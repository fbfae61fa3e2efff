"""Which value the virtual meter may serve: fresh, plausible, shared and optionally smoothed.

A battery regulates on every reply it gets, and trusts it: a frozen or absurd value makes it
charge or discharge at full power in the wrong direction. So the guard serves nothing rather
than a value it cannot vouch for:

- no reading, or the newest reading overdue: its inputs should have been read again
  ``stale_after`` seconds ago (a meter polled every 5 s is due 5 s after its last reading): nothing
  (the battery falls back to its own safe behaviour when its meter stops answering);
- the newest reading beyond the physical bound (or not a finite number): nothing, until a
  plausible one arrives;
- otherwise the reading times the share, optionally smoothed (an exponential moving average with
  time constant ``smoothing``) and rate limited (``max_rate`` W/s), computed once per reading,
  never per reply. After a gap (no reading, stale, implausible) the value restarts from the next
  reading instead of ramping from a value of the past.

Time is passed in (monotonic seconds), so the guard needs no clock of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

PHASE_COUNT: Final = 3
# The most a phase can carry: 400 A (the largest CTs of any Shelly meter, the Pro 3EM-400) at
# 300 V (above any mains voltage a meter accepts). Beyond it a value is a fault, not a reading.
PHASE_POWER_LIMIT_W: Final = 400.0 * 300.0
NOMINAL_VOLTAGE: Final = 230.0
NOMINAL_FREQUENCY: Final = 50.0
DEFAULT_STALE_AFTER_S: Final = 3.0

type Phases = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class GridReading:
    """The grid power of a site at one moment: W per phase a, b, c, import positive.

    ``time`` is when the oldest of its inputs was read and ``due`` when the first of them should
    be read again (monotonic seconds; a sum over several meters is as old as its oldest part);
    ``due`` None: at ``time`` (an input read at no fixed interval). Voltages and frequency are
    None where not measured.
    """

    power: Phases
    time: float
    due: float | None = None
    voltage: tuple[float | None, float | None, float | None] = (None, None, None)
    frequency: float | None = None

    @property
    def overdue_from(self) -> float:
        """Return when a newer reading should have replaced this one (monotonic s)."""
        return self.time if self.due is None else self.due


class Refusal(StrEnum):
    """Why nothing is served."""

    NO_READING = "no_reading"
    STALE = "stale"
    IMPLAUSIBLE = "implausible"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """How the served value follows the readings (0 turns smoothing or rate limiting off)."""

    stale_after: float = DEFAULT_STALE_AFTER_S
    share: float = 1.0  # of the site's power, 0..1
    smoothing: float = 0.0  # time constant of the moving average, s
    max_rate: float = 0.0  # W/s
    phase_limit: float = PHASE_POWER_LIMIT_W


@dataclass(frozen=True, slots=True)
class ServedValue:
    """What the meter serves: W per phase rounded to 2 decimals, their exact sum, and context."""

    power: Phases
    total: float
    voltage: Phases
    frequency: float
    time: float  # the reading's time (monotonic s)


def _plausible(reading: GridReading, limit: float) -> bool:
    return all(math.isfinite(watts) and abs(watts) <= limit for watts in reading.power)


def _rounded(power: Phases) -> Phases:
    # `or 0.0` turns -0.0 into 0.0: a reply never says "-0.00".
    a, b, c = (round(watts, 2) or 0.0 for watts in power)
    return a, b, c


class ValueGuard:
    """Turn a site's readings into the value a virtual meter serves, or into a refusal."""

    def __init__(self, settings: GuardSettings) -> None:
        """Start with nothing to serve."""
        self.settings = settings
        self._reading: GridReading | None = None
        self._plausible = False
        self._value: Phases | None = None  # smoothed, shared, not rounded
        self._served: ServedValue | None = None

    @property
    def reading(self) -> GridReading | None:
        """Return the newest reading, whatever it was."""
        return self._reading

    def update(self, reading: GridReading | None) -> None:
        """Take the site's newest reading; None: the site has no grid power now."""
        previous = self._reading
        self._reading = reading
        if reading is None or not _plausible(reading, self.settings.phase_limit):
            self._plausible = False
            self._value = self._served = None
            return
        self._plausible = True
        settings = self.settings
        target = (
            reading.power[0] * settings.share,
            reading.power[1] * settings.share,
            reading.power[2] * settings.share,
        )
        value = self._value
        if (
            value is None
            or previous is None
            or reading.time - previous.overdue_from > settings.stale_after
        ):
            value = target
        else:
            value = self._follow(value, target, max(reading.time - previous.time, 0.0))
        self._value = value
        power = _rounded(value)
        voltage = tuple(NOMINAL_VOLTAGE if volts is None else volts for volts in reading.voltage)
        self._served = ServedValue(
            power=power,
            total=round(power[0] + power[1] + power[2], 2) or 0.0,
            voltage=(voltage[0], voltage[1], voltage[2]),
            frequency=NOMINAL_FREQUENCY if reading.frequency is None else reading.frequency,
            time=reading.time,
        )

    def _follow(self, value: Phases, target: Phases, elapsed: float) -> Phases:
        """Move from the served value towards the target over ``elapsed`` seconds."""
        settings = self.settings
        steps = [goal - now for now, goal in zip(value, target, strict=True)]
        if settings.smoothing > 0:
            weight = 1.0 - math.exp(-elapsed / settings.smoothing)
            steps = [step * weight for step in steps]
        if settings.max_rate > 0:
            # One factor for every phase, so that neither the total nor any phase moves faster
            # than the limit and the phases keep their proportions.
            largest = max(abs(sum(steps)), *(abs(step) for step in steps))
            allowed = settings.max_rate * elapsed
            if largest > allowed:
                steps = [step * allowed / largest for step in steps]
        return value[0] + steps[0], value[1] + steps[1], value[2] + steps[2]

    def check(self, now: float) -> ServedValue | Refusal:
        """Return what may be served at ``now`` (monotonic s), or why nothing may."""
        reading = self._reading
        if reading is None:
            return Refusal.NO_READING
        if not self._plausible:
            return Refusal.IMPLAUSIBLE
        if now - reading.overdue_from > self.settings.stale_after:
            return Refusal.STALE
        assert self._served is not None
        return self._served
