"""Cumulative energy counters: every watt-hour a meter counted, published exactly once.

A meter's energy counter (Wh, cumulative) is not trustworthy as it arrives: it jitters down by a
few mWh between reads, rolls back a few Wh when the meter reboots (it saves to flash now and then),
restarts from 0 when the user clears the data, and a corrupt reply can carry 1e308 or an
overflowed 4294967295. An `EnergyCounter` turns such readings into a *published total* that only
ever rises by energy the meter really counted. It keeps the raw value the total last moved with
(the *base*) and decides, for each reading, with the rules below; every decision is recorded with
its reason (`Decision`).

- Not a counter value (missing, not a finite number, negative, or above `MAX_COUNTER_WH`):
  nothing changes (`MISSING`, `REJECTED`).
- An increase the channel could physically deliver since the base was read (its rated power, with
  a margin, over the time since the last *accepted* reading): counted (`COUNTED`).
- A decrease under `JITTER_WH`: jitter, held; the base stays so the rebound is not counted twice.
- A decrease after the meter rebooted, a larger one after it was away (or Home Assistant was
  down), or one to a value it could have counted since 0 in the elapsed time: `ROLLBACK` or
  `RESET`. The total holds and counting
  resumes from the new value: nothing counted twice, nothing already counted taken back.
- An implausible jump, or an unexplained drop: not published (`REJECTED`). A jump back to within
  reach of the level before the last rollback or reset undoes that drop (`RESTORED`: a meter that
  read 0 for a moment after a reboot). A new level that holds for `CONFIRM_READINGS` readings in a
  row is taken as the new base (`REBASED`: a replaced meter), counting what it rose meanwhile but
  never the jump itself. The same value again is not another reading of the level: a pushed
  status repeats the counters of the last notification that carried them.
- A counter told it reads another raw counter from now on (`switch_source`: a current
  transformer the user marked as reversed, or no longer, swaps the meter's import and export
  counters under the published totals): the total holds and counting resumes from the next
  reading (`SWITCHED`); the jump between the two raw counters is never published.

Whatever the counter could not count (the energy between the last accepted reading and a rollback,
reset or new level) is reported as an `Unaccounted` span: the meters' stored records can fill it
(see `energy.history_plan`); where there are none, it stays uncounted, never guessed. So is a rise
after a reboot (it may hide a rollback), after rejected or missing readings (it is counted when
it is read, maybe in a later hour than it flowed), or after an absence to a value the meter could
have counted from 0 meanwhile (it may hide a reset: the data cleared, then counted past the old
value), with what was counted over it. A reboot told late (the readings after it could not tell
the meter's uptime) may hide a rollback in any of those readings: the span starts at the last
reading that could have told it.

Only the *offset* (total minus base) has to survive a restart exactly: it changes only at the rare
decisions above, so a store written at those moments (`Decision.store_soon`), and now and then
otherwise, restores the exact total. So do a reboot told by a reading the counter could not take
and readings refused since the base (`store_soon` at the first), still to be applied to the next
one, and the spans (`store_soon` too: the history must see each once). A restart also counts as
the meter having been away.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple

# A decrease up to this is measurement jitter (Wh).
JITTER_WH: Final = 1.0
# No household or commercial meter's counter reaches this (1 GWh): a corrupt or overflowed value.
MAX_COUNTER_WH: Final = 1e9
# Readings in a row at a new level before it is believed (a replaced meter).
CONFIRM_READINGS: Final = 3
# Two readings are never taken as closer in time than this (s): clocks and polls jitter.
MIN_ELAPSED_S: Final = 1.0
# What any increase may add beyond the physical bound (Wh): rounding of the device's counters.
ALLOWANCE_WH: Final = 1.0
# How long after a rollback or reset a return to the earlier level undoes it (s).
RESTORE_WINDOW_S: Final = 600.0
# A total shown to the Wh (a sensor's state) was at most about this much more than the total
# (Wh): a total this much lower still shows as it.
SHOWN_ROUNDING_WH: Final = 0.499
# How many recent decisions a counter keeps for diagnostics.
DECISIONS_KEPT: Final = 5
STORAGE_VERSION: Final = 1


class Verdict(StrEnum):
    """What a counter made of one reading."""

    FIRST = "first"  # the first reading: the total starts from it
    COUNTED = "counted"  # a plausible increase (or none), counted
    JITTER = "jitter"  # a decrease under JITTER_WH: held
    ROLLBACK = "rollback"  # fell after a restart or an absence: held, resumes from the new value
    RESET = "reset"  # restarted near 0: held, resumes from the new value
    REJECTED = "rejected"  # not a counter value, an implausible jump or an unexplained drop
    REBASED = "rebased"  # a new level held for several readings: resumes from it
    RESTORED = "restored"  # back near the level before the last drop: the drop was a glitch
    SWITCHED = "switched"  # the first reading of another raw counter: resumes from it
    MISSING = "missing"  # the meter gave no value


# Decisions worth a log line and a place in the diagnostics.
NOTABLE: Final = frozenset(
    {
        Verdict.ROLLBACK,
        Verdict.RESET,
        Verdict.REJECTED,
        Verdict.REBASED,
        Verdict.RESTORED,
        Verdict.SWITCHED,
    }
)


@dataclass(frozen=True, slots=True)
class Unaccounted:
    """A span whose energy a counter could not count; `counted` is what it did count (Wh).

    `refused`: it ends readings the counter refused since its start. Its total lagged the
    meter's meanwhile, so whatever sums it with others (a site's flows) waited for it.
    """

    start: float
    end: float
    counted: float = 0.0
    refused: bool = False


class Decision(NamedTuple):
    """One reading and what the counter made of it.

    A named tuple: as immutable as a frozen dataclass, and made for every counter of every
    meter at every reading at a third of the cost.
    """

    verdict: Verdict
    time: float
    reading: float | str | None  # as read (a text for a value that was not a number)
    total: float | None  # the published total afterwards
    # What a restart needs changed (total - base moved, a span, or the first reading refused
    # since the base): store the counter soon.
    store_soon: bool = False
    unaccounted: Unaccounted | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the decision as JSON-safe data (diagnostics)."""
        return {
            "verdict": self.verdict.value,
            "time": self.time,
            "reading": self.reading,
            "total": self.total,
        }


