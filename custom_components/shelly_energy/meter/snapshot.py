"""One vocabulary for every meter family: what a meter is, and what one poll of it says.

Every client (Gen1 HTTP, Gen2+ RPC) parses its device's replies into these types, so nothing
downstream asks which generation a meter is. Power is in W (positive when importing from the
grid side of the CT), energy counters stay in Wh, cumulative, as the device keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from ..energy.counter import counter_value


class ChannelKind(StrEnum):
    """What a reading measures."""

    PHASE = "phase"  # one phase of a three-phase meter: ids "a", "b", "c"
    CHANNEL = "channel"  # an independent single-phase channel: ids "1", "2", "3"
    TOTAL = "total"  # the sum over the phases of a three-phase meter: id "total"


TOTAL_ID = "total"
PHASE_IDS = ("a", "b", "c")


class ChannelReading(NamedTuple):
    """What one phase, channel or three-phase total reads at one poll. None: not reported.

    A named tuple rather than a frozen dataclass: as immutable, and made at every reading of
    every meter (several per second with many meters) at a third of the cost.
    """

    id: str
    kind: ChannelKind
    power: float | None = None
    apparent_power: float | None = None
    reactive_power: float | None = None
    current: float | None = None
    voltage: float | None = None
    power_factor: float | None = None
    frequency: float | None = None
    energy_in: float | None = None
    energy_out: float | None = None
    flags: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def with_energies(self, energy_in: float | None, energy_out: float | None) -> ChannelReading:
        """Return the reading with other energy counters (`_replace` at half the cost)."""
        return ChannelReading._make(
            (*self[:_ENERGY_IN], energy_in, energy_out, *self[_ENERGY_OUT + 1 :])
        )


# Where a reading's energy counters are, side by side.
_ENERGY_IN = ChannelReading._fields.index("energy_in")
_ENERGY_OUT = ChannelReading._fields.index("energy_out")
assert _ENERGY_OUT == _ENERGY_IN + 1


@dataclass(frozen=True, slots=True)
class MeterChange:
    """How a meter differs from what it was set up as, e.g. its firmware after an update."""

    what: str  # "firmware", "profile" or "components"
    was: str  # as set up
    now: str  # as the meter reports it now

    def __str__(self) -> str:
        """Describe the change for people and logs."""
        return f"{self.what} {self.was} -> {self.now}"


def sum_of(values: Iterable[float | None]) -> float | None:
    """Return the sum of the phases' values; None if one is missing (no partial total)."""
    values = list(values)
    return None if None in values else sum(value for value in values if value is not None)


def summed_energies(channels: Iterable[ChannelReading]) -> tuple[float | None, float | None]:
    """Return the channels' import and export counters summed (Wh) as a total's.

    A phase's counter that is no counter value (-1) makes the sum None, not a plausible drop.
    """
    channels = list(channels)
    return (
        sum_of(counter_value(reading.energy_in) for reading in channels),
        sum_of(counter_value(reading.energy_out) for reading in channels),
    )


class MeterSnapshot(NamedTuple):
    """Everything one poll of a meter says (a named tuple, as `ChannelReading` is)."""

    time: float  # the device's own clock (unix seconds) when known, else the poll's local time
    channels: tuple[ChannelReading, ...]  # phases or channels, in the device's order
    total: ChannelReading | None = None  # three-phase meters only
    neutral_current: float | None = None
    switch_on: bool | None = None  # None: the meter has no relay output
    errors: tuple[str, ...] = ()  # meter-wide errors, e.g. "power_meter_failure"
    rssi: int | None = None
    uptime: int | None = None
    update_available: bool | None = None
    # Not None when the meter no longer is what it was set up as; values it no longer reports
    # in the set-up layout read None.
    changed: MeterChange | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the snapshot as plain data, its readings as mappings (diagnostics)."""
        total, changed = self.total, self.changed
        return {
            **self._asdict(),
            "channels": [reading._asdict() for reading in self.channels],
            "total": None if total is None else total._asdict(),
            "changed": None if changed is None else asdict(changed),
        }

    def boot_time(self) -> float | None:
        """Return when the meter last started, by its clock (its time less its uptime).

        None when it tells no uptime.
        """
        return None if self.uptime is None else self.time - self.uptime

    def channel(self, channel_id: str) -> ChannelReading | None:
        """Return the reading of a phase, channel or the total, by id."""
        if channel_id == TOTAL_ID:
            return self.total
        for reading in self.channels:
            if reading.id == channel_id:
                return reading
        return None


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What a meter is: identity and layout, read once when connecting."""

    mac: str  # upper-case hex without separators, as the device reports it
    model: str  # the device's model id, e.g. "SPEM-003CEBEU"
    model_name: str  # for people, e.g. "Pro 3EM"
    generation: int
    firmware: str
    name: str | None  # the name the user gave the device, if any
    profile: str | None  # Gen2+ Pro 3EM: "triphase" or "monophase"
    channel_kind: ChannelKind  # PHASE for three-phase meters, CHANNEL otherwise
    channel_ids: tuple[str, ...]
    has_switch: bool

    @property
    def three_phase(self) -> bool:
        """Return whether the meter measures the phases of one three-phase supply."""
        return self.channel_kind is ChannelKind.PHASE

    @property
    def components(self) -> str:
        """Describe what the meter measures for people: "phases a, b, c and a relay"."""
        kind = "phases" if self.three_phase else "channels"
        relay = " and a relay" if self.has_switch else ""
        return f"{kind} {', '.join(self.channel_ids)}{relay}"

    def change_to(self, now: MeterInfo) -> MeterChange | None:
        """Return how the meter reporting `now` differs from this set-up (a new name is none)."""
        for what, was, is_now in (
            ("firmware", self.firmware, now.firmware),
            ("profile", str(self.profile), str(now.profile)),
            ("components", self.components, now.components),
        ):
            if was != is_now:
                return MeterChange(what, was, is_now)
        return None
