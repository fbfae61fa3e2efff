"""A site's grid watched for automations: its contracted power and fuses; the grid bus event.

After every update of the site `GridWatch.update` takes the grid import power (as the site's grid
metering counts it) and the grid channels' currents. What it finds goes on the event bus as
`EVENT_GRID`, with the site's device id, for the site's event entity, device triggers, the
logbook and blueprints; the headroom sensors read what it last took.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback

from .const import EVENT_GRID
from .coordinator import SENSOR_METER_ID, channel_key, channel_label, parse_channel_key
from .devices import entry_device, site_identifier
from .energy.contract import ContractLimits, ContractWatch
from .energy.site import ChannelRef, SiteState


class GridWatch:
    """Watches one site's grid after every update and tells Home Assistant what it sees."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, limits: ContractLimits) -> None:
        """Watch the limits that are set; nothing is known until the first update."""
        self._hass = hass
        self._entry = entry
        self.contract = ContractWatch(limits)
        self.events: list[dict[str, Any]] = []  # those of the latest update, as on the bus
        self._power_w: float | None = None
        self._currents: dict[ChannelRef, float | None] = {}

    @callback
    def update(
        self, now: float, state: SiteState, currents: Mapping[ChannelRef, float | None]
    ) -> None:
        """Take an update of the site (`currents`: the grid channels', A) and fire its events."""
        self._power_w = state.power.grid_import
        self._currents = {
            ref: current for ref, current in currents.items() if ref.meter_id != SENSOR_METER_ID
        }
        events = self.contract.update(
            now,
            self._power_w,
            {channel_key(ref): current for ref, current in self._currents.items()},
        )
        self.events = [
            {
                **event.event_data(),
                "channel": None
                if event.channel is None
                else channel_label(self._hass, parse_channel_key(event.channel)),
            }
            for event in events
        ]
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

    def power_headroom_kw(self) -> float | None:
        """Return how far the grid import is below the contracted power (kW; None: unknown)."""
        headroom = self.contract.headroom_w(self._power_w)
        return None if headroom is None else headroom / 1000

    def fuse_headroom_a(self, ref: ChannelRef) -> float | None:
        """Return how far a grid channel's current is below the fuse (A; None: unknown)."""
        return self.contract.fuse_headroom_a(self._currents.get(ref))

    def fused_channels(self, channels: tuple[ChannelRef, ...]) -> list[ChannelRef]:
        """Return the grid channels whose fuse is watched: the meters', with a fuse set."""
        if self.contract.limits.fuse_a is None:
            return []
        return [ref for ref in channels if ref.meter_id != SENSOR_METER_ID]
