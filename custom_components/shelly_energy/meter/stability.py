"""Whether a meter that changed is set up again, or keeps changing and is left as it is.

A firmware update or a new profile can change a meter's entities, so a change the polls keep
reporting is followed by one new setup. A meter that flips between two states (around an
update, or a device that reports two component sets in turn) would be set up again and again:
it is left as set up instead, and reported as unstable until it settles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .snapshot import MeterChange

# A change is believed once this many polls in a row report it (one odd reply is no change).
CONFIRM_POLLS = 2
WINDOW_S = 600.0
# Within the window: new setups after changes allowed, and flips that make a meter unstable.
SETUPS_PER_WINDOW = 2
FLIPS_PER_WINDOW = 6
# How long a meter must report the same before it counts as stable again.
STABLE_AFTER_S = 600.0


@dataclass(slots=True)
class ChangeWatch:
    """Follows what one meter reports at each poll, across its setups (seconds: any clock)."""

    unstable: MeterChange | None = None  # what keeps changing, while it does
    _seen: MeterChange | None = None  # how the latest polls differ from the setup (None: not)
    _seen_polls: int = 0  # how many polls in a row reported `_seen` (0: none since a setup)
    _seen_since: float = 0.0
    _last_change: MeterChange | None = None
    _flips: list[float] = field(default_factory=list)
    _setups: list[float] = field(default_factory=list)  # new setups after changes

    def observe(self, change: MeterChange | None, now: float, *, can_set_up: bool) -> bool:
        """Note how a poll differs from the setup; return True when the meter is set up again.

        `can_set_up` False (while the meter is being set up) notes without setting up again.
        """
        if (
            change is None
            and self._seen is None
            and self._seen_polls
            and self.unstable is None
            and not self._flips
            and not self._setups
        ):
            # Steady, with nothing to forget (every reading of a meter that is as set up).
            self._seen_polls += 1
            return False
        if self._seen_polls and change == self._seen:
            self._seen_polls += 1
        else:
            if self._seen_polls:
                self._flips.append(now)
            self._seen, self._seen_polls, self._seen_since = change, 1, now
        if change is not None:
            self._last_change = change
        self._flips = [when for when in self._flips if now - when < WINDOW_S]
        self._setups = [when for when in self._setups if now - when < WINDOW_S]
        if self.unstable is None and len(self._flips) >= FLIPS_PER_WINDOW:
            self.unstable = self._last_change
        if self.unstable is not None:
            if now - self._seen_since < STABLE_AFTER_S:
                return False
            self.unstable = None  # settled: set up again below if on something new
            self._flips.clear()
        if change is None or self._seen_polls < CONFIRM_POLLS or not can_set_up:
            return False
        if len(self._setups) >= SETUPS_PER_WINDOW:
            self.unstable = change
            return False
        self._setups.append(now)
        self._seen_polls = 0  # the new setup is what later polls are compared with
        return True
