"""Shelly Energy Monitor: Shelly energy meters as a complete home energy monitor.

Each config entry is a meter (polled by a MeterCoordinator), an energy site (derived by a
SiteCoordinator from the meters it spans), an Emoncms export (an ExportCoordinator) or a virtual
meter serving a site's grid power to home batteries (a VirtualMeterCoordinator).
"""

from __future__ import annotations

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
from homeassistant.exceptions import ConfigEntryError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .billing import SiteBilling, billing_store_key
from .const import (
    CONF_GENERATION,
    CONF_TARIFF,
    DOMAIN,
    KIND_EMONCMS,
    KIND_METER,
    KIND_SITE,
    KIND_VIRTUAL_METER,
)
from .coordinator import (
    MeterCoordinator,
    SiteCoordinator,
    async_forget_meter,
    async_register_meter,
    async_register_site,
    counter_store_key,
    entry_kind,
    poll_interval,
    site_store_key,
)
from .energy.tariff import Tariff
from .export_entry import (
    ISSUE_INVALID_KEY,
    ISSUE_QUEUE_FULL,
    async_create_exporter,
    export_store_key,
)
from .history_import import MeterHistory, SiteHistory, history_store_key
from .meter.address import Address, InvalidAddressError
from .meter.client import Credentials
from .meter.connect import make_client
from .runtime import (
    ExportConfigEntry,
    ExportRuntime,
    MeterConfigEntry,
    MeterRuntime,
    SiteConfigEntry,
    SiteRuntime,
    VirtualMeterConfigEntry,
    VirtualMeterRuntime,
)
from .services import async_setup_services
from .virtual_meter_entry import VirtualMeterCoordinator

METER_PLATFORMS = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR, Platform.SWITCH]
SITE_PLATFORMS = [Platform.EVENT, Platform.SENSOR]
EXPORT_PLATFORMS = [Platform.SENSOR]
VIRTUAL_METER_PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR, Platform.SWITCH]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the service actions (they exist whether or not entries are loaded)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Set up a meter, an energy site or the Emoncms export."""
    kind = entry_kind(entry)
    if kind == KIND_SITE:
        return await _async_setup_site(hass, entry)
    if kind == KIND_EMONCMS:
        return await _async_setup_export(hass, entry)
    if kind == KIND_VIRTUAL_METER:
        return await _async_setup_virtual_meter(hass, entry)
    return await _async_setup_meter(hass, entry)


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Unload a meter, an energy site or the Emoncms export, saving what must be kept."""
    kind = entry_kind(entry)
    if kind == KIND_VIRTUAL_METER:
        # The transports close through async_on_unload.
        return await hass.config_entries.async_unload_platforms(entry, VIRTUAL_METER_PLATFORMS)
    if kind in (KIND_SITE, KIND_EMONCMS):
        platforms = SITE_PLATFORMS if kind == KIND_SITE else EXPORT_PLATFORMS
        unloaded = await hass.config_entries.async_unload_platforms(entry, platforms)
        if unloaded:
            await entry.runtime_data.coordinator.async_save()
        return unloaded
    unloaded = await hass.config_entries.async_unload_platforms(entry, METER_PLATFORMS)
    if unloaded:
        coordinator = entry.runtime_data.coordinator
        coordinator.clear_repairs()
        await coordinator.counter_store.async_save()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete what a removed entry kept on disk, and its repair issues."""
    kind = entry_kind(entry)
    if kind == KIND_SITE:
        for key in (site_store_key(entry), billing_store_key(entry)):
            await Store(hass, 1, key).async_remove()
    elif kind == KIND_EMONCMS:
        await Store(hass, 1, export_store_key(entry)).async_remove()
        for issue in (ISSUE_INVALID_KEY, ISSUE_QUEUE_FULL):
            ir.async_delete_issue(hass, DOMAIN, f"{issue}_{entry.entry_id}")
    elif kind == KIND_METER:
        async_forget_meter(hass, entry.entry_id)
        await Store(hass, 1, counter_store_key(entry)).async_remove()
    if kind not in (KIND_EMONCMS, KIND_VIRTUAL_METER):
        await Store(hass, 1, history_store_key(entry)).async_remove()


async def _async_setup_meter(hass: HomeAssistant, entry: MeterConfigEntry) -> bool:
    """Connect to a meter, read it once, and create its entities."""
    try:
        address = Address(entry.data[CONF_HOST], entry.data[CONF_PORT])
    except InvalidAddressError as err:  # stored by an older version that took more
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="invalid_address",
            translation_placeholders={"host": str(entry.data[CONF_HOST])},
        ) from err
    client = make_client(
        async_get_clientsession(hass),
        address,
        entry.data[CONF_GENERATION],
        Credentials(entry.data.get(CONF_USERNAME), entry.data.get(CONF_PASSWORD)),
        # A pushing meter's readings are as fresh as its connection is known to be alive.
        alive_within=poll_interval(entry.options).total_seconds(),
    )
    coordinator = MeterCoordinator(hass, entry, client)
    try:
        await coordinator.async_config_entry_first_refresh()
    except BaseException:
        coordinator.counter_store.cancel()
        await client.close()
        raise
    entry.runtime_data = MeterRuntime(coordinator, dict(entry.options))
    if "recorder" in hass.config.components:
        entry.runtime_data.history = MeterHistory(hass, entry, coordinator)
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
    if entry.runtime_data.history is not None:
        entry.async_on_unload(entry.runtime_data.history.async_start())
    return True


async def _async_setup_site(hass: HomeAssistant, entry: SiteConfigEntry) -> bool:
    """Restore a site's totals and follow its meters."""
    coordinator = SiteCoordinator(hass, entry)
    await coordinator.async_restore()
    if CONF_TARIFF in entry.options:
        coordinator.billing = SiteBilling(
            hass,
            entry,
            tariff=Tariff.from_dict(entry.options[CONF_TARIFF]),
            on_projection=coordinator.async_update_listeners,
            capacity_peak=coordinator.capacity_peak,
        )
        await coordinator.billing.async_restore()
        entry.async_on_unload(coordinator.billing.async_start())
    entry.runtime_data = SiteRuntime(coordinator)
    entry.async_on_unload(coordinator.async_start())
    entry.async_on_unload(async_register_site(hass, coordinator))
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, SITE_PLATFORMS)
    _remove_stale_entities(hass, entry, coordinator.unique_ids)
    if "recorder" in hass.config.components:
        entry.runtime_data.history = SiteHistory(hass, entry, coordinator)
        entry.async_on_unload(entry.runtime_data.history.async_start())
    return True


