"""The integration's devices in Home Assistant's device registry."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import DOMAIN

SITE_PREFIX = "site_"


def site_identifier(entry_id: str) -> str:
    """Return the device identifier of an energy site (its entry id, prefixed)."""
    return f"{SITE_PREFIX}{entry_id}"


@callback
def entry_device(hass: HomeAssistant, entry_id: str, identifier: str) -> dr.DeviceEntry | None:
    """Return the device of a config entry that has `identifier` in the integration's domain.

    Device identifiers are unique within a config entry only (Home Assistant 2026.x deprecates
    looking them up across entries), so the search goes through the entry's own devices: the
    same on every supported release.
    """
    return next(
        (
            device
            for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
            if (DOMAIN, identifier) in device.identifiers
        ),
        None,
    )
