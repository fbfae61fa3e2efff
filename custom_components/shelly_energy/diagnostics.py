"""Diagnostics downloads of meters, sites and the Emoncms export, with secrets redacted."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .const import CONF_API_KEY, KIND_EMONCMS, KIND_SITE, KIND_VIRTUAL_METER
from .coordinator import channel_key, entry_kind
from .history_import import MeterHistory, SiteHistory

TO_REDACT = {CONF_PASSWORD, CONF_USERNAME, CONF_API_KEY}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ConfigEntry
) -> dict[str, Any]:
    """Return what helps to understand an entry's behaviour."""
    kind = entry_kind(entry)
    coordinator = entry.runtime_data.coordinator
    result: dict[str, Any] = {
        "entry": {
            "title": entry.title,
            "kind": kind,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "last_update_success": coordinator.last_update_success,
    }
    if kind == KIND_SITE:
        state = coordinator.data
        # Loads are keyed by channel references, which JSON cannot key by: use their text form.
        power = {
            field.name: getattr(state.power, field.name)
            for field in fields(state.power)
            if field.name != "loads"
        }
        power["loads"] = {channel_key(ref): watts for ref, watts in state.power.loads.items()}
        result["site"] = coordinator.accumulator.to_dict()
        result["history"] = _history(entry.runtime_data.history)
        result["state"] = {
            "power": power,
            "energy": asdict(state.energy),
            "loads": {
                channel_key(ref): None if load is None else asdict(load)
                for ref, load in state.loads.items()
            },
            "self_consumption_rate": state.self_consumption_rate,
            "self_sufficiency": state.self_sufficiency,
        }
    elif kind == KIND_EMONCMS:
        result["exporter"] = coordinator.diagnostics()
    elif kind == KIND_VIRTUAL_METER:
        result["virtual_meter"] = coordinator.diagnostics()
    else:
        result["meter"] = asdict(coordinator.info)
        result["reading"] = {
            "pushing": coordinator.client.pushing,
            "whole_read_interval_s": coordinator.update_interval.total_seconds(),
            "stale_within_s": coordinator.poll_interval.total_seconds(),
        }
        result["snapshot"] = coordinator.data.as_dict() if coordinator.data else None
        # Each counter's published total, base and its last notable decisions (why it held).
        result["counters"] = coordinator.counters.diagnostics() if coordinator.counters else None
        status = coordinator.supply.detector.status()
        result["supply"] = {
            "anomalies": [asdict(anomaly) for anomaly in status.anomalies],
            "seen_voltage": sorted(coordinator.supply.detector.seen_voltage),
        }
        result["history"] = _history(entry.runtime_data.history)
    return result


def _history(history: MeterHistory | SiteHistory | None) -> dict[str, Any] | None:
    """Return the history import's progress, last run and errors (None: no recorder)."""
    return None if history is None else history.diagnostics()