async def _async_setup_export(hass: HomeAssistant, entry: ExportConfigEntry) -> bool:
    """Restore the export's queue and start exporting."""
    coordinator = await async_create_exporter(hass, entry)
    entry.runtime_data = ExportRuntime(coordinator)
    entry.async_on_unload(coordinator.async_start())
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, EXPORT_PLATFORMS)
    return True


async def _async_setup_virtual_meter(hass: HomeAssistant, entry: VirtualMeterConfigEntry) -> bool:
    """Create the entities (a paused meter stays paused), then start serving the site."""
    coordinator = VirtualMeterCoordinator(hass, entry)
    entry.runtime_data = VirtualMeterRuntime(coordinator)
    entry.async_on_unload(coordinator.async_stop)
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    await hass.config_entries.async_forward_entry_setups(entry, VIRTUAL_METER_PLATFORMS)
    await coordinator.async_start()
    return True


async def _async_options_updated(hass: HomeAssistant, entry: MeterConfigEntry) -> None:
    """Apply changed options by setting the meter up again (not on data-only updates)."""
    if dict(entry.options) != entry.runtime_data.options:
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def _async_reload(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Apply new options by setting the entry up again (a site's totals and a queue stay)."""
    hass.config_entries.async_schedule_reload(entry.entry_id)


def _remove_stale_entities(hass: HomeAssistant, entry: ConfigEntry, current: set[str]) -> None:
    """Remove entities an entry no longer has (phases after a switch to channels, old loads)."""
    registry = er.async_get(hass)
    for registered in er.async_entries_for_config_entry(registry, entry.entry_id):
        if registered.unique_id not in current:
            registry.async_remove(registered.entity_id)
