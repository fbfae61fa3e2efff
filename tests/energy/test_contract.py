"""Tests for contracted power: debounced limits, the trip rules and the fuses of the phases."""

from __future__ import annotations

import dataclasses

import pytest

from custom_components.shelly_energy.energy.contract import (
    ContractLimits,
    ContractWatch,
    LimitEvent,
    LimitEventType,
    TripRule,
)

# Italy: 3 kW contracted; 10 % over it for good, above 27 % for two minutes.
ITALY = ContractLimits(power_w=3000.0, start_delay=10.0, clear_delay=30.0)


def readings(
    watch: ContractWatch, start: float, seconds: int, power: float | None, every: int = 2
) -> list[LimitEvent]:
    events: list[LimitEvent] = []
    for moment in range(0, seconds, every):
        events += watch.update(start + moment, power, {})
    return events


def test_the_contracted_power_exceeded_and_cleared() -> None:
    watch = ContractWatch(ITALY)
    assert readings(watch, 0, 60, 2900.0) == []
    assert watch.headroom_w(2900.0) == 100.0
    # 3.5 kW (16.7 % over): above the 10 % rule, which trips after two hours.
    events = readings(watch, 60, 20, 3500.0)
    assert [dataclasses.replace(event, trips_in=None) for event in events] == [
        LimitEvent(LimitEventType.POWER_EXCEEDED, None, 3500.0, 3000.0, None)
    ]
    assert events[0].trips_in == pytest.approx(7190.0)
    assert watch.trips_in == pytest.approx(7182.0)
    assert watch.exceeded() == [None]
    # 4 kW (33 % over): the 27 % rule leaves two minutes from when it began.
    readings(watch, 80, 30, 4000.0)
    assert watch.trips_in == pytest.approx(92.0)
    # Back at 2.9 kW: not below the margin (2850 W), nothing ends.
    assert readings(watch, 110, 60, 2900.0) == []
    assert watch.trips_in is None
    # At 2 kW for 30 s it clears; it was exceeded from 60 s to 170 s.
    events = readings(watch, 170, 40, 2000.0)
    assert events == [
        LimitEvent(LimitEventType.POWER_CLEARED, None, 2000.0, 3000.0, None, 30.0 + 110.0)
    ]


def test_a_short_peak_and_a_missing_reading_start_nothing() -> None:
    watch = ContractWatch(ITALY)
    assert readings(watch, 0, 8, 5000.0) == []  # shorter than the start delay
    assert readings(watch, 8, 2, None) == []  # a missing reading restarts the count
    assert readings(watch, 10, 8, 5000.0) == []
    assert watch.trips_in == pytest.approx(114.0)  # the 27 % rule counts from 10 s
    assert readings(watch, 18, 4, 5000.0)[0].type is LimitEventType.POWER_EXCEEDED


def test_the_fuse_of_each_phase() -> None:
    watch = ContractWatch(ContractLimits(fuse_a=25.0, start_delay=5.0, clear_delay=5.0))
    currents = {"a": 30.0, "b": -12.0, "c": None}
    events = []
    for moment in range(0, 12, 2):
        events += watch.update(moment, None, currents)
    assert events == [LimitEvent(LimitEventType.FUSE_EXCEEDED, "a", 30.0, 25.0)]
    assert watch.fuse_headroom_a(-12.0) == 13.0
    assert watch.exceeded() == ["a"]
    assert watch.headroom_w(2000.0) is None and watch.trips_in is None
    for moment in range(12, 24, 2):
        events += watch.update(moment, None, {"a": 20.0})
    assert events[-1] == LimitEvent(LimitEventType.FUSE_CLEARED, "a", 20.0, 25.0, None, 18.0)
    assert watch.exceeded() == []


def test_without_limits_nothing_is_watched() -> None:
    watch = ContractWatch(ContractLimits())
    assert watch.update(0, 10_000.0, {"a": 80.0}) == []
    assert watch.headroom_w(10_000.0) is None and watch.fuse_headroom_a(80.0) is None


@pytest.mark.parametrize(
    "limits",
    [
        {"power_w": 0.0},
        {"fuse_a": -5.0},
        {"start_delay": -1.0},
        {"margin_percent": 100.0},
        {"rules": (TripRule(-1.0, 10.0),)},
    ],
)
def test_limits_that_cannot_work_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ContractLimits(**limits)  # type: ignore[arg-type]


def test_events_as_bus_data() -> None:
    exceeded = LimitEvent(LimitEventType.POWER_EXCEEDED, None, 3512.34, 3000.0, 7189.6)
    assert exceeded.event_data() == {
        "type": "power_exceeded",
        "channel": None,
        "value": 3.512,  # kW
        "limit": 3.0,
        "trips_in": 7190,
        "duration": None,
    }
    cleared = LimitEvent(LimitEventType.FUSE_CLEARED, "a", 20.456, 25.0, None, 140.2)
    assert cleared.event_data() == {
        "type": "fuse_cleared",
        "channel": "a",
        "value": 20.456,  # A
        "limit": 25.0,
        "trips_in": None,
        "duration": 140,
    }
