"""Event entities: a meter's supply anomalies, and a site's projected slab changes."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import EVENT_TIER, KIND_SITE
from .coordinator import MeterCoordinator, entry_kind
from .energy.anomalies import AnomalyType
from .entity import SiteEntity, meter_device_info

PARALLEL_UPDATES = 0

SUPPLY_EVENT = EventEntityDescription(
    key="supply",
    translation_key="supply",
    event_types=[anomaly.value for anomaly in AnomalyType],
)


TIER_EVENT = EventEntityDescription(
    key="tariff", translation_key="tariff", event_types=["projected_tier"]
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create a meter's supply event entity, or a site's tariff event entity."""
    if entry_kind(entry) != KIND_SITE:
        async_add_entities([SupplyEventEntity(entry.runtime_data.coordinator)])
    elif entry.runtime_data.coordinator.billing is not None:
        async_add_entities([TierEventEntity(entry.runtime_data.coordinator, TIER_EVENT)])


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