def counter_value(value: object) -> float | None:
    """Return a reading as a counter value, None if it cannot be one."""
    if type(value) is float:  # most readings: the quick way (NaN fails, infinity is above)
        return value if 0 <= value <= MAX_COUNTER_WH else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= MAX_COUNTER_WH:
        return None
    return number


def _shown(value: object) -> float | str | None:
    if value is None or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return repr(value)[:40]


@dataclass(slots=True)
class _Drop:
    """The base before the last rollback or reset, and what was counted since."""

    base: float
    time: float  # when the base was read
    read: float  # when the drop was read: the end of its span
    counted: float = 0.0


@dataclass(slots=True)
class _Unsure:
    """Since when readings could not tell a reboot, and what was counted since."""

    since: float
    counted: float = 0.0


class EnergyCounter:
    """One cumulative counter's published total, by the module's rules.

    `max_power_w` bounds what the channel can deliver (W); infinite for inputs that are already
    clean (a site's view of its meters' published totals). `total` starts the published total at
    a value (a site's flow); None starts it at the first reading (a meter's own counter).
    """

    __slots__ = (
        "_away",
        "_drop",
        "_floor",
        "_lagging",
        "_pending",
        "_rebooted",
        "_skipped",
        "_unsure",
        "base",
        "base_time",
        "decisions",
        "max_power_w",
        "started",
        "total",
    )

    def __init__(self, max_power_w: float = math.inf, total: float | None = None) -> None:
        """Start with no reading."""
        self.max_power_w = max_power_w
        self.total = total
        self.base: float | None = None
        self.base_time = 0.0
        self.started: float | None = None  # when the first reading was accepted
        self.decisions: deque[Decision] = deque(maxlen=DECISIONS_KEPT)  # notable ones
        self._away = False
        self._drop: _Drop | None = None
        self._pending: list[tuple[float, float]] = []  # (value, time) of a level awaiting belief
        # (total, time) last shown elsewhere (rounded to the Wh) before a restart
        self._floor: tuple[float, float] | None = None
        self._skipped = False  # readings were rejected or missing since the base
        self._lagging = False  # and the last reading was one of them
        # The meter restarted since the base: told by a reading the counter did not take (a
        # Gen1 meter's first after a boot reads invalid), it still holds for the next one.
        self._rebooted = False
        # Readings since the base could not tell a reboot: where a span for one told later starts.
        self._unsure: _Unsure | None = None

    @property
    def lagging(self) -> bool:
        """Return whether the last readings were refused: the total lags the meter's."""
        return self._lagging

    def _limit(self, elapsed: float) -> float:
        """Return the most a plausible increase adds in `elapsed` seconds (Wh)."""
        return self.max_power_w * max(elapsed, MIN_ELAPSED_S) / 3600 + ALLOWANCE_WH

    def read(
        self,
        value: object,
        now: float,
        *,
        rebooted: bool = False,
        away: bool = False,
        boot_unknown: bool = False,
    ) -> Decision:
        """Decide on one reading taken at `now` (unix seconds).

        `rebooted`: the meter restarted since the last reading that could tell (its uptime fell):
        even a small drop is a rollback, up to the first reading taken since. `away`: it could
        not be read for a while (or Home Assistant was down): a larger drop is believed at once.
        `boot_unknown`: the reading cannot tell whether the meter restarted (no uptime).
        """
        rebooted = self._rebooted = rebooted or self._rebooted
        if boot_unknown:
            if self._unsure is None and self.base is not None:
                self._unsure = _Unsure(self.base_time)
        elif self._unsure is not None and not rebooted:
            self._unsure = None  # no reboot since: the readings were what they seemed
        raw = counter_value(value)
        if raw is None:
            verdict = Verdict.MISSING if value is None else Verdict.REJECTED
            return self._decided(verdict, now, value)
        restarted = rebooted or away or self._away
        self._away = False
        if self.base is None:
            if self.started is not None:  # see switch_source
                switched = Unaccounted(self.base_time, now, refused=self._lagging)
                self._accept(raw, now)
                return self._settled(
                    Verdict.SWITCHED,
                    now,
                    raw,
                    store_soon=True,
                    unaccounted=switched,
                )
            self.total = raw if self.total is None else self.total
            self.started = now
            self._accept(raw, now)
            return self._settled(Verdict.FIRST, now, raw, store_soon=True)
        delta = raw - self.base
        limit = self._limit(now - self.base_time)
        if 0 <= delta <= limit:
            # After a reboot the rise may hide a rollback; after rejected or missing readings
            # it lands in a later hour than it flowed; after an absence, a rise to a value the
            # meter could have counted from 0 meanwhile may hide a reset: the records can tell.
            uncertain = rebooted or self._skipped or (restarted and delta > 0 and raw <= limit)
            gap = self._span_until(now, delta) if uncertain else None
            self._count(delta)
            self._accept(raw, now)
            if gap is None and self._floor is None:  # nearly every reading: the short way
                return Decision(Verdict.COUNTED, now, raw, self.total)
            return self._settled(Verdict.COUNTED, now, raw, unaccounted=gap)
        if -JITTER_WH < delta < 0 and not rebooted:
            self._pending.clear()
            # The meter counted nothing beyond the base: the total no longer lags it (a counter
            # cleared under a Wh reads as jitter from then on, and would lag for good). The
            # refusals before may still have hidden a drop: the next rise stays uncertain.
            self._lagging = False
            return self._settled(Verdict.JITTER, now, raw)
        if delta < 0 and (restarted or raw <= limit):
            verdict = Verdict.RESET if raw <= limit else Verdict.ROLLBACK
            return self._resume(verdict, now, raw)
        if delta > 0 and (restored := self._restored(raw, now)) is not None:
            return restored
        return self._wait_for_level(now, raw)

    def _resume(self, verdict: Verdict, now: float, raw: float) -> Decision:
        """Hold the total and count on from `raw`: a rollback or a reset."""
        gap = self._span_until(now)
        assert self.base is not None
        self._drop = _Drop(self.base, self.base_time, now)
        self._accept(raw, now)
        return self._settled(verdict, now, raw, store_soon=True, unaccounted=gap)

    def _span_until(self, now: float, counted: float = 0.0) -> Unaccounted:
        """Return the span to `now` the counter could not count, with `counted` counted over it.

        It starts at the base; after readings that could not tell a reboot, at the last one
        that could: a rollback may hide in any of them.
        """
        unsure = self._unsure
        if unsure is None:
            return Unaccounted(self.base_time, now, counted, self._lagging)
        return Unaccounted(unsure.since, now, unsure.counted + counted)

    def _restored(self, raw: float, now: float) -> Decision | None:
        """Undo the last drop if `raw` is within reach of the level before it; else None."""
        drop = self._drop
        if drop is None or now - drop.time > RESTORE_WINDOW_S:
            return None
        if raw > drop.base + self._limit(now - drop.time):
            return None
        # What the counter rose since the level before the drop, less what was counted since.
        self._count(max(raw - drop.base - drop.counted, 0.0))
        self._drop = None
        self._accept(raw, now)
        # The drop's span was left for the records to fill, but what flowed in it is counted
        # now: a span since the drop with all that was counted since (that span included)
        # takes it back.
        since_drop = Unaccounted(drop.read, now, drop.counted)
        return self._settled(Verdict.RESTORED, now, raw, store_soon=True, unaccounted=since_drop)

    def _wait_for_level(self, now: float, raw: float) -> Decision:
        """Reject a reading off the base; believe a new level once it held long enough."""
        pending = self._pending
        if pending:
            last, last_time = pending[-1]
            if raw == last:
                return self._decided(Verdict.REJECTED, now, raw)
            step = raw - last
            if not -JITTER_WH < step <= self._limit(now - last_time):
                pending.clear()
        pending.append((raw, now))
        if len(pending) < CONFIRM_READINGS:
            return self._decided(Verdict.REJECTED, now, raw)
        first, first_time = pending[0]
        gap = Unaccounted(self.base_time, first_time, refused=self._lagging)
        self._count(max(raw - first, 0.0))
        self._drop = None
        self._accept(raw, now)
        return self._settled(Verdict.REBASED, now, raw, store_soon=True, unaccounted=gap)

    def _count(self, delta: float) -> None:
        assert self.total is not None
        self.total += delta
        if self._drop is not None:
            self._drop.counted += delta
        if self._unsure is not None:
            self._unsure.counted += delta

    def _accept(self, raw: float, now: float) -> None:
        self.base = raw
        self.base_time = now
        self._pending.clear()
        self._skipped = self._lagging = False
        self._rebooted = False

    def _settled(
        self,
        verdict: Verdict,
        now: float,
        raw: float,
        *,
        store_soon: bool = False,
        unaccounted: Unaccounted | None = None,
    ) -> Decision:
        """Record an accepted reading's decision, after a restart's floor if one is pending."""
        if self._floor is not None:
            shown, since = self._floor
            self._floor = None
            assert self.total is not None
            # A span from a stored state older than what was shown (and recorded) before the
            # restart: what it counted up to that was booked then, so it starts there.
            stale = unaccounted is not None and since > unaccounted.start
            below = self.total < shown - SHOWN_ROUNDING_WH
            if below or verdict in NOTABLE or stale:
                # The total shown before the restart stands; what the meter counted since is
                # not known by the counter alone. The span starts at the total as the recorder
                # booked it, not at its rounding: its correction takes back what was booked.
                store_soon = store_soon or below
                self.total = max(self.total, shown)
                refused = unaccounted is not None and unaccounted.refused
                unaccounted = Unaccounted(since, now, self.total - shown, refused)
        # A span (and the end of the refusals before it) must survive a restart: store it soon.
        if unaccounted is not None:
            store_soon = True
            self._unsure = None  # up to here, a reboot told later is the span's to fill
        decision = Decision(verdict, now, raw, self.total, store_soon, unaccounted)
        if verdict in NOTABLE:
            self.decisions.append(decision)
        return decision

    def _decided(self, verdict: Verdict, now: float, value: object) -> Decision:
        first_refused = self.base is not None and not self._skipped
        self._skipped = self._lagging = self.base is not None
        total = self.total
        if self._floor is not None and total is not None:
            # A restart's floor waits for an accepted reading; what was shown stands meanwhile.
            total = max(total, self._floor[0] - SHOWN_ROUNDING_WH)
        # The first refusal may hide a real drop: a restart must still know of it.
        decision = Decision(verdict, now, _shown(value), total, store_soon=first_refused)
        if verdict in NOTABLE:
            self.decisions.append(decision)
        return decision

    def switch_source(self) -> None:
        """Read another raw counter from the next reading on; the published total holds.

        What flows between the last reading of the old counter and the first of the new one is
        an `Unaccounted` span (the records can fill it). Stored with the counter (no base).
        """
        self.base = None
        self._drop = None
        self._pending.clear()

    def hold_at_least(self, shown: float, since: float) -> None:
        """Never publish less than shows as `shown`, shown elsewhere at `since` (before a restart).

        `shown` is rounded to the Wh, as a sensor's state: the total may have been up to
        `SHOWN_ROUNDING_WH` less, and is held at that. Applied at the next accepted reading: a
        restart may have lost the last moments of the stored state while Home Assistant had
        already recorded a higher total. A reading refused before it shows the floor too. Held
        after the stored state is restored: up to its base the counter knows what it counted and
        left to the records, so the span from `since` starts there at the earliest (a span
        before it would be filled twice). A total shown as the stored one shows holds nothing
        new, whenever it was shown (a sensor back from unavailable shows it again): the span
        still starts at the base.
        """
        if self.total is not None and shown <= self.total + SHOWN_ROUNDING_WH:
            return
        self._floor = (shown, max(since, self.base_time))

    def to_dict(self) -> dict[str, Any]:
        """Return what a restart needs: the total, the base, when it was read, and the start.

        And what the next reading must still know: a reboot told by a reading the counter could
        not take (the meter's boot time is stored as moved on, so after a restart nothing else
        tells it), readings refused since the base (they may have hidden a real drop), and
        readings that could not tell a reboot (since when, and what they counted).
        """
        unsure = self._unsure
        return {
            "total": self.total,
            "base": self.base,
            "base_time": self.base_time,
            "started": self.started,
            "rebooted": self._rebooted,
            "skipped": self._skipped,
            "unsure": None if unsure is None else [unsure.since, unsure.counted],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], max_power_w: float = math.inf) -> EnergyCounter:
        """Continue from `to_dict` data; the next reading counts as after an absence.

        Raises ValueError for data that is not such a state.
        """
        try:
            total, base, base_time = data["total"], data["base"], float(data["base_time"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a stored counter: {err!r}") from err
        if (total is not None and counter_value(total) is None) or (
            base is not None and counter_value(base) is None
        ):
            raise ValueError(f"not a stored counter: {data!r}")
        try:
            stored_unsure = data.get("unsure")
            if stored_unsure is None:
                unsure = None
            else:
                since, counted = stored_unsure
                unsure = _Unsure(float(since), float(counted))
        except (TypeError, ValueError) as err:
            raise ValueError(f"not a stored counter: {err!r}") from err
        counter = cls(max_power_w, total)
        counter.base = base
        counter.base_time = base_time
        started = data.get("started")
        counter.started = None if started is None else float(started)
        counter._rebooted = data.get("rebooted") is True
        counter._skipped = counter._lagging = data.get("skipped") is True
        counter._unsure = unsure
        counter._away = True
        return counter
