"""The diagnostics download of a meter."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from simulator import Simulator

from .conftest import meter_entry, serve, setup_entry


async def test_diagnostics_redact_credentials(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, simulator: Simulator
) -> None:
    meter = await serve(simulator, "gen1_em", password="hunter2")
    meter.set_power("0", 42.0)
    entry = meter_entry(simulator, meter, password="hunter2", title="EM")
    await setup_entry(hass, entry)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["password"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["username"] == "**REDACTED**"
    assert "hunter2" not in str(diagnostics)
    assert diagnostics["meter"]["model"] == "SHEM"
    assert diagnostics["meter"]["channel_ids"] == ["1", "2"]
    assert diagnostics["last_update_success"] is True
    assert diagnostics["snapshot"]["channels"][0]["power"] == 42.0
