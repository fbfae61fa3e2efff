"""Supply anomalies: debounced voltage, frequency and imbalance conditions of one meter.

Per phase (or channel) a meter can show an overvoltage, an undervoltage or an interruption:
conditions with a start and an end. A spike is an instantaneous event with no duration and no
state of its own. Meter-wide: a frequency deviation, and an imbalance between the phases of a
three-phase meter.

Debounce and hysteresis: a condition starts once its readings have stayed beyond the limit for
`start_delay` seconds, and ends once they have stayed inside the limit by a margin for
`clear_delay` seconds. A reading between the limit and the margin neither starts nor ends
anything, so a reading oscillating around a limit cannot flap. Time is measured between
readings, not in samples: readings may arrive at any interval.

A reading that cannot show a condition (the meter did not answer, the value is missing, or a
worse condition supersedes it) breaks the continuity: a pending start or end is forgotten and
must begin again, an active condition stays active. So nothing starts or ends while the meter
is silent.

A phase that has never read at least the interruption limit is not connected (an unconnected
phase of a Pro 3EM reads 0 V): it is never interrupted and takes no part in frequency or
imbalance. Once it has had voltage, a drop below the limit is an interruption, which
supersedes an undervoltage; device flags (`overvoltage`, `undervoltage`) count as readings
beyond those limits on a phase that has voltage.

Imbalance is IEEE's phase voltage unbalance rate: the largest deviation of a phase voltage from
the mean of the connected phases, in % of that mean. (EN 50160 defines unbalance by the
negative-sequence component, which needs phase angles the meters do not report.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import date
from enum import Enum, StrEnum

from ..meter.snapshot import ChannelKind, ChannelReading, MeterSnapshot


class AnomalyType(StrEnum):
    """What an anomaly event reports: one of the anomalies, or that one ended (RESTORED)."""

    INTERRUPTION = "interruption"
    OVERVOLTAGE = "overvoltage"
    UNDERVOLTAGE = "undervoltage"
    SPIKE = "spike"
    FREQUENCY_DEVIATION = "frequency_deviation"
    IMBALANCE = "imbalance"
    RESTORED = "restored"


# The conditions with a duration, worst first: the order in which a status lists them.
_SEVERITY = (
    AnomalyType.INTERRUPTION,
    AnomalyType.OVERVOLTAGE,
    AnomalyType.UNDERVOLTAGE,
    AnomalyType.FREQUENCY_DEVIATION,
    AnomalyType.IMBALANCE,
)


def _percent_of(nominal: float, percent: float) -> float:
    # One rounding step, so that 110 % of 230 V is exactly 253.0 V.
    return nominal * percent / 100


@dataclass(frozen=True, slots=True)
class AnomalyLimits:
    """When a supply reading is an anomaly. Defaults follow EN 50160; percentages of nominal."""

    nominal_voltage: float = 230.0
    nominal_frequency: float = 50.0
    overvoltage_percent: float = 10.0  # above +10 %
    undervoltage_percent: float = 10.0  # below -10 %
    spike_percent: float = 15.0  # above +15 %, even for a single reading
    interruption_percent: float = 5.0  # below 5 %, on a phase that had voltage
    frequency_percent: float = 1.0  # beyond +-1 %
    imbalance_percent: float = 2.0  # largest phase deviation from the phases' mean, % of it
    voltage_margin_percent: float = 1.0  # voltage conditions end only this far inside the limit
    frequency_margin_percent: float = 0.2  # 1 % would leave no band to end in; 0.1 Hz at 50 Hz
    imbalance_margin_percent: float = 0.5  # percentage points
    start_delay: float = 10.0  # s readings must stay beyond a limit before a condition starts
    clear_delay: float = 10.0  # s readings must stay inside by the margin before it ends

    def __post_init__(self) -> None:
        """Reject limits that would leave a condition no way to start or end."""
        if self.nominal_voltage <= 0 or self.nominal_frequency <= 0:
            raise ValueError("the nominal voltage and frequency must be positive")
        amounts = (
            self.overvoltage_percent,
            self.undervoltage_percent,
            self.spike_percent,
            self.interruption_percent,
            self.frequency_percent,
            self.imbalance_percent,
            self.voltage_margin_percent,
            self.frequency_margin_percent,
            self.imbalance_margin_percent,
            self.start_delay,
            self.clear_delay,
        )
        if min(amounts) < 0:
            raise ValueError("limits, margins and delays cannot be negative")
        if (
            self.voltage_margin_percent >= min(self.overvoltage_percent, self.undervoltage_percent)
            or self.frequency_margin_percent >= self.frequency_percent
            or self.imbalance_margin_percent >= self.imbalance_percent
        ):
            raise ValueError("a margin must be smaller than the limits it belongs to")
        if self.spike_percent < self.overvoltage_percent:
            raise ValueError("the spike limit cannot be below the overvoltage limit")

    @property
    def overvoltage(self) -> float:
        """Return the voltage above which a phase has an overvoltage."""
        return _percent_of(self.nominal_voltage, 100 + self.overvoltage_percent)

    @property
    def overvoltage_clear(self) -> float:
        """Return the voltage an overvoltage must fall to before it can end (spikes re-arm)."""
        return _percent_of(
            self.nominal_voltage, 100 + self.overvoltage_percent - self.voltage_margin_percent
        )

    @property
    def undervoltage(self) -> float:
        """Return the voltage below which a phase has an undervoltage."""
        return _percent_of(self.nominal_voltage, 100 - self.undervoltage_percent)

    @property
    def undervoltage_clear(self) -> float:
        """Return the voltage an undervoltage must rise to before it can end."""
        return _percent_of(
            self.nominal_voltage, 100 - self.undervoltage_percent + self.voltage_margin_percent
        )

    @property
    def spike(self) -> float:
        """Return the voltage above which a single reading is a spike."""
        return _percent_of(self.nominal_voltage, 100 + self.spike_percent)

    @property
    def interruption(self) -> float:
        """Return the voltage below which a phase has no voltage."""
        return _percent_of(self.nominal_voltage, self.interruption_percent)

    @property
    def interruption_clear(self) -> float:
        """Return the voltage an interruption must rise to before it can end."""
        return _percent_of(
            self.nominal_voltage, self.interruption_percent + self.voltage_margin_percent
        )

    @property
    def frequency_high(self) -> float:
        """Return the frequency above which the supply deviates."""
        return _percent_of(self.nominal_frequency, 100 + self.frequency_percent)

    @property
    def frequency_high_clear(self) -> float:
        """Return the frequency a high deviation must fall to before it can end."""
        return _percent_of(
            self.nominal_frequency, 100 + self.frequency_percent - self.frequency_margin_percent
        )

    @property
    def frequency_low(self) -> float:
        """Return the frequency below which the supply deviates."""
        return _percent_of(self.nominal_frequency, 100 - self.frequency_percent)

    @property
    def frequency_low_clear(self) -> float:
        """Return the frequency a low deviation must rise to before it can end."""
        return _percent_of(
            self.nominal_frequency, 100 - self.frequency_percent + self.frequency_margin_percent
        )

    @property
    def imbalance_clear(self) -> float:
        """Return the imbalance (%) an imbalance must fall to before it can end."""
        return self.imbalance_percent - self.imbalance_margin_percent


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """An anomaly started (a spike: happened), or one ended (type RESTORED)."""

    type: AnomalyType
    phase: str | None  # the phase or channel id; None for a meter-wide anomaly
    value: float  # the worst reading of the episode so far: V, Hz, or % for an imbalance
    limit: float  # the limit crossed, in the same unit
    time: float  # when the episode started: its first reading beyond the limit
    restored_type: AnomalyType | None = None  # RESTORED: what ended
    duration: float | None = None  # RESTORED: s from the start to the first reading back inside
    active: tuple[AnomalyType, ...] = ()  # what is active on the meter once its update is applied

    def event_data(self) -> dict[str, str | float | list[str] | None]:
        """Return the event as JSON-safe data for an event bus (the caller adds the device)."""
        return {
            "type": self.type.value,
            "phase": self.phase,
            "value": self.value,
            "limit": self.limit,
            "duration": self.duration,
            "restored_type": None if self.restored_type is None else self.restored_type.value,
            "active": [anomaly.value for anomaly in self.active],
        }


@dataclass(frozen=True, slots=True)
class ActiveAnomaly:
    """An anomaly in progress."""

    type: AnomalyType
    phase: str | None  # None for a meter-wide anomaly
    value: float  # the worst reading so far
    limit: float
    since: float  # its first reading beyond the limit


@dataclass(frozen=True, slots=True)
class SupplyStatus:
    """The anomalies in progress in one place (a phase, or the whole meter), worst first."""

    anomalies: tuple[ActiveAnomaly, ...] = ()

    @property
    def problem(self) -> bool:
        """Return whether any anomaly is in progress."""
        return bool(self.anomalies)

    @property
    def worst(self) -> ActiveAnomaly | None:
        """Return the worst anomaly in progress, if any."""
        return self.anomalies[0] if self.anomalies else None


_NO_ANOMALY = SupplyStatus()


class _Level(Enum):
    """Where a reading stands against a limit and its margin."""

    BEYOND = "beyond"  # the condition is present
    NEAR = "near"  # inside the limit but not by the margin: nothing starts or ends
    INSIDE = "inside"  # inside by the margin: an active condition may end


@dataclass(frozen=True, slots=True)
class _Reading:
    """One reading as one condition sees it."""

    level: _Level
    value: float
    limit: float
    badness: float  # grows as the reading gets worse: picks the worst reading of an episode


def _above(value: float, limit: float, clear: float, *, flagged: bool = False) -> _Reading:
    """Read a value against an upper limit; a device flag counts as beyond it."""
    if flagged or value > limit:
        level = _Level.BEYOND
    else:
        level = _Level.NEAR if value > clear else _Level.INSIDE
    return _Reading(level, value, limit, value)


def _below(value: float, limit: float, clear: float, *, flagged: bool = False) -> _Reading:
    """Read a value against a lower limit; a device flag counts as beyond it."""
    if flagged or value < limit:
        level = _Level.BEYOND
    else:
        level = _Level.NEAR if value < clear else _Level.INSIDE
    return _Reading(level, value, limit, -value)


@dataclass(slots=True)
class _Episode:
    """A condition from its first reading beyond the limit until it ends."""

    since: float
    worst: _Reading
    active: bool = False  # confirmed: readings stayed beyond the limit for the start delay
    inside_since: float | None = None  # active and back inside by the margin since then


class _Condition:
    """One anomaly in one place: idle -> pending -> active -> ending -> idle, timed by readings."""

    def __init__(self, anomaly: AnomalyType, phase: str | None, limits: AnomalyLimits) -> None:
        self._type = anomaly
        self._phase = phase
        self._start_delay = limits.start_delay
        self._clear_delay = limits.clear_delay
        self._episode: _Episode | None = None

    @property
    def idle(self) -> bool:
        """Return whether nothing is pending or in progress: only a reading beyond can start it."""
        return self._episode is None

    @property
    def in_progress(self) -> bool:
        """Return whether the anomaly is in progress (cheaper than `active`)."""
        episode = self._episode
        return episode is not None and episode.active

    @property
    def active(self) -> ActiveAnomaly | None:
        """Return the anomaly if it is in progress."""
        episode = self._episode
        if episode is None or not episode.active:
            return None
        return ActiveAnomaly(
            self._type, self._phase, episode.worst.value, episode.worst.limit, episode.since
        )

    def observe(self, now: float, reading: _Reading | None) -> list[AnomalyEvent]:
        """Take one reading (None: no evidence) at `now`; return the start or end it makes."""
        episode = self._episode
        if reading is not None and reading.level is _Level.BEYOND:
            if episode is None:
                episode = self._episode = _Episode(since=now, worst=reading)
            else:
                episode.inside_since = None
                if reading.badness > episode.worst.badness:
                    episode.worst = reading
            if episode.active or now - episode.since < self._start_delay:
                return []
            episode.active = True
            return [
                AnomalyEvent(
                    self._type, self._phase, episode.worst.value, episode.worst.limit, episode.since
                )
            ]
        if episode is None:
            return []
        if not episode.active:
            # A start needs readings beyond the limit throughout the start delay.
            self._episode = None
            return []
        if reading is None or reading.level is _Level.NEAR:
            episode.inside_since = None
            return []
        if episode.inside_since is None:
            episode.inside_since = now
        if now - episode.inside_since < self._clear_delay:
            return []
        self._episode = None
        return [
            AnomalyEvent(
                AnomalyType.RESTORED,
                self._phase,
                episode.worst.value,
                episode.worst.limit,
                episode.since,
                restored_type=self._type,
                duration=episode.inside_since - episode.since,
            )
        ]


class _PhaseSupply:
    """The voltage of one phase or channel: its conditions and its spikes."""

    def __init__(self, phase: str, limits: AnomalyLimits) -> None:
        self._phase = phase
        self._limits = limits
        self.interruption = _Condition(AnomalyType.INTERRUPTION, phase, limits)
        self._overvoltage = _Condition(AnomalyType.OVERVOLTAGE, phase, limits)
        self._undervoltage = _Condition(AnomalyType.UNDERVOLTAGE, phase, limits)
        self._spike_armed = True
        # A voltage in [_normal_low, _normal_high] is beyond no limit: it starts nothing.
        self._normal_low = max(limits.interruption, limits.undervoltage)
        self._normal_high = limits.overvoltage
        self._overvoltage_clear = limits.overvoltage_clear

    @property
    def conditions(self) -> tuple[_Condition, ...]:
        """Return the phase's conditions."""
        return (self.interruption, self._overvoltage, self._undervoltage)

    def observe(
        self, now: float, reading: ChannelReading | None, had_voltage: bool
    ) -> list[AnomalyEvent]:
        """Take the phase's reading (None: not in this answer) at `now`; return its events."""
        if reading is None or reading.voltage is None:
            return [
                event for condition in self.conditions for event in condition.observe(now, None)
            ]
        voltage = reading.voltage
        if (
            not reading.flags
            and self._normal_low <= voltage <= self._normal_high
            and self.interruption.idle
            and self._overvoltage.idle
            and self._undervoltage.idle
        ):
            # Nothing pending and a normal voltage (every reading: most of the time): nothing
            # can start, end or spike.
            if voltage <= self._overvoltage_clear:
                self._spike_armed = True
            return []
        limits = self._limits
        events = []
        if self._spike_armed and voltage > limits.spike:
            self._spike_armed = False
            events.append(AnomalyEvent(AnomalyType.SPIKE, self._phase, voltage, limits.spike, now))
        elif voltage <= limits.overvoltage_clear:
            self._spike_armed = True
        # Below the interruption limit a phase is interrupted (or not connected), not
        # undervolted, and its flags mean nothing.
        has_voltage = voltage >= limits.interruption
        interruption = (
            _below(voltage, limits.interruption, limits.interruption_clear) if had_voltage else None
        )
        overvoltage = _above(
            voltage,
            limits.overvoltage,
            limits.overvoltage_clear,
            flagged=has_voltage and "overvoltage" in reading.flags,
        )
        undervoltage = (
            _below(
                voltage,
                limits.undervoltage,
                limits.undervoltage_clear,
                flagged="undervoltage" in reading.flags,
            )
            if has_voltage
            else None
        )
        events += self.interruption.observe(now, interruption)
        events += self._overvoltage.observe(now, overvoltage)
        events += self._undervoltage.observe(now, undervoltage)
        return events


