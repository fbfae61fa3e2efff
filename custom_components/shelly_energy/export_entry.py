"""The Emoncms export entry: samples the meters and sites, drives the sender, raises repairs.

Every interval each meter and site becomes one sample of its node, stamped with the time it was
measured; the sender delivers the durable queue in the background (see `export/emoncms.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store
from homeassistant.loader import async_get_integration

from .const import (
    CONF_API_KEY,
    CONF_INTERVAL,
    CONF_NODES,
    CONF_URL,
    CONF_VALUES,
    DEFAULT_EXPORT_INTERVAL,
    DOMAIN,
    EXPORT_QUEUE_DAYS,
    EXPORT_SAVE_DELAY_S,
    EXPORT_VALUES,
    KIND_EMONCMS,
    KIND_SITE,
)
from .coordinator import EntityCoordinator, entry_kind, loaded_meters
from .energy.site import Role, SiteConfig, SiteState
from .export.emoncms import (
    DrainResult,
    EmoncmsClient,
    EmoncmsSender,
    ExportState,
    ExportStatus,
    clean_node_name,
)
from .export.queue import ExportQueue, QueueSnapshot
from .meter.snapshot import TOTAL_ID, MeterSnapshot
from .storage import DurableStore

_LOGGER = logging.getLogger(__name__)

STORAGE_VERSION = 1
ISSUE_INVALID_KEY = "emoncms_invalid_key"
ISSUE_QUEUE_FULL = "emoncms_queue_full"
_FALLBACK_NODE = "shelly"


def meter_values(snapshot: MeterSnapshot, chosen: frozenset[str]) -> dict[str, float | None]:
    """Return a meter's inputs: power (W), energy counters (kWh) and voltage (V) per channel.

    Inputs are named after the phase or channel ("power_a", "import_kwh_1"); the three-phase
    totals have no suffix ("power", "import_kwh").
    """
    values: dict[str, float | None] = {}
    readings = (*snapshot.channels, *((snapshot.total,) if snapshot.total else ()))
    for reading in readings:
        suffix = "" if reading.id == TOTAL_ID else f"_{reading.id}"
        if "power" in chosen:
            values[f"power{suffix}"] = reading.power
        if "energy" in chosen:
            values[f"import_kwh{suffix}"] = _kwh(reading.energy_in)
            values[f"export_kwh{suffix}"] = _kwh(reading.energy_out)
        if "voltage" in chosen and reading.voltage is not None:
            values[f"voltage{suffix}"] = reading.voltage
    return values


def site_values(state: SiteState, config: SiteConfig) -> dict[str, float | None]:
    """Return a site's inputs: the power flows (W) and energy totals (kWh) of its roles."""
    power, energy = state.power, state.energy
    values: dict[str, float | None] = {
        "home_power": power.home_consumption,
        "home_kwh": _kwh(energy.home_consumption),
    }
    if config.has_role(Role.GRID):
        values["grid_power"] = power.grid_net
        values["grid_import_kwh"] = _kwh(energy.grid_import)
        values["grid_export_kwh"] = _kwh(energy.grid_export)
    if config.has_role(Role.SOLAR):
        values["solar_power"] = power.solar_production
        values["self_consumed_power"] = power.self_consumed_solar
        values["solar_kwh"] = _kwh(energy.solar_production)
        values["self_consumed_kwh"] = _kwh(energy.self_consumed_solar)
    if config.has_role(Role.BATTERY):
        values["battery_power"] = power.battery_net
        values["battery_charged_kwh"] = _kwh(energy.battery_charged)
        values["battery_discharged_kwh"] = _kwh(energy.battery_discharged)
    return values


def _kwh(wh: float | None) -> float | None:
    return None if wh is None else wh / 1000


def default_node(title: str) -> str:
    """Return the node name a meter or site gets unless the user chose one."""
    return clean_node_name(title) or _FALLBACK_NODE


def queue_bound(interval: float, nodes: int) -> int:
    """Return how many samples make a week of export at this interval (at least one node)."""
    return int(EXPORT_QUEUE_DAYS * 86_400 / interval) * max(nodes, 1)


