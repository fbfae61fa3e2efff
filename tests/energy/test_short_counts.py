"""Counters that count short: the live site and the records' corrections count every Wh once.

A grid, a solar and a battery meter, read together every few minutes, some of them away at
times; their counters lose energy at random (a reboot's rollback). The live site forgives its
consumption and self-consumed solar the falls such losses make, and the records' corrections
(`site_fault_corrections`) give what the counters missed, less what was forgiven. However
the faults, absences, restarts and the moments the spans are corrected fall, every series'
published total plus its corrections is what truly flowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.counter import Unaccounted
from custom_components.shelly_energy.energy.history_plan import (
    SITE_SERIES,
    MeterIntervals,
    sharing,
    site_fault_corrections,
)
from custom_components.shelly_energy.energy.site import (
    ChannelInput,
    ChannelRef,
    GridMetering,
    Role,
    SiteAccumulator,
    SiteConfig,
)

from .test_site import DAY

MINUTE = 60
GRID, SOLAR, BATTERY = ChannelRef("M", "a"), ChannelRef("S", "1"), ChannelRef("B", "1")
CONFIG = SiteConfig(
    {GRID: Role.GRID, SOLAR: Role.SOLAR, BATTERY: Role.BATTERY}, GridMetering.PER_PHASE
)
# What the meters' counters may lose, by meter: the counter (channel, direction: 0 in, 1 out).
DIRECTIONS = {"M": (GRID, (0, 1)), "S": (SOLAR, (1,)), "B": (BATTERY, (0, 1))}
# The flows that publish the highest value of a signed running sum.
NET_FLOWS = ("home_consumption", "self_consumed_solar")


@dataclass
class Span:
    """A span one counter counted short, as its meter's counters keep it (`CounterSpan`)."""

    meter_id: str
    number: int
    ref: ChannelRef
    direction: int
    start: int
    end: int
    counted: float


@dataclass
class Site:
    """The meters' truth, records and published counters, and the live site reading them."""

    now: int = 0
    accumulator: SiteAccumulator = field(default_factory=lambda: SiteAccumulator(CONFIG))
    records: dict[str, MeterIntervals] = field(
        default_factory=lambda: {
            meter_id: MeterIntervals((ref.channel_id,), MINUTE, 0)
            for meter_id, (ref, _) in DIRECTIONS.items()
        }
    )
    true: dict[ChannelRef, list[float]] = field(
        default_factory=lambda: {ref: [0.0, 0.0] for ref, _ in DIRECTIONS.values()}
    )
    published: dict[ChannelRef, list[float]] = field(
        default_factory=lambda: {ref: [0.0, 0.0] for ref, _ in DIRECTIONS.values()}
    )
    last_read: dict[str, tuple[int, list[float]]] = field(default_factory=dict)
    span_numbers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    latest_spans: dict[str, int] = field(default_factory=dict)  # each meter's channel's latest
    spans: list[Span] = field(default_factory=list)
    corrections: dict[str, float] = field(default_factory=dict)

    def flow(self, minutes: int, load: float, solar: float, battery: float) -> None:
        """Let `minutes` pass, each with the given flows (Wh); the grid balances them.

        The home uses `load`, the solar makes `solar`, the battery charges `battery` (discharges
        if negative).
        """
        grid = load - solar + battery
        flows = {
            GRID: (max(grid, 0.0), max(-grid, 0.0)),
            SOLAR: (0.0, solar),
            BATTERY: (max(battery, 0.0), max(-battery, 0.0)),
        }
        for _ in range(minutes):
            for meter_id, (ref, _) in DIRECTIONS.items():
                energy_in, energy_out = flows[ref]
                self.records[meter_id].add(self.now, (energy_in,), (energy_out,))
                for index, energy in enumerate((energy_in, energy_out)):
                    self.true[ref][index] += energy
                    self.published[ref][index] += energy
            self.now += MINUTE

    def read(self, away: set[str], losses: dict[str, tuple[int, float, int]]) -> None:
        """Read the meters not `away`; `losses`: a meter's counter lost a share of its rise.

        The fault also opened spans on that many of the meter's counters the site does not read
        (a three-phase meter's total), numbered after the site's.
        """
        readings: dict[ChannelRef, ChannelInput | None] = {}
        for meter_id, (ref, directions) in DIRECTIONS.items():
            if meter_id in away:
                readings[ref] = None
                continue
            before = self.last_read.get(meter_id)
            if (loss := losses.get(meter_id)) is not None and before is not None:
                which, share, elsewhere = loss
                direction = directions[which % len(directions)]
                risen = self.published[ref][direction] - before[1][direction]
                self.published[ref][direction] -= risen * share
                self.span_numbers[meter_id] += 1
                self.latest_spans[meter_id] = self.span_numbers[meter_id]
                self.spans.append(
                    Span(
                        meter_id,
                        self.span_numbers[meter_id],
                        ref,
                        direction,
                        before[0],
                        self.now,
                        risen * (1 - share),
                    )
                )
                self.span_numbers[meter_id] += elsewhere
            self.last_read[meter_id] = (self.now, list(self.published[ref]))
            energy_in, energy_out = self.published[ref]
            readings[ref] = ChannelInput(
                0.0,
                energy_in,
                energy_out,
                self.span_numbers[meter_id],
                self.latest_spans.get(meter_id, 0),
            )
        self.accumulator.update(readings, DAY, float(self.now))

    def correct_spans(self) -> None:
        """Correct every span so far from the records, as the site's history does.

        A meter's spans that ended at the same reading are one fault; the faults one accrual of
        the net flows took are corrected together.
        """
        faults: dict[tuple[str, int], dict[tuple[ChannelRef, int], Unaccounted]] = {}
        numbers: dict[tuple[str, int], set[tuple[str, int]]] = {}
        for span in self.spans:
            fault = (span.meter_id, span.end)
            faults.setdefault(fault, {})[span.ref, span.direction] = Unaccounted(
                span.start, span.end, span.counted
            )
            numbers.setdefault(fault, set()).add((span.meter_id, span.number))
        accumulator = self.accumulator
        for together in sharing({fault: accumulator.accruals(numbers[fault]) for fault in faults}):
            spans = set().union(*(numbers[fault] for fault in together))
            taken = accumulator.short_counts(spans)
            fixes = site_fault_corrections(
                CONFIG,
                self.records,
                [faults[fault] for fault in together],
                short_counts={SITE_SERIES[name]: count for name, count in taken.items()},
            )
            # What the corrections take back of a net flow, its running sum had too much.
            overstated = {name: -1000 * sum(fixes[SITE_SERIES[name]].values()) for name in taken}
            accumulator.forget_short_counts(spans, taken, overstated)
            for key, hours in fixes.items():
                self.corrections[key] = self.corrections.get(key, 0.0) + sum(hours.values())
        self.spans.clear()

    def restart(self) -> None:
        saved = json.loads(json.dumps(self.accumulator.to_dict()))
        self.accumulator = SiteAccumulator.from_dict(CONFIG, saved)