class AnomalyDetector:
    """Watches one meter's supply: feed it every poll, read back events and status.

    `seen_voltage` names the phases known to have had voltage (e.g. kept over a restart).
    """

    def __init__(self, limits: AnomalyLimits, *, seen_voltage: Iterable[str] = ()) -> None:
        self._limits = limits
        # The limits read at every update, computed once.
        self._interruption = limits.interruption
        self._frequency_low = limits.frequency_low
        self._frequency_high = limits.frequency_high
        self._seen_voltage = set(seen_voltage)
        self._phases: dict[str, _PhaseSupply] = {}
        self._frequency = _Condition(AnomalyType.FREQUENCY_DEVIATION, None, limits)
        self._imbalance = _Condition(AnomalyType.IMBALANCE, None, limits)
        # Nothing in progress anywhere after the last update (nearly always): every status is
        # the empty one, which each phase's voltage problem sensor asks for at every update.
        self._quiet = True

    @property
    def seen_voltage(self) -> frozenset[str]:
        """Return the phases that have had voltage; the others are not connected."""
        return frozenset(self._seen_voltage)

    def update(self, now: float, snapshot: MeterSnapshot | None) -> list[AnomalyEvent]:
        """Apply one poll at `now` (s; only differences matter); None: the meter did not answer.

        Return the new events: ends (RESTORED) first, then starts and spikes, each in phase
        order with the meter-wide ones last, so the last event tells what is happening now.
        """
        readings = (
            {} if snapshot is None else {reading.id: reading for reading in snapshot.channels}
        )
        for reading in readings.values():
            if reading.voltage is not None and reading.voltage >= self._interruption:
                self._seen_voltage.add(reading.id)
            if reading.id not in self._phases:
                self._phases[reading.id] = _PhaseSupply(reading.id, self._limits)
        events = [
            event
            for phase, supply in self._phases.items()
            for event in supply.observe(now, readings.get(phase), phase in self._seen_voltage)
        ]
        events += self._frequency.observe(now, self._frequency_reading(readings.values()))
        events += self._imbalance.observe(now, self._imbalance_reading(readings.values()))
        if self._quiet and not events:
            return events  # only an event puts an anomaly in progress
        self._quiet = not any(condition.in_progress for condition in self._conditions())
        if not events:
            return events
        events.sort(key=lambda event: event.type is not AnomalyType.RESTORED)
        active = tuple(dict.fromkeys(anomaly.type for anomaly in self.status().anomalies))
        return [replace(event, active=active) for event in events]

    def status(self, phase: str | None = None) -> SupplyStatus:
        """Return what is in progress on a phase (its own and the meter-wide anomalies).

        Without a phase: everything in progress on the meter.
        """
        if self._quiet:
            return _NO_ANOMALY
        conditions = self._conditions(phase)
        if not any(condition.in_progress for condition in conditions):
            return _NO_ANOMALY
        active = [anomaly for condition in conditions if (anomaly := condition.active) is not None]
        active.sort(key=lambda anomaly: _SEVERITY.index(anomaly.type))
        return SupplyStatus(tuple(active))

    def _conditions(self, phase: str | None = None) -> list[_Condition]:
        """Return a phase's conditions and the meter-wide ones; without a phase: all of them."""
        if phase is None:
            supplies: Collection[_PhaseSupply] = self._phases.values()
        else:
            supplies = [self._phases[phase]] if phase in self._phases else []
        conditions = [condition for supply in supplies for condition in supply.conditions]
        conditions += [self._frequency, self._imbalance]
        return conditions

    def _frequency_reading(self, readings: Iterable[ChannelReading]) -> _Reading | None:
        """Read the frequency furthest from nominal among the phases that have voltage.

        None (no evidence) also for a normal frequency while no deviation is pending: it could
        not start one.
        """
        limits = self._limits
        nominal = limits.nominal_frequency
        worst: float | None = None
        furthest = -1.0
        for channel in readings:
            frequency, voltage = channel.frequency, channel.voltage
            if frequency is None or voltage is None or voltage < self._interruption:
                continue
            if (off := abs(frequency - nominal)) > furthest:
                worst, furthest = frequency, off
        if worst is None:
            return None
        if self._frequency.idle and self._frequency_low <= worst <= self._frequency_high:
            return None
        if worst > nominal:
            reading = _above(worst, limits.frequency_high, limits.frequency_high_clear)
        else:
            reading = _below(worst, limits.frequency_low, limits.frequency_low_clear)
        return replace(reading, badness=abs(worst - nominal))

    def _imbalance_reading(self, readings: Iterable[ChannelReading]) -> _Reading | None:
        """Read the imbalance between the connected phases of a three-phase meter.

        No evidence for other meters, with fewer than two connected phases, or while a connected
        phase has no voltage reading or is interrupted.
        """
        limits = self._limits
        connected = [
            reading
            for reading in readings
            if reading.kind is ChannelKind.PHASE and reading.id in self._seen_voltage
        ]
        if len(connected) < 2:
            return None
        voltages = []
        for reading in connected:
            if (
                reading.voltage is None
                or reading.voltage < self._interruption
                or self._phases[reading.id].interruption.in_progress
            ):
                return None
            voltages.append(reading.voltage)
        mean = sum(voltages) / len(voltages)
        imbalance = max(abs(voltage - mean) for voltage in voltages) / mean * 100
        if self._imbalance.idle and imbalance <= limits.imbalance_percent:
            return None  # could start nothing
        return _above(imbalance, limits.imbalance_percent, limits.imbalance_clear)


