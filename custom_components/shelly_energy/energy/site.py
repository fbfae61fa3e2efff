"""Energy sites: what a home does, from meter channels that the user gave roles.

A site spans one or more meters. Each channel has a role (grid, solar, battery or load); the site
derives the home's flows from them: power at every update, and energy totals from the meters' own
counters.

Sign convention. Every channel reads positive when power flows from the grid side towards the
home's consumers (a CT installed the other way round is fixed upstream by the channel's
"reversed" option, before this module sees its readings):

- grid: positive while importing; ``energy_in`` counts import, ``energy_out`` export.
- solar: negative while producing; ``energy_out`` counts production, ``energy_in`` the inverter's
  standby draw.
- battery: positive while charging; ``energy_in`` counts charge, ``energy_out`` discharge.
- load (a circuit): positive while consuming; ``energy_in`` counts consumption, ``energy_out``
  what flowed back (a circuit with a plug-in solar panel or a vehicle that feeds the home).

Definitions, the same for power (W) and energy (Wh):

- grid import / export, per-phase metering (each phase billed on its own): the sum of what flows
  in / out on each grid channel. Balanced metering (the phases are netted): the net over the grid
  channels, import = max(in - out, 0), export = max(out - in, 0).
- solar production = max(out - in, 0) over all solar channels together: net of the inverters'
  standby draw, so that draw at night reaches consumption through grid import instead.
- battery charge / discharge: what flows in / out on the battery channels, as their counters say.
- home consumption = max(import - export + production + discharge - charge, 0).
- self-consumed solar = max(production - export, 0).
- a load's energy consumed / returned: what flows in / out on its channel, as its counters say.
  Loads are part of home consumption, never added to it.

No power or energy value is ever negative: measurement noise (a solar CT reading +3 W at night) is
clamped to 0, not propagated. The only signed values are the two net powers: ``grid_net``
(positive importing) and ``battery_net`` (positive discharging).

Energy comes from the meters' counter deltas, never from integrating power, so it stays exact across
missed polls. Each derived flow (grid, solar, battery, self-consumed solar, home consumption, and
each load on its own) keeps the counters of its own input channels as they were when it last
accrued. At an update where all its inputs are available, a flow adds the energy of the interval
since then and moves its baselines; otherwise it waits, so what accrued while a meter was offline is
added, exactly once, when the meter returns. Home consumption and self-consumed solar are not
clamped per interval: meters are read at different instants, so one update may see a phase's export
before the next sees the solar production behind it, and clamping that interval's negative value
would count the production again later. They keep a signed running sum and publish its highest value
so far: never decreasing, never negative, and exact once every meter has been read. Where an input's
counter counted short (`ChannelInput.latest_span` rose), the fall of the sum that accrual made is
forgiven: the meter's records give what the counter missed to the hours it flowed in, and a sum
left that much lower would hold back as much of the consumption to come. How the flow accrued such
a span waits, stored, for the records' correction of it (`ShortCount`,
`short_counts`). The inputs are the meters' published totals (already through the counter
model, `energy.counter`), and each baseline is such a counter too, with no physical bound: a
channel's first sighting only sets it, jitter is held, and a drop (a meter whose totals started
anew) holds and counts on from the new value, never booking the whole counter again.

Availability: a value that depends on an unavailable channel is None; the site never reports a
partial sum as if it were complete. Energy totals are kept while a flow is unavailable and resume
when it returns. A role without any channel contributes 0 and is always available (a site without
solar produces 0 W; one without a grid meter is off-grid and imports nothing); the adapter creates
no entities for roles a site lacks (`SiteConfig.has_role`).

"Today" (for the ratios) is the local calendar day passed to each update; energy that accrues
after an offline spell counts on the day it is added.

Settlement (`SiteConfig.settlement`): with a settlement period the published grid import and
export are settled (`energy.settlement`): each interval the grid flow accrued, from its previous
accrual to this update, goes to the running period by time, and at the end of each period its net
goes to import or export. The other flows are physical and unchanged. `SiteState.period` tells the
running period's net so far and the time left.

Capacity peaks (`SiteConfig.capacity`): each interval's grid import, as the grid metering counts it
(never settled), also goes to the demand periods of `energy.capacity`; `SiteState.capacity` tells
the running demand period, at the grid import power of the update, and the billing period's peak
(None while the grid flow is unavailable: a grid power sensor has no counters to measure demand).
Periods a gap covered are settled and measured again with what the meters' records tell (`rebuild`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, tzinfo
from enum import StrEnum
from typing import Any, Final, NamedTuple

from .capacity import CapacitySettings, CapacityState, CapacityTracker
from .counter import SHOWN_ROUNDING_WH, EnergyCounter
from .periods import PeriodClock
from .settlement import GridSettlement, Rebuilt, Settlement

STORAGE_VERSION: Final = 1
SHORT_COUNTS_KEPT: Final = 200  # spans whose short counts wait for the history at most


class Role(StrEnum):
    """What a channel measures within a site."""

    GRID = "grid"
    SOLAR = "solar"
    BATTERY = "battery"
    LOAD = "load"
    UNUSED = "unused"


# The roles whose channels enter the energy balance (loads are sub-circuits of consumption).
_BALANCE_ROLES: Final = (Role.GRID, Role.SOLAR, Role.BATTERY)
# The flows whose start is kept (`SiteAccumulator.flow_started`), with the role each needs.
_STARTED_FLOWS: Final = {"solar": Role.SOLAR, "battery": Role.BATTERY}


class GridMetering(StrEnum):
    """How the utility meter counts a multi-phase grid connection."""

    PER_PHASE = "per_phase"  # each phase imports and exports on its own
    BALANCED = "balanced"  # the phases are netted: one phase's export offsets another's import


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """One channel of one meter: an opaque meter id and a `ChannelReading.id`."""

    meter_id: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """The channels' roles in a site and how its grid is metered. Missing means unused."""

    roles: Mapping[ChannelRef, Role]
    grid_metering: GridMetering
    settlement: Settlement = Settlement.INSTANT
    capacity: CapacitySettings | None = None  # None: no capacity peaks measured

    def channels(self, role: Role) -> tuple[ChannelRef, ...]:
        """Return the channels with a role, in the configuration's order."""
        return tuple(ref for ref, channel_role in self.roles.items() if channel_role == role)

    def has_role(self, role: Role) -> bool:
        """Return whether any channel has a role."""
        return role in self.roles.values()


