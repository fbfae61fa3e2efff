"""The diagnostics download of a meter."""

from __future__ import annotations

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from simulator import Simulator

from .conftest import meter_entry, poll, serve, setup_entry


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


async def test_diagnostics_tell_why_a_counter_held(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_counters("a", 5000.0, 0.0)
    entry = meter_entry(simulator, meter)
    await setup_entry(hass, entry)
    meter.corrupt_counters("a", 1e308)
    await poll(hass, freezer)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    counter = diagnostics["counters"]["a_in"]
    assert counter["total"] == 5000.0
    assert counter["base"] == 5000.0
    assert [decision["verdict"] for decision in counter["decisions"]] == ["rejected"]
    assert counter["decisions"][0]["reading"] == 1e308
    assert diagnostics["counters"]["b_in"]["decisions"] == []
