"""Reversed current transformers and the zero deadband."""

from __future__ import annotations

import math

from custom_components.shelly_energy.meter.corrections import Corrections
from custom_components.shelly_energy.meter.snapshot import (
    ChannelKind,
    ChannelReading,
    MeterSnapshot,
)


def phase(
    phase_id: str, power: float, energy_in: float | None, energy_out: float
) -> ChannelReading:
    return ChannelReading(
        id=phase_id,
        kind=ChannelKind.PHASE,
        power=power,
        reactive_power=2.0,
        power_factor=0.5,
        energy_in=energy_in,
        energy_out=energy_out,
    )


SNAPSHOT = MeterSnapshot(
    time=0.0,
    channels=(phase("a", 100.0, 10.0, 1.0), phase("b", -3.0, 20.0, 2.0)),
    total=ChannelReading(
        id="total", kind=ChannelKind.TOTAL, power=97.0, energy_in=30.0, energy_out=3.0
    ),
)


def test_no_correction_returns_the_same_snapshot() -> None:
    assert Corrections().apply(SNAPSHOT) is SNAPSHOT


def test_reversed_phase_inverts_power_and_swaps_counters_and_totals_follow() -> None:
    corrected = Corrections(reversed_channels=frozenset({"a"})).apply(SNAPSHOT)
    a, b = corrected.channels
    assert (a.power, a.reactive_power, a.power_factor) == (-100.0, -2.0, -0.5)
    assert (a.energy_in, a.energy_out) == (1.0, 10.0)
    assert b == SNAPSHOT.channels[1]
    assert corrected.total is not None
    assert (corrected.total.power, corrected.total.energy_in, corrected.total.energy_out) == (
        -103.0,
        21.0,
        12.0,
    )


def test_reversed_totals_unknown_when_a_phase_counter_is() -> None:
    snapshot = MeterSnapshot(
        time=0.0,
        channels=(phase("a", 1.0, None, 1.0),),
        total=ChannelReading(id="total", kind=ChannelKind.TOTAL, power=1.0),
    )
    corrected = Corrections(reversed_channels=frozenset({"a"})).apply(snapshot)
    assert corrected.total is not None
    assert corrected.total.energy_out is None


def test_reversed_totals_sum_no_phase_counter_that_is_no_counter_value() -> None:
    snapshot = SNAPSHOT._replace(
        channels=(phase("a", 100.0, 10.0, 1.0), phase("b", -3.0, -1.0, 2.0))  # b's in: -1
    )
    corrected = Corrections(reversed_channels=frozenset({"a"})).apply(snapshot)
    assert corrected.total is not None
    # Not 0 Wh: a drop of all the phases counted.
    assert (corrected.total.energy_in, corrected.total.energy_out) == (None, 12.0)


def test_deadband_zeroes_small_powers_only() -> None:
    corrected = Corrections(deadband=5.0).apply(SNAPSHOT)
    assert [c.power for c in corrected.channels] == [100.0, 0.0]
    assert corrected.total is not None
    assert corrected.total.power == 97.0


def test_deadband_applies_to_a_small_total() -> None:
    snapshot = MeterSnapshot(
        time=0.0, channels=(), total=ChannelReading(id="total", kind=ChannelKind.TOTAL, power=-4.0)
    )
    corrected = Corrections(deadband=5.0).apply(snapshot)
    assert corrected.total is not None
    assert corrected.total.power == 0.0


def test_a_reversed_zero_stays_positive() -> None:
    idle = MeterSnapshot(
        time=0.0,
        channels=(
            ChannelReading(
                id="1",
                kind=ChannelKind.CHANNEL,
                power=0.0,
                reactive_power=0.0,
                power_factor=0.0,
                energy_in=1.0,
                energy_out=2.0,
            ),
        ),
    )
    (channel,) = Corrections(reversed_channels=frozenset({"1"})).apply(idle).channels
    values = (channel.power, channel.reactive_power, channel.power_factor)
    assert [math.copysign(1, value) for value in values if value is not None] == [1, 1, 1]
