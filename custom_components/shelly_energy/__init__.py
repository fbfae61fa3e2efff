"""Shelly Energy Monitor: Shelly energy meters as a complete home energy monitor.

Each config entry is a meter (polled by a MeterCoordinator) or an energy site (derived by a
SiteCoordinator from the meters it spans).
"""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    CONF_HOST,
    CONF_PASSWORD,
    CONF_PORT,
    CONF_USERNAME,
    EVENT_HOMEASSISTANT_STOP,
    Platform,
)
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.storage import Store

from .const import CONF_GENERATION, DOMAIN, KIND_SITE
from .coordinator import (
    MeterConfigEntry,
    MeterCoordinator,
    MeterRuntime,
    SiteConfigEntry,
    SiteCoordinator,
    SiteRuntime,
    async_register_meter,
    entry_kind,
    site_config,
)
from .energy.site import SiteAccumulator
from .meter.client import Credentials
from .meter.connect import make_client

METER_PLATFORMS = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR, Platform.SWITCH]
SITE_PLATFORMS = [Platform.SENSOR]
SITE_STORAGE_VERSION = 1


def _site_store(hass: HomeAssistant, entry: ConfigEntry) -> Store[dict[str, Any]]:
    return Store(hass, SITE_STORAGE_VERSION, f"{DOMAIN}.site.{entry.entry_id}")


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Set up a meter or an energy site."""
    if entry_kind(entry) == KIND_SITE:
        return await _async_setup_site(hass, entry)
    return await _async_setup_meter(hass, entry)


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Unload a meter or an energy site."""
    if entry_kind(entry) == KIND_SITE:
        unloaded = await hass.config_entries.async_unload_platforms(entry, SITE_PLATFORMS)
        if unloaded:
            await entry.runtime_data.coordinator.async_save()
        return unloaded
    unloaded = await hass.config_entries.async_unload_platforms(entry, METER_PLATFORMS)
    if unloaded:
        entry.runtime_data.coordinator.supply.clear_repairs()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete what a removed site kept on disk."""
    if entry_kind(entry) == KIND_SITE:
        await _site_store(hass, entry).async_remove()


async def _async_setup_meter(hass: HomeAssistant, entry: MeterConfigEntry) -> bool:
    """Connect to a meter, read it once, and create its entities."""
    client = make_client(
        async_get_clientsession(hass),
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        entry.data[CONF_GENERATION],
        Credentials(entry.data.get(CONF_USERNAME), entry.data.get(CONF_PASSWORD)),
    )
    coordinator = MeterCoordinator(hass, entry, client)
    try:
        await coordinator.async_config_entry_first_refresh()
    except BaseException:
        await client.close()
        raise
    entry.runtime_data = MeterRuntime(coordinator, dict(entry.options))
    entry.async_on_unload(client.close)

    async def _async_close_on_stop(_event: Event) -> None:
        await client.close()

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_close_on_stop)
    )
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    await hass.config_entries.async_forward_entry_setups(entry, METER_PLATFORMS)
    _remove_stale_entities(hass, entry, coordinator.unique_ids)
    entry.async_on_unload(async_register_meter(hass, coordinator))
    return True


async def _async_setup_site(hass: HomeAssistant, entry: SiteConfigEntry) -> bool:
    """Restore a site's totals and follow its meters."""
    store = _site_store(hass, entry)
    saved = await store.async_load()
    config = site_config(entry.options)
    accumulator = (
        SiteAccumulator(config) if saved is None else SiteAccumulator.from_dict(config, saved)
    )
    coordinator = SiteCoordinator(hass, entry, accumulator, store)
    entry.runtime_data = SiteRuntime(coordinator)
    entry.async_on_unload(coordinator.async_start())
    entry.async_on_unload(entry.add_update_listener(_async_site_options_updated))
    await hass.config_entries.async_forward_entry_setups(entry, SITE_PLATFORMS)
    _remove_stale_entities(hass, entry, coordinator.unique_ids)
    return True


async def _async_options_updated(hass: HomeAssistant, entry: MeterConfigEntry) -> None:
    """Apply changed options by setting the meter up again (not on data-only updates)."""
    if dict(entry.options) != entry.runtime_data.options:
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def _async_site_options_updated(hass: HomeAssistant, entry: SiteConfigEntry) -> None:
    """Apply new roles: the totals so far stay, the new roles count from now on."""
    hass.config_entries.async_schedule_reload(entry.entry_id)


def _remove_stale_entities(hass: HomeAssistant, entry: ConfigEntry, current: set[str]) -> None:
    """Remove entities an entry no longer has (phases after a switch to channels, old loads)."""
    registry = er.async_get(hass)
    for registered in er.async_entries_for_config_entry(registry, entry.entry_id):
        if registered.unique_id not in current:
            registry.async_remove(registered.entity_id)
