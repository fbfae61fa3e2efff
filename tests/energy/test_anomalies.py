"""Tests for the supply-anomaly detector: exact events and states, time moved explicitly."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.anomalies import (
    ActiveAnomaly,
    AnomalyDetector,
    AnomalyEvent,
    AnomalyLimits,
    AnomalyType,
    DailyVoltageRange,
    SupplyStatus,
    VoltageRange,
)
from custom_components.shelly_energy.meter.snapshot import (
    ChannelKind,
    ChannelReading,
    MeterSnapshot,
)

LIMITS = AnomalyLimits()
OVER = AnomalyType.OVERVOLTAGE
UNDER = AnomalyType.UNDERVOLTAGE
SPIKE = AnomalyType.SPIKE
INTERRUPTION = AnomalyType.INTERRUPTION
FREQUENCY = AnomalyType.FREQUENCY_DEVIATION
IMBALANCE = AnomalyType.IMBALANCE
RESTORED = AnomalyType.RESTORED


def single(
    voltage: float | None, frequency: float | None = 50.0, flags: tuple[str, ...] = ()
) -> MeterSnapshot:
    """One poll of a single-channel meter (channel "1")."""
    reading = ChannelReading(
        "1", ChannelKind.CHANNEL, voltage=voltage, frequency=frequency, flags=flags
    )
    return MeterSnapshot(time=0.0, channels=(reading,))


def three_phase(
    a: float | None,
    b: float | None,
    c: float | None,
    *,
    frequencies: tuple[float | None, float | None, float | None] = (50.0, 50.0, 50.0),
    flags: dict[str, tuple[str, ...]] | None = None,
    kind: ChannelKind = ChannelKind.PHASE,
) -> MeterSnapshot:
    """One poll of a three-phase meter (phases "a", "b", "c"), or of three channels."""
    readings = tuple(
        ChannelReading(
            phase,
            kind,
            voltage=voltage,
            frequency=frequency,
            flags=(flags or {}).get(phase, ()),
        )
        for phase, voltage, frequency in zip("abc", (a, b, c), frequencies, strict=True)
    )
    return MeterSnapshot(time=0.0, channels=readings)


def feed(
    detector: AnomalyDetector, polls: Iterable[tuple[float, MeterSnapshot | None]]
) -> list[AnomalyEvent]:
    """Apply polls in order and return every event they made."""
    return [event for now, snapshot in polls for event in detector.update(now, snapshot)]


def every(
    start: float, stop: float, step: float, snapshot: MeterSnapshot
) -> list[tuple[float, MeterSnapshot]]:
    """The same snapshot at start, start + step, ... up to and including stop."""
    count = round((stop - start) / step)
    return [(start + i * step, snapshot) for i in range(count + 1)]


def test_default_limits_follow_en_50160() -> None:
    assert LIMITS.overvoltage == 253.0
    assert LIMITS.overvoltage_clear == 250.7
    assert LIMITS.undervoltage == 207.0
    assert LIMITS.undervoltage_clear == 209.3
    assert LIMITS.spike == 264.5
    assert LIMITS.interruption == 11.5
    assert LIMITS.interruption_clear == 13.8
    assert LIMITS.frequency_high == 50.5
    assert LIMITS.frequency_high_clear == 50.4
    assert LIMITS.frequency_low == 49.5
    assert LIMITS.frequency_low_clear == 49.6
    assert LIMITS.imbalance_clear == 1.5
    assert (LIMITS.start_delay, LIMITS.clear_delay) == (10.0, 10.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nominal_voltage": 0.0}, "must be positive"),
        ({"nominal_frequency": -50.0}, "must be positive"),
        ({"imbalance_percent": -1.0}, "cannot be negative"),
        ({"start_delay": -1.0}, "cannot be negative"),
        ({"voltage_margin_percent": 10.0}, "margin must be smaller"),
        ({"undervoltage_percent": 1.0}, "margin must be smaller"),
        ({"frequency_margin_percent": 1.0}, "margin must be smaller"),
        ({"imbalance_margin_percent": 2.5}, "margin must be smaller"),
        ({"spike_percent": 9.0}, "spike limit"),
    ],
)
def test_limits_reject_settings_that_cannot_work(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnomalyLimits(**changes)


def test_single_sample_spike_is_one_event_and_nothing_else() -> None:
    detector = AnomalyDetector(LIMITS)
    assert detector.update(0.0, single(230.0)) == []
    assert detector.update(5.0, single(264.5)) == []  # at the limit is not above it
    assert detector.update(10.0, single(265.0)) == [AnomalyEvent(SPIKE, "1", 265.0, 264.5, 10.0)]
    assert detector.status("1") == SupplyStatus()
    assert feed(detector, every(11.0, 600.0, 1.0, single(230.0))) == []
    assert detector.status() == SupplyStatus()


def test_spike_rearms_only_below_the_overvoltage_limit_minus_the_margin() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            (0.0, single(265.0)),
            (1.0, single(252.0)),  # inside the overvoltage limit, not by the margin
            (2.0, single(266.0)),
            (3.0, single(250.7)),  # back inside by the margin: armed again
            (4.0, single(267.0)),
            (5.0, single(230.0)),
        ],
    )
    assert events == [
        AnomalyEvent(SPIKE, "1", 265.0, 264.5, 0.0),
        AnomalyEvent(SPIKE, "1", 267.0, 264.5, 4.0),
    ]


def test_sustained_spike_is_also_an_overvoltage() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(detector, every(0.0, 10.0, 1.0, single(270.0)))
    assert events == [
        AnomalyEvent(SPIKE, "1", 270.0, 264.5, 0.0),
        AnomalyEvent(OVER, "1", 270.0, 253.0, 0.0, active=(OVER,)),
    ]


def test_sustained_overvoltage_starts_after_the_delay_and_ends_after_the_clear_delay() -> None:
    detector = AnomalyDetector(LIMITS)
    assert detector.update(0.0, single(255.0)) == []
    assert detector.update(5.0, single(256.0)) == []
    assert detector.update(9.9, single(255.0)) == []
    assert detector.status("1") == SupplyStatus()
    started = AnomalyEvent(OVER, "1", 256.0, 253.0, 0.0, active=(OVER,))
    assert detector.update(10.0, single(254.0)) == [started]
    active = ActiveAnomaly(OVER, "1", 256.0, 253.0, 0.0)
    assert detector.status("1") == SupplyStatus((active,))
    assert detector.status("1").problem
    assert detector.status("1").worst == active

    assert detector.update(15.0, single(258.0)) == []  # a worse reading while active
    assert detector.update(20.0, single(251.0)) == []  # inside the limit, not by the margin
    assert detector.update(30.0, single(250.7)) == []  # inside by the margin from here on
    assert detector.update(39.9, single(249.0)) == []
    assert detector.status("1") == SupplyStatus((ActiveAnomaly(OVER, "1", 258.0, 253.0, 0.0),))
    assert detector.update(40.0, single(231.0)) == [
        AnomalyEvent(RESTORED, "1", 258.0, 253.0, 0.0, restored_type=OVER, duration=30.0)
    ]
    assert detector.status("1") == SupplyStatus()
    assert not detector.status("1").problem
    assert detector.status("1").worst is None


def test_an_end_needs_readings_inside_by_the_margin_throughout_the_clear_delay() -> None:
    detector = AnomalyDetector(LIMITS)
    feed(detector, every(0.0, 10.0, 1.0, single(256.0)))
    events = feed(
        detector,
        [
            (20.0, single(245.0)),
            (25.0, single(252.0)),  # back near the limit: the clear starts again
            (30.0, single(245.0)),
            (35.0, single(254.0)),  # back beyond it: again
            (40.0, single(245.0)),
            (49.0, single(245.0)),
            (50.0, single(245.0)),
        ],
    )
    assert events == [
        AnomalyEvent(RESTORED, "1", 256.0, 253.0, 0.0, restored_type=OVER, duration=40.0)
    ]


def test_sag_is_an_undervoltage() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            (0.0, single(230.0)),
            (1.0, single(205.0)),
            (4.0, single(195.0)),
            (8.0, single(200.0)),
            (10.9, single(201.0)),
        ],
    )
    assert events == []
    assert detector.update(11.0, single(203.0)) == [
        AnomalyEvent(UNDER, "1", 195.0, 207.0, 1.0, active=(UNDER,))
    ]
    events = feed(
        detector,
        [
            (20.0, single(209.0)),  # inside the limit, not by the margin
            (30.0, single(209.0)),
            (40.0, single(209.3)),  # inside by the margin from here on
            (49.0, single(228.0)),
        ],
    )
    assert events == []
    assert detector.update(50.0, single(229.0)) == [
        AnomalyEvent(RESTORED, "1", 195.0, 207.0, 1.0, restored_type=UNDER, duration=39.0)
    ]


def test_interruption_and_return_of_a_phase_that_had_voltage() -> None:
    detector = AnomalyDetector(LIMITS)
    assert detector.update(0.0, single(230.0)) == []
    assert feed(detector, every(1.0, 10.9, 0.1, single(0.0))) == []
    started = AnomalyEvent(INTERRUPTION, "1", 0.0, 11.5, 1.0, active=(INTERRUPTION,))
    assert detector.update(11.0, single(0.0)) == [started]
    assert detector.status("1") == SupplyStatus((ActiveAnomaly(INTERRUPTION, "1", 0.0, 11.5, 1.0),))
    assert feed(detector, every(12.0, 60.0, 1.0, single(0.0))) == []  # no undervoltage
    assert feed(detector, every(61.0, 70.0, 1.0, single(230.0))) == []
    assert detector.update(71.0, single(230.0)) == [
        AnomalyEvent(RESTORED, "1", 0.0, 11.5, 1.0, restored_type=INTERRUPTION, duration=60.0)
    ]
    assert detector.status() == SupplyStatus()


def test_the_sag_on_the_way_into_and_out_of_an_interruption_is_not_an_undervoltage() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            (0.0, single(230.0)),
            (1.0, single(100.0)),
            *every(2.0, 29.0, 1.0, single(0.0)),
            (30.0, single(150.0)),
            *every(31.0, 60.0, 1.0, single(230.0)),
        ],
    )
    assert events == [
        AnomalyEvent(INTERRUPTION, "1", 0.0, 11.5, 2.0, active=(INTERRUPTION,)),
        AnomalyEvent(RESTORED, "1", 0.0, 11.5, 2.0, restored_type=INTERRUPTION, duration=28.0),
    ]


def test_an_interruption_supersedes_an_undervoltage_that_was_already_active() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [(0.0, single(230.0)), *every(1.0, 19.0, 1.0, single(180.0))],
    )
    assert events == [AnomalyEvent(UNDER, "1", 180.0, 207.0, 1.0, active=(UNDER,))]
    events = feed(detector, every(20.0, 49.0, 1.0, single(0.0)))
    assert events == [
        AnomalyEvent(INTERRUPTION, "1", 0.0, 11.5, 20.0, active=(INTERRUPTION, UNDER)),
    ]
    assert detector.status("1") == SupplyStatus(
        (
            ActiveAnomaly(INTERRUPTION, "1", 0.0, 11.5, 20.0),
            ActiveAnomaly(UNDER, "1", 180.0, 207.0, 1.0),
        )
    )
    events = feed(detector, every(50.0, 60.0, 1.0, single(230.0)))
    assert events == [
        AnomalyEvent(RESTORED, "1", 0.0, 11.5, 20.0, restored_type=INTERRUPTION, duration=30.0),
        AnomalyEvent(RESTORED, "1", 180.0, 207.0, 1.0, restored_type=UNDER, duration=49.0),
    ]


def test_an_active_overvoltage_ends_when_the_voltage_is_lost() -> None:
    detector = AnomalyDetector(LIMITS)
    feed(detector, every(0.0, 10.0, 1.0, single(256.0)))
    events = feed(detector, every(11.0, 21.0, 1.0, single(0.0)))
    assert events == [
        AnomalyEvent(
            RESTORED,
            "1",
            256.0,
            253.0,
            0.0,
            restored_type=OVER,
            duration=11.0,
            active=(INTERRUPTION,),
        ),
        AnomalyEvent(INTERRUPTION, "1", 0.0, 11.5, 11.0, active=(INTERRUPTION,)),
    ]


def test_a_phase_without_voltage_from_setup_onwards_is_not_connected() -> None:
    detector = AnomalyDetector(LIMITS)
    unconnected = three_phase(
        230.0,
        230.0,
        0.0,
        frequencies=(50.0, 50.0, 0.0),
        flags={"c": ("undervoltage", "overvoltage")},
    )
    assert feed(detector, every(0.0, 3600.0, 10.0, unconnected)) == []
    assert detector.status() == SupplyStatus()
    assert detector.seen_voltage == frozenset({"a", "b"})

    # Once connected, the phase is watched like the others.
    assert feed(detector, every(3601.0, 3610.0, 1.0, three_phase(230.0, 230.0, 230.0))) == []
    assert detector.seen_voltage == frozenset({"a", "b", "c"})
    assert feed(detector, every(3611.0, 3621.0, 1.0, three_phase(230.0, 230.0, 0.0))) == [
        AnomalyEvent(INTERRUPTION, "c", 0.0, 11.5, 3611.0, active=(INTERRUPTION,))
    ]


def test_phases_known_to_have_had_voltage_can_be_passed_in() -> None:
    detector = AnomalyDetector(LIMITS, seen_voltage=["c"])
    assert detector.seen_voltage == frozenset({"c"})
    assert feed(detector, every(0.0, 10.0, 1.0, three_phase(230.0, 230.0, 0.0))) == [
        AnomalyEvent(INTERRUPTION, "c", 0.0, 11.5, 0.0, active=(INTERRUPTION,))
    ]


def test_frequency_drift_is_a_meter_wide_deviation() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            *every(0.0, 9.0, 1.0, three_phase(230.0, 230.0, 230.0, frequencies=(50.6,) * 3)),
            (9.5, three_phase(230.0, 230.0, 230.0, frequencies=(50.6, 50.7, None))),
        ],
    )
    assert events == []
    started = AnomalyEvent(FREQUENCY, None, 50.7, 50.5, 0.0, active=(FREQUENCY,))
    assert detector.update(10.0, three_phase(230.0, 230.0, 230.0, frequencies=(50.6,) * 3)) == [
        started
    ]
    active = ActiveAnomaly(FREQUENCY, None, 50.7, 50.5, 0.0)
    assert detector.status("a") == SupplyStatus((active,))
    assert detector.status() == SupplyStatus((active,))
    events = feed(
        detector,
        [
            *every(11.0, 30.0, 1.0, three_phase(230.0, 230.0, 230.0, frequencies=(50.45,) * 3)),
            *every(31.0, 40.0, 1.0, three_phase(230.0, 230.0, 230.0, frequencies=(50.3,) * 3)),
        ],
    )
    assert events == []
    assert detector.update(41.0, three_phase(230.0, 230.0, 230.0)) == [
        AnomalyEvent(RESTORED, None, 50.7, 50.5, 0.0, restored_type=FREQUENCY, duration=31.0)
    ]


def test_low_frequency_crosses_the_lower_limit() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(detector, every(0.0, 10.0, 1.0, single(230.0, frequency=49.4)))
    assert events == [AnomalyEvent(FREQUENCY, None, 49.4, 49.5, 0.0, active=(FREQUENCY,))]
    events = feed(
        detector,
        [
            *every(11.0, 20.0, 1.0, single(230.0, frequency=49.55)),  # not by the margin
            *every(21.0, 31.0, 1.0, single(230.0, frequency=49.7)),
        ],
    )
    assert events == [
        AnomalyEvent(RESTORED, None, 49.4, 49.5, 0.0, restored_type=FREQUENCY, duration=21.0)
    ]


def test_the_worst_frequency_is_the_furthest_from_nominal_on_either_side() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            *every(0.0, 10.0, 1.0, single(230.0, frequency=50.6)),
            (300.0, single(230.0, frequency=49.2)),
            (310.0, single(230.0, frequency=50.7)),
            *every(311.0, 321.0, 1.0, single(230.0)),
        ],
    )
    assert events == [
        AnomalyEvent(FREQUENCY, None, 50.6, 50.5, 0.0, active=(FREQUENCY,)),
        AnomalyEvent(RESTORED, None, 49.2, 49.5, 0.0, restored_type=FREQUENCY, duration=311.0),
    ]


def test_frequency_ignores_missing_values_and_phases_without_voltage() -> None:
    detector = AnomalyDetector(LIMITS)
    polls = [
        *every(0.0, 60.0, 1.0, single(5.0, frequency=52.0)),  # "1" not connected yet
        *every(61.0, 120.0, 1.0, three_phase(230.0, 230.0, 0.0, frequencies=(50.0, 50.0, 0.0))),
        *every(121.0, 180.0, 1.0, single(230.0, frequency=None)),
    ]
    assert feed(detector, polls) == []


def test_imbalance_between_the_phases_of_a_three_phase_meter() -> None:
    detector = AnomalyDetector(LIMITS)
    unbalanced = three_phase(224.25, 224.25, 241.5)  # mean 230 V, c 11.5 V (5 %) above it
    assert feed(detector, every(0.0, 9.0, 1.0, unbalanced)) == []
    assert detector.update(10.0, unbalanced) == [
        AnomalyEvent(IMBALANCE, None, 5.0, 2.0, 0.0, active=(IMBALANCE,))
    ]
    assert detector.status("b") == SupplyStatus((ActiveAnomaly(IMBALANCE, None, 5.0, 2.0, 0.0),))
    events = feed(
        detector,
        [
            *every(11.0, 30.0, 1.0, three_phase(226.0, 230.0, 234.0)),  # 1.74 %: not by the margin
            *every(31.0, 41.0, 1.0, three_phase(228.0, 230.0, 232.0)),  # 0.87 %
        ],
    )
    assert events == [
        AnomalyEvent(RESTORED, None, 5.0, 2.0, 0.0, restored_type=IMBALANCE, duration=31.0)
    ]


def test_imbalance_leaves_out_a_phase_that_is_not_connected() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(detector, every(0.0, 10.0, 1.0, three_phase(234.0, 246.0, 0.0)))
    assert events == [AnomalyEvent(IMBALANCE, None, 2.5, 2.0, 0.0, active=(IMBALANCE,))]


@pytest.mark.parametrize(
    "snapshot",
    [
        three_phase(224.25, 224.25, 241.5, kind=ChannelKind.CHANNEL),  # independent channels
        three_phase(230.0, 0.0, 0.0),  # a single connected phase
    ],
)
def test_imbalance_needs_a_three_phase_meter_with_two_connected_phases(
    snapshot: MeterSnapshot,
) -> None:
    detector = AnomalyDetector(LIMITS)
    assert feed(detector, every(0.0, 600.0, 1.0, snapshot)) == []


def test_imbalance_is_not_judged_from_a_single_reported_phase() -> None:
    detector = AnomalyDetector(LIMITS)
    feed(detector, every(0.0, 10.0, 1.0, three_phase(224.25, 224.25, 241.5)))
    only_a = MeterSnapshot(
        time=0.0, channels=(ChannelReading("a", ChannelKind.PHASE, voltage=230.0),)
    )
    assert feed(detector, every(11.0, 60.0, 1.0, only_a)) == []
    assert detector.status() == SupplyStatus((ActiveAnomaly(IMBALANCE, None, 5.0, 2.0, 0.0),))


def test_an_interrupted_phase_is_not_an_imbalance() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            *every(0.0, 10.0, 1.0, three_phase(230.0, 230.0, 230.0)),
            *every(11.0, 60.0, 1.0, three_phase(230.0, 230.0, 0.0)),
            (61.0, three_phase(230.0, 230.0, None)),
            # Back unbalanced, but interrupted until the clear delay has passed; then balanced.
            *every(62.0, 72.0, 1.0, three_phase(230.0, 230.0, 241.5)),
            *every(73.0, 90.0, 1.0, three_phase(230.0, 230.0, 230.0)),
        ],
    )
    assert events == [
        AnomalyEvent(INTERRUPTION, "c", 0.0, 11.5, 11.0, active=(INTERRUPTION,)),
        AnomalyEvent(RESTORED, "c", 0.0, 11.5, 11.0, restored_type=INTERRUPTION, duration=51.0),
    ]


def test_device_flags_count_as_the_condition() -> None:
    detector = AnomalyDetector(LIMITS)
    events = feed(
        detector,
        [
            *every(0.0, 10.0, 1.0, single(240.0, flags=("overvoltage",))),
            *every(11.0, 21.0, 1.0, single(240.0)),
            *every(22.0, 32.0, 1.0, single(215.0, flags=("undervoltage", "overcurrent"))),
            *every(33.0, 43.0, 1.0, single(215.0)),
        ],
    )
    assert events == [
        AnomalyEvent(OVER, "1", 240.0, 253.0, 0.0, active=(OVER,)),
        AnomalyEvent(RESTORED, "1", 240.0, 253.0, 0.0, restored_type=OVER, duration=11.0),
        AnomalyEvent(UNDER, "1", 215.0, 207.0, 22.0, active=(UNDER,)),
        AnomalyEvent(RESTORED, "1", 215.0, 207.0, 22.0, restored_type=UNDER, duration=11.0),
    ]


def test_noise_inside_the_limits_makes_nothing() -> None:
    rng = random.Random(50160)
    three = AnomalyDetector(LIMITS)
    one = AnomalyDetector(LIMITS)
    now = 0.0
    for _ in range(5000):
        now += rng.choice((rng.uniform(1.0, 10.0), rng.uniform(1.0, 300.0)))
        common = rng.uniform(-0.015, 0.015)  # the supply moves, each phase adds a little
        voltages = [230.0 * (1 + common + rng.uniform(-0.005, 0.005)) for _ in range(3)]
        frequency = 50.0 * (1 + rng.uniform(-0.008, 0.008))
        snapshot = three_phase(*voltages, frequencies=(frequency,) * 3)
        assert three.update(now, snapshot) == []
        assert one.update(now, single(voltages[0], frequency)) == []
    assert three.status() == SupplyStatus()
    assert one.status() == SupplyStatus()


def test_a_reading_oscillating_around_the_limit_does_not_start_anything() -> None:
    detector = AnomalyDetector(LIMITS)
    polls = [(float(t), single(254.0 if t % 2 else 252.0)) for t in range(600)]
    assert feed(detector, polls) == []


def test_a_reading_oscillating_around_a_limit_starts_and_ends_once() -> None:
    detector = AnomalyDetector(LIMITS)
    polls = [
        *every(0.0, 10.0, 1.0, single(256.0)),
        *[(float(t), single(254.0 if t % 2 else 252.0)) for t in range(11, 600)],
        # Around the end of the margin: never inside by it long enough.
        *[(float(t), single(251.5 if t % 2 else 250.0)) for t in range(600, 1200)],
        *every(1200.0, 1210.0, 1.0, single(245.0)),
    ]
    assert feed(detector, polls) == [
        AnomalyEvent(OVER, "1", 256.0, 253.0, 0.0, active=(OVER,)),
        AnomalyEvent(RESTORED, "1", 256.0, 253.0, 0.0, restored_type=OVER, duration=1200.0),
    ]


def test_debounce_is_measured_in_time_with_irregular_readings() -> None:
    detector = AnomalyDetector(LIMITS)
    assert feed(detector, every(0.0, 9.9, 0.1, single(255.0))) == []  # 100 readings, 9.9 s
    assert feed(detector, [(10.5, single(230.0))]) == []
    events = feed(
        detector,
        [
            (20.0, single(255.0)),
            (27.0, single(254.0)),
            (300.0, single(256.0)),
            (301.0, single(250.0)),
            (310.9, single(250.0)),
            (553.0, single(250.0)),
        ],
    )
    assert events == [
        AnomalyEvent(OVER, "1", 256.0, 253.0, 20.0, active=(OVER,)),
        AnomalyEvent(RESTORED, "1", 256.0, 253.0, 20.0, restored_type=OVER, duration=281.0),
    ]


def test_nothing_starts_or_ends_while_the_meter_does_not_answer() -> None:
    detector = AnomalyDetector(LIMITS)
    # A gap forgets a pending start: the condition must be seen again for the whole delay.
    events = feed(
        detector,
        [
            (0.0, single(255.0)),
            (5.0, None),
            (10.0, single(255.0)),
            (15.0, single(None)),
            (20.0, single(255.0)),
            (25.0, MeterSnapshot(time=0.0, channels=())),
            (30.0, single(255.0)),
        ],
    )
    assert events == []
    assert detector.update(40.0, single(255.0)) == [
        AnomalyEvent(OVER, "1", 255.0, 253.0, 30.0, active=(OVER,))
    ]
    # An active condition stays active through the silence, and a pending end is forgotten.
    events = feed(
        detector,
        [
            (50.0, single(245.0)),
            *[(float(t), None) for t in range(55, 4000, 5)],
            (4000.0, single(245.0)),
            (4009.0, single(245.0)),
        ],
    )
    assert events == []
    assert detector.status("1") == SupplyStatus((ActiveAnomaly(OVER, "1", 255.0, 253.0, 30.0),))
    assert detector.update(4010.0, single(245.0)) == [
        AnomalyEvent(RESTORED, "1", 255.0, 253.0, 30.0, restored_type=OVER, duration=3970.0)
    ]


def test_limits_for_a_120_v_60_hz_supply() -> None:
    limits = AnomalyLimits(nominal_voltage=120.0, nominal_frequency=60.0)
    detector = AnomalyDetector(limits)
    events = feed(
        detector,
        [
            *every(0.0, 20.0, 1.0, single(132.0, frequency=60.6)),  # at the limits: normal
            (21.0, single(139.0, frequency=60.7)),
            *every(22.0, 31.0, 1.0, single(133.0, frequency=60.7)),
            *every(32.0, 60.0, 1.0, single(120.0, frequency=60.0)),
            *every(61.0, 71.0, 1.0, single(107.0, frequency=59.3)),
            *every(72.0, 80.0, 1.0, single(0.0, frequency=0.0)),
        ],
    )
    assert events == [
        AnomalyEvent(SPIKE, "1", 139.0, 138.0, 21.0),
        AnomalyEvent(OVER, "1", 139.0, 132.0, 21.0, active=(OVER, FREQUENCY)),
        AnomalyEvent(FREQUENCY, None, 60.7, 60.6, 21.0, active=(OVER, FREQUENCY)),
        AnomalyEvent(RESTORED, "1", 139.0, 132.0, 21.0, restored_type=OVER, duration=11.0),
        AnomalyEvent(RESTORED, None, 60.7, 60.6, 21.0, restored_type=FREQUENCY, duration=11.0),
        AnomalyEvent(UNDER, "1", 107.0, 108.0, 61.0, active=(UNDER, FREQUENCY)),
        AnomalyEvent(FREQUENCY, None, 59.3, 59.4, 61.0, active=(UNDER, FREQUENCY)),
    ]
    assert detector.status("1") == SupplyStatus(
        (
            ActiveAnomaly(UNDER, "1", 107.0, 108.0, 61.0),
            ActiveAnomaly(FREQUENCY, None, 59.3, 59.4, 61.0),
        )
    )
    assert (limits.interruption, limits.overvoltage_clear, limits.undervoltage_clear) == (
        6.0,
        130.8,
        109.2,
    )


def test_delays_are_configurable() -> None:
    detector = AnomalyDetector(AnomalyLimits(start_delay=0.0, clear_delay=30.0))
    assert detector.update(0.0, single(254.0)) == [
        AnomalyEvent(OVER, "1", 254.0, 253.0, 0.0, active=(OVER,))
    ]
    assert feed(detector, every(1.0, 30.0, 1.0, single(240.0))) == []
    assert detector.update(31.0, single(240.0)) == [
        AnomalyEvent(RESTORED, "1", 254.0, 253.0, 0.0, restored_type=OVER, duration=1.0)
    ]
    immediate = AnomalyDetector(AnomalyLimits(start_delay=0.0, clear_delay=0.0))
    assert feed(immediate, [(0.0, single(200.0)), (4.0, single(230.0))]) == [
        AnomalyEvent(UNDER, "1", 200.0, 207.0, 0.0, active=(UNDER,)),
        AnomalyEvent(RESTORED, "1", 200.0, 207.0, 0.0, restored_type=UNDER, duration=4.0),
    ]


def test_status_lists_the_worst_first_and_a_phase_sees_the_meter_wide_anomalies() -> None:
    detector = AnomalyDetector(LIMITS)
    feed(
        detector,
        every(0.0, 10.0, 1.0, three_phase(255.0, 205.0, 230.0, frequencies=(50.6,) * 3)),
    )
    over = ActiveAnomaly(OVER, "a", 255.0, 253.0, 0.0)
    under = ActiveAnomaly(UNDER, "b", 205.0, 207.0, 0.0)
    frequency = ActiveAnomaly(FREQUENCY, None, 50.6, 50.5, 0.0)
    imbalance = ActiveAnomaly(IMBALANCE, None, 25.0 / 230.0 * 100, 2.0, 0.0)  # mean 230 V
    assert detector.status() == SupplyStatus((over, under, frequency, imbalance))
    assert detector.status("b") == SupplyStatus((under, frequency, imbalance))
    assert detector.status("c") == SupplyStatus((frequency, imbalance))
    assert detector.status("x") == SupplyStatus((frequency, imbalance))


# Voltages around every limit (interruption 23 V, under 207 V, over 253 V, spike 264.5 V) and
# frequencies around 50 Hz +- 0.5 Hz, a step of time each (s) covering the 10 s delays quickly.
VOLTAGES = st.sampled_from([None, 0.0, 20.0, 30.0, 200.0, 208.5, 230.0, 252.0, 254.0, 266.0])
FREQUENCIES = st.sampled_from([None, 49.4, 50.0, 50.45, 50.6])
POLLS = st.lists(
    st.tuples(
        st.sampled_from([0.5, 1.0, 4.0, 11.0]),
        st.one_of(
            st.none(),
            st.tuples(VOLTAGES, VOLTAGES, VOLTAGES, FREQUENCIES, st.booleans()),
        ),
    ),
    max_size=60,
)


@given(POLLS)
def test_the_status_is_what_the_events_started_and_did_not_end(
    polls: list[tuple[float, tuple[Any, ...] | None]],
) -> None:
    """After every update, each status lists exactly the anomalies started and not yet ended."""
    detector = AnomalyDetector(LIMITS)
    started: set[tuple[AnomalyType, str | None]] = set()
    now = 0.0
    for step, poll in polls:
        now += step
        snapshot = None
        if poll is not None:
            a, b, c, frequency, flagged = poll
            flags: dict[str, tuple[str, ...]] | None = {"a": ("overvoltage",)} if flagged else None
            snapshot = three_phase(a, b, c, frequencies=(frequency,) * 3, flags=flags)
        for event in detector.update(now, snapshot):
            if event.type is RESTORED:
                assert event.restored_type is not None
                started.remove((event.restored_type, event.phase))
            elif event.type is not SPIKE:
                started.add((event.type, event.phase))
        for phase in (None, "a", "b", "c"):
            shown = {(anomaly.type, anomaly.phase) for anomaly in detector.status(phase).anomalies}
            assert shown == {
                (kind, where) for kind, where in started if phase in (None, where) or where is None
            }


def test_ends_come_before_starts_so_the_last_event_tells_the_present() -> None:
    detector = AnomalyDetector(LIMITS)
    channels = ChannelKind.CHANNEL
    feed(detector, every(0.0, 10.0, 1.0, three_phase(230.0, 256.0, 230.0, kind=channels)))
    assert (
        feed(detector, every(11.0, 20.0, 1.0, three_phase(200.0, 245.0, 230.0, kind=channels)))
        == []
    )
    assert detector.update(21.0, three_phase(200.0, 245.0, 230.0, kind=channels)) == [
        AnomalyEvent(
            RESTORED, "b", 256.0, 253.0, 0.0, restored_type=OVER, duration=11.0, active=(UNDER,)
        ),
        AnomalyEvent(UNDER, "a", 200.0, 207.0, 11.0, active=(UNDER,)),
    ]


def test_event_data_is_json_safe() -> None:
    restored = AnomalyEvent(
        RESTORED, "b", 256.0, 253.0, 0.0, restored_type=OVER, duration=11.0, active=(UNDER,)
    )
    assert restored.event_data() == {
        "type": "restored",
        "phase": "b",
        "value": 256.0,
        "limit": 253.0,
        "duration": 11.0,
        "restored_type": "overvoltage",
        "active": ["undervoltage"],
    }
    spike = AnomalyEvent(SPIKE, "a", 265.0, 264.5, 3.0)
    data = spike.event_data()
    assert data == {
        "type": "spike",
        "phase": "a",
        "value": 265.0,
        "limit": 264.5,
        "duration": None,
        "restored_type": None,
        "active": [],
    }
    assert type(data["type"]) is str


def test_daily_voltage_range_resets_at_midnight() -> None:
    ranges = DailyVoltageRange(LIMITS.interruption)
    monday, tuesday = date(2025, 6, 2), date(2025, 6, 3)
    assert ranges.voltage_range("a") is None
    for voltage in (230.0, 228.5, None, 233.0, 231.0):
        ranges.update(monday, "a", voltage)
    ranges.update(monday, "b", 0.0)  # not connected
    ranges.update(monday, "c", 229.0)
    assert ranges.voltage_range("a") == VoltageRange(228.5, 233.0)
    assert ranges.voltage_range("b") is None
    assert ranges.voltage_range("c") == VoltageRange(229.0, 229.0)

    ranges.update(tuesday, "a", 231.5)
    assert ranges.voltage_range("a") == VoltageRange(231.5, 231.5)
    assert ranges.voltage_range("c") is None
    ranges.update(tuesday, "c", 0.0)  # a connected phase losing its voltage
    ranges.update(tuesday, "c", 230.0)
    assert ranges.voltage_range("c") == VoltageRange(0.0, 230.0)
    ranges.update(tuesday, "b", 0.0)
    assert ranges.voltage_range("b") is None
