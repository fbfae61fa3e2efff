"""Counter hygiene: turn a meter's raw cumulative energy counters into trustworthy readings.

Real meters misbehave in ways that would wreck the Energy dashboard if published as is:
Gen1 meters read -1 or 0 for a moment after a reboot, Gen2 counters jitter a few mWh down between
reads, and a counter reset (the user wiped the data) must read as a reset, never as a spike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .snapshot import ChannelReading, MeterSnapshot

# A decrease smaller than this is measurement jitter, not a reset.
JITTER_WH = 1.0
# A counter that drops to exactly zero is only believed after this many polls in a row: a Gen1
# meter reads 0 for a moment after a reboot and then its real value again.
ZERO_CONFIRMATION_POLLS = 3


@dataclass(slots=True)
class _CounterState:
    published: float | None = None
    zero_polls: int = 0


class CounterGuard:
    """Clean every energy counter of one meter, poll after poll.

    A counter that is missing, negative or unconfirmed reads None (unavailable); a jitter
    decrease keeps the previous value; a real reset is published as the new, lower value.
    """

    def __init__(self) -> None:
        """Start with no history."""
        self._states: dict[tuple[str, bool], _CounterState] = {}

    def clean(self, snapshot: MeterSnapshot) -> MeterSnapshot:
        """Return the snapshot with every counter cleaned (the same object when nothing changed)."""
        channels = tuple(self._clean_reading(reading) for reading in snapshot.channels)
        total = snapshot.total and self._clean_reading(snapshot.total)
        if total is snapshot.total and all(
            new is old for new, old in zip(channels, snapshot.channels, strict=True)
        ):
            return snapshot
        return replace(snapshot, channels=channels, total=total)

    def _clean_reading(self, reading: ChannelReading) -> ChannelReading:
        energy_in = self._clean(reading.id, True, reading.energy_in)
        energy_out = self._clean(reading.id, False, reading.energy_out)
        if energy_in == reading.energy_in and energy_out == reading.energy_out:
            return reading
        return replace(reading, energy_in=energy_in, energy_out=energy_out)

    def _clean(self, channel_id: str, imported: bool, raw: float | None) -> float | None:
        state = self._states.get((channel_id, imported))
        if state is None:
            state = self._states[(channel_id, imported)] = _CounterState()
        if raw is None or raw < 0:
            return None
        last = state.published
        if last is None or raw >= last:
            state.zero_polls = 0
            state.published = raw
            return raw
        if last - raw < JITTER_WH:
            return last
        if raw == 0:
            state.zero_polls += 1
            if state.zero_polls < ZERO_CONFIRMATION_POLLS:
                return None
        state.zero_polls = 0
        state.published = raw
        return raw
