"""Service actions of the integration, registered once for all its entries."""

from __future__ import annotations

from datetime import timedelta

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util

from .const import DOMAIN, KIND_EMONCMS, KIND_METER, KIND_SITE
from .coordinator import entry_kind
from .devices import entry_device
from .history_import import HistoryStatus, MeterHistory, SiteHistory

SERVICE_EMONCMS_FLUSH = "emoncms_flush"
SERVICE_GET_BILL = "get_bill"
SERVICE_BACKFILL = "backfill"
ATTR_SITE = "site"
ATTR_DATE = "date"
ATTR_DEVICE_ID = "device_id"
ATTR_SINCE = "since"
GET_BILL_SCHEMA = vol.Schema({vol.Required(ATTR_SITE): cv.string, vol.Optional(ATTR_DATE): cv.date})
BACKFILL_SCHEMA = vol.Schema(
    {vol.Required(ATTR_DEVICE_ID): cv.string, vol.Optional(ATTR_SINCE): cv.date}
)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's service actions."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_EMONCMS_FLUSH,
        _async_emoncms_flush,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_BILL,
        _async_get_bill,
        schema=GET_BILL_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_BACKFILL,
        _async_backfill,
        schema=BACKFILL_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


async def _async_emoncms_flush(call: ServiceCall) -> ServiceResponse:
    """Send every Emoncms export's queue now; return what each sent."""
    exports = [
        entry
        for entry in call.hass.config_entries.async_entries(DOMAIN)
        if entry_kind(entry) == KIND_EMONCMS and entry.state is ConfigEntryState.LOADED
    ]
    if not exports:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_export")
    response: dict[str, dict[str, int]] = {}
    for entry in exports:
        result = await entry.runtime_data.coordinator.async_flush()
        response[entry.title] = {
            "sent": result.sent,
            "rejected": result.rejected,
            "remaining": result.remaining,
        }
    return {"exports": response}  # type: ignore[dict-item]


async def _async_get_bill(call: ServiceCall) -> ServiceResponse:
    """Return the itemised bill of a site's billing period (by default the last complete one)."""
    hass = call.hass
    entry = hass.config_entries.async_get_entry(call.data[ATTR_SITE])
    if (
        entry is None
        or entry_kind(entry) != KIND_SITE
        or entry.state is not ConfigEntryState.LOADED
    ):
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_a_site")
    billing = entry.runtime_data.coordinator.billing
    if billing is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_tariff",
            translation_placeholders={"site": entry.title},
        )
    now = dt_util.now()
    if ATTR_DATE in call.data:
        moment = dt_util.start_of_local_day(call.data[ATTR_DATE])
    else:
        moment = billing.tariff.billing_period(now).start - timedelta(days=1)
    period = billing.tariff.billing_period(moment)
    bill = await billing.async_bill_for(period)
    if bill is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_statistics",
            translation_placeholders={"site": entry.title},
        )
    return {"site": entry.title, "currency": hass.config.currency, **bill.to_dict()}


async def _async_backfill(call: ServiceCall) -> ServiceResponse:
    """Import a meter's or site's history from the records its meters keep; say what it wrote."""
    hass = call.hass
    device = dr.async_get(hass).async_get(call.data[ATTR_DEVICE_ID])
    history = None if device is None else _history_of(hass, device.id)
    if device is None or history is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="not_a_history_device"
        )
    since = call.data.get(ATTR_SINCE)
    await history.async_run(
        None if since is None else int(dt_util.start_of_local_day(since).timestamp())
    )
    progress = history.progress
    name = device.name_by_user or device.name or device.id
    if progress.status is HistoryStatus.UNSUPPORTED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_stored_records",
            translation_placeholders={"device": name},
        )
    if progress.status is HistoryStatus.FAILED:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="backfill_failed",
            translation_placeholders={"device": name, "error": progress.error or ""},
        )
    return {"records": progress.records, "hours": progress.hours}


def _history_of(hass: HomeAssistant, device_id: str) -> MeterHistory | SiteHistory | None:
    """Return the history of the loaded meter or site that a device is (None: neither)."""
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        if entry_kind(entry) not in (KIND_METER, KIND_SITE):
            continue
        history: MeterHistory | SiteHistory | None = entry.runtime_data.history
        if history is None:
            continue
        device = entry_device(hass, entry.entry_id, history.device_identifier())
        if device is not None and device.id == device_id:
            return history
    return None