class ExportCoordinator(EntityCoordinator[ExportStatus]):
    """Queues a sample per node every interval and delivers the queue in the background."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        sender: EmoncmsSender,
        queue: ExportQueue,
    ) -> None:
        """Set up the export; `async_start` begins it."""
        super().__init__(hass, entry)
        self.sender = sender
        self.queue = queue
        self.store = DurableStore(
            hass,
            export_store_key(entry),
            within=EXPORT_SAVE_DELAY_S,
            snapshot=queue.snapshot,
            serialize=QueueSnapshot.to_dict,
        )
        options = entry.options
        self._interval = float(options.get(CONF_INTERVAL, DEFAULT_EXPORT_INTERVAL))
        self._chosen = frozenset(options.get(CONF_VALUES, EXPORT_VALUES))
        self._nodes: Mapping[str, str] = options.get(CONF_NODES, {})
        self._last_measured: dict[str, float] = {}  # node -> time of its last queued sample
        self._saved_revision = queue.revision
        self._drain_task: asyncio.Task[None] | None = None
        self.data = sender.status

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Export every interval until the returned callback."""
        return async_track_time_interval(
            self.hass, self._tick, timedelta(seconds=self._interval), name="Emoncms export"
        )

    @callback
    def _tick(self, _now: Any = None) -> None:
        self.record_samples()
        self._queue_changed()
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = self.config_entry.async_create_background_task(
                self.hass, self._drain(), "Emoncms export"
            )

    @callback
    def record_samples(self) -> None:
        """Queue one sample per meter and site that has a new reading since the last one."""
        for mac, meter in loaded_meters(self.hass).items():
            if meter.last_update_success and meter.data is not None:
                node = self._nodes.get(mac) or default_node(meter.config_entry.title)
                self._record(node, meter.data.time, meter_values(meter.data, self._chosen))
        if "site" in self._chosen:
            now = time.time()
            for entry in self.hass.config_entries.async_entries(DOMAIN):
                if entry_kind(entry) == KIND_SITE and entry.state is ConfigEntryState.LOADED:
                    node = self._nodes.get(entry.entry_id) or default_node(entry.title)
                    site = entry.runtime_data.coordinator
                    self._record(node, now, site_values(site.data, site.config))

    def _record(self, node: str, measured: float, values: Mapping[str, float | None]) -> None:
        if measured <= self._last_measured.get(node, 0):
            return  # nothing new since the last sample (the meter was not read again)
        self._last_measured[node] = measured
        self.sender.record(int(measured), node, values)

    async def _drain(self) -> None:
        await self.sender.drain()
        self._after_send()

    async def async_flush(self) -> DrainResult:
        """Send the queue now, even during an outage's backoff."""
        result = await self.sender.flush()
        self._after_send()
        return result

    @callback
    def _queue_changed(self) -> None:
        """Have the queue written within the bound when it changed (a sample queued or sent)."""
        if self.queue.revision != self._saved_revision:
            self._saved_revision = self.queue.revision
            self.store.changed()

    @callback
    def _after_send(self) -> None:
        """Save the queue when it changed, tell the user what needs them, update the sensors."""
        self._queue_changed()
        status = self.sender.status
        entry = self.config_entry
        if status.state is ExportState.PAUSED_AUTH:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"{ISSUE_INVALID_KEY}_{entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=ISSUE_INVALID_KEY,
                translation_placeholders={"name": entry.title},
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_INVALID_KEY}_{entry.entry_id}")
        if status.dropped:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"{ISSUE_QUEUE_FULL}_{entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_QUEUE_FULL,
                translation_placeholders={
                    "name": entry.title,
                    "count": str(status.dropped),
                    "days": str(EXPORT_QUEUE_DAYS),
                },
            )
        self.async_set_updated_data(status)

    async def async_save(self) -> None:
        """Write the queue now (when unloading)."""
        await self.store.async_save()

    def diagnostics(self) -> dict[str, Any]:
        """Return the exporter's state (the key is never part of it)."""
        return asdict(self.sender.status)


async def async_emoncms_client(hass: HomeAssistant, url: str, write_key: str) -> EmoncmsClient:
    """Return a client of an Emoncms server on Home Assistant's shared session.

    Raises ValueError when the URL is not an http(s) URL.
    """
    version = str((await async_get_integration(hass, DOMAIN)).version)
    return EmoncmsClient(async_get_clientsession(hass), write_key, version=version, url=url)


def export_store_key(entry: ConfigEntry) -> str:
    """Return where an export entry keeps its queue."""
    return f"{DOMAIN}.emoncms.{entry.entry_id}"


async def async_create_exporter(hass: HomeAssistant, entry: ConfigEntry) -> ExportCoordinator:
    """Restore the queue of an export entry and make its coordinator.

    The queue reaches the disk within `EXPORT_SAVE_DELAY_S` of any change, outage or not.
    """
    entries = hass.config_entries.async_entries(DOMAIN)
    nodes = sum(1 for other in entries if entry_kind(other) != KIND_EMONCMS)
    bound = queue_bound(float(entry.options.get(CONF_INTERVAL, DEFAULT_EXPORT_INTERVAL)), nodes)
    queue = ExportQueue(bound)
    stored: Store[dict[str, Any]] = Store(hass, STORAGE_VERSION, export_store_key(entry))
    if (saved := await stored.async_load()) is not None:
        try:
            queue = ExportQueue.from_dict(saved, bound)
        except ValueError:
            _LOGGER.exception("The saved Emoncms queue of %s is unreadable: it starts empty", entry)
    client = await async_emoncms_client(hass, entry.data[CONF_URL], entry.data[CONF_API_KEY])
    sender = EmoncmsSender(client, queue, clock=time.time, random=random.random)
    return ExportCoordinator(hass, entry, sender, queue)
