"""Bill projection: what this billing period's consumption and bill will come to.

Each remaining hour of the period is expected to consume what that hour of that weekday did on
average over the last weeks (a weekday-by-hour profile), times the *trend*: how consumption has
been moving against the profile. The trend is fitted to the daily ratios of actual to expected
consumption over those weeks, the period so far included, as no change, as a ramp (a straight
line, as heating or cooling seasons come and go) or as a step (a new level from some day on, as
when an appliance arrives or leaves). The better of ramp and step counts as far as the data bear
it out: scaled by 1 - B/F, where F is its gain over no change against its own scatter and the bar
B is 4 for a ramp and 7 for a step (the best of many splits, which noise alone often makes look
good), so it counts for nothing below the bar. A step holds; a ramp goes on for two weeks and
then holds, as seasons turn and a ramp that noise made up must not run away; the factor stays
within 0.25-4.
Ramps matter: a profile of the last four weeks lags a season by two weeks, which on a household
with a heat pump misses spring and autumn bills by a fifth and more; but a ramp fitted to a step
carries it on and on, hence both.

The low and high projections are a nominal 90 % range from the scatter of the daily ratios
around the fit: day-to-day noise over the days to come plus the uncertainty of the level. It
takes days to vary independently and the fit to be right, so spells of weather and turns of
season put the actual bill outside it more often than one time in ten. Export is
projected the same way, so the bill includes the export credit still to come; the low and high
bills vary the import only.

Without a week of history the period's own average hourly consumption so far stands in for the
profile (with the same trend, fitted to the period's days); without two days of that either,
there is no projection.

Data: hourly rows (hour start, kWh imported, kWh exported) as long-term statistics give them:
UTC hours, each 60 real minutes, sorted into weekday-hour slots and days by the user's wall
clock, so a DST day simply has 23 or 25 of them. A missing hour is unknown, not zero: it is left
out of the profile and the trend. The consumption so far is the sum of the rows given:
statistics of a cumulative counter put a gap's energy into the hour after it, so nothing is
lost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from statistics import fmean

from .tariff import (
    HOUR,
    Bill,
    BillingPeriod,
    EnergyInterval,
    HourlyEnergy,
    SlabPricing,
    Tariff,
    bill_for_intervals,
)

DEFAULT_WEEKS = 4
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
MIN_PROFILE_HOURS = 7 * 24  # hours of history a profile needs: one week's worth
MIN_PERIOD_HOURS = 2 * 24  # hours of the period so far that its average needs
MIN_DAY_HOURS = 12  # hours a day needs for its ratio to count towards the trend
MIN_STEP_DAYS = 3  # days on either side of a step; a trend needs twice as many
RAMP_DAYS_AHEAD = 14  # a ramp goes on this far, then holds
# A ramp or step whose F is below this counts for nothing. A step is the best of many
# splits, so noise alone makes a large F more often: it has to clear a higher bar.
RAMP_SIGNIFICANCE = 4.0
STEP_SIGNIFICANCE = 7.0
TREND_LIMITS = (0.25, 4.0)
RANGE_Z = 1.645  # a 90 % range: 5 % below the low, 5 % above the high
NOT_ENOUGH_DATA = "not_enough_data"

type _Slot = tuple[int, int]  # (weekday, 0 = Monday; hour of the local day)
type _Series = Sequence[tuple[datetime, float]]  # (hour start, local; kWh of one quantity)
type _Profile = dict[_Slot, float]  # expected kWh in an hour of each slot

_SLOTS = [(weekday, hour) for weekday in range(7) for hour in range(24)]


class ProjectionMethod(StrEnum):
    """What the remaining hours of the period were estimated from."""

    WEEKLY_PROFILE = "weekly_profile"
    PERIOD_AVERAGE = "period_average"


@dataclass(frozen=True, slots=True)
class Projection:
    """The period's expected consumption and bill, with a low-high range."""

    period: BillingPeriod
    method: ProjectionMethod
    trend: float  # the factor on the profile's import now (along a ramp it moves on)
    import_so_far_kwh: float
    tier: int | None  # the slab tier the expected import reaches; None without slab pricing
    bill: Bill
    bill_low: Bill
    bill_high: Bill

    @property
    def import_kwh(self) -> float:
        """The period's expected import."""
        return self.bill.import_kwh

    @property
    def import_low_kwh(self) -> float:
        """The low end of the period's import (90 % range)."""
        return self.bill_low.import_kwh

    @property
    def import_high_kwh(self) -> float:
        """The high end of the period's import (90 % range)."""
        return self.bill_high.import_kwh

    @property
    def remaining_import_kwh(self) -> float:
        """The import expected in the rest of the period."""
        return self.import_kwh - self.import_so_far_kwh


