"""The supply event entity of a meter: one event per anomaly and per return to normal."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .coordinator import MeterConfigEntry, MeterCoordinator
from .energy.anomalies import AnomalyType
from .entity import meter_device_info

PARALLEL_UPDATES = 0

SUPPLY_EVENT = EventEntityDescription(
    key="supply",
    translation_key="supply",
    event_types=[anomaly.value for anomaly in AnomalyType],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: MeterConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the meter's supply event entity."""
    async_add_entities([SupplyEventEntity(entry.runtime_data.coordinator)])


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
