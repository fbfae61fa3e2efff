"""Counter hygiene: invalid values, jitter, reboots and resets."""

from __future__ import annotations

from custom_components.shelly_energy.meter.counters import CounterGuard
from custom_components.shelly_energy.meter.snapshot import (
    ChannelKind,
    ChannelReading,
    MeterSnapshot,
)


def snap(energy_in: float | None, energy_out: float | None = 0.0) -> MeterSnapshot:
    reading = ChannelReading(
        id="1", kind=ChannelKind.CHANNEL, power=1.0, energy_in=energy_in, energy_out=energy_out
    )
    return MeterSnapshot(time=0.0, channels=(reading,))


def published(guard: CounterGuard, *raw: float | None) -> list[float | None]:
    return [guard.clean(snap(value)).channels[0].energy_in for value in raw]


def test_rising_counter_passes_unchanged() -> None:
    guard = CounterGuard()
    first = snap(10.0)
    assert guard.clean(first) is first
    assert published(guard, 10.5, 20.0) == [10.5, 20.0]


def test_invalid_values_read_as_unavailable() -> None:
    assert published(CounterGuard(), 100.0, -1, None, 101.0) == [100.0, None, None, 101.0]


def test_jitter_keeps_the_previous_value() -> None:
    assert published(CounterGuard(), 100.0, 99.997, 100.2) == [100.0, 100.0, 100.2]


def test_zero_after_reboot_is_unavailable_then_the_real_value_returns() -> None:
    assert published(CounterGuard(), 5000.0, 0.0, 0.0, 5000.5) == [5000.0, None, None, 5000.5]


def test_a_lasting_zero_is_a_reset() -> None:
    assert published(CounterGuard(), 5000.0, 0.0, 0.0, 0.0, 0.5) == [5000.0, None, None, 0.0, 0.5]


def test_a_drop_to_a_lower_value_is_a_reset_at_once() -> None:
    assert published(CounterGuard(), 5000.0, 12.0, 13.0) == [5000.0, 12.0, 13.0]


def test_first_reading_of_zero_is_a_reading() -> None:
    assert published(CounterGuard(), 0.0, 1.0) == [0.0, 1.0]


def test_counters_are_kept_apart_per_channel_and_direction() -> None:
    guard = CounterGuard()
    guard.clean(snap(100.0, 50.0))
    cleaned = guard.clean(snap(100.0, 49.9995))
    assert cleaned.channels[0].energy_out == 50.0
    total = ChannelReading(id="total", kind=ChannelKind.TOTAL, energy_in=7.0, energy_out=1.0)
    with_total = MeterSnapshot(time=0.0, channels=(), total=total)
    assert guard.clean(with_total).total == total
    lower = MeterSnapshot(
        time=0.0,
        channels=(),
        total=ChannelReading(id="total", kind=ChannelKind.TOTAL, energy_in=6.9995, energy_out=1.0),
    )
    assert guard.clean(lower).total == total
