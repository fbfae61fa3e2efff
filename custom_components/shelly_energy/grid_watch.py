"""A site's grid watched for automations: contracted power and fuses, warnings; the bus event.

After every update of the site `GridWatch.update` takes the grid import power (as the site's grid
metering counts it), the currents of the grid channels with a fuse, the running settlement period
and the capacity demand period. What it finds goes on the event bus as `EVENT_GRID`, with the
site's device id, for the site's event entity, device triggers, the logbook and blueprints; the
headroom sensors read what it last took.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback

from .const import EVENT_GRID
from .devices import entry_device, site_identifier
from .energy.alerts import ClosingWarning, ClosingWatch
from .energy.contract import ContractLimits, ContractWatch
from .energy.site import SiteState
from .grid_options import PEAK_IMMINENT, PERIOD_CLOSING


class GridWatch:
    """Watches one site's grid after every update and tells Home Assistant what it sees."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        limits: ContractLimits | None = None,
        fused: Mapping[str, str] | None = None,
        period_warning: ClosingWarning | None = None,
        peak_warning: ClosingWarning | None = None,
    ) -> None:
        """Watch what is set; nothing is known until the first update.

        `fused`: the grid channels whose current a fuse limits, by key, with their names.
        """
        self._hass = hass
        self._entry = entry
        self.contract = None if limits is None else ContractWatch(limits)
        self._fused = {} if limits is None or limits.fuse_a is None else dict(fused or {})
        self._period = None if period_warning is None else ClosingWatch(period_warning)
        self._peak = None if peak_warning is None else ClosingWatch(peak_warning)
        self.events: list[dict[str, Any]] = []  # those of the latest update, as on the bus
        self._power_w: float | None = None
        self._currents: dict[str, float | None] = {}

    @callback
    def update(self, now: float, state: SiteState, currents: Mapping[str, float | None]) -> None:
        """Take an update of the site (`currents`: the grid channels', A, by key); fire events."""
        self._power_w = state.power.grid_import
        self._currents = {key: currents.get(key) for key in self._fused}
        self.events = [*self._limit_events(now), *self._warnings(now, state)]
        if not self.events:
            return
        device = entry_device(
            self._hass, self._entry.entry_id, site_identifier(self._entry.entry_id)
        )
        for data in self.events:
            self._hass.bus.async_fire(
                EVENT_GRID,
                {"device_id": device and device.id, "entry_id": self._entry.entry_id, **data},
            )

    def _limit_events(self, now: float) -> list[dict[str, Any]]:
        if self.contract is None:
            return []
        return [
            {
                **event.event_data(),
                "channel": None if event.channel is None else self._fused[event.channel],
            }
            for event in self.contract.update(now, self._power_w, self._currents)
        ]

    def _warnings(self, now: float, state: SiteState) -> list[dict[str, Any]]:
        warnings: list[dict[str, Any]] = []
        period = state.period
        if (
            self._period is not None
            and period is not None
            and self._period.observe(
                round(now + period.seconds_left), period.seconds_left, period.net / 1000
            )
        ):
            warnings.append(
                {
                    "type": PERIOD_CLOSING,
                    "net_kwh": round(period.net / 1000, 3),
                    "threshold_kwh": self._period.warning.threshold,
                    "seconds_left": round(period.seconds_left),
                }
            )
        capacity = state.capacity
        if (
            self._peak is not None
            and capacity is not None
            # While the month has no peak yet any demand is its first: nothing to warn of.
            and self._peak.observe(
                capacity.period_end,
                capacity.seconds_left,
                capacity.headroom_kw if capacity.threshold_kw > 0 else None,
            )
        ):
            warnings.append(
                {
                    "type": PEAK_IMMINENT,
                    "demand_kw": _kw(capacity.demand_kw),
                    "peak_kw": _kw(capacity.peak_kw),
                    "headroom_kw": _kw(capacity.headroom_kw),
                    "threshold_kw": self._peak.warning.threshold,
                    "seconds_left": round(capacity.seconds_left),
                }
            )
        return warnings

    def power_headroom_kw(self) -> float | None:
        """Return how far the grid import is below the contracted power (kW; None: unknown)."""
        headroom = None if self.contract is None else self.contract.headroom_w(self._power_w)
        return None if headroom is None else headroom / 1000

    def fuse_headroom_a(self, key: str) -> float | None:
        """Return how far a grid channel's current is below the fuse (A; None: unknown)."""
        current = self._currents.get(key)
        return None if self.contract is None else self.contract.fuse_headroom_a(current)

    @property
    def fused(self) -> Mapping[str, str]:
        """Return the grid channels whose fuse is watched, by key, with their names."""
        return self._fused

    def watches_power(self) -> bool:
        """Return whether a contracted power is set."""
        return self.contract is not None and self.contract.limits.power_w is not None


def _kw(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
