"""Corrections the user asks for: current transformers installed reversed, and a zero deadband."""

from __future__ import annotations

from dataclasses import dataclass

from .snapshot import ChannelReading, MeterSnapshot, sum_of, summed_energies


def _negated(value: float | None) -> float | None:
    # 0.0 - x rather than -x: a reversed CT reading 0 still reads +0.0, not -0.0.
    return None if value is None else 0.0 - value


def _reversed(reading: ChannelReading) -> ChannelReading:
    """Return what a correctly installed CT would read: power inverted, counters swapped."""
    return reading._replace(
        power=_negated(reading.power),
        reactive_power=_negated(reading.reactive_power),
        power_factor=_negated(reading.power_factor),
        energy_in=reading.energy_out,
        energy_out=reading.energy_in,
    )


@dataclass(frozen=True, slots=True)
class Corrections:
    """The user's corrections for one meter."""

    reversed_channels: frozenset[str] = frozenset()
    deadband: float = 0.0  # W: an active power closer to zero than this reads 0

    def apply(self, snapshot: MeterSnapshot) -> MeterSnapshot:
        """Return the snapshot as the user wants to see it (the same object when no correction)."""
        if not self.reversed_channels and self.deadband <= 0:
            return snapshot
        channels = tuple(
            self._deadbanded(_reversed(r) if r.id in self.reversed_channels else r)
            for r in snapshot.channels
        )
        total = snapshot.total
        if total is not None:
            if self.reversed_channels:
                # The device sums the phases as it measures them: sum them again as corrected.
                energy_in, energy_out = summed_energies(channels)
                total = total._replace(
                    power=sum_of(r.power for r in channels),
                    energy_in=energy_in,
                    energy_out=energy_out,
                )
            total = self._deadbanded(total)
        return snapshot._replace(channels=channels, total=total)

    def _deadbanded(self, reading: ChannelReading) -> ChannelReading:
        if reading.power is not None and 0 < abs(reading.power) < self.deadband:
            return reading._replace(power=0.0)
        return reading
