"""Warnings before a period closes, while an automation can still act on it.

A settlement period about to close with a net import above a threshold: there is still time to
export, or to stop importing, before it books import. A capacity demand period about to raise the
month's peak (its headroom below a threshold near its end): there is still time to switch a load
off. A `ClosingWatch` warns once per period, at the first update within its lead time of the
period's end at which the value is past the threshold; an unknown value warns of nothing.

Time is unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClosingWarning:
    """Warn `lead_s` before a period ends if a value is above `threshold` (below, if `below`)."""

    lead_s: float
    threshold: float
    below: bool = False

    def __post_init__(self) -> None:
        """Reject a lead time that could never come."""
        if self.lead_s <= 0:
            raise ValueError(f"a warning needs a lead time, not {self.lead_s} s")


class ClosingWatch:
    """One warning, watched over the periods (see the module)."""

    __slots__ = ("_warned", "warning")

    def __init__(self, warning: ClosingWarning) -> None:
        """Watch from the next period on."""
        self.warning = warning
        self._warned: float | None = None  # the end of the period last warned of

    def observe(self, period_end: float, seconds_left: float, value: float | None) -> bool:
        """Take the running period's end, its time left and the value; return whether to warn."""
        warning = self.warning
        if value is None or seconds_left > warning.lead_s or period_end == self._warned:
            return False
        if (value >= warning.threshold) if warning.below else (value <= warning.threshold):
            return False
        self._warned = period_end
        return True