@dataclass(frozen=True, slots=True)
class NoProjection:
    """Why there is no projection."""

    reason: str


@dataclass(frozen=True, slots=True)
class _HourPart:
    """A remaining part of an hour of statistics: [start, end), `share` of its hour."""

    start: datetime
    end: datetime
    share: float
    slot: _Slot
    days_ahead: float


@dataclass(frozen=True, slots=True)
class _DayRatio:
    """How a past day compared with the profile."""

    days_ago: float  # from the middle of the day's hours to now
    ratio: float  # the day's kWh over the profile's kWh for the same hours
    weight: float  # the profile's kWh: a day expected to consume more says more


@dataclass(frozen=True, slots=True)
class _Trend:
    """The factor on the profile `days` from now: intercept + slope x days, within limits.

    The slope applies for `RAMP_DAYS_AHEAD` days at most.
    """

    intercept: float
    slope: float
    noise: float  # the scatter of the daily ratios around the fit
    days: int  # how many daily ratios it was fitted to

    def factor(self, days: float) -> float:
        """Return the factor on the profile at a number of days from now."""
        low, high = TREND_LIMITS
        return min(max(self.intercept + self.slope * min(days, RAMP_DAYS_AHEAD), low), high)


def _slot(moment: datetime) -> _Slot:
    return moment.weekday(), moment.hour


def _days_between(earlier: datetime, later: datetime) -> float:
    return (later.astimezone(UTC) - earlier.astimezone(UTC)) / DAY


def _weekly_profile(series: _Series) -> _Profile:
    """Return the mean kWh of each weekday-hour of the series.

    A weekday-hour the series lacks takes the mean of that hour on the other weekdays, then
    the mean of all weekday-hours.
    """
    by_slot: defaultdict[_Slot, list[float]] = defaultdict(list)
    for start, kwh in series:
        by_slot[_slot(start)].append(kwh)
    means = {slot: fmean(values) for slot, values in by_slot.items()}
    by_hour = {
        hour: fmean(value for (_, other), value in means.items() if other == hour)
        for hour in {hour for _, hour in means}
    }
    overall = fmean(means.values())
    return {slot: means.get(slot, by_hour.get(slot[1], overall)) for slot in _SLOTS}


def _flat_profile(series: _Series) -> _Profile:
    """Return the series' average hourly kWh for every weekday-hour."""
    return dict.fromkeys(_SLOTS, fmean(kwh for _, kwh in series))


def _daily_ratios(profile: _Profile, series: _Series, now: datetime) -> list[_DayRatio]:
    """Compare each local day that has enough hours with the profile, oldest first.

    The weights are scaled to average 1, so scatter is in squared ratio per day.
    """
    by_day: defaultdict[date, list[tuple[datetime, float]]] = defaultdict(list)
    for start, kwh in series:
        by_day[start.date()].append((start, kwh))
    days = []
    for rows in by_day.values():
        expected = sum(profile[_slot(start)] for start, _ in rows)
        if len(rows) >= MIN_DAY_HOURS and expected > 0:
            days_ago = fmean(_days_between(start, now) for start, _ in rows)
            days.append((days_ago, sum(kwh for _, kwh in rows) / expected, expected))
    scale = len(days) / sum(expected for *_, expected in days) if days else 0.0
    return sorted(
        (_DayRatio(days_ago, ratio, expected * scale) for days_ago, ratio, expected in days),
        key=lambda day: -day.days_ago,
    )


