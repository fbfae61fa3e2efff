"""Every watt-hour a simulated meter measures is published once, or left to its records.

The counter model's property (tests/energy/test_counter.py) one level up, on the real path of a
reading: a simulated Pro 3EM, Shelly 3EM or Shelly EM answers its status as on the wire, the
integration's parser reads the reply, the user's corrections and `MeterCounters` publish the
totals. Random faults hit the meter (reboots with and without rollback, resets, corrupt counters,
jitter, outages, a power loss) and the integration (restarts from what it stored, CTs marked
reversed or no longer). The simulator knows what truly flowed; the spans are filled from it as
the history fills them from the records (`span_corrections`), in the direction each sensor
showed at the time.

Exact but for what no counter can tell, allowed per fault: the rounding of the counters on the
wire (two readings a fault), the recorder's Wh (a restart's floor is the recorded state less half
a Wh), a reset to within jitter and a second's energy of where the counter was (it reads as
jitter, or as a rise), and a jittered first reading after a reboot (a rollback to it; the
rebound counts again). The simulator's glitches are not all a real meter's: see `fault`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custom_components.shelly_energy.energy.counter import CONFIRM_READINGS, JITTER_WH
from custom_components.shelly_energy.energy.history_plan import span_corrections
from custom_components.shelly_energy.meter import gen1, rpc
from custom_components.shelly_energy.meter.client import DeviceIdentity
from custom_components.shelly_energy.meter.corrections import Corrections
from custom_components.shelly_energy.meter.counters import MeterCounters, counter_key
from custom_components.shelly_energy.meter.models import max_channel_power_w
from custom_components.shelly_energy.meter.snapshot import TOTAL_ID, MeterInfo, MeterSnapshot
from custom_components.shelly_energy.meter.values import decode_json
from simulator import Clock, Gen1Api, RpcApi, SimulatedMeter
from simulator.wire import dumps

# The most a simulated channel draws or feeds in (W): a household's.
MAX_WATTS = 10_000
# What a counter's rounding on the wire hides (Wh): Gen2+ sends two decimals, Gen1 one.
ROUNDING_WH = {1: 0.05, 2: 0.005}
# Values a corrupt reply or an overflowed counter carries.
CORRUPT_VALUES = (1e308, 1e30, 4294967295.0, -1.0)

type Parser = Callable[[Mapping[str, Any], MeterInfo, float], MeterSnapshot]


@dataclass(frozen=True, slots=True)
class Run:
    """Every channel draws (> 0) or feeds in (< 0) its power for a while; then a reading."""

    seconds: int
    watts: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Jitter:
    """A channel's counters read a little low (mWh) for some readings."""

    channel: int
    mwh: int
    reads: int


@dataclass(frozen=True, slots=True)
class Reboot:
    """Gen1: counters invalid for a while after; Gen2+: unreachable for a while."""

    invalid_for: int
    rollback: bool


@dataclass(frozen=True, slots=True)
class Reset:
    """The user clears the counters."""

    channel: int | None  # None: every channel


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Counters read a value no counter has (a corrupt reply, an overflow) for some readings."""

    channel: int | None  # None: every channel
    value: float
    reads: int


@dataclass(frozen=True, slots=True)
class Blind:
    """The meter's replies tell no uptime for some readings (garbled): a reboot shows late."""

    reads: int


@dataclass(frozen=True, slots=True)
class Outage:
    """Off the network for a while, rebooting meanwhile or not."""

    seconds: int
    reboot: bool
    rollback: bool


@dataclass(frozen=True, slots=True)
class PowerLoss:
    """Unreachable and counting nothing for a while; it boots when power returns."""

    seconds: int


@dataclass(frozen=True, slots=True)
class Store:
    """The integration writes its counters' state (it does within ten minutes of a change)."""


@dataclass(frozen=True, slots=True)
class Restart:
    """Home Assistant stops (killed, or not) and starts again after a while."""

    downtime: int
    graceful: bool


@dataclass(frozen=True, slots=True)
class Reverse:
    """The user marks a channel's CT reversed, or no longer (the entry is set up again)."""

    channel: int


type Action = (
    Run | Jitter | Reboot | Reset | Corrupt | Blind | Outage | PowerLoss | Store | Restart | Reverse
)

