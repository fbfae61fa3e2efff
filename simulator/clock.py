"""The simulator's notion of time: the real wall clock, or a manual clock that tests move."""

from __future__ import annotations

import time

# 2025-06-01 00:00:00 UTC: a fixed, synced-looking default start for manual clocks.
DEFAULT_MANUAL_START = 1_748_736_000.0


class Clock:
    """Unix time in seconds, either real (`Clock()`) or manual (`Clock.manual()`).

    Meters read `now()` lazily whenever a request arrives, so a manual clock makes every
    published number a function of the seed and the calls to `advance`.
    """

    __slots__ = ("_manual_now",)

    def __init__(self, manual_start: float | None = None) -> None:
        """Create a real clock, or a manual one starting at `manual_start` (unix seconds)."""
        self._manual_now = manual_start

    @classmethod
    def manual(cls, start: float = DEFAULT_MANUAL_START) -> Clock:
        """Return a manual clock that stands still until `advance` or `set` moves it."""
        return cls(manual_start=start)

    @property
    def is_manual(self) -> bool:
        """Whether this clock only moves when told to."""
        return self._manual_now is not None

    def now(self) -> float:
        """Return the current unix time in seconds."""
        if self._manual_now is None:
            return time.time()
        return self._manual_now

    def advance(self, seconds: float) -> float:
        """Move a manual clock forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        return self.set(self._require_manual() + seconds)

    def set(self, timestamp: float) -> float:
        """Move a manual clock to `timestamp` (never backwards) and return it."""
        if timestamp < self._require_manual():
            raise ValueError("a clock only moves forward")
        self._manual_now = float(timestamp)
        return self._manual_now

    def _require_manual(self) -> float:
        if self._manual_now is None:
            raise RuntimeError("the real clock cannot be moved; use Clock.manual()")
        return self._manual_now