@dataclass(frozen=True, slots=True)
class ChannelInput:
    """What the site needs of one channel's reading: signed W and cumulative Wh. None: missing.

    ``spans``: how many spans its meter's counters could not count so far (`MeterCounters`);
    ``latest_span``: the number of the latest that was one of this channel's counters. A rise of
    it tells that this channel counted short, which the meter's records make up: a span of a
    counter the site does not read (a three-phase meter's total) does not.
    """

    power: float | None
    energy_in: float | None
    energy_out: float | None
    spans: int = 0
    latest_span: int = 0


class SpanNumbers(NamedTuple):
    """The spans a meter's counters opened between two readings: numbers `first` to `last`.

    One fault opens a span on each counter it hit, the site's and others (a three-phase meter's
    total): the numbers between may be those of counters the site does not read.
    """

    meter_id: str
    first: int
    last: int

    def hold(self, spans: Iterable[tuple[str, int]]) -> bool:
        """Return whether any of `spans` (meter, number) is among these."""
        return any(
            meter_id == self.meter_id and self.first <= number <= self.last
            for meter_id, number in spans
        )


# The spans of every input's meter that counted short before one accrual of a net flow, one
# `SpanNumbers` each, ordered by meter.
AccruedSpans = tuple[SpanNumbers, ...]


class ShortCount(NamedTuple):
    """How a net flow (consumption, self-consumed solar) accrued a span an input counted short."""

    since: float | None  # when it had accrued before: it booked nothing since then; None: unknown
    forgiven: float  # how far below its highest value the span left its sum (Wh), forgiven
    # How far below its highest value its sum was then (Wh): a rise makes that up first.
    deficit: float = 0.0


def _both(first: ShortCount, second: ShortCount) -> ShortCount:
    """Return two spans' short counts as one: nothing booked since the earlier, both forgiven."""
    earlier = second
    if first.since is None or (second.since is not None and first.since <= second.since):
        earlier = first
    return ShortCount(earlier.since, first.forgiven + second.forgiven, earlier.deficit)


@dataclass(frozen=True, slots=True)
class SitePower:
    """The site's power flows in W: all >= 0 but the two nets. None: unavailable."""

    grid_net: float | None  # positive importing, negative exporting
    grid_import: float | None
    grid_export: float | None
    solar_production: float | None
    battery_charging: float | None
    battery_discharging: float | None
    battery_net: float | None  # positive discharging, negative charging
    home_consumption: float | None
    self_consumed_solar: float | None
    loads: Mapping[ChannelRef, float | None]


@dataclass(frozen=True, slots=True)
class SiteEnergy:
    """The site's energy in Wh: totals, or the flows of one interval (`interval_energy`).

    Totals in a `SiteState` never decrease; None: unavailable at this update.
    """

    grid_import: float | None
    grid_export: float | None
    solar_production: float | None
    battery_charged: float | None
    battery_discharged: float | None
    home_consumption: float | None
    self_consumed_solar: float | None


@dataclass(frozen=True, slots=True)
class LoadEnergy:
    """What one load's channel counted (Wh) since the site first saw it: both never decrease."""

    consumed: float = 0.0
    returned: float = 0.0


@dataclass(frozen=True, slots=True)
class RunningPeriod:
    """The settlement period running: its net so far (Wh, positive importing), the time left (s)."""

    net: float
    seconds_left: float

    @property
    def to_offset(self) -> float:
        """Return the energy to export (or not import) before the end to book no import (Wh)."""
        return max(self.net, 0.0)


@dataclass(frozen=True, slots=True)
class SiteState:
    """What a site does at one update: power, energy totals and today's ratios (percent)."""

    power: SitePower
    energy: SiteEnergy
    self_consumption_rate: float | None  # self-consumed solar / production today
    self_sufficiency: float | None  # 1 - import / consumption today, at least 0
    # Each load's energy totals; None: its meter is unavailable at this update.
    loads: Mapping[ChannelRef, LoadEnergy | None]
    period: RunningPeriod | None = None  # with a settlement period, once the grid accrued
    capacity: CapacityState | None = None  # with capacity peaks measured


@dataclass(frozen=True, slots=True)
class SettlementRebuild:
    """Settlement periods rebuilt from the records, and the published totals before and after."""

    rebuilt: tuple[Rebuilt, ...]
    before: tuple[float, float]  # import, export (Wh)
    after: tuple[float, float]


@dataclass(slots=True)
class _Totals:
    """The energy totals (Wh), whether or not their flows are available now."""

    grid_import: float = 0.0
    grid_export: float = 0.0
    solar_production: float = 0.0
    battery_charged: float = 0.0
    battery_discharged: float = 0.0
    home_consumption: float = 0.0
    self_consumed_solar: float = 0.0
    # The signed running sums behind the two derived totals, which publish their maximum so far.
    home_consumption_net: float = 0.0
    self_consumed_solar_net: float = 0.0


@dataclass(slots=True)
class _Today:
    """Today's sums (Wh) behind the ratios.

    Each ratio divides values from one flow's own intervals (production as the self-consumption
    flow saw it, import as the consumption flow saw it), so it stays within 0..100 % even while
    another flow catches up on an offline spell.
    """

    day: date | None = None
    solar_production: float = 0.0
    self_consumed_solar: float = 0.0
    grid_import: float = 0.0
    home_consumption: float = 0.0


