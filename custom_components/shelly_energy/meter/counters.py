"""A meter's energy counters, each read through the cumulative counter model.

`MeterCounters` replaces every raw counter of a snapshot (each phase's or channel's import and
export, and the three-phase total) by its published total (`energy.counter`), keeps what the
counters could not count (`Unaccounted` spans, for the history to fill from the stored records),
and stores all of it across restarts. Counters are keyed by the direction they are published in
("a_in" is phase A's imported energy, "total_out" the three-phase exported energy): the snapshot
arrives with the user's corrections applied, so a reversed CT's import is fed by the device's
export counter. Marking a CT as reversed (or no longer) switches the raw counters under its
published totals, and those of the three-phase total summed again from the phases; they go on
from what they showed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import is_
from typing import Any, Final

from ..energy.counter import NOTABLE, Decision, EnergyCounter, Unaccounted, Verdict
from .snapshot import TOTAL_ID, MeterSnapshot

_LOGGER = logging.getLogger(__name__)

# 1: keyed by the device's direction, before any reversed CT; 2: as published, with `reversed`.
STORAGE_VERSION: Final = 2
# Spans older than this cannot be filled from records any more (the meters keep ~60 days).
SPAN_RETENTION_S: Final = 62 * 86_400
# A boot time (clock less uptime) later than the last by more than this is a reboot: both are
# whole seconds, read at slightly different moments.
BOOT_TOLERANCE_S: Final = 5.0


def restarted(last_boot: float | None, boot: float | None) -> bool:
    """Return whether a meter's boot time moved on from the last one known: it restarted."""
    return last_boot is not None and boot is not None and boot > last_boot + BOOT_TOLERANCE_S


def counter_key(channel_id: str, imported: bool) -> str:
    """Return the key of a counter: the reading's id and the direction it is published in."""
    return f"{channel_id}_{'in' if imported else 'out'}"


def _channel_of(key: str) -> str:
    """Return the reading's id of a counter's key."""
    return key.rpartition("_")[0]


@dataclass(frozen=True, slots=True)
class CounterSpan:
    """A span one counter could not count, numbered in the order they happened."""

    seq: int
    key: str
    span: Unaccounted


