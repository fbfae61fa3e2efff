"""Logbook entries for supply anomalies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import DOMAIN, EVENT_ANOMALY

_UNITS = {"frequency_deviation": "Hz", "imbalance": "%"}


def describe_anomaly(data: Mapping[str, Any]) -> str:
    """Return what an anomaly event says, as a logbook line ("detected overvoltage on ...")."""
    if data["type"] == "restored":
        kind = str(data["restored_type"]).replace("_", " ")
        where = f" on {data['phase']}" if data["phase"] else ""
        return f"supply normal again{where}: the {kind} lasted {data['duration']:.0f} s"
    unit = _UNITS.get(data["type"], "V")
    where = f" on {data['phase']}" if data["phase"] else ""
    return (
        f"detected {data['type'].replace('_', ' ')}{where}: "
        f"{data['value']:.1f} {unit} (limit {data['limit']:.1f} {unit})"
    )


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the supply anomaly events in the logbook."""

    @callback
    def describe(event: Event) -> dict[str, str]:
        device = dr.async_get(hass).async_get(event.data["device_id"] or "")
        name = (device.name_by_user or device.name or "") if device else "Shelly meter"
        return {LOGBOOK_ENTRY_NAME: name, LOGBOOK_ENTRY_MESSAGE: describe_anomaly(event.data)}

    async_describe_event(DOMAIN, EVENT_ANOMALY, describe)
