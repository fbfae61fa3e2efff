"""Supply monitoring of a meter: anomaly detection, the anomaly bus event, hardware repairs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CLEAR_DELAY,
    CONF_FREQUENCY_DEVIATION,
    CONF_IMBALANCE,
    CONF_INTERRUPTION,
    CONF_NOMINAL_FREQUENCY,
    CONF_NOMINAL_VOLTAGE,
    CONF_OVERVOLTAGE,
    CONF_SPIKE,
    CONF_START_DELAY,
    CONF_SUPPLY,
    CONF_UNDERVOLTAGE,
    DOMAIN,
    EVENT_ANOMALY,
)
from .devices import entry_device
from .energy.anomalies import AnomalyDetector, AnomalyEvent, AnomalyLimits, DailyVoltageRange
from .meter.snapshot import MeterSnapshot

# Meter-wide errors that mean the installation needs a person's attention.
HARDWARE_ERRORS = ("power_meter_failure", "ct_type_not_set", "phase_sequence")

# The supply options are named after the AnomalyLimits fields they set.
LIMIT_OPTIONS = (
    CONF_NOMINAL_VOLTAGE,
    CONF_NOMINAL_FREQUENCY,
    CONF_OVERVOLTAGE,
    CONF_UNDERVOLTAGE,
    CONF_SPIKE,
    CONF_INTERRUPTION,
    CONF_FREQUENCY_DEVIATION,
    CONF_IMBALANCE,
    CONF_START_DELAY,
    CONF_CLEAR_DELAY,
)


def limits_from_options(options: Mapping[str, Any]) -> AnomalyLimits:
    """Return the anomaly limits a meter's options set (defaults: EN 50160 at 230 V, 50 Hz).

    Raises ValueError for limits that cannot work together.
    """
    supply: Mapping[str, Any] = options.get(CONF_SUPPLY, {})
    return AnomalyLimits(**{key: float(supply[key]) for key in LIMIT_OPTIONS if key in supply})


def hardware_issue_id(mac: str, error: str) -> str:
    """Return the repair issue id of a meter's hardware error."""
    return f"{mac}_{error}"


class SupplyWatch:
    """Watches one meter's supply after every poll and tells Home Assistant what it sees."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, limits: AnomalyLimits) -> None:
        """Start watching with the meter's limits; nothing is known until the first poll."""
        self._hass = hass
        self._entry = entry
        self.detector = AnomalyDetector(limits)
        self.voltage_range = DailyVoltageRange(limits.interruption)
        self.events: list[AnomalyEvent] = []  # those of the latest poll
        self._errors: frozenset[str] = frozenset()
        self._mac = ""

    @callback
    def update(self, mac: str, snapshot: MeterSnapshot | None) -> None:
        """Apply a poll (None: the meter did not answer) and announce what started or ended."""
        self._mac = mac
        self.events = self.detector.update(dt_util.utcnow().timestamp(), snapshot)
        if snapshot is not None:
            day = dt_util.now().date()
            for reading in snapshot.channels:
                self.voltage_range.update(day, reading.id, reading.voltage)
            self._update_repairs(frozenset(snapshot.errors) & frozenset(HARDWARE_ERRORS))
        if self.events:
            device = entry_device(self._hass, self._entry.entry_id, mac)
            device_id = device.id if device else None
            for event in self.events:
                self._hass.bus.async_fire(
                    EVENT_ANOMALY, {"device_id": device_id, **event.event_data()}
                )

    def _update_repairs(self, errors: frozenset[str]) -> None:
        if errors == self._errors:
            return
        for error in errors - self._errors:
            ir.async_create_issue(
                self._hass,
                DOMAIN,
                hardware_issue_id(self._mac, error),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=error,
                translation_placeholders={"name": self._entry.title},
            )
        for error in self._errors - errors:
            ir.async_delete_issue(self._hass, DOMAIN, hardware_issue_id(self._mac, error))
        self._errors = errors

    @callback
    def clear_repairs(self) -> None:
        """Withdraw the meter's repair issues (it is unloaded; a new setup raises them again)."""
        self._update_repairs(frozenset())
