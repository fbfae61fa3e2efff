"""Logbook entries for supply anomalies and a site's grid events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import DOMAIN, EVENT_ANOMALY, EVENT_GRID
from .grid_options import PEAK_IMMINENT, PERIOD_CLOSING

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


def describe_grid_event(data: Mapping[str, Any]) -> str:
    """Return what a site's grid event says, as a logbook line ("exceeded its contracted ...")."""
    kind = data["type"]
    if kind == PERIOD_CLOSING:
        return (
            f"the settlement period closes in {data['seconds_left']} s with "
            f"{data['net_kwh']} kWh imported (above {data['threshold_kwh']} kWh)"
        )
    if kind == PEAK_IMMINENT:
        return (
            f"a new capacity peak is near: {data['demand_kw']} kW projected against the peak "
            f"of {data['peak_kw']} kW (headroom {data['headroom_kw']} kW), "
            f"{data['seconds_left']} s left"
        )
    limit = "its contracted power" if kind.startswith("power") else f"the fuse on {data['channel']}"
    if kind.endswith("_cleared"):
        return f"back within {limit}: the excess lasted {data['duration']:.0f} s"
    unit = "kW" if kind.startswith("power") else "A"
    trips = "" if data.get("trips_in") is None else f"; the supply trips in {data['trips_in']} s"
    return f"exceeded {limit}: {data['value']} {unit} (limit {data['limit']} {unit}){trips}"


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the supply anomaly and grid events in the logbook."""

    def describer(
        describe_data: Callable[[Mapping[str, Any]], str], unknown: str
    ) -> Callable[[Event], dict[str, str]]:
        @callback
        def describe(event: Event) -> dict[str, str]:
            device = dr.async_get(hass).async_get(event.data["device_id"] or "")
            name = (device.name_by_user or device.name or "") if device else unknown
            return {LOGBOOK_ENTRY_NAME: name, LOGBOOK_ENTRY_MESSAGE: describe_data(event.data)}

        return describe

    async_describe_event(DOMAIN, EVENT_ANOMALY, describer(describe_anomaly, "Shelly meter"))
    async_describe_event(DOMAIN, EVENT_GRID, describer(describe_grid_event, "Energy site"))
