"""The relay output of meters that have one (Shelly EM, 3EM, Pro EM-50, EM Gen3/Gen4)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .coordinator import MeterConfigEntry
from .entity import MeterEntity
from .meter.client import MeterError

# One command at a time per meter: the devices handle requests one by one.
PARALLEL_UPDATES = 1

RELAY = SwitchEntityDescription(key="relay", translation_key="relay")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: MeterConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the relay switch where the meter has one."""
    coordinator = entry.runtime_data.coordinator
    if coordinator.info.has_switch:
        async_add_entities([RelaySwitch(coordinator, RELAY)])


class RelaySwitch(MeterEntity[bool], SwitchEntity):
    """The meter's relay output."""

    def _read(self) -> bool | None:
        return self.coordinator.data.switch_on

    @property
    def is_on(self) -> bool | None:
        """Return whether the relay is closed."""
        return self._value

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Close the relay."""
        await self._switch(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Open the relay."""
        await self._switch(False)

    async def _switch(self, on: bool) -> None:
        try:
            await self.coordinator.client.set_switch(on)
        except MeterError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="switch_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        await self.coordinator.async_request_refresh()
