"""Tariffs: what electricity costs, billing periods, and what has been spent so far.

A `Tariff` prices the kWh imported in a billing period in exactly one way: `FlatPricing`,
`SlabPricing` (tiers by the kWh of the period, telescopic or not) or `TimeOfUsePricing` (price by
time of day and weekday). Slabs and time-of-use windows do not combine: tariffs that mix them
need rules (which windows count towards which slab) that no user could be asked to type in. A
fixed charge per billing period is added, and a capacity charge on the period's peak demand
(`PerKwCapacity` or `BandedCapacity`; the site measures the peak, `energy.capacity`). Tax is a
percentage of the energy, fixed and capacity charges, and exported kWh earn a flat credit that is
not taxed. A bill may be negative: a net exporter is owed money.

Energy is accounted in *pieces*. An interval's import and export are spread uniformly over its
duration and cut at local midnight (days and billing periods turn over at midnight) and at the
edges of time-of-use windows, so every piece has one day, one period and one price. Slab pricing
is exact within a piece: a period's energy charge is a function of its kWh, and a piece costs
what it changes that function by, so a slab limit crossed inside one piece is paid for partly at
each tier, and for non-telescopic slabs the piece that crosses also pays the repricing of all the
earlier kWh of the period.

Time: every datetime is timezone-aware and in the user's time zone, because periods, days and
windows are wall-clock notions; durations are measured in real time, so a DST day has 23 or 25
hours and an hour of statistics is always 60 real minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, ClassVar, NamedTuple, Self

TARIFF_VERSION = 1
ACCUMULATOR_VERSION = 1
HISTORY_LENGTH = 12  # closed periods kept: a year of monthly bills, two years of two-monthly ones
ENERGY_BUCKET = "energy"  # where flat and slab pricing keep a period's kWh
DEFAULT_BUCKET = "default"  # the kWh imported outside every time-of-use window
ALL_WEEKDAYS = frozenset(range(7))
HOUR = timedelta(hours=1)

type HourlyEnergy = tuple[datetime, float, float]
"""One hour of statistics: (start of the hour, kWh imported, kWh exported)."""

type EnergyInterval = tuple[datetime, datetime, float, float]
"""(start, end, kWh imported, kWh exported), the energy spread uniformly over the interval."""


class TariffError(ValueError):
    """A tariff that cannot be right. `reason` is a stable key for a form error."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_amount(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise TariffError("not_a_number", f"{name} must be a number, not {value!r}")
    if value < 0:
        raise TariffError("negative", f"{name} must not be negative, got {value}")


def _check_steps(limits: Sequence[float | None], reason: str, message: str) -> None:
    """Raise TariffError(reason) unless the steps' upper limits rise above 0, the last open."""
    lower = 0.0
    for limit in limits[:-1]:
        if limit is None or not math.isfinite(limit) or limit <= lower:
            raise TariffError(reason, message)
        lower = limit


def _step_of(limits: Sequence[float | None], value: float) -> int:
    """Return the step (from 1) whose range holds `value`: the first whose limit is not below it."""
    return next(number for number, limit in enumerate(limits, 1) if limit is None or value <= limit)