@dataclass(frozen=True, slots=True)
class VoltageRange:
    """The lowest and the highest voltage a phase read."""

    minimum: float
    maximum: float


class DailyVoltageRange:
    """Each phase's lowest and highest voltage since local midnight.

    The caller passes each reading's local date; a new date starts a new day for every phase.
    A phase that has never had voltage (an unconnected phase reads 0 V) is left out; a connected
    phase that loses its voltage records the drop.
    """

    def __init__(self, interruption: float) -> None:
        self._interruption = interruption  # V: below it a phase has no voltage
        self._seen_voltage: set[str] = set()
        self._day: date | None = None
        self._ranges: dict[str, VoltageRange] = {}

    def update(self, day: date, phase: str, voltage: float | None) -> None:
        """Take a phase's voltage (None: not reported) read on `day`."""
        if day != self._day:
            self._day = day
            self._ranges.clear()
        if voltage is None:
            return
        if voltage >= self._interruption:
            self._seen_voltage.add(phase)
        elif phase not in self._seen_voltage:
            return
        current = self._ranges.get(phase)
        if current is None:
            self._ranges[phase] = VoltageRange(voltage, voltage)
        elif not current.minimum <= voltage <= current.maximum:
            self._ranges[phase] = VoltageRange(
                min(current.minimum, voltage), max(current.maximum, voltage)
            )

    def voltage_range(self, phase: str) -> VoltageRange | None:
        """Return the phase's range on the latest day, None before its first reading that day."""
        return self._ranges.get(phase)