# One step as STEPS draws it.
Step = tuple[int, float, float, float, set[str], dict[str, tuple[int, float, int]], str]
STEPS = st.lists(
    st.tuples(
        st.integers(1, 10),  # minutes
        st.floats(0, 60),  # load, Wh a minute
        st.floats(0, 80),  # solar
        st.floats(-40, 40),  # battery
        st.sets(st.sampled_from(sorted(DIRECTIONS))),  # meters away at the reading
        st.dictionaries(
            st.sampled_from(sorted(DIRECTIONS)),
            st.tuples(st.integers(0, 1), st.floats(0, 1), st.integers(0, 2)),
        ),  # counters that lose a share of what they rose since their meter's last reading
        st.sampled_from(("", "", "", "correct", "restart")),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_every_wh_is_published_or_corrected_once(steps: list[Step]) -> None:
    site = Site()
    site.read(set(), {})
    for minutes, load, solar, battery, away, losses, then in steps:
        site.flow(minutes, load, solar, battery)
        site.read(away, losses)
        if then == "correct":
            site.correct_spans()
        elif then == "restart":
            site.restart()
    # Every meter back; then a home using more than the sun gives, till each net flow's sum is
    # at its highest (what it published): its total is then its sum.
    site.flow(1, 0.0, 0.0, 0.0)
    site.read(set(), {})
    site.correct_spans()
    totals = site.accumulator.to_dict()["totals"]
    for _ in range(1000):
        if all(totals[f"{name}_net"] >= totals[name] - 1e-6 for name in NET_FLOWS):
            break
        site.flow(10, 100.0, 50.0, 0.0)
        site.read(set(), {})
        totals = site.accumulator.to_dict()["totals"]
    flowed = {
        "grid_import": site.true[GRID][0],
        "grid_export": site.true[GRID][1],
        "solar_production": site.true[SOLAR][1],
        "battery_charged": site.true[BATTERY][0],
        "battery_discharged": site.true[BATTERY][1],
    }
    flowed["home_consumption"] = (
        flowed["grid_import"]
        - flowed["grid_export"]
        + flowed["solar_production"]
        + flowed["battery_discharged"]
        - flowed["battery_charged"]
    )
    flowed["self_consumed_solar"] = flowed["solar_production"] - flowed["grid_export"]
    for name, truth in flowed.items():
        counted = totals[name] + site.corrections.get(SITE_SERIES[name], 0.0) * 1000
        assert counted == pytest.approx(truth, abs=1e-6 * max(truth, 1.0)), name
