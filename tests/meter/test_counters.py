"""A meter's counters through the counter model: snapshots, spans, storage and the log."""

from __future__ import annotations

import logging

import pytest

from custom_components.shelly_energy.energy.counter import Unaccounted
from custom_components.shelly_energy.meter.counters import (
    SPAN_RETENTION_S,
    CounterSpan,
    MeterCounters,
    counter_key,
)
from custom_components.shelly_energy.meter.snapshot import (
    ChannelKind,
    ChannelReading,
    MeterSnapshot,
)

PHASE_W = 72_000.0


def snap(
    energy_in: float | None,
    energy_out: float | None = 0.0,
    total: float | None = None,
    *,
    time: float = 0.0,
    uptime: int | None = None,
) -> MeterSnapshot:
    reading = ChannelReading(
        id="a", kind=ChannelKind.PHASE, power=1.0, energy_in=energy_in, energy_out=energy_out
    )
    total_reading = (
        None
        if total is None
        else ChannelReading(id="total", kind=ChannelKind.TOTAL, energy_in=total, energy_out=0.0)
    )
    return MeterSnapshot(time=time, channels=(reading,), total=total_reading, uptime=uptime)


def published(
    counters: MeterCounters, *raw: float | None, start: float = 0.0
) -> list[float | None]:
    result = []
    for index, value in enumerate(raw):
        snapshot, _ = counters.apply(snap(value, time=start + index), away=False)
        result.append(snapshot.channels[0].energy_in)
    return result


def test_keys() -> None:
    assert counter_key("a", True) == "a_in"
    assert counter_key("total", False) == "total_out"


def test_rising_counters_pass_unchanged() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    first = snap(10.0)
    snapshot, urgent = counters.apply(first, away=False)
    assert snapshot == first
    assert urgent  # the first reading sets the offset: store it soon
    assert published(counters, 10.5, 20.0, start=1.0) == [10.5, 20.0]
    assert counters.apply(snap(21.0, time=3.0), away=False)[1] is False


def test_values_that_are_no_counter_hold_the_total() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    assert published(counters, 100.0, -1, None, 1e308, 101.0) == [100.0] * 4 + [101.0]


def test_a_rollback_holds_and_keeps_a_span() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.apply(snap(5000.0, 100.0, time=0.0, uptime=1000), away=False)
    snapshot, urgent = counters.apply(snap(4992.19, 100.0, time=60.0, uptime=1), away=False)
    assert snapshot.channels[0].energy_in == 5000.0
    assert urgent
    # Every counter of a rebooted meter gets a span: a rise may hide a rollback too.
    assert counters.spans == (
        CounterSpan(1, "a_in", Unaccounted(0.0, 60.0, 0.0)),
        CounterSpan(2, "a_out", Unaccounted(0.0, 60.0, 0.0)),
    )
    assert published(counters, 4993.19, start=61.0) == [5001.0]


def test_a_reboot_is_told_by_the_boot_time_across_restarts() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.apply(snap(5000.0, time=1000.0, uptime=100), away=False)
    counters.apply(snap(5001.0, time=1010.0, uptime=112), away=False)  # uptime jitter: no reboot
    assert counters.spans == ()
    restored = MeterCounters("M", PHASE_W, 3)
    restored.restore(counters.to_dict())
    # Home Assistant was down; the meter rebooted meanwhile and counted 0.5 Wh since its flash
    # save, which was 2 Wh below the last reading: a drop of 0.5 Wh is a rollback, not jitter.
    snapshot, urgent = restored.apply(snap(4999.5, time=2000.0, uptime=30), away=False)
    assert urgent
    assert snapshot.channels[0].energy_in == 5001.0
    assert [span.key for span in restored.spans] == ["a_in", "a_out"]


def test_the_total_is_bounded_by_all_its_phases() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.apply(snap(0.0, total=0.0, time=0.0), away=False)
    # 150 kW for an hour: more than a phase, less than three.
    snapshot, _ = counters.apply(snap(0.0, total=150_000.0, time=3600.0), away=False)
    assert snapshot.total is not None
    assert snapshot.total.energy_in == 150_000.0


def test_state_survives_a_restart() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.apply(snap(5000.0, time=0.0), away=False)
    counters.apply(snap(3.0, time=1.0), away=False)  # a reset
    stored = counters.to_dict()
    assert stored["boot"] is None  # no uptime reported
    restored = MeterCounters("M", PHASE_W, 3)
    restored.restore(stored)
    assert restored.spans == counters.spans
    assert restored.started("a_in") == 0.0
    assert sorted(restored) == ["a_in", "a_out"]
    snapshot, _ = restored.apply(snap(503.0, time=3600.0), away=False)
    assert snapshot.channels[0].energy_in == 5500.0


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2},
        {"version": 1, "counters": {}, "spans": [[1, "a_in", 0, 1]], "seq": 1},
        {"version": 1, "counters": {"a_in": {}}, "spans": [], "seq": 0},
        {"version": 1, "counters": [], "spans": [], "seq": 0},
    ],
)
def test_unreadable_state_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"not a stored meter counter state|version"):
        MeterCounters("M", PHASE_W, 3).restore(data)


def test_hold_at_least_before_any_reading() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.hold_at_least("a_in", 900.0, 0.0)
    assert published(counters, 10.0) == [900.0]
    assert counters.started("a_out") == 0.0
    assert counters.started("b_in") is None


def test_spans_are_forgotten_once_handled_or_too_old() -> None:
    counters = MeterCounters("M", PHASE_W, 3)
    counters.apply(snap(5000.0, 10.0, time=0.0, uptime=1000), away=False)
    counters.apply(snap(1.0, 1.0, time=10.0, uptime=1), away=False)  # both counters: two spans
    counters.apply(snap(2.0, 2.0, time=20.0, uptime=11), away=False)
    counters.apply(snap(0.5, 0.5, time=30.0, uptime=1), away=False)  # two more
    assert [span.seq for span in counters.spans] == [1, 2, 3, 4]
    counters.forget_spans(2, now=40.0)
    assert [span.seq for span in counters.spans] == [3, 4]
    counters.forget_spans(0, now=31.0 + SPAN_RETENTION_S)
    assert counters.spans == ()


def test_notable_decisions_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    counters = MeterCounters("Mains", PHASE_W, 3)
    caplog.set_level(logging.INFO, logger="custom_components.shelly_energy.meter.counters")
    published(counters, 100.0, 1e308, 1e308, 1e308, 101.0, 1e30)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Mains: energy counter a_in read 1e+308: not a plausible counter value; "
        "not published; the published total stays 100.0 Wh",
        "Mains: energy counter a_in read 1e+30: not a plausible counter value; "
        "not published; the published total stays 101.0 Wh",
    ]
    diagnostics = counters.diagnostics()
    assert diagnostics["a_in"]["total"] == 101.0
    assert [d["verdict"] for d in diagnostics["a_in"]["decisions"]] == ["rejected"] * 4
    assert diagnostics["a_out"]["decisions"] == []