def _baseline(value: float) -> EnergyCounter:
    """Return a channel counter's baseline at a raw value (inputs are clean: no bound)."""
    return EnergyCounter.from_dict({"total": 0.0, "base": value, "base_time": 0.0})


def _advance(counter: EnergyCounter, value: float) -> float:
    """Return what a baseline counted up to `value` (Wh, >= 0), moving it on."""
    # Time plays no part without a physical bound. The counter's own total restarts from 0 at
    # every step, so the delta is exactly value - base.
    counted = counter.read(value, 0.0).total or 0.0
    counter.total = 0.0
    return counted


class _Flow:
    """One derived energy flow's inputs: each input channel's counters when it last accrued.

    After an `advance` that accrued, ``inflow[role]`` and ``outflow[role]`` hold the energy (Wh)
    that the role's channels counted in and out since the previous one.
    """

    __slots__ = ("accrued_at", "baselines", "counted_short", "inflow", "outflow", "roles")

    def __init__(self, roles: tuple[Role, ...]) -> None:
        self.roles = roles
        # The spans the inputs' meters opened since the last accrual (their counters counted
        # short), by meter.
        self.counted_short: dict[str, SpanNumbers] = {}
        self.accrued_at: float | None = None  # when it last accrued; kept for the net flows
        self.baselines: dict[ChannelRef, tuple[EnergyCounter, EnergyCounter]] = {}  # (in, out)
        self.inflow = dict.fromkeys(roles, 0.0)
        self.outflow = dict.fromkeys(roles, 0.0)

    def advance(
        self,
        channels: Mapping[Role, tuple[ChannelRef, ...]],
        counters: Mapping[ChannelRef, tuple[float, float]],
    ) -> bool:
        """Accrue the interval since the last accrual if every input is available; say so."""
        if not all(ref in counters for role in self.roles for ref in channels[role]):
            return False  # the baselines stay, so the interval accrues when the inputs return
        for role in self.roles:
            inflow = outflow = 0.0
            for ref in channels[role]:
                energy_in, energy_out = counters[ref]
                baseline = self.baselines.get(ref)
                if baseline is None:  # first sighting: nothing to compare with yet
                    self.baselines[ref] = (_baseline(energy_in), _baseline(energy_out))
                else:
                    inflow += _advance(baseline[0], energy_in)
                    outflow += _advance(baseline[1], energy_out)
            self.inflow[role] = inflow
            self.outflow[role] = outflow
        return True


# The derived energy flows by storage name, and the roles whose channels each reads.
_FLOW_ROLES: Final[Mapping[str, tuple[Role, ...]]] = {
    "grid": (Role.GRID,),
    "solar": (Role.SOLAR,),
    "battery": (Role.BATTERY,),
    "self_consumed_solar": (Role.GRID, Role.SOLAR),
    "home_consumption": _BALANCE_ROLES,
}


class _Load:
    """One load's totals, its channel's counters when it last accrued, and its first sighting."""

    __slots__ = ("flow", "started", "total")

    def __init__(self) -> None:
        self.flow = _Flow((Role.LOAD,))
        self.total = LoadEnergy()
        self.started: float | None = None  # when its totals were first published

    def advance(self, ref: ChannelRef, counters: Mapping[ChannelRef, tuple[float, float]]) -> bool:
        """Accrue what the load's channel counted since the last accrual, if it is available."""
        if not self.flow.advance({Role.LOAD: (ref,)}, counters):
            return False
        self.total = LoadEnergy(
            self.total.consumed + self.flow.inflow[Role.LOAD],
            self.total.returned + self.flow.outflow[Role.LOAD],
        )
        return True


# The flows that publish the highest value of a signed running sum.
_NET_FLOWS: Final = ("self_consumed_solar", "home_consumption")


def _production(solar_in: float, solar_out: float) -> float:
    """Return solar production, net of the inverters' standby draw."""
    return max(solar_out - solar_in, 0.0)


def _consumption(
    grid_import: float, grid_export: float, production: float, charge: float, discharge: float
) -> float:
    """Return home consumption, signed: the callers clamp (power) or ratchet (energy)."""
    return grid_import - grid_export + production + discharge - charge


def _self_consumed(production: float, grid_export: float) -> float:
    """Return the solar production the home used itself, signed like `_consumption`."""
    return production - grid_export


def import_export(metering: GridMetering, inflow: float, outflow: float) -> tuple[float, float]:
    """Return grid import and export from what flowed in and out on the grid channels."""
    if metering is GridMetering.BALANCED:
        return max(inflow - outflow, 0.0), max(outflow - inflow, 0.0)
    return inflow, outflow


def _counted(
    channels: tuple[ChannelRef, ...], energy: Mapping[ChannelRef, tuple[float, float]]
) -> tuple[float, float]:
    """Return the energy counted in and out (Wh) over channels; a missing channel counted 0."""
    inflow = outflow = 0.0
    for ref in channels:
        energy_in, energy_out = energy.get(ref, (0.0, 0.0))
        inflow += energy_in
        outflow += energy_out
    return inflow, outflow


def interval_energy(
    config: SiteConfig, energy: Mapping[ChannelRef, tuple[float, float]]
) -> SiteEnergy:
    """Return the site's flows (Wh) over one interval that every channel measured together.

    ``energy`` maps channels to what they counted in and out during the interval (stored
    records of the same minutes, say). Unlike live updates, where meters are read at different
    instants, such an interval is complete: home consumption and self-consumed solar are
    clamped to 0 within it, as their definitions say.
    """
    grid_import, grid_export = import_export(
        config.grid_metering, *_counted(config.channels(Role.GRID), energy)
    )
    production = _production(*_counted(config.channels(Role.SOLAR), energy))
    charged, discharged = _counted(config.channels(Role.BATTERY), energy)
    return SiteEnergy(
        grid_import=grid_import,
        grid_export=grid_export,
        solar_production=production,
        battery_charged=charged,
        battery_discharged=discharged,
        home_consumption=max(
            _consumption(grid_import, grid_export, production, charged, discharged), 0.0
        ),
        self_consumed_solar=max(_self_consumed(production, grid_export), 0.0),
    )


