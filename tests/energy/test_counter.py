"""The cumulative counter model: examples of each rule, and its invariants under random faults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.counter import (
    CONFIRM_READINGS,
    DECISIONS_KEPT,
    Decision,
    EnergyCounter,
    Unaccounted,
    Verdict,
    counter_value,
)

# A Pro 3EM phase: 120 A at up to 300 V, twice over.
MAX_POWER_W = 72_000.0


def counter(*readings: object, start: float = 0.0, step: float = 1.0) -> EnergyCounter:
    """Return a phase counter fed `readings`, one a second."""
    energy = EnergyCounter(MAX_POWER_W)
    for index, value in enumerate(readings):
        energy.read(value, start + index * step)
    return energy


def verdicts(energy: EnergyCounter, *readings: object, start: float = 100.0) -> list[str]:
    return [energy.read(value, start + i).verdict.value for i, value in enumerate(readings)]


def test_the_first_reading_starts_the_total() -> None:
    energy = EnergyCounter(MAX_POWER_W)
    decision = energy.read(46_000.5, 10.0)
    assert (decision.verdict, decision.total, decision.store_soon) == (
        Verdict.FIRST,
        46_000.5,
        True,
    )


def test_a_site_flow_starts_from_its_own_total() -> None:
    energy = EnergyCounter(total=12.0)
    energy.read(46_000.0, 0.0)
    assert energy.read(46_010.0, 1.0).total == 22.0


def test_increases_are_counted() -> None:
    energy = counter(1000.0, 1000.5, 1003.0)
    assert energy.total == 1003.0
    assert not energy.decisions  # nothing notable


def test_jitter_is_held_and_the_rebound_not_counted_twice() -> None:
    energy = counter(1000.0)
    assert verdicts(energy, 999.997, 999.5, 1000.2) == ["jitter", "jitter", "counted"]
    assert energy.total == 1000.2


def test_jitter_after_a_refused_reading_ends_the_lag() -> None:
    # A counter cleared under a Wh reads as jitter from then on; a -1 read once made it lag,
    # and a site summing it stayed unavailable for good.
    energy = counter(1000.0)
    assert energy.read(-1.0, 1.0).verdict is Verdict.REJECTED
    lagged = energy.lagging
    assert energy.read(999.5, 2.0).verdict is Verdict.JITTER
    assert (lagged, energy.lagging) == (True, False)
    # The refusal may have hidden a drop all the same: the next rise is the records' to check.
    assert energy.read(1001.0, 3.0).unaccounted == Unaccounted(0.0, 3.0, 1.0)


@pytest.mark.parametrize(
    "value", [None, math.nan, math.inf, -math.inf, -1.0, 1e308, 1e30, 4294967295.0, "12", True]
)
def test_values_that_are_no_counter_are_not_published(value: object) -> None:
    energy = counter(1000.0)
    decision = energy.read(value, 1.0)
    assert decision.verdict is (Verdict.MISSING if value is None else Verdict.REJECTED)
    assert decision.total == 1000.0
    assert energy.read(1001.0, 2.0).total == 1001.0  # the next good reading is counted


def test_counter_value() -> None:
    assert counter_value(5) == 5.0
    assert counter_value(0.0) == 0.0
    assert counter_value(1e9) == 1e9
    assert counter_value(1e9 + 1) is None
    assert counter_value(False) is None


def test_a_rollback_after_a_reboot_holds_and_counts_on_from_the_new_value() -> None:
    # The replay: phase C fell 7.81 Wh at a reboot, no energy was consumed.
    energy = counter(46_340.0, 46_341.0)
    decision = energy.read(46_333.19, 60.0, rebooted=True)
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.total == 46_341.0
    assert decision.store_soon
    assert decision.unaccounted == Unaccounted(1.0, 60.0, 0.0)
    assert energy.read(46_334.19, 61.0).total == 46_342.0
    assert list(energy.decisions) == [decision]


def test_a_reboot_told_by_an_unreadable_reading_holds_for_the_next_one() -> None:
    # A Gen1 meter's counters read invalid just after its boot: the small drop read next is
    # the rollback, not jitter.
    energy = counter(1000.0)
    assert energy.read(None, 10.0, rebooted=True).verdict is Verdict.MISSING
    assert energy.read(999.5, 20.0).verdict is Verdict.ROLLBACK
    assert energy.read(999.2, 30.0).verdict is Verdict.JITTER  # once: the reboot is taken


def test_a_reboot_told_late_is_a_span_from_the_last_reading_that_could_tell() -> None:
    # Two replies without the meter's uptime rise; the next tells it rebooted before them: a
    # rollback may hide in either rise, so the span covers both with what they counted.
    energy = counter(46_000.0)
    assert energy.read(46_004.0, 60.0, away=True, boot_unknown=True).unaccounted is None
    assert energy.read(46_006.0, 120.0, boot_unknown=True).unaccounted is None
    decision = energy.read(46_009.0, 180.0, rebooted=True)
    assert (decision.verdict, decision.total) == (Verdict.COUNTED, 46_009.0)
    assert decision.unaccounted == Unaccounted(0.0, 180.0, 9.0)
    assert decision.store_soon
    # Taken: the next reboot's span starts at the base again.
    later = energy.read(46_010.0, 240.0, rebooted=True)
    assert later.unaccounted == Unaccounted(180.0, 240.0, 1.0)


def test_readings_that_could_not_tell_a_reboot_are_what_they_seemed_once_one_tells_none() -> None:
    energy = counter(1000.0)
    energy.read(1004.0, 60.0, boot_unknown=True)
    assert energy.read(1006.0, 120.0).unaccounted is None  # the same boot: no reboot
    assert energy.read(1007.0, 180.0, rebooted=True).unaccounted == Unaccounted(120.0, 180.0, 1.0)


def test_a_reboot_told_late_after_a_drop_it_took_is_a_span_from_the_drop() -> None:
    # The first reply back fell: a rollback, its span to it. The reboot told next adds the
    # span since it (a rise after a reboot), not one over the rollback's again.
    energy = counter(46_000.0)
    rollback = energy.read(45_990.0, 60.0, away=True, boot_unknown=True)
    assert (rollback.verdict, rollback.unaccounted) == (Verdict.ROLLBACK, Unaccounted(0.0, 60.0))
    late = energy.read(45_992.0, 120.0, rebooted=True)
    assert late.unaccounted == Unaccounted(60.0, 120.0, 2.0)


def test_a_late_reboot_span_waits_over_a_reading_refused_when_told() -> None:
    energy = counter(1000.0)
    energy.read(1004.0, 60.0, boot_unknown=True)
    assert energy.read(None, 120.0, rebooted=True).verdict is Verdict.MISSING
    assert energy.read(1006.0, 180.0).unaccounted == Unaccounted(0.0, 180.0, 6.0)


def test_readings_that_could_not_tell_a_reboot_are_kept_across_a_restart() -> None:
    energy = counter(1000.0)
    energy.read(1004.0, 60.0, boot_unknown=True)
    stored = energy.to_dict()
    assert stored["unsure"] == [0.0, 4.0]
    restored = EnergyCounter.from_dict(stored, MAX_POWER_W)
    assert restored.read(1005.0, 120.0, rebooted=True).unaccounted == Unaccounted(0.0, 120.0, 5.0)
    assert EnergyCounter.from_dict({**stored, "unsure": None}).to_dict()["unsure"] is None
    del stored["unsure"]  # stored before it was kept
    assert EnergyCounter.from_dict(stored).to_dict()["unsure"] is None


def test_a_drop_without_restart_to_a_value_that_could_not_be_counted_since_zero_waits() -> None:
    energy = counter(46_340.0)
    # 46 kWh cannot have been counted from 0 in a second: not a reset; the level must hold.
    assert verdicts(energy, 46_000.0, 46_000.5) == ["rejected", "rejected"]
    assert energy.total == 46_340.0
    decision = energy.read(46_001.0, 102.0)
    assert decision.verdict is Verdict.REBASED
    assert decision.total == 46_341.0  # counted what the new level rose: 1 Wh
    # The readings since the base were refused: whatever sums the total waited for it.
    assert decision.unaccounted == Unaccounted(0.0, 100.0, 0.0, refused=True)


def test_a_reset_resumes_from_near_zero() -> None:
    energy = counter(46_340.0)
    decision = energy.read(2.0, 1.0)
    assert decision.verdict is Verdict.RESET
    assert decision.total == 46_340.0
    assert energy.read(5.0, 2.0).total == 46_343.0


def test_a_zero_for_a_moment_after_a_reboot_is_undone() -> None:
    energy = counter(46_000.0)
    assert energy.read(0.0, 1.0, rebooted=True).verdict is Verdict.RESET
    assert energy.read(0.5, 2.0).total == 46_000.5  # counted from the glitch's base
    decision = energy.read(46_001.0, 3.0)
    assert decision.verdict is Verdict.RESTORED
    # 1 Wh above the level before the drop, of which 0.5 was counted already.
    assert decision.total == 46_001.0
    assert energy.read(46_002.0, 4.0).total == 46_002.0


def test_a_zero_for_a_moment_after_a_reboot_leaves_the_records_nothing_to_add() -> None:
    # 1 Wh a second throughout; a reboot reads 0 once. Counted live and filled from the records
    # over the spans, every watt-hour is there once.
    energy = counter(1000.0)
    spans = [
        decision.unaccounted
        for decision in (
            energy.read(1060.0, 60.0),
            energy.read(0.0, 120.0, rebooted=True),
            energy.read(0.0, 125.0),  # the glitch holds a moment: none of it is counted
            energy.read(1140.0, 140.0),
        )
        if decision.unaccounted is not None
    ]
    assert energy.total == 1140.0  # all of it, live
    filled = sum((span.end - span.start) - span.counted for span in spans)
    assert filled == 0.0


def test_a_restored_value_below_the_old_level_counts_nothing_more() -> None:
    energy = counter(46_000.0)
    energy.read(0.0, 1.0, rebooted=True)
    assert energy.read(45_992.0, 2.0).total == 46_000.0
    assert energy.read(45_993.0, 3.0).total == 46_001.0


def test_restoring_ends_after_the_window() -> None:
    energy = counter(46_000.0)
    energy.read(0.0, 1.0, rebooted=True)
    assert verdicts(energy, 46_001.0, start=700.0) == ["rejected"]


def test_an_implausible_jump_is_rejected_until_the_level_holds() -> None:
    energy = counter(1000.0)
    # 1 MWh in a second is beyond a 72 kW channel.
    assert verdicts(energy, 1_001_000.0, 1_001_001.0) == ["rejected", "rejected"]
    assert energy.total == 1000.0
    assert verdicts(energy, 1_001_002.0, start=102.0) == ["rebased"]
    assert energy.total == 1002.0
    assert [d.verdict for d in energy.decisions] == [
        Verdict.REJECTED,
        Verdict.REJECTED,
        Verdict.REBASED,
    ]


def test_a_single_glitch_up_is_forgotten() -> None:
    energy = counter(1000.0)
    assert verdicts(energy, 50_000.0, 1001.0, 1002.0) == ["rejected", "counted", "counted"]
    assert energy.total == 1002.0


def test_a_chain_broken_by_another_level_starts_over() -> None:
    energy = counter(1000.0)
    assert verdicts(energy, 50_000.0, 90_000.0, 90_001.0) == ["rejected"] * CONFIRM_READINGS
    assert verdicts(energy, 90_002.0, start=104.0) == ["rebased"]


def test_the_same_value_again_is_no_new_level() -> None:
    energy = counter(1000.0)
    # A pushed status repeats one corrupt reading until a notification carries the counters.
    assert verdicts(energy, 50_000.0, 50_000.0, 50_000.0, 50_000.0) == ["rejected"] * 4
    assert verdicts(energy, 1005.0, start=104.0) == ["counted"]
    assert energy.total == 1005.0


def test_an_increase_after_a_long_absence_is_counted() -> None:
    energy = counter(1000.0)
    # Two hours away at 5 kW.
    assert energy.read(11_000.0, 7200.0, rebooted=True).verdict is Verdict.COUNTED
    assert energy.total == 11_000.0


def test_the_kept_decisions_are_the_latest_notable_ones() -> None:
    energy = counter(1000.0)
    for second in range(10):
        energy.read("garbage", 10.0 + second)
    assert len(energy.decisions) == DECISIONS_KEPT
    assert energy.decisions[-1].as_dict() == {
        "verdict": "rejected",
        "time": 19.0,
        "reading": "'garbage'",
        "total": 1000.0,
    }


def test_a_restart_continues_from_the_stored_offset() -> None:
    energy = counter(46_000.0)
    assert energy.read(10.0, 1.0).verdict is Verdict.RESET  # the offset moves
    stored = energy.to_dict()
    restored = EnergyCounter.from_dict(stored, MAX_POWER_W)
    # An hour later the meter counted 500 Wh more.
    decision = restored.read(510.0, 3601.0)
    assert (decision.verdict, decision.total) == (Verdict.COUNTED, 46_500.0)


def killed_after(reading: float) -> EnergyCounter:
    """Return a counter stored at 1000 Wh, then shown `reading` at 60 s and killed, restarted.

    Restored from what was stored, and held at what the recorder holds: `reading` to the Wh.
    """
    energy = counter(1000.0)
    stored = energy.to_dict()
    energy.read(reading, 60.0)
    restored = EnergyCounter.from_dict(stored, MAX_POWER_W)
    restored.hold_at_least(round(reading), 60.0)
    return restored


def test_a_restart_never_publishes_less_than_was_shown() -> None:
    restored = killed_after(1050.0)
    # The meter rebooted meanwhile and rolled back to 1045 Wh.
    decision = restored.read(1045.0, 600.0)
    assert decision.total == 1050.0
    assert decision.store_soon
    assert decision.unaccounted == Unaccounted(60.0, 600.0, 0.0)
    assert restored.read(1046.0, 601.0).total == 1051.0


def test_a_reading_refused_after_a_restart_shows_what_was_shown() -> None:
    # A power cut restarts Home Assistant and a Gen1 meter, whose counters read invalid at first.
    restored = killed_after(1050.0)
    # Shown as 1.050 kWh: the total was at least 1049.501 Wh.
    assert restored.read(None, 600.0).total == 1049.501
    assert restored.read(-1.0, 601.0).total == 1049.501
    decision = restored.read(1060.0, 602.0)
    assert decision.total == 1060.0
    # After refused readings the records tell when it flowed: from what was shown (and recorded)
    # before the kill, not from what was stored before that.
    assert decision.unaccounted == Unaccounted(60.0, 602.0, 10.0, refused=True)


def test_a_meter_rebooted_while_home_assistant_was_down_is_a_span_from_what_was_shown() -> None:
    restored = killed_after(1050.0)
    # The meter rebooted too, its counter rolled back to 1040 Wh, and it counted on.
    decision = restored.read(1100.0, 600.0, rebooted=True)
    assert (decision.verdict, decision.total) == (Verdict.COUNTED, 1100.0)
    # At 600 s the recorder books the 50 Wh risen since what it was shown: the records tell
    # when they flowed, and what the rollback lost, from 60 s on.
    assert decision.unaccounted == Unaccounted(60.0, 600.0, 50.0)


def test_a_meter_rebooted_while_home_assistant_was_stopped_is_a_span_from_what_was_stored() -> None:
    energy = counter(1000.0)
    energy.read(1050.4, 60.0)  # shown as 1.050 kWh, and stored as Home Assistant stopped
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)
    restored.hold_at_least(1050.0, 60.0)  # 1.050 kWh was recorded at 60 s
    span = restored.read(1100.0, 600.0, rebooted=True).unaccounted
    # What was stored is exact: the span counts from it, not from the recorded rounding.
    assert span is not None
    assert (span.start, span.end) == (60.0, 600.0)
    assert span.counted == pytest.approx(49.6)


def test_a_total_shown_rounded_up_is_not_counted_up_to_after_a_restart() -> None:
    energy = counter(1000.0)
    energy.read(1049.7, 60.0)  # shown as 1.050 kWh, and stored as Home Assistant stopped
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)
    restored.hold_at_least(1050.0, 60.0)
    # The total was stored exact: the 0.3 Wh its state rounded up never flowed.
    assert restored.read(1059.7, 600.0).total == pytest.approx(1059.7)


def test_a_crash_span_takes_back_what_the_recorder_booked_to_the_wh() -> None:
    restored = killed_after(1049.7)  # shown (and recorded) as 1.050 kWh
    # The meter rebooted meanwhile and rolled back to below what was shown (above what was
    # stored): held at what was shown.
    decision = restored.read(1049.2, 600.0, rebooted=True)
    assert (decision.verdict, decision.total) == (Verdict.COUNTED, 1050.0)
    # The recorder booked nothing more after 1.050 kWh: nothing to take back from the records.
    assert decision.unaccounted == Unaccounted(60.0, 600.0, 0.0)
    decision = restored.read(1060.2, 660.0)
    assert decision.total == pytest.approx(1061.0)


def test_a_total_shown_again_after_an_absence_leaves_the_span_at_the_base() -> None:
    # Read at 0 s; the meter went away and rebooted; its first reading back, at 9,000 s, was
    # refused, and its sensor showed the same 1.000 kWh again (back from unavailable).
    energy = counter(1000.4)
    assert energy.read(-1.0, 9000.0, rebooted=True).verdict is Verdict.REJECTED
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)  # the entry reloaded
    restored.hold_at_least(1000.0, 9000.0)  # recorded as set at 9,000 s
    decision = restored.read(1500.4, 9600.0)
    assert decision.total == pytest.approx(1500.4)
    # The recorder booked nothing after the base: the records tell the whole absence.
    span = decision.unaccounted
    assert span is not None
    assert (span.start, span.end) == (0.0, 9600.0)
    assert span.counted == pytest.approx(500.0)


def test_a_restart_leaves_the_spans_before_the_stored_base_to_themselves() -> None:
    energy = counter(1000.0)
    spans = [
        energy.read(0.5, 60.0, rebooted=True).unaccounted,  # a rollback: the records fill it
        energy.read(0.5, 61.0).unaccounted,
    ]
    assert spans == [Unaccounted(0.0, 60.0, 0.0), None]
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)  # stored at 61 s
    # The recorder last saw the total change at 0 s (to 1 kWh).
    restored.hold_at_least(1000.0, 0.0)
    decision = restored.read(0.2, 120.0, rebooted=True)
    assert (decision.verdict, decision.total) == (Verdict.RESET, 1000.0)
    # From the stored base on: the first span is not filled twice. Nothing was booked in it:
    # the total shown stayed at the 1 kWh recorded.
    assert decision.unaccounted == Unaccounted(61.0, 120.0, 0.0)


def test_a_refused_reading_holds_across_a_restart() -> None:
    # A Gen1 3EM's phase was reset: its summed total fell by that phase's counter, a drop
    # without a restart, refused. Home Assistant restarts; the total has risen back to about
    # where it was by the next reading.
    energy = counter(1000.0)
    assert energy.read(600.0, 1.0).verdict is Verdict.REJECTED
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)
    restored.hold_at_least(1000.0, 0.0)
    assert restored.read(999.5, 600.0).verdict is Verdict.JITTER
    decision = restored.read(1002.0, 660.0)
    assert decision.total == 1002.0
    # What flowed since the last accepted reading is the records' to tell.
    assert decision.unaccounted == Unaccounted(0.0, 660.0, 2.0)


def test_a_restart_with_nothing_stored_takes_the_higher_of_both() -> None:
    energy = EnergyCounter(MAX_POWER_W)
    energy.hold_at_least(900.0, 0.0)
    assert energy.read(1000.0, 10.0).total == 1000.0
    other = EnergyCounter(MAX_POWER_W)
    other.hold_at_least(900.0, 0.0)
    assert other.read(10.0, 10.0).total == 900.0


def test_a_restart_after_a_normal_stop_adds_no_span() -> None:
    # 46 kWh: more than the meter could count from 0 in the 10 minutes it was not read (12 kWh).
    energy = counter(46_000.0)
    restored = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)
    restored.hold_at_least(46_000.0, 0.0)
    decision = restored.read(46_200.0, 600.0)
    assert decision.unaccounted is None  # the downtime's energy is counted as it stands


@pytest.mark.parametrize("absence", ["restart", "away"])
def test_a_rise_after_an_absence_that_may_hide_a_reset_is_a_span(absence: str) -> None:
    # 1.2 kWh, 10 minutes after 1 kWh: the meter may have been cleared meanwhile and counted
    # 1.2 kWh since (up to 12 kWh in reach), losing what it counted before: the records tell.
    energy = counter(1000.0)
    if absence == "restart":
        energy = EnergyCounter.from_dict(energy.to_dict(), MAX_POWER_W)
    decision = energy.read(1200.0, 600.0, away=absence == "away")
    assert (decision.verdict, decision.total) == (Verdict.COUNTED, 1200.0)
    assert decision.unaccounted == Unaccounted(0.0, 600.0, 200.0)
    assert decision.store_soon
    # Read on: a plain rise again; and a counter that did not move hides no reset.
    assert energy.read(1201.0, 601.0) == Decision(Verdict.COUNTED, 601.0, 1201.0, 1201.0)
    assert energy.read(1201.0, 1200.0, away=True).unaccounted is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"total": 1.0, "base": "x", "base_time": 0},
        {"total": -5, "base": 1, "base_time": 0},
        {"total": 1.0, "base": 1.0, "base_time": 0, "unsure": [0.0]},
        {"total": 1.0, "base": 1.0, "base_time": 0, "unsure": "x"},
    ],
)
def test_unreadable_stored_state_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a stored counter"):
        EnergyCounter.from_dict(data)


# --- invariants under random faults ------------------------------------------------------------

GARBAGE = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, 1e30, 4294967295.0, -1.0, -250.0, "1.5", "", True]
)


@dataclass
class Run:
    """A simulated meter read once a step, with the truth the meter's records would keep."""

    energy: EnergyCounter = field(default_factory=lambda: EnergyCounter(MAX_POWER_W))
    raw: float = 10_000.0  # what the meter's counter holds
    now: float = 0.0
    truth: float = 0.0  # Wh really flowing, from the first reading on
    truth_at: list[tuple[float, float]] = field(default_factory=list)  # (time, truth)
    shown: list[float] = field(default_factory=list)
    shown_at: float = 0.0  # when the total last changed (the recorder's last state change)
    spans: list[Unaccounted] = field(default_factory=list)
    faults: int = 0
    stored: dict[str, object] | None = None

    def truth_between(self, start: float, end: float) -> float:
        """Return what flowed in (start, end]: what the records hold for the span."""
        before = max((t for at, t in self.truth_at if at <= start), default=0.0)
        upto = max((t for at, t in self.truth_at if at <= end), default=0.0)
        return upto - before

    def step(self, seconds: float, watts: float) -> None:
        self.now += seconds
        energy = watts * seconds / 3600
        self.raw += energy
        self.truth += energy
        self.truth_at.append((self.now, self.truth))

    def read(self, value: object, *, rebooted: bool = False, away: bool = False) -> None:
        decision = self.energy.read(value, self.now, rebooted=rebooted, away=away)
        if decision.store_soon:
            self.stored = self.energy.to_dict()  # written at once
        if decision.unaccounted is not None:
            self.spans.append(decision.unaccounted)
        if decision.total is not None:
            if not self.shown or decision.total != self.shown[-1]:
                self.shown_at = self.now
            self.shown.append(decision.total)


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.floats(1, 30), st.floats(0, 20_000)),
        st.tuples(st.just("jitter"), st.floats(0.001, 0.99)),
        st.tuples(st.just("rollback"), st.floats(0, 100)),
        st.tuples(st.just("reset"), st.floats(0, 5)),
        st.tuples(st.just("garbage"), GARBAGE),
        st.tuples(st.just("missing")),
        st.tuples(st.just("away"), st.floats(10, 7200), st.floats(0, 50)),
        st.tuples(st.just("store")),
        st.tuples(st.just("restart")),
        st.tuples(st.just("replaced"), st.floats(100_000, 1_000_000)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(ACTIONS)
def test_counted_energy_is_the_true_energy(actions: list[tuple[object, ...]]) -> None:
    """Published never decreases; counted never exceeds the truth; the records complete it."""
    run = Run()
    run.read(run.raw)
    run.stored = run.energy.to_dict()
    start = run.shown[-1]
    for action in actions:
        kind = action[0]
        if kind == "read":
            run.step(float(action[1]), float(action[2]))  # type: ignore[arg-type]
            run.read(run.raw)
        elif kind == "jitter":
            run.step(1.0, 500.0)
            run.read(run.raw - float(action[1]))  # type: ignore[arg-type]
            run.faults += 1
        elif kind == "rollback":
            # A reboot: the meter forgets what it counted since it last saved, then counts on.
            run.step(1.0, 500.0)
            run.raw = max(run.raw - float(action[1]), 0.0)  # type: ignore[arg-type]
            run.read(run.raw, rebooted=True)
            run.faults += 1
        elif kind == "reset":
            # Cleared some seconds ago: the counter holds what it counted since.
            run.step(float(action[1]), 500.0)  # type: ignore[arg-type]
            run.raw = 0.0
            run.step(1.0, 500.0)
            run.read(run.raw)
            run.faults += 1
        elif kind == "garbage":
            run.step(1.0, 500.0)
            run.read(action[1])
            run.faults += 1
        elif kind == "missing":
            run.step(5.0, 500.0)
            run.read(None)
        elif kind == "away":
            # Unreachable for a while; it may have rolled back meanwhile.
            run.step(float(action[1]), 800.0)  # type: ignore[arg-type]
            rollback = float(action[2])  # type: ignore[arg-type]
            run.raw = max(run.raw - rollback, 0.0)
            run.read(run.raw, away=True, rebooted=rollback > 0)
            run.faults += 1
        elif kind == "store":
            run.stored = run.energy.to_dict()
        elif kind == "restart":
            # Killed: what was stored comes back, and the total last shown (as recorded).
            assert run.stored is not None
            run.energy = EnergyCounter.from_dict(run.stored, MAX_POWER_W)
            run.energy.hold_at_least(run.shown[-1], run.shown_at)
            run.step(60.0, 1000.0)
            run.read(run.raw)
        elif kind == "replaced":
            # By a meter whose counter is far higher (a lower one reads as a reset).
            run.step(1.0, 500.0)
            run.raw += float(action[1])  # type: ignore[arg-type]
            for _ in range(CONFIRM_READINGS):
                run.step(1.0, 500.0)
                run.read(run.raw)
            run.faults += 1
    run.step(1.0, 0.0)
    run.read(run.raw)  # a last good reading: what the meter counted so far is known
    # The published total never decreases.
    assert all(later >= earlier for earlier, later in zip(run.shown, run.shown[1:], strict=False))
    counted = run.shown[-1] - start
    # Never more than what flowed (the meter's own rounding aside).
    assert counted <= run.truth + 1e-6
    # With the records' energy of every span the counter could not count, exact to 1 Wh a fault.
    recovered = sum(run.truth_between(s.start, s.end) - s.counted for s in run.spans)
    assert counted + recovered == pytest.approx(run.truth, abs=1.0 * run.faults + 1e-6)
