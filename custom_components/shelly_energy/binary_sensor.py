"""Binary sensors of a meter: whether a firmware update is available."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import MeterConfigEntry
from .entity import MeterEntity

PARALLEL_UPDATES = 0

FIRMWARE_UPDATE = BinarySensorEntityDescription(
    key="firmware_update",
    translation_key="firmware_update",
    device_class=BinarySensorDeviceClass.UPDATE,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: MeterConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the binary sensors of what the meter reports."""
    coordinator = entry.runtime_data.coordinator
    if coordinator.data.update_available is not None:
        async_add_entities([FirmwareUpdateSensor(coordinator, FIRMWARE_UPDATE)])


class FirmwareUpdateSensor(MeterEntity[bool], BinarySensorEntity):
    """Whether the meter offers a newer stable firmware."""

    def _read(self) -> bool | None:
        return self.coordinator.data.update_available

    @property
    def is_on(self) -> bool | None:
        """Return whether an update is available."""
        return self._value