def _power_flows(
    channels: tuple[ChannelRef, ...], readings: Mapping[ChannelRef, ChannelInput | None]
) -> tuple[float, float] | None:
    """Return the power flowing in and out (W, both >= 0) over channels; None: unavailable."""
    inflow = outflow = 0.0
    for ref in channels:
        reading = readings.get(ref)
        if reading is None or reading.power is None:
            return None
        if reading.power > 0:
            inflow += reading.power
        else:
            outflow -= reading.power
    return inflow, outflow


def _load_power(reading: ChannelInput | None) -> float | None:
    """Return a load's power (W, >= 0); None: unavailable."""
    if reading is None or reading.power is None:
        return None
    return max(reading.power, 0.0)


class SiteAccumulator:
    """One site's state: energy totals, the flows' baselines and today's sums.

    Call `update` with every new set of readings; persist `to_dict` (totals and baselines
    together) and restore it with `from_dict`, so a restart loses and double-counts nothing.
    """

    def __init__(self, config: SiteConfig, zone: tzinfo = UTC) -> None:
        """Start a site with zero totals; each channel's first sighting sets its baselines.

        `zone`: the local time zone, whose clock the settlement periods follow.
        """
        self._flows = {name: _Flow(roles) for name, roles in _FLOW_ROLES.items()}
        self._totals = _Totals()
        self._today = _Today()
        self._counters: dict[ChannelRef, tuple[float, float]] = {}  # reused by every update
        self._floors: dict[str, float] = {}  # totals never to be published lower (Wh)
        self._load_floors: dict[tuple[ChannelRef, str], float] = {}  # the same per load field
        self._loads: dict[ChannelRef, _Load] = {}
        # Each channel's meter's span count and its own latest span's number, last seen (the
        # latter None: not known yet).
        self._spans: dict[ChannelRef, tuple[int, int | None]] = {}
        # How the net flows accrued spans, by flow: `short_counts`.
        self._short_counts: dict[AccruedSpans, dict[str, ShortCount]] = {}
        self.started: float | None = None  # when the totals were first published
        self._flows_started: dict[str, float] = {}  # the same for the solar and battery flows
        self._zone = zone
        self._settlement: GridSettlement | None = None
        self._grid_time: float | None = None  # when the grid flow last accrued
        self._capacity: CapacityTracker | None = None
        self._apply_config(config)
        self._apply_settlement(config.settlement, None)
        self._apply_capacity(config.capacity, None)

    def _clock(self, settlement: Settlement) -> PeriodClock | None:
        minutes = settlement.minutes
        return None if minutes is None else PeriodClock(minutes, self._zone)

    def _apply_settlement(self, settlement: Settlement, stored: Mapping[str, Any] | None) -> None:
        """Settle the grid totals from now on as `settlement` says; `stored`: the last state.

        The published totals go on from where they are: a running period of another settlement
        is booked as it stands.
        """
        clock = self._clock(settlement)
        totals = self._totals
        if stored is not None:
            current = GridSettlement.from_dict(clock, stored)
            totals.grid_import = max(totals.grid_import, current.imported)
            totals.grid_export = max(totals.grid_export, current.exported)
            current.hold_at_least(totals.grid_import, totals.grid_export)
        else:
            current = GridSettlement(clock, totals.grid_import, totals.grid_export)
        self._settlement = None if clock is None else current

    def _apply_capacity(
        self, settings: CapacitySettings | None, stored: Mapping[str, Any] | None
    ) -> None:
        """Measure capacity peaks as `settings` say from now on; `stored`: the last state.

        A stored state that cannot be read starts the peaks anew: the energy totals stay.
        """
        tracker = None if settings is None else settings.tracker(self._zone)
        if tracker is not None and settings is not None and stored is not None:
            try:
                tracker.restore(stored)
            except ValueError:
                tracker = settings.tracker(self._zone)
        self._capacity = tracker

    def _apply_config(self, config: SiteConfig) -> None:
        self._config = config
        self._channels = {role: config.channels(role) for role in Role}
        self._metered_channels = tuple(
            ref for role in (*_BALANCE_ROLES, Role.LOAD) for ref in self._channels[role]
        )
        # A channel that stays a load keeps its totals; a new load starts from its first sighting.
        self._loads = {ref: self._loads.get(ref) or _Load() for ref in self._channels[Role.LOAD]}

    def update_config(self, config: SiteConfig) -> None:
        """Use new roles from the next update on.

        Totals stay as they are, but those of channels that are no longer loads. Every flow
        forgets the baselines of channels whose role changed, so the energy they count under their
        new role starts from their next sighting.
        """
        old_roles, new_roles = self._config.roles, config.roles
        for flow in self._flows.values():
            for ref in [ref for ref in flow.baselines if new_roles.get(ref) != old_roles.get(ref)]:
                del flow.baselines[ref]
        if config.settlement is not self._config.settlement:
            stored = None if self._settlement is None else self._settlement.to_dict()
            self._apply_settlement(config.settlement, stored)
        if config.capacity != self._config.capacity:
            capacity = None if self._capacity is None else self._capacity.to_dict()
            self._apply_capacity(config.capacity, capacity)
        self._apply_config(config)

    def update(
        self,
        readings: Mapping[ChannelRef, ChannelInput | None],
        day: date,
        now: float | None = None,
    ) -> SiteState:
        """Accrue the readings' counters and return the site's state.

        ``readings`` maps channels to their current readings; None or a missing channel means its
        meter is unavailable. ``day`` is the local calendar day; the ratios restart when it changes.
        ``now`` (unix seconds) is kept as `started` at the first update with energy (as the solar
        and battery flows' `flow_started` at their first, and as a load's `load_started` at its
        first sighting); a settlement period needs it at every update.
        """
        if day != self._today.day:
            self._today = _Today(day)
        energy = self._accrue(readings, now)
        loads = self._accrue_loads(now)  # from the counters that `_accrue` collected
        if self.started is None and energy.home_consumption is not None:
            self.started = now
        if now is not None:
            for name, total in (
                ("solar", energy.solar_production),
                ("battery", energy.battery_charged),
            ):
                if (
                    total is not None
                    and name not in self._flows_started
                    and self._config.has_role(_STARTED_FLOWS[name])
                ):
                    self._flows_started[name] = now
        power = self._power(readings)
        return SiteState(
            power=power,
            energy=energy,
            self_consumption_rate=self._self_consumption_rate(
                available=energy.self_consumed_solar is not None
            ),
            self_sufficiency=self._self_sufficiency(available=energy.home_consumption is not None),
            loads=loads,
            period=self._running_period(now),
            # Demand periods hold what the grid accrued: unknown while it waits for a meter.
            capacity=(
                None
                if self._capacity is None or now is None or energy.grid_import is None
                else self._capacity.state(power.grid_import, now)
            ),
        )

    def _running_period(self, now: float | None) -> RunningPeriod | None:
        settlement = self._settlement
        running = None if settlement is None else settlement.running
        if running is None or now is None:
            return None
        return RunningPeriod(running.amount, max(running.end - now, 0.0))

    def _import_export(self, inflow: float, outflow: float) -> tuple[float, float]:
        return import_export(self._config.grid_metering, inflow, outflow)

    def _accrue(
        self, readings: Mapping[ChannelRef, ChannelInput | None], now: float | None
    ) -> SiteEnergy:
        counters = self._counters
        counters.clear()
        for ref in self._metered_channels:
            reading = readings.get(ref)
            if (
                reading is not None
                and reading.energy_in is not None
                and reading.energy_out is not None
            ):
                counters[ref] = (reading.energy_in, reading.energy_out)
                self._note_spans(ref, reading.spans, reading.latest_span)
        totals, today, flows = self._totals, self._today, self._flows

        grid = flows["grid"]
        grid_ok = grid.advance(self._channels, counters)
        if grid_ok:
            grid_import, grid_export = self._import_export(
                grid.inflow[Role.GRID], grid.outflow[Role.GRID]
            )
            self._settle(grid_import, grid_export, now)

        solar = flows["solar"]
        solar_ok = solar.advance(self._channels, counters)
        if solar_ok:
            totals.solar_production += _production(
                solar.inflow[Role.SOLAR], solar.outflow[Role.SOLAR]
            )

        battery = flows["battery"]
        battery_ok = battery.advance(self._channels, counters)
        if battery_ok:
            totals.battery_charged += battery.inflow[Role.BATTERY]
            totals.battery_discharged += battery.outflow[Role.BATTERY]

        self_consumption = flows["self_consumed_solar"]
        self_consumption_ok = self_consumption.advance(self._channels, counters)
        if self_consumption_ok:
            production = _production(
                self_consumption.inflow[Role.SOLAR], self_consumption.outflow[Role.SOLAR]
            )
            _, grid_export = self._import_export(
                self_consumption.inflow[Role.GRID], self_consumption.outflow[Role.GRID]
            )
            self_consumed = self._net_accrued(
                "self_consumed_solar", _self_consumed(production, grid_export), now
            )
            today.solar_production += production
            today.self_consumed_solar += self_consumed

        consumption = flows["home_consumption"]
        consumption_ok = consumption.advance(self._channels, counters)
        if consumption_ok:
            grid_import, grid_export = self._import_export(
                consumption.inflow[Role.GRID], consumption.outflow[Role.GRID]
            )
            net = _consumption(
                grid_import,
                grid_export,
                _production(consumption.inflow[Role.SOLAR], consumption.outflow[Role.SOLAR]),
                consumption.inflow[Role.BATTERY],
                consumption.outflow[Role.BATTERY],
            )
            home_consumption = self._net_accrued("home_consumption", net, now)
            today.grid_import += grid_import
            today.home_consumption += home_consumption

        if self._floors:
            self._apply_floors(
                {
                    "grid_import": grid_ok,
                    "grid_export": grid_ok,
                    "solar_production": solar_ok,
                    "battery_charged": battery_ok,
                    "battery_discharged": battery_ok,
                    "home_consumption": consumption_ok,
                    "self_consumed_solar": self_consumption_ok,
                }
            )
        return SiteEnergy(
            grid_import=totals.grid_import if grid_ok else None,
            grid_export=totals.grid_export if grid_ok else None,
            solar_production=totals.solar_production if solar_ok else None,
            battery_charged=totals.battery_charged if battery_ok else None,
            battery_discharged=totals.battery_discharged if battery_ok else None,
            home_consumption=totals.home_consumption if consumption_ok else None,
            self_consumed_solar=totals.self_consumed_solar if self_consumption_ok else None,
        )

    def _accrue_loads(self, now: float | None) -> dict[ChannelRef, LoadEnergy | None]:
        """Accrue each load from the channels' counters; return the loads' totals."""
        loads: dict[ChannelRef, LoadEnergy | None] = {}
        for ref, load in self._loads.items():
            if not load.advance(ref, self._counters):
                loads[ref] = None
                continue
            if load.started is None:
                load.started = now
            for field in ("consumed", "returned"):
                if (floor := self._load_floors.pop((ref, field), None)) is not None:
                    load.total = replace(
                        load.total, **{field: max(getattr(load.total, field), floor)}
                    )
            loads[ref] = load.total
        return loads

    def records_wanted(self) -> tuple[float, float] | None:
        """Return the start and end of the periods gaps covered that await the records."""
        periods = []
        settlement, capacity = self._settlement, self._capacity
        if settlement is not None and settlement.clock is not None:
            clock = settlement.clock
            periods += [(start, clock.bounds(start)[1]) for start in settlement.provisional]
        if capacity is not None:
            periods += [(start, capacity.clock.bounds(start)[1]) for start in capacity.pending]
        if not periods:
            return None
        return min(start for start, _ in periods), max(end for _, end in periods)

    def rebuild(
        self,
        nets: Mapping[float, float],
        imports: Mapping[float, float],
        now: float,
        booked_before: float | None = None,
    ) -> SettlementRebuild:
        """Settle and measure the periods gaps covered again, with what the records tell.

        `nets`: settlement periods' nets, `imports`: demand periods' grid import (Wh, by start);
        `booked_before` as `GridSettlement.rebuild`. Return the settlement periods rebuilt, and
        the published import and export (Wh) before and after.
        """
        if self._capacity is not None:
            self._capacity.rebuild(imports)
        settlement, totals = self._settlement, self._totals
        if settlement is None:
            published = (totals.grid_import, totals.grid_export)
            return SettlementRebuild((), published, published)
        settlement.hold_at_least(totals.grid_import, totals.grid_export)
        before = (settlement.imported, settlement.exported)
        rebuilt = settlement.rebuild(nets, now, booked_before)
        totals.grid_import, totals.grid_export = settlement.imported, settlement.exported
        return SettlementRebuild(tuple(rebuilt), before, (settlement.imported, settlement.exported))

    def capacity_peak(self, start: float) -> float | None:
        """Return the capacity peak (kW) of the billing period that began at `start`.

        None: capacity peaks are not measured, or not known for that period.
        """
        return None if self._capacity is None else self._capacity.peak_of(start)

    def flow_started(self, name: str) -> float | None:
        """Return when the solar or battery flow's totals were first published (None: not yet).

        They need no grid: a site whose grid is a power sensor publishes them all the same.
        """
        return self._flows_started.get(name)

    def load_started(self, ref: ChannelRef) -> float | None:
        """Return when a load's totals were first published (None: not yet, or not a load)."""
        load = self._loads.get(ref)
        return None if load is None else load.started

    def hold_load_at_least(self, ref: ChannelRef, field: str, shown: float) -> None:
        """Never publish a load's `LoadEnergy` field below what shows as `shown` Wh (as above)."""
        self._load_floors[ref, field] = shown - SHOWN_ROUNDING_WH

    def _settle(self, grid_import: float, grid_export: float, now: float | None) -> None:
        """Add an interval's grid energy (Wh): to the totals, settled; its import to demand."""
        totals, settlement = self._totals, self._settlement
        since = self._grid_time if self._grid_time is not None and now is not None else now
        self._grid_time = now
        if self._capacity is not None and since is not None and now is not None:
            self._capacity.add(since, now, grid_import)
        if settlement is None or since is None or now is None:
            totals.grid_import += grid_import
            totals.grid_export += grid_export
            return
        settlement.add(since, now, grid_import, grid_export)
        settlement.hold_at_least(totals.grid_import, totals.grid_export)  # floors of a restart
        totals.grid_import, totals.grid_export = settlement.imported, settlement.exported

    def hold_at_least(self, field: str, shown: float) -> None:
        """Never publish a `SiteEnergy` field below what shows as `shown` Wh (before a restart).

        `shown` is rounded to the Wh: the total may have been up to `SHOWN_ROUNDING_WH` less.
        Applied once the flow next accrues: after a crash the stored totals can be older than
        what was shown, and one long interval nets differently than many short ones.
        """
        self._floors[field] = shown - SHOWN_ROUNDING_WH

    def _note_spans(self, ref: ChannelRef, spans: int, latest: int) -> None:
        """Tell the net flows that read `ref` when its counters counted short.

        The spans numbered since its meter was last seen are the accrual's: any of them tells
        it (a fault opens a span on each counter it hit, the ones the flow reads among them).
        """
        last, last_latest = self._spans.get(ref, (spans, latest))
        self._spans[ref] = (spans, latest)
        if last_latest is not None and latest > last_latest and spans > last:
            role = self._config.roles.get(ref)
            for name in _NET_FLOWS:
                flow = self._flows[name]
                if role in flow.roles:
                    first = last + 1
                    if (waiting := flow.counted_short.get(ref.meter_id)) is not None:
                        first = min(first, waiting.first)  # several faults before it accrued
                    flow.counted_short[ref.meter_id] = SpanNumbers(ref.meter_id, first, spans)

    def _net_accrued(self, name: str, net: float, now: float | None) -> float:
        """Add an accrual's `net` (Wh, signed) to net flow `name`; return what it published.

        The flow's running sum takes it; its total, the sum's highest value so far, rises by
        what the sum passes it. After an input's counter counted short, the sum is forgiven the
        fall this accrual made (not one it already had): what the counter missed, the meter's
        records give to the hours it flowed in (`energy.history_plan`), and a sum left that much
        lower would hold back as much of the consumption to come. How the flow accrued the span
        waits for `short_counts`.
        """
        totals, flow = self._totals, self._flows[name]
        published: float = getattr(totals, name)
        before: float = getattr(totals, f"{name}_net")
        running = before + net
        added = max(running - published, 0.0)
        published += added
        since, flow.accrued_at = flow.accrued_at, now
        if flow.counted_short:
            spans = tuple(sorted(flow.counted_short.values()))
            flow.counted_short = {}
            deficit = max(published - added - before, 0.0)
            forgiven = max(published - deficit - running, 0.0)
            kept = self._short_counts.setdefault(spans, {})
            kept[name] = ShortCount(since, forgiven, deficit)
            while len(self._short_counts) > SHORT_COUNTS_KEPT:  # those no history took
                del self._short_counts[next(iter(self._short_counts))]
            running += forgiven
        setattr(totals, name, published)
        setattr(totals, f"{name}_net", running)
        return added

    def lower_net_sums(self, fallen: Mapping[str, float]) -> None:
        """Lower net flows' running sums by falls they did not see (Wh, by flow name).

        A sum that fell while an input's counter could not count (at night, say: the battery
        exported while the mains' counter was rolled back) did not fall here; the records tell
        that it did. The flow's total stays; what it publishes next first makes the fall up, as
        it would have.
        """
        totals = self._totals
        for name, fall in fallen.items():
            field = f"{name}_net"
            setattr(totals, field, getattr(totals, field) - fall)

    def short_counts(self, spans: Iterable[tuple[str, int]]) -> dict[str, ShortCount]:
        """Return how the net flows accrued spans (meter, number), by flow."""
        found: dict[str, ShortCount] = {}
        for accrued in self.accruals(spans):
            for name, count in self._short_counts[accrued].items():
                before = found.get(name)
                found[name] = count if before is None else _both(before, count)
        return found

    def accruals(
        self, spans: Iterable[tuple[str, int]], flow: str | None = None
    ) -> list[AccruedSpans]:
        """Return the accruals with short counts that took any of spans (meter, number).

        One accrual can take the spans of several meters (a flow that waited for each): their
        corrections must count it once. `flow`: only the accruals of that net flow.
        """
        spans = set(spans)
        return [
            accrued
            for accrued, flows in self._short_counts.items()
            if (flow is None or flow in flows) and any(numbers.hold(spans) for numbers in accrued)
        ]

    def forget_short_counts(
        self,
        spans: Iterable[tuple[str, int]],
        told: Mapping[str, ShortCount],
        overstated: Mapping[str, float],
    ) -> None:
        """Forget spans the records' corrections took, `told` by `short_counts` when planned.

        A flow still waiting to accrue such a span forgives it nothing: the corrections give all
        that it missed. One that accrued it since it was told takes back what it forgave then.
        `overstated` (Wh, by flow): how far the records found the flow's running sum too high
        after these spans (it forgave a fall that was real). Short counts noted since saw it
        that much too high: their deficits grow by it.
        """
        spans = set(spans)
        accrued = self.accruals(spans)
        noted = list(self._short_counts)
        last_taken = max(map(noted.index, accrued), default=len(noted))
        for later in noted[last_taken + 1 :]:
            counts = self._short_counts[later]
            for name, wh in overstated.items():
                if (count := counts.get(name)) is not None:
                    counts[name] = count._replace(deficit=max(count.deficit + wh, 0.0))
        for flow in self._flows.values():
            flow.counted_short = {
                meter_id: numbers
                for meter_id, numbers in flow.counted_short.items()
                if not numbers.hold(spans)
            }
        since_told = {
            name: count.forgiven - (told[name].forgiven if name in told else 0.0)
            for name, count in self.short_counts(spans).items()
        }
        for taken in accrued:
            del self._short_counts[taken]
        self.lower_net_sums({name: wh for name, wh in since_told.items() if wh > 0})

    def _apply_floors(self, accrued: Mapping[str, bool]) -> None:
        totals = self._totals
        for field, ok in accrued.items():
            if ok and (floor := self._floors.pop(field, None)) is not None:
                setattr(totals, field, max(getattr(totals, field), floor))

    def _power(self, readings: Mapping[ChannelRef, ChannelInput | None]) -> SitePower:
        grid = _power_flows(self._channels[Role.GRID], readings)
        solar = _power_flows(self._channels[Role.SOLAR], readings)
        battery = _power_flows(self._channels[Role.BATTERY], readings)
        grid_import = grid_export = grid_net = None
        if grid is not None:
            grid_import, grid_export = self._import_export(*grid)
            grid_net = grid[0] - grid[1]
        production = None if solar is None else _production(*solar)
        self_consumed = home_consumption = None
        if grid_import is not None and grid_export is not None and production is not None:
            self_consumed = max(_self_consumed(production, grid_export), 0.0)
            if battery is not None:
                home_consumption = max(
                    _consumption(grid_import, grid_export, production, *battery), 0.0
                )
        return SitePower(
            grid_net=grid_net,
            grid_import=grid_import,
            grid_export=grid_export,
            solar_production=production,
            battery_charging=None if battery is None else battery[0],
            battery_discharging=None if battery is None else battery[1],
            battery_net=None if battery is None else battery[1] - battery[0],
            home_consumption=home_consumption,
            self_consumed_solar=self_consumed,
            loads={ref: _load_power(readings.get(ref)) for ref in self._channels[Role.LOAD]},
        )

    def _self_consumption_rate(self, *, available: bool) -> float | None:
        """Return self-consumed / produced today in percent; None: unavailable or no production."""
        today = self._today
        if not available or today.solar_production == 0:
            return None
        # Never above 100 in exact arithmetic; the clamp absorbs the sums' rounding.
        return min(100.0 * today.self_consumed_solar / today.solar_production, 100.0)

    def _self_sufficiency(self, *, available: bool) -> float | None:
        """Return 1 - import / consumption today in percent (>= 0); None: unavailable or none."""
        today = self._today
        if not available or today.home_consumption == 0:
            return None
        # Import is never negative, so the ratio never exceeds 100; it falls below 0 when the
        # battery charged from the grid (consumption < import).
        return max(100.0 * (1.0 - today.grid_import / today.home_consumption), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-safe data: totals, today's sums, baselines and their roles."""
        today = asdict(self._today)
        today["day"] = None if self._today.day is None else self._today.day.isoformat()
        return {
            "version": STORAGE_VERSION,
            "roles": [
                {"meter_id": ref.meter_id, "channel_id": ref.channel_id, "role": str(role)}
                for ref, role in self._config.roles.items()
                if role in _BALANCE_ROLES
            ],
            "totals": asdict(self._totals),
            "today": today,
            "started": self.started,
            "flows_started": self._flows_started,
            "settlement": None if self._settlement is None else self._settlement.to_dict(),
            "grid_time": self._grid_time,
            "capacity": None if self._capacity is None else self._capacity.to_dict(),
            "spans": [
                {
                    "meter_id": ref.meter_id,
                    "channel_id": ref.channel_id,
                    "count": count,
                    "latest": latest,
                }
                for ref, (count, latest) in self._spans.items()
            ],
            "net_flows": {
                name: {
                    "counted_short": list(flow.counted_short.values()),
                    "accrued_at": flow.accrued_at,
                }
                for name, flow in self._flows.items()
                if name in _NET_FLOWS
            },
            "short_counts": [
                {"spans": accrued, "flows": flows} for accrued, flows in self._short_counts.items()
            ],
            "baselines": {
                name: [
                    {
                        "meter_id": ref.meter_id,
                        "channel_id": ref.channel_id,
                        "energy_in": counter_in.base,
                        "energy_out": counter_out.base,
                    }
                    for ref, (counter_in, counter_out) in flow.baselines.items()
                ]
                for name, flow in self._flows.items()
            },
            "loads": [
                {
                    "meter_id": ref.meter_id,
                    "channel_id": ref.channel_id,
                    "consumed": load.total.consumed,
                    "returned": load.total.returned,
                    "started": load.started,
                    "baseline": (
                        None
                        if (baseline := load.flow.baselines.get(ref)) is None
                        else {"energy_in": baseline[0].base, "energy_out": baseline[1].base}
                    ),
                }
                for ref, load in self._loads.items()
            ],
        }

    @classmethod
    def from_dict(
        cls, config: SiteConfig, data: Mapping[str, Any], zone: tzinfo = UTC
    ) -> SiteAccumulator:
        """Restore a state saved by `to_dict`, then apply ``config`` as `update_config` would.

        Raises ValueError for data of another storage version.
        """
        if data.get("version") != STORAGE_VERSION:
            raise ValueError(f"unsupported site storage version {data.get('version')!r}")
        saved_roles = {
            ChannelRef(entry["meter_id"], entry["channel_id"]): Role(entry["role"])
            for entry in data["roles"]
        }
        accumulator = cls(SiteConfig(saved_roles, config.grid_metering), zone)
        accumulator._totals = _Totals(**data["totals"])
        accumulator.started = data.get("started")
        # Saved since 2026-12 (before, every flow started with the site). A flow without its
        # role then starts again once it has one (versions of 2026-12-06 saved it regardless).
        flows_started = data.get("flows_started")
        if flows_started is None:
            flows_started = dict.fromkeys(_STARTED_FLOWS, accumulator.started)
        accumulator._flows_started = {
            name: time
            for name, time in flows_started.items()
            if time is not None and _STARTED_FLOWS[name] in saved_roles.values()
        }
        accumulator._grid_time = data.get("grid_time")
        accumulator._apply_settlement(config.settlement, data.get("settlement"))
        accumulator._apply_capacity(config.capacity, data.get("capacity"))
        accumulator._config = SiteConfig(
            saved_roles, config.grid_metering, config.settlement, config.capacity
        )
        today = data["today"]
        accumulator._today = _Today(
            day=None if today["day"] is None else date.fromisoformat(today["day"]),
            solar_production=today["solar_production"],
            self_consumed_solar=today["self_consumed_solar"],
            grid_import=today["grid_import"],
            home_consumption=today["home_consumption"],
        )
        # Saved since the net flows forgive what counters missed; each channel's latest span
        # since 2026-12-07 (not known before: it is from the next reading).
        accumulator._spans = {
            ChannelRef(entry["meter_id"], entry["channel_id"]): (
                int(entry["count"]),
                None if entry.get("latest") is None else int(entry["latest"]),
            )
            for entry in data.get("spans", ())
        }
        accumulator._short_counts = {
            _stored_accrual(entry): {
                # Stored without the deficit before 2026-12-07.
                str(name): ShortCount(since, float(forgiven), float(deficit[0] if deficit else 0))
                for name, (since, forgiven, *deficit) in entry["flows"].items()
            }
            for entry in data.get("short_counts", ())
        }
        net_flows = data.get("net_flows", {})
        for name, flow in accumulator._flows.items():
            if (saved := net_flows.get(name)) is not None:
                flow.counted_short = {
                    numbers.meter_id: numbers
                    for numbers in _stored_span_numbers(saved["counted_short"])
                }
                flow.accrued_at = saved["accrued_at"]
            flow.baselines = {
                ChannelRef(entry["meter_id"], entry["channel_id"]): (
                    _baseline(entry["energy_in"]),
                    _baseline(entry["energy_out"]),
                )
                for entry in data["baselines"][name]
            }
        # Saved before loads had energy: they start from their next sighting.
        for entry in data.get("loads", ()):
            ref = ChannelRef(entry["meter_id"], entry["channel_id"])
            load = accumulator._loads[ref] = _Load()
            load.total = LoadEnergy(entry["consumed"], entry["returned"])
            load.started = entry.get("started")  # saved since loads have history
            if (baseline := entry["baseline"]) is not None:
                load.flow.baselines[ref] = (
                    _baseline(baseline["energy_in"]),
                    _baseline(baseline["energy_out"]),
                )
        accumulator.update_config(config)
        return accumulator


def _stored_span_numbers(stored: Any) -> AccruedSpans:
    """Return a flow's stored spans: [[meter, first, last], ...].

    Stored before 2026-12-07 as one meter's last number: [meter, last], or None.
    """
    if not stored:
        return ()
    if isinstance(stored[0], str):
        meter_id, last = stored
        return (SpanNumbers(str(meter_id), int(last), int(last)),)
    return tuple(
        SpanNumbers(str(meter_id), int(first), int(last)) for meter_id, first, last in stored
    )


def _stored_accrual(entry: Mapping[str, Any]) -> AccruedSpans:
    """Return the spans of a stored short count (one meter's last number before 2026-12-07)."""
    if "spans" in entry:
        return _stored_span_numbers(entry["spans"])
    return _stored_span_numbers([entry["meter_id"], entry["span"]])
