"""Diagnostics download of a meter, with credentials redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .coordinator import MeterConfigEntry

TO_REDACT = {CONF_PASSWORD, CONF_USERNAME}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: MeterConfigEntry
) -> dict[str, Any]:
    """Return what helps to understand a meter's behaviour."""
    coordinator = entry.runtime_data.coordinator
    return {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "meter": asdict(coordinator.info),
        "last_update_success": coordinator.last_update_success,
        "snapshot": asdict(coordinator.data) if coordinator.data else None,
    }
