"""Service actions of the integration, registered once for all its entries."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError

from .const import DOMAIN, KIND_EMONCMS
from .coordinator import entry_kind

SERVICE_EMONCMS_FLUSH = "emoncms_flush"


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's service actions."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_EMONCMS_FLUSH,
        _async_emoncms_flush,
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
