"""A deterministic household: consumption, solar production and a battery, minute by minute.

Sign convention (the one place it is defined; everything else in the simulator follows it):
a current transformer (CT) reads **positive** when energy flows into the house from the grid
side (import, consumption) and **negative** when it flows out (export, production). So, as a
CT on each source reads it:

- ``load``: household consumption, >= 0;
- ``solar``: the inverter's production, <= 0;
- ``battery``: > 0 while charging, < 0 while discharging;
- ``grid``: the net at the connection point, ``load - production + battery charging``; < 0
  while exporting;
- ``fixed``: a constant chosen by the caller;
- a circuit (``fridge``, ``kettle``, ``oven``, ``washing_machine``, ``dishwasher``,
  ``heat_pump``): what one appliance's circuit draws, >= 0.

Circuits nest in their household: each appliance runs on a circuit of its own, and a circuit's
watts are part of ``load`` (and so of ``grid``) on the same phase in the same minute. A sub-meter
on a circuit and a meter on the mains of the same household therefore agree: the circuit never
draws more than the house, and what the house draws besides is the base load and the other
circuits.

Import counters (``total``, ``*_total_act_energy``) accumulate the positive part as Wh, export
counters (``total_returned``, ``*_ret_*``) the negative part, also as positive Wh.

Power is piecewise constant per minute and a pure function of (seed, minute): each local day is
built at once from a random generator seeded with (seed, day), so any minute can be asked for
in any order. Phases are a, b, c (0, 1, 2); solar and battery sit on phase a.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

CircuitName = Literal["fridge", "kettle", "oven", "washing_machine", "dishwasher", "heat_pump"]
CIRCUITS: tuple[CircuitName, ...] = get_args(CircuitName)
SourceKind = Literal["load", "solar", "grid", "battery", "fixed", CircuitName]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)  # nested literals flatten
PHASE_NAMES = ("a", "b", "c")
MINUTES_PER_DAY = 1440

_CACHED_DAYS = 4
_BASE_PHASE_SHARE = (0.40, 0.35, 0.25)
_TROPICAL_YEAR_DAYS = 365.2425
_SUMMER_SOLSTICE_DAY = 171  # day of the year, 0-based


def _base_shape(minute: int) -> float:
    """Relative standby/base consumption over a day: low at night, morning and evening bumps."""
    hour = minute / 60

    def bump(centre: float, width: float, height: float) -> float:
        return height * math.exp(-(((hour - centre) / width) ** 2))

    return bump(7.5, 1.2, 0.5) + bump(13.0, 2.5, 0.25) + bump(19.5, 2.0, 1.0)


_BASE_SHAPE = tuple(_base_shape(minute) for minute in range(MINUTES_PER_DAY))


@dataclass(frozen=True, slots=True)
class Source:
    """What one CT channel measures: a household quantity on one phase, or a constant.

    `phase` None means the whole household (the sum over the phases); `watts` is used by
    ``fixed`` only. The text form is ``kind`` or ``kind@phase`` or ``fixed@watts``, e.g.
    ``grid@a``, ``load``, ``solar``, ``heat_pump``, ``fixed@-300``.
    """

    kind: SourceKind
    phase: int | None = None
    watts: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Source:
        """Parse ``kind[@phase]`` or ``fixed@watts``."""
        kind, _, argument = spec.strip().partition("@")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
        if kind == "fixed":
            try:
                return cls("fixed", watts=float(argument or 0))
            except ValueError:
                raise ValueError(
                    f"fixed source needs watts, e.g. fixed@500, not {spec!r}"
                ) from None
        if not argument:
            return cls(kind)  # type: ignore[arg-type]
        if argument not in PHASE_NAMES:
            raise ValueError(f"unknown phase {argument!r} in {spec!r}; expected a, b or c")
        return cls(kind, phase=PHASE_NAMES.index(argument))  # type: ignore[arg-type]

    def __str__(self) -> str:
        """Return the text form that `parse` reads."""
        if self.kind == "fixed":
            return f"fixed@{self.watts:g}"
        if self.phase is None:
            return self.kind
        return f"{self.kind}@{PHASE_NAMES[self.phase]}"


_NO_POWER = [0.0] * MINUTES_PER_DAY


class _Day:
    """One local day of the household, minute by minute, with derived series memoised."""

    __slots__ = ("_series", "battery", "circuits", "loads", "solar")

    def __init__(
        self,
        loads: tuple[list[float], ...],
        circuits: dict[str, tuple[list[float], ...]],
        solar: list[float],
        battery: list[float],
    ) -> None:
        self.loads = loads  # per phase, every circuit included
        self.circuits = circuits  # per phase, the circuits that ran that day
        self.solar = solar  # production, >= 0
        self.battery = battery  # > 0 charging
        self._series: dict[tuple[str, int | None], list[float]] = {}

    def series(self, kind: str, phase: int | None) -> list[float]:
        """Return the CT reading of `kind` on `phase` (None: all phases) for every minute."""
        key = (kind, phase)
        if (cached := self._series.get(key)) is None:
            cached = self._series[key] = self._compute(kind, phase)
        return cached

    def _compute(self, kind: str, phase: int | None) -> list[float]:
        on_phase_a = phase is None or phase == 0
        if kind == "load" or kind in CIRCUITS:
            phases = self.loads if kind == "load" else self.circuits.get(kind)
            if phases is None:
                return _NO_POWER  # the circuit did not run that day
            if phase is None:
                return [a + b + c for a, b, c in zip(*phases, strict=True)]
            return phases[phase]
        if kind == "solar":
            return [-p for p in self.solar] if on_phase_a else [0.0] * MINUTES_PER_DAY
        if kind == "battery":
            return self.battery if on_phase_a else [0.0] * MINUTES_PER_DAY
        # grid
        load = self.series("load", phase)
        if not on_phase_a:
            return load
        return [
            used - made + charged
            for used, made, charged in zip(load, self.solar, self.battery, strict=True)
        ]


class Household:
    """Deterministic power of each source as a function of the minute (unix time // 60).

    Base load of 150-300 W with morning and evening bumps; a fridge cycling; kettle, oven,
    washing machine and dishwasher runs on seeded schedules; a heat pump in the cold season;
    solar following the sun (0 at night, about `solar_peak_w` at noon in summer) with seeded
    clouds; optionally a battery that stores the surplus and covers the deficit (of the whole
    house, circuits included). Each appliance is also a circuit of its own (`CIRCUITS`).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        solar_peak_w: float = 4000.0,
        battery_wh: float = 0.0,
        battery_max_w: float = 3000.0,
        utc_offset: int = 0,
    ) -> None:
        """Create a household; `utc_offset` (seconds) places local noon for the sun."""
        self.seed = seed
        self.solar_peak_w = solar_peak_w
        self.battery_wh = battery_wh
        self.battery_max_w = battery_max_w
        self.utc_offset = utc_offset
        self._offset_minutes = utc_offset // 60
        self._days: OrderedDict[int, _Day] = OrderedDict()

    def power(self, source: Source, minute: int) -> float:
        """Return what a CT on `source` reads (W) during `minute` (unix seconds // 60)."""
        if source.kind == "fixed":
            return source.watts
        day, index = divmod(minute + self._offset_minutes, MINUTES_PER_DAY)
        return self._day(day, cache=True).series(source.kind, source.phase)[index]

    def minute_powers(
        self, sources: Sequence[Source], start_minute: int, count: int
    ) -> list[list[float]]:
        """Return `power` of each source for `count` minutes from `start_minute`, quickly.

        Each day is built once for all the sources, so asking for three phases together costs
        little more than asking for one.
        """
        result: list[list[float]] = [[] for _ in sources]
        local = start_minute + self._offset_minutes
        done = 0
        while done < count:
            day, index = divmod(local + done, MINUTES_PER_DAY)
            take = min(MINUTES_PER_DAY - index, count - done)
            built = self._day(day, cache=False)
            for source, series in zip(sources, result, strict=True):
                if source.kind == "fixed":
                    series.extend([source.watts] * take)
                else:
                    series.extend(built.series(source.kind, source.phase)[index : index + take])
            done += take
        return result

    def _day(self, day: int, *, cache: bool) -> _Day:
        if (found := self._days.get(day)) is not None:
            self._days.move_to_end(day)
            return found
        built = self._build_day(day)
        if cache:
            self._days[day] = built
            if len(self._days) > _CACHED_DAYS:
                self._days.popitem(last=False)
        return built

    def _build_day(self, day: int) -> _Day:
        rng = random.Random(self.seed * 1_000_003 + day)
        # +1 at the summer solstice, -1 at the winter one.
        season = math.cos(2 * math.pi * (day - _SUMMER_SOLSTICE_DAY) / _TROPICAL_YEAR_DAYS)
        loads = self._base_loads(rng)
        circuits = self._add_appliances(rng, loads, season)
        solar = self._solar(rng, season)
        battery = self._battery(loads, solar)
        return _Day(loads, circuits, solar, battery)

    @staticmethod
    def _base_loads(rng: random.Random) -> tuple[list[float], ...]:
        level = rng.uniform(150.0, 190.0)
        swing = rng.uniform(70.0, 110.0)
        wander = [rng.uniform(-8.0, 8.0) for _ in range(MINUTES_PER_DAY // 10)]
        total = [
            level + swing * shape + wander[minute // 10] for minute, shape in enumerate(_BASE_SHAPE)
        ]
        return tuple([watts * share for watts in total] for share in _BASE_PHASE_SHARE)

    @staticmethod
    def _add_appliances(
        rng: random.Random, loads: tuple[list[float], ...], season: float
    ) -> dict[str, tuple[list[float], ...]]:
        """Run the day's appliances into `loads`; return each circuit's own share per phase."""
        circuits: dict[str, tuple[list[float], ...]] = {}

        def run(
            circuit: CircuitName, phase: int, start: int, steps: tuple[tuple[int, float], ...]
        ) -> None:
            """Add consecutive (minutes, watts) steps on `phase` from `start` to a circuit."""
            if circuit not in circuits:
                circuits[circuit] = tuple([0.0] * MINUTES_PER_DAY for _ in PHASE_NAMES)
            target, own = loads[phase], circuits[circuit][phase]
            for minutes, watts in steps:
                for minute in range(max(start, 0), min(start + minutes, MINUTES_PER_DAY)):
                    target[minute] += watts
                    own[minute] += watts
                start += minutes

        # Fridge compressor: cycles all day.
        period = rng.randint(45, 60)
        on_minutes = rng.randint(15, 22)
        for start in range(rng.randrange(period) - period, MINUTES_PER_DAY, period):
            run("fridge", 1, start, ((on_minutes, rng.uniform(85.0, 105.0)),))
        # Kettle: once in the morning, a few more times later.
        run("kettle", 0, rng.randint(390, 510), ((rng.randint(3, 4), 2000.0),))
        for _ in range(rng.randint(1, 3)):
            run("kettle", 0, rng.randint(600, 1260), ((rng.randint(3, 4), 2000.0),))
        if rng.random() < 0.55:  # oven: preheat, then thermostat cycling
            cycles = tuple(
                step for _ in range(rng.randint(4, 6)) for step in ((6, 2300.0), (4, 0.0))
            )
            run("oven", 2, rng.randint(1050, 1140), ((15, 2300.0), *cycles))
        if rng.random() < 0.4:  # washing machine: heat, wash, spin
            run(
                "washing_machine",
                0,
                rng.randint(480, 1140),
                ((15, 2000.0), (50, 150.0), (10, 450.0)),
            )
        if rng.random() < 0.6:  # dishwasher: heat, wash, dry
            run("dishwasher", 1, rng.randint(1200, 1320), ((20, 1900.0), (60, 60.0), (15, 1900.0)))
        heating_need = max(0.0, 0.3 - season) / 1.3
        if heating_need > 0:  # three-phase heat pump, balanced
            period = 60
            on_minutes = round(10 + 40 * heating_need)
            for start in range(rng.randrange(period) - period, MINUTES_PER_DAY, period):
                for phase in range(3):
                    run("heat_pump", phase, start, ((on_minutes, 500.0),))
        return circuits

    def _solar(self, rng: random.Random, season: float) -> list[float]:
        solar = [0.0] * MINUTES_PER_DAY
        if self.solar_peak_w <= 0:
            return solar
        daylight_hours = 12.0 + 4.0 * season
        sunrise = (12.0 - daylight_hours / 2) * 60
        daylight = daylight_hours * 60
        peak = self.solar_peak_w * (0.7 + 0.3 * season)
        weather = rng.random()
        cloudiness = 0.05 if weather < 0.45 else 0.55 if weather < 0.8 else 0.85
        cover = [rng.random()]
        for _ in range(MINUTES_PER_DAY // 5 - 1):
            cover.append(min(1.0, max(0.0, cover[-1] + rng.uniform(-0.25, 0.25))))
        for minute in range(math.ceil(sunrise), math.floor(sunrise + daylight) + 1):
            height = math.sin(math.pi * (minute - sunrise) / daylight)
            if height > 0:
                solar[minute] = peak * height**1.3 * (1.0 - cloudiness * cover[minute // 5])
        return solar

    def _battery(self, loads: tuple[list[float], ...], solar: list[float]) -> list[float]:
        if self.battery_wh <= 0:
            return [0.0] * MINUTES_PER_DAY
        battery: list[float] = []
        floor_wh = 0.1 * self.battery_wh
        stored = 0.2 * self.battery_wh  # the day starts at 20 %
        for used_a, used_b, used_c, made in zip(*loads, solar, strict=True):
            surplus = made - used_a - used_b - used_c
            if surplus > 0:
                flow = min(surplus, self.battery_max_w, (self.battery_wh - stored) * 60)
            else:
                flow = -min(-surplus, self.battery_max_w, (stored - floor_wh) * 60)
            stored += flow / 60
            battery.append(flow)
        return battery
