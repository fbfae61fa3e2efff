"""The value guard: what may be served, and never a stale or absurd value."""

from __future__ import annotations

import math
import random

import pytest

from custom_components.shelly_energy.virtual_meter.guard import (
    PHASE_POWER_LIMIT_W,
    GridReading,
    GuardSettings,
    Refusal,
    ServedValue,
    ValueGuard,
)


def served(guard: ValueGuard, now: float) -> ServedValue:
    value = guard.check(now)
    assert isinstance(value, ServedValue), value
    return value


def test_nothing_is_served_before_a_reading() -> None:
    assert ValueGuard(GuardSettings()).check(0.0) is Refusal.NO_READING


def test_a_reading_is_served_rounded_with_its_exact_total() -> None:
    guard = ValueGuard(GuardSettings())
    guard.update(GridReading((100.004, -0.004, 33.335), time=10.0, voltage=(231.0, None, None)))
    value = served(guard, 10.0)
    assert value.power == (100.0, 0.0, 33.34)
    assert math.copysign(1.0, value.power[1]) == 1.0  # never "-0.00"
    assert value.total == 133.34
    assert value.voltage == (231.0, 230.0, 230.0)
    assert value.frequency == 50.0


def test_a_reading_goes_stale_after_the_limit_past_its_due_time() -> None:
    guard = ValueGuard(GuardSettings(stale_after=3.0))
    guard.update(GridReading((500.0, 0.0, 0.0), time=100.0))  # due at once (a sensor)
    assert served(guard, 103.0).total == 500.0
    assert guard.check(103.01) is Refusal.STALE
    # A meter polled every 5 s is due 5 s after it was read.
    guard.update(GridReading((400.0, 0.0, 0.0), time=200.0, due=205.0))
    assert served(guard, 208.0).total == 400.0
    assert guard.check(208.01) is Refusal.STALE
    guard.update(GridReading((300.0, 0.0, 0.0), time=210.0, due=215.0))
    assert served(guard, 210.0).total == 300.0


@pytest.mark.parametrize(
    "power",
    [
        (PHASE_POWER_LIMIT_W + 1, 0.0, 0.0),
        (0.0, -PHASE_POWER_LIMIT_W - 1, 0.0),
        (0.0, 0.0, math.nan),
        (math.inf, 0.0, 0.0),
        (1e308, 0.0, 0.0),
    ],
)
def test_an_implausible_reading_is_refused_until_a_plausible_one(
    power: tuple[float, float, float],
) -> None:
    guard = ValueGuard(GuardSettings(smoothing=10.0))
    guard.update(GridReading((100.0, 0.0, 0.0), time=0.0))
    guard.update(GridReading(power, time=1.0))
    assert guard.check(1.0) is Refusal.IMPLAUSIBLE
    guard.update(GridReading((-200.0, 0.0, 0.0), time=2.0))
    # The next value starts from the new reading, not from the past or the absurd one.
    assert served(guard, 2.0).total == -200.0


def test_the_limit_itself_is_plausible() -> None:
    guard = ValueGuard(GuardSettings())
    guard.update(GridReading((PHASE_POWER_LIMIT_W, -PHASE_POWER_LIMIT_W, 0.0), time=0.0))
    assert served(guard, 0.0).power == (PHASE_POWER_LIMIT_W, -PHASE_POWER_LIMIT_W, 0.0)


def test_no_reading_refuses_again() -> None:
    guard = ValueGuard(GuardSettings())
    guard.update(GridReading((1.0, 2.0, 3.0), time=0.0))
    guard.update(None)
    assert guard.check(0.0) is Refusal.NO_READING
    assert guard.reading is None


def test_the_share_scales_every_phase() -> None:
    guard = ValueGuard(GuardSettings(share=0.5))
    guard.update(GridReading((1000.0, -300.0, 0.25), time=0.0))
    value = served(guard, 0.0)
    assert value.power == (500.0, -150.0, 0.12)  # 0.125 rounds half to even
    assert value.total == 350.12


def test_smoothing_is_an_exponential_moving_average_over_time() -> None:
    guard = ValueGuard(GuardSettings(smoothing=2.0))
    guard.update(GridReading((0.0, 0.0, 0.0), time=0.0))
    guard.update(GridReading((1000.0, 0.0, 0.0), time=2.0))
    # One time constant: 1 - 1/e of the step.
    assert served(guard, 2.0).total == round(1000.0 * (1 - math.exp(-1)), 2)
    guard.update(GridReading((1000.0, 0.0, 0.0), time=2.0))  # no time passed: no move
    assert served(guard, 2.0).total == round(1000.0 * (1 - math.exp(-1)), 2)


def test_the_rate_limit_bounds_the_total_and_keeps_the_proportions() -> None:
    guard = ValueGuard(GuardSettings(max_rate=100.0))
    guard.update(GridReading((0.0, 0.0, 0.0), time=0.0))
    guard.update(GridReading((600.0, 300.0, 100.0), time=1.0))
    assert served(guard, 1.0).power == (60.0, 30.0, 10.0)
    # A phase moving against the others is bounded too.
    guard = ValueGuard(GuardSettings(max_rate=100.0))
    guard.update(GridReading((0.0, 0.0, 0.0), time=0.0))
    guard.update(GridReading((1000.0, -1000.0, 0.0), time=1.0))
    assert served(guard, 1.0).power == (100.0, -100.0, 0.0)


def test_after_a_gap_the_value_restarts_from_the_reading() -> None:
    guard = ValueGuard(GuardSettings(max_rate=10.0, stale_after=3.0))
    guard.update(GridReading((0.0, 0.0, 0.0), time=0.0))
    guard.update(GridReading((2000.0, 0.0, 0.0), time=10.0))  # 10 s later: it was stale
    assert served(guard, 10.0).total == 2000.0


def test_invariants_over_random_readings() -> None:
    """Whatever the readings: served only when fresh and plausible, totals exact, rate bounded."""
    rng = random.Random(19)
    for _ in range(200):
        settings = GuardSettings(
            stale_after=rng.choice((1.0, 3.0)),
            share=rng.choice((1.0, 0.5, 0.33)),
            smoothing=rng.choice((0.0, 2.0)),
            max_rate=rng.choice((0.0, 50.0)),
        )
        guard = ValueGuard(settings)
        now = 0.0
        last: tuple[float, ServedValue] | None = None
        for _ in range(30):
            now += rng.choice((0.5, 1.0, 2.0, 5.0))
            power = tuple(rng.uniform(-5000, 5000) for _ in range(3))
            if rng.random() < 0.05:
                power = (rng.choice((math.nan, 1e9, -math.inf)), 0.0, 0.0)
            guard.update(GridReading((power[0], power[1], power[2]), time=now))
            checked_at = now + rng.choice((0.0, 1.0, 4.0))
            value = guard.check(checked_at)
            if not all(math.isfinite(w) and abs(w) <= PHASE_POWER_LIMIT_W for w in power):
                assert value is Refusal.IMPLAUSIBLE
                last = None
                continue
            if checked_at - now > settings.stale_after:
                assert value is Refusal.STALE
            else:
                assert isinstance(value, ServedValue)
                assert value.total == round(sum(value.power), 2)
            current = served(guard, now)
            if settings.max_rate and last is not None and now - last[0] <= settings.stale_after:
                step = max(abs(a - b) for a, b in zip(current.power, last[1].power, strict=True))
                assert step <= settings.max_rate * (now - last[0]) + 0.02
            last = (now, current)
