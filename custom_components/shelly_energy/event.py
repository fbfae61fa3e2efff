"""Event entities: a meter's supply anomalies; a site's projected slab changes and grid events."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import EVENT_TIER, KIND_SITE
from .coordinator import MeterCoordinator, SiteCoordinator, entry_kind
from .energy.anomalies import AnomalyType
from .entity import SiteEntity, meter_device_info
from .grid_options import grid_event_types

PARALLEL_UPDATES = 0

SUPPLY_EVENT = EventEntityDescription(
    key="supply",
    translation_key="supply",
    event_types=[anomaly.value for anomaly in AnomalyType],
)


TIER_EVENT = EventEntityDescription(
    key="tariff", translation_key="tariff", event_types=["projected_tier"]
)

GRID_EVENT = EventEntityDescription(key="grid", translation_key="grid")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create a meter's supply event entity, or a site's tariff and grid event entities."""
    coordinator = entry.runtime_data.coordinator
    if entry_kind(entry) != KIND_SITE:
        async_add_entities([SupplyEventEntity(coordinator)])
        return
    if coordinator.billing is not None:
        async_add_entities([TierEventEntity(coordinator, TIER_EVENT)])
    if coordinator.grid_watch is not None:
        async_add_entities([GridEventEntity(coordinator, GRID_EVENT)])


class SupplyEventEntity(CoordinatorEntity[MeterCoordinator], EventEntity):
    """Tells each supply anomaly of a meter, and each return to normal, as an event."""

    _attr_has_entity_name = True
    entity_description = SUPPLY_EVENT

    def __init__(self, coordinator: MeterCoordinator) -> None:
        """Describe the entity."""
        super().__init__(coordinator)
        self._attr_unique_id = unique_id = f"{coordinator.info.mac}_{SUPPLY_EVENT.key}"
        coordinator.unique_ids.add(unique_id)
        self._attr_device_info = meter_device_info(coordinator)

    @callback
    def _handle_coordinator_update(self) -> None:
        """Fire the events of the latest poll (nothing happened when there are none)."""
        events = self.coordinator.supply.events
        if not events:
            return
        for event in events:
            self._trigger_event(
                event.type.value,
                {
                    "phase": event.phase,
                    "value": round(event.value, 2),
                    "limit": round(event.limit, 2),
                    "duration": event.duration,
                    "restored_type": event.restored_type and event.restored_type.value,
                },
            )
        self.async_write_ha_state()


class TierEventEntity(SiteEntity[None], EventEntity):
    """Tells when a site's projected consumption rises into the next slab of its tariff."""

    def _read(self) -> None:
        return None

    @property
    def available(self) -> bool:
        """Return True: the entity only tells what happened."""
        return True

    async def async_added_to_hass(self) -> None:
        """Listen for the site's projection events."""
        await super().async_added_to_hass()
        entry_id = self.coordinator.config_entry.entry_id

        @callback
        def projected_tier(event: Event) -> None:
            if event.data["entry_id"] == entry_id:
                self._trigger_event(
                    "projected_tier",
                    {"tier": event.data["tier"], "projected_kwh": event.data["projected_kwh"]},
                )
                self.async_write_ha_state()

        self.async_on_remove(self.hass.bus.async_listen(EVENT_TIER, projected_tier))

    @callback
    def _handle_coordinator_update(self) -> None:
        """Nothing to show between events."""


class GridEventEntity(SiteEntity[None], EventEntity):
    """Tells each grid event of a site: a limit exceeded or cleared, a warning before a close."""

    def __init__(self, coordinator: SiteCoordinator, description: EventEntityDescription) -> None:
        """Describe the entity with the events the site's options make possible."""
        self._attr_event_types = grid_event_types(coordinator.config_entry.options)
        super().__init__(coordinator, description)

    def _read(self) -> None:
        return None

    @property
    def available(self) -> bool:
        """Return True: the entity only tells what happened."""
        return True

    @callback
    def _handle_coordinator_update(self) -> None:
        """Fire the events of the latest update (nothing happened when there are none)."""
        watch = self.coordinator.grid_watch
        if watch is None or not watch.events:
            return
        for data in watch.events:
            self._trigger_event(
                data["type"], {key: value for key, value in data.items() if key != "type"}
            )
        self.async_write_ha_state()
