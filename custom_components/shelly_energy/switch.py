"""The relay of meters that have one (EM, 3EM, Pro EM-50, EM Gen3/4); virtual meters' pause."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .const import DOMAIN, KIND_VIRTUAL_METER
from .coordinator import entry_kind
from .entity import MeterEntity, VirtualMeterEntity
from .meter.errors import MeterError

# One command at a time per meter: the devices handle requests one by one.
PARALLEL_UPDATES = 1

RELAY = SwitchEntityDescription(key="relay", translation_key="relay")
PAUSE = SwitchEntityDescription(
    key="pause", translation_key="pause", entity_category=EntityCategory.CONFIG
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the relay switch where the meter has one, or a virtual meter's pause."""
    coordinator = entry.runtime_data.coordinator
    if entry_kind(entry) == KIND_VIRTUAL_METER:
        async_add_entities([PauseSwitch(coordinator, PAUSE)])
    elif coordinator.info.has_switch:
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


class PauseSwitch(VirtualMeterEntity[bool], SwitchEntity, RestoreEntity):
    """Pause serving: the virtual meter stays silent, as if it had no reading (kept on restarts)."""

    def _read(self) -> bool:
        return self.coordinator.meter.paused

    @property
    def is_on(self) -> bool | None:
        """Return whether serving is paused."""
        return self._value

    async def async_added_to_hass(self) -> None:
        """Pause again if the meter was paused before the restart (before it starts serving)."""
        await super().async_added_to_hass()
        last = await self.async_get_last_state()
        if last is not None and last.state == STATE_ON:
            self.coordinator.async_set_paused(True)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Stop serving."""
        self.coordinator.async_set_paused(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Serve again."""
        self.coordinator.async_set_paused(False)
