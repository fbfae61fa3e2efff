"""Device triggers: "When <meter> detects overvoltage", "When <site> exceeds its contracted power".

A meter's triggers are its supply anomalies; a site's, the grid events its options make possible.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN, EVENT_ANOMALY, EVENT_GRID
from .devices import SITE_PREFIX
from .energy.anomalies import AnomalyType
from .energy.contract import LimitEventType
from .grid_options import PEAK_IMMINENT, PERIOD_CLOSING, grid_event_types

ANOMALY_TYPES = [anomaly.value for anomaly in AnomalyType]
GRID_TYPES = [*(event.value for event in LimitEventType), PERIOD_CLOSING, PEAK_IMMINENT]
TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {vol.Required(CONF_TYPE): vol.In([*ANOMALY_TYPES, *GRID_TYPES])}
)


def _device_types(hass: HomeAssistant, device_id: str) -> list[str]:
    """Return the trigger types of a meter or a site (none for other devices)."""
    device = dr.async_get(hass).async_get(device_id)
    identifiers = [] if device is None else device.identifiers
    for domain, identifier in identifiers:
        if domain != DOMAIN:
            continue
        if not identifier.startswith(SITE_PREFIX):
            return ANOMALY_TYPES
        entry = hass.config_entries.async_get_entry(identifier.removeprefix(SITE_PREFIX))
        return [] if entry is None else grid_event_types(entry.options)
    return []


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """Return a trigger per anomaly type for a meter, per grid event type for a site."""
    return [
        {CONF_PLATFORM: "device", CONF_DOMAIN: DOMAIN, CONF_DEVICE_ID: device_id, CONF_TYPE: kind}
        for kind in _device_types(hass, device_id)
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen for the device's anomaly or grid events of the trigger's type."""
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: (
                EVENT_GRID if config[CONF_TYPE] in GRID_TYPES else EVENT_ANOMALY
            ),
            CONF_EVENT_DATA: {
                CONF_DEVICE_ID: config[CONF_DEVICE_ID],
                CONF_TYPE: config[CONF_TYPE],
            },
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