def _require_aware(moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass the user's local time")


def _utc(moment: datetime) -> datetime:
    # Aware datetimes sharing a tzinfo compare and subtract by wall clock; real time needs UTC.
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One line of an itemised energy charge: kWh at one price."""

    name: str  # "energy" (flat), "tier_N" (slabs, from 1), a window's name or "default" (TOU)
    kwh: float
    price: float

    @property
    def amount(self) -> float:
        """What the line costs."""
        return self.kwh * self.price

    def to_dict(self) -> dict[str, Any]:
        """Return the line as JSON-safe data (the amount included, for people)."""
        return {"name": self.name, "kwh": self.kwh, "price": self.price, "amount": self.amount}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a line written by `to_dict`."""
        return cls(data["name"], data["kwh"], data["price"])


@dataclass(frozen=True, slots=True)
class FlatPricing:
    """One price for every kWh."""

    KIND: ClassVar[str] = "flat"

    price: float

    def __post_init__(self) -> None:
        _check_amount("price", self.price)

    def bucket_at(self, moment: datetime) -> str:
        """Return where the kWh imported at `moment` are counted."""
        return ENERGY_BUCKET

    def edges(self) -> tuple[time, ...]:
        """Return the times of day at which the price changes: never."""
        return ()

    def lines(self, import_by_bucket: Mapping[str, float]) -> tuple[ChargeLine, ...]:
        """Itemise the energy charge of a period's kWh."""
        kwh = sum(import_by_bucket.values())
        return (ChargeLine(ENERGY_BUCKET, kwh, self.price),) if kwh > 0 else ()

    def marginal_price(self, import_by_bucket: Mapping[str, float], moment: datetime) -> float:
        """Return the price of the next kWh."""
        return self.price

    def to_dict(self) -> dict[str, Any]:
        """Return the pricing as JSON-safe data."""
        return {"kind": self.KIND, "price": self.price}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a pricing written by `to_dict`."""
        return cls(data["price"])


@dataclass(frozen=True, slots=True)
class Slab:
    """A tier: the period's kWh up to `up_to_kwh` (inclusive; None: no limit) at `price`."""

    up_to_kwh: float | None
    price: float


@dataclass(frozen=True, slots=True)
class SlabPricing:
    """Price by the kWh imported in the billing period, in tiers.

    Telescopic: each tier's kWh at that tier's price. Non-telescopic: every kWh of the period at
    the price of the tier the period's total reaches. A limit belongs to its tier: with a first
    slab up to 100 kWh, the 100th kWh is still in tier 1.
    """

    KIND: ClassVar[str] = "slabs"

    slabs: tuple[Slab, ...]
    telescopic: bool = True

    def __post_init__(self) -> None:
        if not self.slabs:
            raise TariffError("no_slabs", "a slab tariff needs at least one slab")
        if self.slabs[-1].up_to_kwh is not None:
            raise TariffError("slab_open_end", "the last slab must have no upper limit")
        _check_steps(
            [slab.up_to_kwh for slab in self.slabs],
            "slab_order",
            "slab limits must rise above 0 kWh; only the last slab is open",
        )
        for slab in self.slabs:
            _check_amount("slab price", slab.price)

    def tier_of(self, kwh: float) -> int:
        """Return the tier (from 1) whose range holds a period total of `kwh`."""
        return _step_of([slab.up_to_kwh for slab in self.slabs], kwh)

    def bucket_at(self, moment: datetime) -> str:
        """Return where the kWh imported at `moment` are counted."""
        return ENERGY_BUCKET

    def edges(self) -> tuple[time, ...]:
        """Return the times of day at which the price changes: never."""
        return ()

    def lines(self, import_by_bucket: Mapping[str, float]) -> tuple[ChargeLine, ...]:
        """Itemise the energy charge of a period's kWh: one line per tier reached."""
        kwh = sum(import_by_bucket.values())
        if kwh <= 0:
            return ()
        tier = self.tier_of(kwh)
        if not self.telescopic:
            return (ChargeLine(f"tier_{tier}", kwh, self.slabs[tier - 1].price),)
        lines = []
        lower = 0.0
        for number, slab in enumerate(self.slabs[:tier], 1):
            upper = kwh if slab.up_to_kwh is None else min(kwh, slab.up_to_kwh)
            lines.append(ChargeLine(f"tier_{number}", upper - lower, slab.price))
            lower = upper
        return tuple(lines)

    def marginal_price(self, import_by_bucket: Mapping[str, float], moment: datetime) -> float:
        """Return the price of the tier the next kWh falls in (without any repricing)."""
        kwh = sum(import_by_bucket.values())
        return next(
            slab.price for slab in self.slabs if slab.up_to_kwh is None or kwh < slab.up_to_kwh
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the pricing as JSON-safe data."""
        return {
            "kind": self.KIND,
            "telescopic": self.telescopic,
            "slabs": [[slab.up_to_kwh, slab.price] for slab in self.slabs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a pricing written by `to_dict`."""
        slabs = tuple(Slab(up_to_kwh, price) for up_to_kwh, price in data["slabs"])
        return cls(slabs, telescopic=data["telescopic"])


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A time-of-use window: from `start` to `end` (wall clock) on `weekdays`, at `price`.

    `end` at or before `start` means the window runs past midnight (00:00-00:00 is a whole day).
    `weekdays` (0 = Monday) are the days on which the window *opens*: a Friday 22:00-06:00 window
    covers Saturday until 06:00, and Monday 00:00-06:00 only if Sunday is listed.
    """

    name: str
    start: time
    end: time
    price: float
    weekdays: frozenset[int] = ALL_WEEKDAYS

    def __post_init__(self) -> None:
        if not self.name or self.name == DEFAULT_BUCKET:
            raise TariffError("window_name", f"a window needs a name other than {DEFAULT_BUCKET!r}")
        if not self.weekdays or not self.weekdays <= ALL_WEEKDAYS:
            raise TariffError("window_weekdays", f"window {self.name!r} needs weekdays 0-6")
        _check_amount(f"price of window {self.name!r}", self.price)

    def contains(self, moment: datetime) -> bool:
        """Tell whether the window is open at a (local) moment."""
        clock, weekday = moment.time(), moment.weekday()
        if self.start < self.end:
            return weekday in self.weekdays and self.start <= clock < self.end
        return (weekday in self.weekdays and clock >= self.start) or (
            (weekday - 1) % 7 in self.weekdays and clock < self.end
        )


@dataclass(frozen=True, slots=True)
class TimeOfUsePricing:
    """Price by time of day and weekday: the first open window's price, else `default_price`."""

    KIND: ClassVar[str] = "time_of_use"

    windows: tuple[TimeWindow, ...]
    default_price: float

    def __post_init__(self) -> None:
        if not self.windows:
            raise TariffError("no_windows", "a time-of-use tariff needs at least one window")
        if len({window.name for window in self.windows}) != len(self.windows):
            raise TariffError("window_name", "window names must differ")
        _check_amount("default price", self.default_price)

    def price_at(self, moment: datetime) -> float:
        """Return the price at a (local) moment."""
        return next(
            (window.price for window in self.windows if window.contains(moment)),
            self.default_price,
        )

    def bucket_at(self, moment: datetime) -> str:
        """Return where the kWh imported at `moment` are counted: the open window's name."""
        return next(
            (window.name for window in self.windows if window.contains(moment)), DEFAULT_BUCKET
        )

    def edges(self) -> tuple[time, ...]:
        """Return the times of day at which the price may change."""
        return tuple(sorted({edge for w in self.windows for edge in (w.start, w.end)}))

    def lines(self, import_by_bucket: Mapping[str, float]) -> tuple[ChargeLine, ...]:
        """Itemise the energy charge: one line per window used, then the default price.

        kWh counted under a name that is not a window (the tariff changed mid-period) are
        charged at the default price.
        """
        names = {window.name for window in self.windows}
        lines = [
            ChargeLine(window.name, import_by_bucket.get(window.name, 0.0), window.price)
            for window in self.windows
        ]
        outside = sum(kwh for name, kwh in import_by_bucket.items() if name not in names)
        lines.append(ChargeLine(DEFAULT_BUCKET, outside, self.default_price))
        return tuple(line for line in lines if line.kwh > 0)

    def marginal_price(self, import_by_bucket: Mapping[str, float], moment: datetime) -> float:
        """Return the price of a kWh imported at `moment`."""
        return self.price_at(moment)

    def to_dict(self) -> dict[str, Any]:
        """Return the pricing as JSON-safe data (times as "HH:MM:SS", weekdays 0 = Monday)."""
        return {
            "kind": self.KIND,
            "default_price": self.default_price,
            "windows": [
                {
                    "name": window.name,
                    "start": window.start.isoformat(),
                    "end": window.end.isoformat(),
                    "price": window.price,
                    "weekdays": sorted(window.weekdays),
                }
                for window in self.windows
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a pricing written by `to_dict`."""
        windows = tuple(
            TimeWindow(
                window["name"],
                time.fromisoformat(window["start"]),
                time.fromisoformat(window["end"]),
                window["price"],
                frozenset(window["weekdays"]),
            )
            for window in data["windows"]
        )
        return cls(windows, data["default_price"])


type Pricing = FlatPricing | SlabPricing | TimeOfUsePricing

_PRICINGS: dict[str, type[Pricing]] = {
    kind.KIND: kind for kind in (FlatPricing, SlabPricing, TimeOfUsePricing)
}


@dataclass(frozen=True, slots=True)
class PerKwCapacity:
    """A capacity charge per kW of the period's peak, never on less than `minimum_kw`.

    Flanders charges the month's highest 15-minute demand, at least 2.5 kW.
    """

    KIND: ClassVar[str] = "per_kw"

    price: float  # per kW, per billing period
    minimum_kw: float = 0.0

    def __post_init__(self) -> None:
        _check_amount("price per kW", self.price)
        _check_amount("minimum kW", self.minimum_kw)

    def charge(self, peak_kw: float) -> float:
        """Return the charge of a period whose peak is `peak_kw`."""
        return max(peak_kw, self.minimum_kw) * self.price

    def to_dict(self) -> dict[str, Any]:
        """Return the charge as JSON-safe data."""
        return {"kind": self.KIND, "price": self.price, "minimum_kw": self.minimum_kw}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a charge written by `to_dict`."""
        return cls(data["price"], data["minimum_kw"])


@dataclass(frozen=True, slots=True)
class CapacityBand:
    """A step of a stepped capacity charge: a peak up to `up_to_kw` (inclusive; None: no limit)."""

    up_to_kw: float | None
    charge: float


@dataclass(frozen=True, slots=True)
class BandedCapacity:
    """A capacity charge stepped by the period's peak: the charge of the band it falls in.

    Norway steps the monthly charge by the mean of the month's three highest daily peaks.
    """

    KIND: ClassVar[str] = "bands"

    bands: tuple[CapacityBand, ...]

    def __post_init__(self) -> None:
        if not self.bands or self.bands[-1].up_to_kw is not None:
            raise TariffError("band_open_end", "the last capacity band must have no upper limit")
        _check_steps(
            [band.up_to_kw for band in self.bands],
            "band_order",
            "band limits must rise above 0 kW; only the last band is open",
        )
        for band in self.bands:
            _check_amount("band charge", band.charge)

    def band_of(self, peak_kw: float) -> int:
        """Return the band (from 1) a peak falls in."""
        return _step_of([band.up_to_kw for band in self.bands], peak_kw)

    def charge(self, peak_kw: float) -> float:
        """Return the charge of a period whose peak is `peak_kw`."""
        return self.bands[self.band_of(peak_kw) - 1].charge

    def to_dict(self) -> dict[str, Any]:
        """Return the charge as JSON-safe data."""
        return {"kind": self.KIND, "bands": [[band.up_to_kw, band.charge] for band in self.bands]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a charge written by `to_dict`."""
        return cls(tuple(CapacityBand(up_to_kw, charge) for up_to_kw, charge in data["bands"]))


type CapacityPricing = PerKwCapacity | BandedCapacity

_CAPACITY_PRICINGS: dict[str, type[CapacityPricing]] = {
    kind.KIND: kind for kind in (PerKwCapacity, BandedCapacity)
}


class BillingPeriod(NamedTuple):
    """A billing period: from `start` (inclusive) to `end` (exclusive), local midnights."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        """Tell whether a moment lies in the period."""
        return _utc(self.start) <= _utc(moment) < _utc(self.end)


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """When billing periods begin: every `months` (1 or 2) months, at 00:00 on `start_day`.

    Two-monthly periods begin in `anchor_month` (1-12) and every second month from it, so
    anchor 1 gives Jan-Feb, Mar-Apr, ... and anchor 2 gives Feb-Mar, Apr-May, ... Start days
    stop at 28 so that every month has one.
    """

    months: int = 1
    start_day: int = 1
    anchor_month: int = 1

    def __post_init__(self) -> None:
        if self.months not in (1, 2):
            raise TariffError("period_months", "a billing period is 1 or 2 months long")
        if not 1 <= self.start_day <= 28:
            raise TariffError("start_day", "a billing period starts on a day from 1 to 28")
        if not 1 <= self.anchor_month <= 12:
            raise TariffError("anchor_month", "the anchor month is from 1 to 12")

    def period(self, moment: datetime) -> BillingPeriod:
        """Return the billing period that holds a moment, in the moment's time zone."""
        _require_aware(moment)
        month = moment.year * 12 + moment.month - 1  # months since year 0, January = 0
        if moment.day < self.start_day:
            month -= 1
        month -= (month - (self.anchor_month - 1)) % self.months
        return BillingPeriod(self._start(month, moment), self._start(month + self.months, moment))

    def _start(self, month: int, moment: datetime) -> datetime:
        return datetime(month // 12, month % 12 + 1, self.start_day, tzinfo=moment.tzinfo)


@dataclass(frozen=True, slots=True)
class Tariff:
    """Everything that decides a bill: pricing, billing cycle, charges, tax, export price.

    The fixed charge is per billing period (per two months for two-monthly billing), and so is
    the capacity charge, on the period's peak; tax is a percentage of the energy, fixed and
    capacity charges; the export price credits each kWh exported, untaxed.
    """

    pricing: Pricing
    billing: BillingCycle = BillingCycle()
    fixed_charge: float = 0.0
    tax_percent: float = 0.0
    export_price: float = 0.0
    capacity: CapacityPricing | None = None  # charged on the period's capacity peak

    def __post_init__(self) -> None:
        _check_amount("fixed charge", self.fixed_charge)
        _check_amount("tax", self.tax_percent)
        _check_amount("export price", self.export_price)

    def billing_period(self, moment: datetime) -> BillingPeriod:
        """Return the billing period that holds a (local) moment."""
        return self.billing.period(moment)

    def to_dict(self) -> dict[str, Any]:
        """Return the tariff as JSON-safe data, for a config entry's options."""
        return {
            "version": TARIFF_VERSION,
            "pricing": self.pricing.to_dict(),
            "billing": {
                "months": self.billing.months,
                "start_day": self.billing.start_day,
                "anchor_month": self.billing.anchor_month,
            },
            "fixed_charge": self.fixed_charge,
            "tax_percent": self.tax_percent,
            "export_price": self.export_price,
            **({} if self.capacity is None else {"capacity": self.capacity.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a tariff written by `to_dict`; raise `TariffError` if it is wrong or malformed."""
        if data.get("version") != TARIFF_VERSION:
            raise TariffError("malformed", f"unknown tariff version {data.get('version')!r}")
        try:
            billing = data["billing"]
            capacity = data.get("capacity")
            return cls(
                _PRICINGS[data["pricing"]["kind"]].from_dict(data["pricing"]),
                BillingCycle(billing["months"], billing["start_day"], billing["anchor_month"]),
                data["fixed_charge"],
                data["tax_percent"],
                data["export_price"],
                None
                if capacity is None
                else _CAPACITY_PRICINGS[capacity["kind"]].from_dict(capacity),
            )
        except TariffError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise TariffError("malformed", f"not a stored tariff: {err!r}") from err


@dataclass(frozen=True, slots=True)
class Bill:
    """An itemised bill for a billing period, or for the part of it so far.

    A bill so far carries the whole fixed charge: it will be charged however the period ends.
    """

    period: BillingPeriod
    import_kwh: float
    export_kwh: float
    lines: tuple[ChargeLine, ...]
    fixed_charge: float
    tax: float
    export_credit: float
    capacity_kw: float | None = None  # the period's capacity peak, with a capacity charge
    capacity_charge: float = 0.0

    @property
    def energy_charge(self) -> float:
        """What the imported kWh cost."""
        return sum(line.amount for line in self.lines)

    @property
    def total(self) -> float:
        """What is owed: energy, fixed and capacity charges and tax, less the export credit."""
        return (
            self.energy_charge
            + self.fixed_charge
            + self.capacity_charge
            + self.tax
            - self.export_credit
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the bill as JSON-safe data (energy charge and total included, for people)."""
        return {
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "import_kwh": self.import_kwh,
            "export_kwh": self.export_kwh,
            "lines": [line.to_dict() for line in self.lines],
            "energy_charge": self.energy_charge,
            "fixed_charge": self.fixed_charge,
            "capacity_kw": self.capacity_kw,
            "capacity_charge": self.capacity_charge,
            "tax": self.tax,
            "export_credit": self.export_credit,
            "total": self.total,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a bill written by `to_dict`."""
        return cls(
            BillingPeriod(
                datetime.fromisoformat(data["period_start"]),
                datetime.fromisoformat(data["period_end"]),
            ),
            data["import_kwh"],
            data["export_kwh"],
            tuple(ChargeLine.from_dict(line) for line in data["lines"]),
            data["fixed_charge"],
            data["tax"],
            data["export_credit"],
            data.get("capacity_kw"),
            data.get("capacity_charge", 0.0),
        )


@dataclass(slots=True)
class _Usage:
    """What a period has imported (by pricing bucket) and exported so far."""

    import_by_bucket: dict[str, float] = field(default_factory=dict)
    export_kwh: float = 0.0

    def add(self, bucket: str, import_kwh: float, export_kwh: float) -> None:
        self.import_by_bucket[bucket] = self.import_by_bucket.get(bucket, 0.0) + import_kwh
        self.export_kwh += export_kwh


def _energy_charge(pricing: Pricing, usage: _Usage) -> float:
    return sum(line.amount for line in pricing.lines(usage.import_by_bucket))


def _bill(
    tariff: Tariff, period: BillingPeriod, usage: _Usage, capacity_kw: float | None = None
) -> Bill:
    lines = tariff.pricing.lines(usage.import_by_bucket)
    energy_charge = sum(line.amount for line in lines)
    capacity_charge = 0.0
    if tariff.capacity is None:
        capacity_kw = None  # no capacity charge: the peak is not part of the bill
    elif capacity_kw is not None:
        capacity_charge = tariff.capacity.charge(capacity_kw)
    return Bill(
        period,
        sum(usage.import_by_bucket.values()),
        usage.export_kwh,
        lines,
        tariff.fixed_charge,
        (energy_charge + tariff.fixed_charge + capacity_charge) * tariff.tax_percent / 100,
        usage.export_kwh * tariff.export_price,
        capacity_kw,
        capacity_charge,
    )


@dataclass(frozen=True, slots=True)
class _Piece:
    """A part of an interval with one day, one period and one price."""

    moment: datetime  # the middle of the piece, local: it picks the day, the period, the price
    import_kwh: float
    export_kwh: float


def _pieces(
    pricing: Pricing, start: datetime, end: datetime, import_kwh: float, export_kwh: float
) -> list[_Piece]:
    """Cut an interval at local midnights and price edges, sharing its energy by duration."""
    zone = start.tzinfo
    first, last = _utc(start), _utc(end)
    if first == last:
        return [_Piece(start, import_kwh, export_kwh)]
    end = end.astimezone(zone)
    clocks = (time(0), *pricing.edges())
    days = (start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1))
    cuts = {_utc(datetime.combine(day, clock, zone)) for day in days for clock in clocks}
    points = [first, *sorted(cut for cut in cuts if first < cut < last), last]
    duration = last - first
    return [
        _Piece(
            (a + (b - a) / 2).astimezone(zone),
            import_kwh * ((b - a) / duration),
            export_kwh * ((b - a) / duration),
        )
        for a, b in pairwise(points)
    ]


def bill_for_intervals(
    tariff: Tariff,
    intervals: Iterable[EnergyInterval],
    period: BillingPeriod,
    capacity_kw: float | None = None,
) -> Bill:
    """Itemise a period's bill from energy intervals; the parts outside the period are ignored.

    Each interval's energy is spread uniformly over it and cut exactly as `BillAccumulator`
    cuts it, so both give the same bill for the same intervals. `capacity_kw`: the period's
    capacity peak, for a tariff with a capacity charge (None: not known, no charge).
    """
    usage = _Usage()
    for start, end, import_kwh, export_kwh in intervals:
        for piece in _pieces(tariff.pricing, start, end, import_kwh, export_kwh):
            if period.contains(piece.moment):
                bucket = tariff.pricing.bucket_at(piece.moment)
                usage.add(bucket, piece.import_kwh, piece.export_kwh)
    return _bill(tariff, period, usage, capacity_kw)


def bill_for(
    tariff: Tariff,
    consumption_hourly: Iterable[HourlyEnergy],
    period: BillingPeriod,
    capacity_kw: float | None = None,
) -> Bill:
    """Itemise a period's bill from hourly statistics: (hour start, kWh imported, kWh exported).

    Each hour is 60 real minutes from its start. An hour that straddles the period's start or end
    (time zones with half-hour offsets put UTC hours across local midnight) counts in part.
    """
    return bill_for_intervals(
        tariff,
        (
            (hour, _utc(hour) + HOUR, imported, exported)
            for hour, imported, exported in consumption_hourly
        ),
        period,
        capacity_kw,
    )


@dataclass(frozen=True, slots=True)
class IntervalCost:
    """What one interval added to the bills."""

    import_kwh: float
    export_kwh: float
    energy_charge: float  # the increase of the energy charge (of two periods if it straddles)
    export_credit: float
    effective_price: float  # energy_charge / import_kwh; the marginal price if nothing imported


@dataclass(frozen=True, slots=True)
class DayCost:
    """What a day's energy cost. Fixed charges belong to periods, not days."""

    day: date
    import_kwh: float
    export_kwh: float
    energy_charge: float
    tax: float
    export_credit: float

    @property
    def total(self) -> float:
        """The day's energy charge and its tax, less the export credit."""
        return self.energy_charge + self.tax - self.export_credit


class BillAccumulator:
    """The cost of energy as it flows: today, the billing period so far, and past periods.

    Feed it every interval of measured energy, in time order, with `add`. Everything it reports
    is as of the end of the last interval added, so add empty intervals to move time forward
    (one per poll does it): that turns days and periods over and moves time-of-use prices on.

    The *effective price* of an interval is what it added to the energy charge per kWh imported,
    so the effective prices times the kWh sum to the energy charge exactly, for every pricing
    kind. It equals the marginal price except when a non-telescopic slab limit is crossed: that
    interval also pays the repricing of all earlier kWh of the period, and its price spikes once.
    An Energy dashboard that multiplies each import delta by a price entity gets the exact energy
    charge if the entity shows an interval's effective price before the import it prices.
    """

    def __init__(self, tariff: Tariff, start: datetime) -> None:
        _require_aware(start)
        self._tariff = tariff
        self._period = tariff.billing_period(start)
        self._usage = _Usage()
        self._day = start.date()
        self._day_usage = _Usage()
        self._day_energy_charge = 0.0
        self._last_end = start
        self._effective_price = self.marginal_price
        self._history: list[Bill] = []
        # The period's capacity peak so far (kW), as the site measures it; None: not known.
        self.capacity_kw: float | None = None

    @property
    def tariff(self) -> Tariff:
        """The tariff the energy is priced with."""
        return self._tariff

    @property
    def last_end(self) -> datetime:
        """The end of the last interval added: the moment everything here is true at."""
        return self._last_end

    @property
    def bill(self) -> Bill:
        """The current period's bill so far, with the whole fixed charge and the peak so far."""
        return _bill(self._tariff, self._period, self._usage, self.capacity_kw)

    @property
    def today(self) -> DayCost:
        """What today's energy has cost."""
        energy_charge = self._day_energy_charge
        return DayCost(
            self._day,
            sum(self._day_usage.import_by_bucket.values()),
            self._day_usage.export_kwh,
            energy_charge,
            energy_charge * self._tariff.tax_percent / 100,
            self._day_usage.export_kwh * self._tariff.export_price,
        )

    @property
    def marginal_price(self) -> float:
        """The price of the next kWh: the tier the period is in, or the time-of-use price now."""
        return self._tariff.pricing.marginal_price(self._usage.import_by_bucket, self._last_end)

    @property
    def effective_price(self) -> float:
        """The effective price of the last interval added (see the class docstring)."""
        return self._effective_price

    @property
    def history(self) -> tuple[Bill, ...]:
        """The bills of the last closed periods, oldest first (periods without data are absent)."""
        return tuple(self._history)

    def add(
        self, start: datetime, end: datetime, import_kwh: float, export_kwh: float
    ) -> IntervalCost:
        """Account the energy of an interval, spread uniformly over it.

        An interval that starts before the last one ended is moved to start where it ended, so
        measured energy is never dropped and time never runs backwards.
        """
        _require_aware(start)
        _require_aware(end)
        if _utc(end) < _utc(start):
            raise ValueError(f"interval ends ({end}) before it starts ({start})")
        if (
            not (math.isfinite(import_kwh) and math.isfinite(export_kwh))
            or min(import_kwh, export_kwh) < 0
        ):
            raise ValueError(f"energy must be finite and not negative: {import_kwh}, {export_kwh}")
        if _utc(start) < _utc(self._last_end):
            start = self._last_end.astimezone(start.tzinfo)
            end = max(end, start, key=_utc)
        energy_charge = 0.0
        for piece in _pieces(self._tariff.pricing, start, end, import_kwh, export_kwh):
            self._advance_to(piece.moment)
            pricing = self._tariff.pricing
            before = _energy_charge(pricing, self._usage)
            bucket = pricing.bucket_at(piece.moment)
            self._usage.add(bucket, piece.import_kwh, piece.export_kwh)
            cost = _energy_charge(pricing, self._usage) - before
            self._day_usage.add(bucket, piece.import_kwh, piece.export_kwh)
            self._day_energy_charge += cost
            energy_charge += cost
        self._last_end = end
        self._advance_to(end)
        self._effective_price = (
            energy_charge / import_kwh if import_kwh > 0 else self.marginal_price
        )
        return IntervalCost(
            import_kwh,
            export_kwh,
            energy_charge,
            export_kwh * self._tariff.export_price,
            self._effective_price,
        )

    def _advance_to(self, moment: datetime) -> None:
        if not self._period.contains(moment):
            self._history = [*self._history, self.bill][-HISTORY_LENGTH:]
            self._period = self._tariff.billing_period(moment)
            self._usage = _Usage()
            self.capacity_kw = None
        if moment.date() != self._day:
            self._day = moment.date()
            self._day_usage = _Usage()
            self._day_energy_charge = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-safe data, to continue exactly after a restart."""
        return {
            "version": ACCUMULATOR_VERSION,
            "period_start": self._period.start.isoformat(),
            "period_end": self._period.end.isoformat(),
            "import_kwh": dict(self._usage.import_by_bucket),
            "export_kwh": self._usage.export_kwh,
            "day": self._day.isoformat(),
            "day_import_kwh": dict(self._day_usage.import_by_bucket),
            "day_export_kwh": self._day_usage.export_kwh,
            "day_energy_charge": self._day_energy_charge,
            "last_end": self._last_end.isoformat(),
            "effective_price": self._effective_price,
            "history": [bill.to_dict() for bill in self._history],
            "capacity_kw": self.capacity_kw,
        }

    @classmethod
    def from_dict(cls, tariff: Tariff, data: Mapping[str, Any]) -> Self:
        """Continue from `to_dict` data; raise `ValueError` if the data is not such a state.

        With a changed tariff the current period's kWh are repriced under it (kWh of a window
        the tariff no longer has are charged at its default price); closed bills stay as they
        were. A changed billing cycle takes effect when the current period ends: the first period
        of the new cycle then began in the past and holds only the kWh since.
        """
        if data.get("version") != ACCUMULATOR_VERSION:
            raise ValueError(f"unknown accumulator version {data.get('version')!r}")
        try:
            accumulator = cls(tariff, datetime.fromisoformat(data["last_end"]))
            accumulator._period = BillingPeriod(
                datetime.fromisoformat(data["period_start"]),
                datetime.fromisoformat(data["period_end"]),
            )
            accumulator._usage = _Usage(dict(data["import_kwh"]), data["export_kwh"])
            accumulator._day = date.fromisoformat(data["day"])
            accumulator._day_usage = _Usage(dict(data["day_import_kwh"]), data["day_export_kwh"])
            accumulator._day_energy_charge = data["day_energy_charge"]
            accumulator._effective_price = data["effective_price"]
            accumulator._history = [Bill.from_dict(bill) for bill in data["history"]]
            accumulator.capacity_kw = data.get("capacity_kw")
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a stored bill accumulator: {err!r}") from err
        return accumulator