CHANNEL = st.integers(0, 2)
ACTIONS = st.lists(
    st.one_of(
        st.builds(
            Run,
            st.integers(1, 300),
            st.tuples(*[st.integers(-MAX_WATTS, MAX_WATTS)] * 3),
        ),
        st.builds(Jitter, CHANNEL, st.integers(1, 999), st.integers(1, 3)),
        st.builds(Reboot, st.integers(0, 30), st.booleans()),
        st.builds(Reset, st.none() | CHANNEL),
        st.builds(Corrupt, st.none() | CHANNEL, st.sampled_from(CORRUPT_VALUES), st.integers(1, 3)),
        st.builds(Blind, st.integers(1, 3)),
        st.builds(Outage, st.integers(20, 7200), st.booleans(), st.booleans()),
        st.builds(PowerLoss, st.integers(1, 600)),
        st.builds(Store),
        st.builds(Restart, st.integers(0, 3600), st.booleans()),
        st.builds(Reverse, CHANNEL),
    ),
    min_size=1,
    max_size=40,
)


class Series:
    """A cumulative quantity (Wh) against time, read between its samples as even."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float] = []

    def add(self, time: float, value: float) -> None:
        self.times.append(time)
        self.values.append(value)

    def at(self, time: float) -> float:
        index = bisect.bisect_right(self.times, time) - 1
        if self.times[index] == time or index + 1 == len(self.times):
            return self.values[index]
        t0, t1 = self.times[index], self.times[index + 1]
        v0, v1 = self.values[index], self.values[index + 1]
        return v0 + (v1 - v0) * (time - t0) / (t1 - t0)

    def between(self, start: float, end: float) -> float:
        return self.at(end) - self.at(start)


class MeterUnderTest:
    """A simulated meter, read as the integration reads it, with what truly flowed per sensor."""

    def __init__(self, kind: str, initial_wh: float) -> None:
        self.clock = Clock.manual()
        self.meter = SimulatedMeter(kind, clock=self.clock, initial_energy_wh=initial_wh)
        self.parse: Parser
        if self.meter.gen == 1:
            gen1_api = Gen1Api(self.meter)
            identity = DeviceIdentity.from_shelly(gen1_api.shelly())
            self.info = gen1.parse_settings(identity, gen1_api.settings())
            self.status: Callable[[], dict[str, Any]] = gen1_api.status
            self.parse = gen1.parse_status
        else:
            api = RpcApi(self.meter)
            self.info = rpc.meter_info(api.device_info(), api.status())
            self.status = lambda: api.call("Shelly.GetStatus", {})
            self.parse = rpc.parse_status
        ids = self.info.channel_ids
        self.total_ids = (*ids, TOTAL_ID) if self.info.three_phase else ids
        self.keys = [counter_key(i, imported) for i in self.total_ids for imported in (True, False)]
        rounding = ROUNDING_WH[self.meter.gen]
        # The three-phase total is the device's sum of its phases, or summed again corrected.
        self.rounding = {
            key: rounding * (len(ids) if key.startswith(TOTAL_ID) else 1) for key in self.keys
        }
        self.reversed: frozenset[str] = frozenset()
        self.counters = self.new_counters()
        self.away = False
        self.blind = 0  # replies still to come without the uptime
        self.shown: dict[str, list[tuple[float, float]]] = {key: [] for key in self.keys}
        # What the recorder last recorded of each sensor: its state (kWh) and when it was set.
        self.recorded: dict[str, tuple[float, float]] = {}
        self.truth = {key: Series() for key in self.keys}
        self._flowed = dict.fromkeys(self.keys, 0.0)
        self._true = [self.meter.true_energy(index) for index in range(len(ids))]
        # What each sensor's published energy may differ from the truth by (Wh).
        self.allowance = {key: 2 * self.rounding[key] for key in self.keys}
        self.sample()
        self.read()
        self.stored = self.counters.to_dict()

    def new_counters(self) -> MeterCounters:
        return MeterCounters(
            "Meter",
            max_channel_power_w(self.info.model),
            len(self.info.channel_ids),
            self.reversed,
        )

    def channel_id(self, channel: int) -> str:
        return self.info.channel_ids[channel % len(self.info.channel_ids)]

    def sample(self) -> None:
        """Note what flowed into each sensor's direction since the last sample."""
        now = self.clock.now()
        ids = self.info.channel_ids
        for index, channel_id in enumerate(ids):
            true_in, true_out = self.meter.true_energy(index)
            last_in, last_out = self._true[index]
            self._true[index] = (true_in, true_out)
            flowed_in, flowed_out = true_in - last_in, true_out - last_out
            if channel_id in self.reversed:
                flowed_in, flowed_out = flowed_out, flowed_in
            for key, flowed in ((f"{channel_id}_in", flowed_in), (f"{channel_id}_out", flowed_out)):
                self._flowed[key] += flowed
                if self.info.three_phase:
                    self._flowed[f"{TOTAL_ID}_{key.rpartition('_')[2]}"] += flowed
        for key, series in self.truth.items():
            series.add(now, self._flowed[key])

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sample()

    def read(self) -> None:
        """Read the status as the coordinator does: parsed, corrected, counted, stored if urgent."""
        if not self.meter.reachable():
            self.away = True  # the read failed
            return
        status = decode_json(dumps(self.status()).encode())
        if self.blind:
            self.blind -= 1
            (status if self.meter.gen == 1 else status["sys"]).pop("uptime")
        snapshot = self.parse(status, self.info, self.clock.now())
        corrected = Corrections(reversed_channels=self.reversed).apply(snapshot)
        published, urgent = self.counters.apply(corrected, away=self.away)
        self.away = False
        if urgent:
            self.stored = self.counters.to_dict()  # within a second
        for channel_id in self.total_ids:
            reading = published.channel(channel_id)
            assert reading is not None
            for imported, total in ((True, reading.energy_in), (False, reading.energy_out)):
                if total is None:
                    continue
                key = counter_key(channel_id, imported)
                self.shown[key].append((published.time, total))
                state = round(total / 1000, 3)  # as the sensor shows it
                if key not in self.recorded or self.recorded[key][0] != state:
                    self.recorded[key] = (state, published.time)

    def step(self, seconds: float = 1.0) -> None:
        self.advance(seconds)
        self.read()

    def restart(self, reversed_channels: frozenset[str]) -> None:
        """Set the counters up again from what was stored, never below what was recorded."""
        self.reversed = reversed_channels
        self.counters = self.new_counters()
        self.counters.restore(self.stored)
        for key, (state, since) in self.recorded.items():
            # As recorded_states reads it: the state, to the Wh.
            self.counters.hold_at_least(key, state * 1000, since)
            # A span from it starts at the state: what the state rounded is the restart's
            # uncertainty.
            self.allowance[key] += 0.5
        self.away = False  # a new coordinator's first read

    def raw(self) -> dict[str, float]:
        """Return the device's counters as each sensor reads them (Wh, exact)."""
        raw = dict.fromkeys(self.keys, 0.0)
        for index, channel_id in enumerate(self.info.channel_ids):
            energy_in, energy_out = self.meter.counters(index)
            if channel_id in self.reversed:
                energy_in, energy_out = energy_out, energy_in
            for key, energy in ((f"{channel_id}_in", energy_in), (f"{channel_id}_out", energy_out)):
                raw[key] += energy
                if self.info.three_phase:
                    raw[f"{TOTAL_ID}_{key.rpartition('_')[2]}"] += energy
        return raw

    def fault(self, action: Action) -> None:
        """Let a fault happen (time passes as it does); each leaves the counting a new start."""
        match action:
            case Jitter(channel, mwh, reads):
                self.meter.jitter(channel % self.meter.channel_count, mwh, reads)
                # Taken as a rollback's value after a reboot, the jitter counts again.
                for imported in (True, False):
                    self.allowance[counter_key(self.channel_id(channel), imported)] += mwh / 1000
                    if self.info.three_phase:
                        self.allowance[counter_key(TOTAL_ID, imported)] += mwh / 1000
            case Reboot(invalid_for, rollback):
                self.step(10.0)  # a meter takes longer than that to boot again
                self.meter.reboot(invalid_for, rollback=rollback)
            case Reset(channel):
                if self.meter.gen > 1 and self.info.three_phase:
                    channel = None  # EMData.ResetCounters resets every phase and the total
                before = self.raw()
                self.meter.reset_counters(
                    None if channel is None else channel % self.meter.channel_count
                )
                # A drop smaller than jitter and what a second brings back cannot be told from
                # them: it is lost.
                bound = JITTER_WH + len(self.info.channel_ids) * MAX_WATTS / 3600
                for key, value in self.raw().items():
                    self.allowance[key] += min(before[key] - value, bound)
            case Corrupt(channel, value, reads):
                if self.meter.gen > 1:
                    # The simulator sums corrupt phases into a Gen2+ meter's own total, which a
                    # real one keeps apart (-1 and two good phases would make a plausible
                    # total): corrupting every phase keeps that total corrupt too.
                    channel = None
                self.meter.corrupt_counters(
                    None if channel is None else channel % self.meter.channel_count, value, reads
                )
            case Blind(reads):
                self.blind = reads
            case Outage(seconds, reboot, rollback):
                self.meter.set_online(False)
                self.step(seconds // 2)
                if reboot:
                    self.meter.reboot(rollback=rollback)
                self.step(seconds - seconds // 2)
                self.meter.set_online(True)
            case PowerLoss(seconds):
                self.step(10.0)
                self.meter.power_loss(seconds)
                self.step(seconds)
            case Store():
                self.stored = self.counters.to_dict()
            case Restart(downtime, graceful):
                if graceful:
                    self.stored = self.counters.to_dict()
                self.advance(downtime)
                self.restart(self.reversed)
            case Reverse(channel):
                self.stored = self.counters.to_dict()
                self.restart(self.reversed ^ {self.channel_id(channel)})
        for key in self.keys:
            self.allowance[key] += 2 * self.rounding[key]
        self.step()

    def filled(self, key: str) -> float:
        """Return what the records give a sensor's spans beyond what it counted over them (Wh).

        The history fills the spans the counters hold when it runs: here, at the end.
        """
        truth = self.truth[key]
        return 1000 * sum(
            sum(span_corrections(s.span.start, s.span.end, s.span.counted, truth.between).values())
            for s in self.counters.spans
            if s.key == key
        )


@pytest.mark.parametrize("kind", ["pro3em", "gen1_3em", "gen1_em"])
# Four times the profile's examples (seconds a meter): faults meet only in long sequences.
@settings(max_examples=4 * settings().max_examples, deadline=None)
@given(initial_wh=st.integers(0, 10_000_000), actions=ACTIONS)
def test_every_watt_hour_is_counted_once(kind: str, initial_wh: int, actions: list[Action]) -> None:
    """Published never falls nor exceeds the truth; with the records over its spans, it is it."""
    run = MeterUnderTest(kind, initial_wh / 1000)
    for action in actions:
        match action:
            case Run(seconds, watts):
                for channel in range(run.meter.channel_count):
                    run.meter.set_power(channel, watts[channel])
                run.step(seconds)
            case _:
                run.fault(action)
    # Readings until every counter took one: what the meter counted so far is known.
    run.meter.set_online(True)
    for _ in range(CONFIRM_READINGS + 1):
        run.step(60.0)
    now = run.clock.now()
    completed = {}
    for key in run.keys:
        shown = run.shown[key]
        assert shown[-1][0] == now, key
        totals = [total for _, total in shown]
        # The state never falls; a restart may take back what the recorder's Wh rounding hid.
        states = [round(total / 1000, 3) for total in totals]
        assert all(later >= earlier for earlier, later in pairwise(states)), key
        highest = list(accumulate(totals, max))
        assert all(total > high - 1.0 for total, high in zip(totals, highest, strict=True)), key
        start, first = shown[0]
        counted = totals[-1] - first
        truth = run.truth[key].between(start, now)
        allowance = run.allowance[key] + 1e-6
        assert counted <= truth + allowance, key
        completed[key] = counted + run.filled(key)
        assert completed[key] == pytest.approx(truth, abs=allowance), key
    if run.info.three_phase:
        for imported in (True, False):
            phases = [counter_key(phase, imported) for phase in run.info.channel_ids]
            total = counter_key(TOTAL_ID, imported)
            assert completed[total] == pytest.approx(
                sum(completed[key] for key in phases),
                abs=sum(run.allowance[key] for key in (total, *phases)),
            )