class MeterCounters:
    """The published totals of one meter's counters, poll after poll."""

    def __init__(
        self,
        name: str,
        channel_max_power_w: float,
        channels: int,
        reversed_channels: frozenset[str] = frozenset(),
    ) -> None:
        """Bound each of the `channels` by `channel_max_power_w`; the total by their sum.

        `reversed_channels`: the channels whose CT the snapshots arrive reversed for.
        """
        self._name = name
        self._reversed = reversed_channels
        self._channel_max_power_w = channel_max_power_w
        self._channels = channels
        self._counters: dict[str, EnergyCounter] = {}
        self._spans: list[CounterSpan] = []
        self._seq = 0
        self._latest: dict[str, int] = {}  # each channel's latest span number
        self._rejecting: set[str] = set()  # counters whose last reading was rejected
        self._keys: dict[str, tuple[str, str]] = {}  # each reading's (import, export) keys
        self._boot: float | None = None  # when the meter last started (its clock)
        self._boot_unknown = False  # the last snapshot could not tell it

    @property
    def spans(self) -> tuple[CounterSpan, ...]:
        """Return the spans kept for the history, oldest first."""
        return tuple(self._spans)

    @property
    def span_count(self) -> int:
        """Return how many spans there have been: the number of the latest."""
        return self._seq

    def latest_span(self, channel_id: str) -> int:
        """Return the number of the latest span of a phase's or channel's counters (0: none).

        A site reads its channels, not the meter: a span of a counter it does not read (the
        three-phase total) must not tell it that one of its inputs counted short.
        """
        return self._latest.get(channel_id, 0)

    def lagging(self, channel_id: str) -> bool:
        """Return whether a phase's or channel's totals hold over refused readings.

        They lag what the meter counted since: a sum over several channels (a site's net flows)
        would be off by as much until the next accepted reading.
        """
        keys = self._keys.get(channel_id, ())
        return any(counter.lagging for key in keys if (counter := self._counters.get(key)))

    def _bound(self, key: str) -> float:
        """Return the most a counter's channel (or the three-phase total) delivers (W)."""
        total = key.startswith(f"{TOTAL_ID}_")
        return self._channel_max_power_w * (self._channels if total else 1)

    def _counter(self, key: str) -> EnergyCounter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = EnergyCounter(self._bound(key))
        return counter

    def apply(self, snapshot: MeterSnapshot, *, away: bool) -> tuple[MeterSnapshot, bool]:
        """Return the snapshot with published totals, and whether the state must be stored soon.

        `away`: the meter could not be read since the last snapshot. Whether it rebooted meanwhile
        is told by its boot time (its clock less its uptime), kept across restarts. A snapshot
        without one cannot tell: a reboot may show only at the next that can.
        """
        now = snapshot.time
        boot = snapshot.boot_time()
        rebooted = restarted(self._boot, boot)
        boot_unknown = boot is None and self._boot is not None
        # Where a reboot told later starts its spans must survive a restart.
        urgent = rebooted or (boot_unknown and not self._boot_unknown)
        self._boot_unknown = boot_unknown
        if boot is not None:
            self._boot = boot
        total = snapshot.total
        readings = snapshot.channels if total is None else (*snapshot.channels, total)
        published = []
        how = {"rebooted": rebooted, "away": away, "boot_unknown": boot_unknown}
        refused_in = refused_out = False  # a phase's counter read no counter value
        for reading in readings:
            keys = self._keys.get(reading.id)
            if keys is None:
                keys = self._keys[reading.id] = (
                    counter_key(reading.id, True),
                    counter_key(reading.id, False),
                )
            energy_in, energy_out = reading.energy_in, reading.energy_out
            if reading is total and (refused_in or refused_out):
                energy_in = self._unless_fall(keys[0], energy_in, refused_in)
                energy_out = self._unless_fall(keys[1], energy_out, refused_out)
            imported = self._read(keys[0], energy_in, now, **how)
            exported = self._read(keys[1], energy_out, now, **how)
            refused_in = refused_in or imported.verdict is Verdict.REJECTED
            refused_out = refused_out or exported.verdict is Verdict.REJECTED
            urgent = urgent or imported.store_soon or exported.store_soon
            if imported.total != reading.energy_in or exported.total != reading.energy_out:
                reading = reading.with_energies(imported.total, exported.total)  # noqa: PLW2901
            published.append(reading)
        if all(map(is_, published, readings)):
            return snapshot, urgent
        if total is None:
            return snapshot._replace(channels=tuple(published)), urgent
        return snapshot._replace(channels=tuple(published[:-1]), total=published[-1]), urgent

    def _unless_fall(self, key: str, raw: float | None, phase_refused: bool) -> float | None:
        """Return a three-phase total's reading, or None where it fell while a phase was refused.

        The total is the phases' sum (the device's, or a Gen1 meter's summed here): a phase that
        read -1 pulls it down by that phase's energy, a fall it could have counted from 0, and
        the next reading's rebound would count that energy again. Such a fall is that phase's
        glitch, not a reset: the total waits for the next reading.
        """
        counter = self._counters.get(key)
        if phase_refused and raw is not None and counter and counter.base is not None:
            return None if raw < counter.base else raw
        return raw

    def _read(
        self,
        key: str,
        raw: float | None,
        now: float,
        *,
        rebooted: bool,
        away: bool,
        boot_unknown: bool,
    ) -> Decision:
        """Have a counter decide on its reading; note what is notable."""
        decision = self._counter(key).read(
            raw, now, rebooted=rebooted, away=away, boot_unknown=boot_unknown
        )
        if decision.unaccounted is not None or decision.verdict in NOTABLE:
            self._note(key, decision)
        elif self._rejecting:  # what `_note` does for any other decision
            self._rejecting.discard(key)
        return decision

    def _note(self, key: str, decision: Decision) -> None:
        """Keep a span for the history; log a notable decision once, not at every poll."""
        if decision.unaccounted is not None:
            self._seq += 1
            # Spans older than the meters' records are never corrected: kept, they would only
            # grow the store.
            oldest = decision.time - SPAN_RETENTION_S
            self._spans = [span for span in self._spans if span.span.end > oldest]
            self._spans.append(CounterSpan(self._seq, key, decision.unaccounted))
            self._latest[_channel_of(key)] = self._seq
        verdict = decision.verdict
        if verdict is Verdict.REJECTED:
            if key in self._rejecting:
                return
            self._rejecting.add(key)
        else:
            self._rejecting.discard(key)
        if verdict in NOTABLE:
            _LOGGER.info(
                "%s: energy counter %s read %s: %s; the published total stays %s Wh",
                self._name,
                key,
                decision.reading,
                _EXPLANATIONS[verdict],
                decision.total,
            )

    def hold_at_least(self, key: str, shown: float, since: float) -> None:
        """Never publish a counter below what shows as `shown` Wh (shown at `since`, to the Wh)."""
        self._counter(key).hold_at_least(shown, since)

    def to_dict(self) -> dict[str, Any]:
        """Return the counters and spans as JSON-safe data."""
        return {
            "version": STORAGE_VERSION,
            "counters": {key: counter.to_dict() for key, counter in self._counters.items()},
            "spans": [
                [
                    span.seq,
                    span.key,
                    span.span.start,
                    span.span.end,
                    span.span.counted,
                    span.span.refused,
                ]
                for span in self._spans
            ],
            "seq": self._seq,
            "boot": self._boot,
            "reversed": sorted(self._reversed),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Continue from `to_dict` data; raise ValueError for data that is not such a state.

        Counters stored while other CTs were reversed go on from the totals they showed.
        """
        version = data.get("version")
        if version not in (1, STORAGE_VERSION):
            raise ValueError(f"unsupported counter storage version {version!r}")
        try:
            counters = {
                str(key): EnergyCounter.from_dict(stored, self._bound(str(key)))
                for key, stored in data["counters"].items()
            }
            spans = [_stored_span(stored) for stored in data["spans"]]
            seq = int(data["seq"])
            boot = None if data.get("boot") is None else float(data["boot"])
            stored_reversed = frozenset(str(c) for c in data.get("reversed", self._reversed))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not a stored meter counter state: {err!r}") from err
        if version == 1:
            counters, spans = _published_keys(counters, spans, stored_reversed)
        self._counters, self._spans, self._seq, self._boot = counters, spans, seq, boot
        # A channel whose spans were all forgotten reads 0: a new span still numbers higher.
        self._latest = {_channel_of(span.key): span.seq for span in spans}
        changed = stored_reversed ^ self._reversed
        for key, counter in counters.items():
            channel_id = _channel_of(key)
            if channel_id in changed or (channel_id == TOTAL_ID and changed):
                counter.switch_source()

    def started(self, key: str) -> float | None:
        """Return when a counter's first reading was accepted (None: not yet)."""
        counter = self._counters.get(key)
        return None if counter is None else counter.started

    def __iter__(self) -> Iterator[str]:
        """Iterate over the counters' keys."""
        return iter(self._counters)

    def diagnostics(self) -> dict[str, Any]:
        """Return each counter's state and its last notable decisions."""
        return {
            key: {
                **counter.to_dict(),
                "decisions": [decision.as_dict() for decision in counter.decisions],
            }
            for key, counter in self._counters.items()
        }


def _stored_span(stored: Sequence[Any]) -> CounterSpan:
    """Return a stored span (stored before `refused` existed: False)."""
    seq, key, start, end, counted, *refused = stored
    return CounterSpan(
        int(seq),
        str(key),
        Unaccounted(float(start), float(end), float(counted), refused == [True]),
    )


def _published_keys(
    counters: dict[str, EnergyCounter], spans: list[CounterSpan], reversed_channels: frozenset[str]
) -> tuple[dict[str, EnergyCounter], list[CounterSpan]]:
    """Re-key a version 1 state (the device's directions) by the directions published.

    The three-phase total of a meter with reversed CTs showed the sum of its phases' totals: its
    counters go on from that sum, reading the total summed again from the corrected phases.
    """

    def published(key: str) -> str:
        channel_id, _, direction = key.rpartition("_")
        if channel_id not in reversed_channels:
            return key
        return counter_key(channel_id, direction == "out")

    counters = {published(key): counter for key, counter in counters.items()}
    if reversed_channels:
        for direction in ("in", "out"):
            total = counters.get(f"{TOTAL_ID}_{direction}")
            phases = [
                counter.total
                for key, counter in counters.items()
                if not key.startswith(f"{TOTAL_ID}_") and key.endswith(f"_{direction}")
            ]
            if total is not None and phases and None not in phases:
                total.total = sum(t for t in phases if t is not None)
                total.switch_source()
    return counters, [replace(span, key=published(span.key)) for span in spans]


_EXPLANATIONS: Final = {
    Verdict.ROLLBACK: "it fell back (the meter restarted or was away); counting resumes from it",
    Verdict.RESET: "it restarted near 0 (reset); counting resumes from it",
    Verdict.REJECTED: "not a plausible counter value; not published",
    Verdict.REBASED: "a new level held for several readings; counting resumes from it",
    Verdict.RESTORED: "back near its level before the last drop; the drop was a glitch",
    Verdict.SWITCHED: "the first reading of its other raw counter (a CT marked reversed, or "
    "no longer); counting resumes from it",
}