def _mean_and_scatter(days: Sequence[_DayRatio]) -> tuple[float, float]:
    """Return the weighted mean ratio and the weighted sum of squares around it."""
    mean = sum(day.weight * day.ratio for day in days) / sum(day.weight for day in days)
    return mean, sum(day.weight * (day.ratio - mean) ** 2 for day in days)


def _fit_trend(days: Sequence[_DayRatio]) -> _Trend:
    """Fit no change, a ramp and a step to daily ratios, and keep what the data bear out."""
    count = len(days)
    if count == 0:
        return _Trend(1.0, 0.0, 0.0, 0)
    mean, flat_scatter = _mean_and_scatter(days)
    if count < 2 * MIN_STEP_DAYS:
        return _Trend(mean, 0.0, math.sqrt(flat_scatter / max(count - 1, 1)), count)
    centre = sum(day.weight * day.days_ago for day in days) / count  # the weights sum to count
    spread = sum(day.weight * (day.days_ago - centre) ** 2 for day in days)
    slope = sum(day.weight * (day.days_ago - centre) * (day.ratio - mean) for day in days) / spread
    ramp_scatter = sum(
        day.weight * (day.ratio - mean - slope * (day.days_ago - centre)) ** 2 for day in days
    )
    steps = []
    for split in range(MIN_STEP_DAYS, count - MIN_STEP_DAYS + 1):
        level_after, scatter_after = _mean_and_scatter(days[split:])
        steps.append((_mean_and_scatter(days[:split])[1] + scatter_after, level_after))
    step_scatter, level_after = min(steps)
    ramp = ramp_scatter <= step_scatter
    scatter, parameters, bar = (
        (ramp_scatter, 2, RAMP_SIGNIFICANCE) if ramp else (step_scatter, 3, STEP_SIGNIFICANCE)
    )
    gain = flat_scatter - scatter
    if scatter > 0:
        f_ratio = gain * (count - parameters) / scatter
    else:
        f_ratio = math.inf if gain > 0 else 0.0
    weight = max(0.0, 1 - bar / f_ratio) if f_ratio > 0 else 0.0
    noise = math.sqrt(scatter / (count - parameters))
    if ramp:
        # counted in days ago the line runs backwards: ahead, its slope changes sign
        return _Trend(mean - weight * slope * centre, -weight * slope, noise, count)
    return _Trend(mean + weight * (level_after - mean), 0.0, noise, count)


def _forecast(
    profile: _Profile, basis: _Series, parts: Sequence[_HourPart], now: datetime
) -> tuple[list[float], _Trend, float]:
    """Return the kWh expected in each remaining part, the trend, and the 90 % half-range."""
    trend = _fit_trend(_daily_ratios(profile, basis, now))
    kwh = [profile[part.slot] * part.share * trend.factor(part.days_ahead) for part in parts]
    if trend.days == 0:
        return kwh, trend, 0.0
    # day-to-day noise averages over the days to come; the level's uncertainty does not
    days_to_come = max(sum(part.share for part in parts) / 24, 1.0)
    baseline = sum(profile[part.slot] * part.share for part in parts)
    spread = RANGE_Z * trend.noise * baseline * math.sqrt(1 / days_to_come + 1 / trend.days)
    return kwh, trend, spread


def _remaining_parts(now: datetime, end: datetime) -> list[_HourPart]:
    """Cut the rest of the period into (parts of) the UTC hours statistics use."""
    parts = []
    start, stop = now.astimezone(UTC), end.astimezone(UTC)
    while start < stop:
        hour = start.replace(minute=0, second=0, microsecond=0)
        part_end = min(hour + HOUR, stop)
        parts.append(
            _HourPart(
                start.astimezone(now.tzinfo),
                part_end.astimezone(now.tzinfo),
                (part_end - start) / HOUR,
                _slot(hour.astimezone(now.tzinfo)),
                _days_between(now, start),
            )
        )
        start = part_end
    return parts


