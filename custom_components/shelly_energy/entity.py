"""Base entities: devices, unique ids, availability, and state writes only on change."""

from __future__ import annotations

from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers.device_registry import (
    CONNECTION_NETWORK_MAC,
    DeviceEntryType,
    DeviceInfo,
    format_mac,
)
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_URL, DOMAIN
from .coordinator import EntityCoordinator, MeterCoordinator, SiteCoordinator
from .devices import site_identifier
from .export_entry import ExportCoordinator
from .meter.address import Address
from .meter.snapshot import ChannelKind, ChannelReading
from .virtual_meter_entry import VirtualMeterCoordinator


class ValueEntity[CoordinatorT: EntityCoordinator[Any], ValueT](CoordinatorEntity[CoordinatorT]):
    """An entity showing one value of a coordinator's data.

    The value is read once per update; the state is written only when what the entity shows
    (its availability and, while available, its value: everything its state and attributes are
    made of) differs from what it last wrote, the platform's first write included. Most updates
    repeat most values: those entities cost a read and a comparison.
    """

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: CoordinatorT, description: EntityDescription, unique_id: str
    ) -> None:
        """Describe the entity."""
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = unique_id
        coordinator.unique_ids.add(unique_id)
        self._value: ValueT | None = self._read()
        self._written: tuple[bool, ValueT | None] | None = None  # what the state shows

    def _read(self) -> ValueT | None:
        """Return the entity's value in the coordinator's data; None when not known."""
        raise NotImplementedError

    @property
    def available(self) -> bool:
        """Return False while the source is unreachable or the value is not known."""
        return self.coordinator.last_update_success and self._value is not None

    def _shown(self) -> tuple[bool, ValueT | None]:
        """Return what the state shows now: (available, the value while available)."""
        return (True, self._value) if self.available else (False, None)

    async def async_added_to_hass(self) -> None:
        """Read the value the platform writes next (the data may be newer than at creation)."""
        await super().async_added_to_hass()
        self._value = self._read()
        self._written = self._shown()

    @callback
    def _handle_coordinator_update(self) -> None:
        """Read the new value and write the state if what it shows changed."""
        self._value = self._read()
        shown = self._shown()
        if shown != self._written:
            self._written = shown
            self.async_write_ha_state()


def channel_naming(reading: ChannelReading, key: str) -> tuple[str, dict[str, str]]:
    """Return the translation key and placeholders of a quantity of a phase, channel or total.

    For example ("phase_power", {"phase": "A"}): "Phase A power".
    """
    if reading.kind is ChannelKind.PHASE:
        return f"phase_{key}", {"phase": reading.id.upper()}
    if reading.kind is ChannelKind.CHANNEL:
        return f"channel_{key}", {"channel": reading.id}
    return f"total_{key}", {}


def meter_device_info(coordinator: MeterCoordinator) -> DeviceInfo:
    """Return the device registry entry of a meter."""
    info = coordinator.info
    entry = coordinator.config_entry
    return DeviceInfo(
        identifiers={(DOMAIN, info.mac)},
        connections={(CONNECTION_NETWORK_MAC, format_mac(info.mac))},
        manufacturer="Shelly",
        model=info.model_name,
        model_id=info.model,
        sw_version=info.firmware,
        name=entry.title,
        configuration_url=str(Address(entry.data[CONF_HOST], entry.data[CONF_PORT]).url()),
    )


class MeterEntity[ValueT](ValueEntity[MeterCoordinator, ValueT]):
    """An entity of one meter, keyed by the meter's MAC."""

    def __init__(
        self,
        coordinator: MeterCoordinator,
        description: EntityDescription,
        key: str | None = None,
    ) -> None:
        """Describe the entity; key (default: the description's) makes its unique id."""
        mac = coordinator.info.mac
        super().__init__(coordinator, description, f"{mac}_{key or description.key}")
        self._attr_device_info = meter_device_info(coordinator)


class SiteEntity[ValueT](ValueEntity[SiteCoordinator, ValueT]):
    """An entity of one energy site, keyed by its config entry."""

    def __init__(
        self, coordinator: SiteCoordinator, description: EntityDescription, key: str | None = None
    ) -> None:
        """Describe the entity; key (default: the description's) makes its unique id."""
        entry = coordinator.config_entry
        super().__init__(coordinator, description, f"{entry.entry_id}_{key or description.key}")
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, site_identifier(entry.entry_id))},
            entry_type=DeviceEntryType.SERVICE,
            manufacturer="Shelly Energy Monitor",
            model="Energy site",
            name=entry.title,
        )


class ExportEntity(CoordinatorEntity[ExportCoordinator]):
    """An entity of the Emoncms export, on a service device of its own."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: ExportCoordinator, description: EntityDescription) -> None:
        """Describe the entity."""
        super().__init__(coordinator)
        entry = coordinator.config_entry
        self.entity_description = description
        self._attr_unique_id = unique_id = f"{entry.entry_id}_{description.key}"
        coordinator.unique_ids.add(unique_id)
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, f"emoncms_{entry.entry_id}")},
            entry_type=DeviceEntryType.SERVICE,
            manufacturer="Emoncms",
            model="Input API export",
            name=entry.title,
            configuration_url=entry.data[CONF_URL],
        )


class VirtualMeterEntity[ValueT](ValueEntity[VirtualMeterCoordinator, ValueT]):
    """An entity of a virtual meter, on a service device of its own, keyed by its entry."""

    def __init__(
        self, coordinator: VirtualMeterCoordinator, description: EntityDescription
    ) -> None:
        """Describe the entity."""
        entry = coordinator.config_entry
        super().__init__(coordinator, description, f"{entry.entry_id}_{description.key}")
        identity = coordinator.meter.identity
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, f"virtual_meter_{entry.entry_id}")},
            entry_type=DeviceEntryType.SERVICE,
            manufacturer="Shelly Energy Monitor",
            model=f"Virtual {identity.model_id}",
            serial_number=identity.device_id,
            name=entry.title,
        )