def project_bill(
    tariff: Tariff,
    hourly: Iterable[HourlyEnergy],
    now: datetime,
    weeks: int = DEFAULT_WEEKS,
    capacity_kw: float | None = None,
) -> Projection | NoProjection:
    """Project the bill of the period that holds `now` (local time).

    `hourly` should cover the last `weeks` weeks and the period so far; other rows, and rows at
    or after `now`, are ignored. Pass `now` at the end of the data you have (the start of the
    current hour when feeding long-term statistics): the rest of the period is projected from
    there. A row of the current hour, if given, counts up to `now`. `capacity_kw`: the period's
    capacity peak so far, for a capacity charge; a peak never falls, so the bill charges it as is
    (what the rest of the period may add to it is not projected).
    """
    if weeks < 1:
        raise ValueError(f"a profile needs at least one week, not {weeks}")
    period = tariff.billing_period(now)
    now_utc = now.astimezone(UTC)
    rows = [
        (hour.astimezone(now.tzinfo), imported, exported)
        for hour, imported, exported in hourly
        if hour.astimezone(UTC) < now_utc
    ]
    complete = [row for row in rows if row[0].astimezone(UTC) + HOUR <= now_utc]
    history = [row for row in complete if row[0].astimezone(UTC) >= now_utc - weeks * WEEK]
    so_far = [row for row in complete if period.contains(row[0])]
    if len(history) >= MIN_PROFILE_HOURS:
        method, basis, profile = ProjectionMethod.WEEKLY_PROFILE, history, _weekly_profile
    elif len(so_far) >= MIN_PERIOD_HOURS:
        method, basis, profile = ProjectionMethod.PERIOD_AVERAGE, so_far, _flat_profile
    else:
        return NoProjection(NOT_ENOUGH_DATA)
    imports = [(start, kwh) for start, kwh, _ in basis]
    exports = [(start, kwh) for start, _, kwh in basis]
    parts = _remaining_parts(now, period.end)
    import_kwh, trend, spread = _forecast(profile(imports), imports, parts, now)
    export_kwh = _forecast(profile(exports), exports, parts, now)[0]

    actual: list[EnergyInterval] = [
        (start, min(start.astimezone(UTC) + HOUR, now_utc), imported, exported)
        for start, imported, exported in rows
        if start.astimezone(UTC) + HOUR > period.start.astimezone(UTC)
    ]

    def bill(change: float) -> Bill:
        """Bill the period with the remaining import changed by `change` kWh in all."""
        remaining = sum(import_kwh)
        scale = max(remaining + change, 0.0) / remaining if remaining > 0 else 1.0
        projected = zip(parts, import_kwh, export_kwh, strict=True)
        return bill_for_intervals(
            tariff,
            [
                *actual,
                *(
                    (part.start, part.end, imported * scale, exported)
                    for part, imported, exported in projected
                ),
            ],
            period,
            capacity_kw,
        )

    expected = bill(0.0)
    pricing = tariff.pricing
    return Projection(
        period,
        method,
        trend.factor(0.0),
        bill_for_intervals(tariff, actual, period).import_kwh,
        pricing.tier_of(expected.import_kwh) if isinstance(pricing, SlabPricing) else None,
        expected,
        bill(-spread),
        bill(spread),
    )


def crossed_into_tier(
    previous: Projection | NoProjection | None, current: Projection | NoProjection
) -> int | None:
    """Return the slab tier the projected import has just risen into, if it has.

    Only a rise between two projections of the same period counts: a new period, a first
    projection or a fall reports nothing.
    """
    if not (isinstance(previous, Projection) and isinstance(current, Projection)):
        return None
    if previous.period != current.period or previous.tier is None or current.tier is None:
        return None
    return current.tier if current.tier > previous.tier else None
