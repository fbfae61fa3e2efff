"""A Pro 3EM (three-phase profile) read over the wire from the simulator."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from simulator import Simulator

from .conftest import meter_entry, serve, setup_entry


async def test_pro3em_entities(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em", name="Mains")
    meter.set_power("a", 1000.0)
    entry = meter_entry(simulator, meter, title="Mains")
    await setup_entry(hass, entry)
    registry = er.async_get(hass)
    entities = er.async_entries_for_config_entry(registry, entry.entry_id)
    print(sorted((e.entity_id, e.disabled_by) for e in entities))
    state = hass.states.get("sensor.mains_phase_a_power")
    assert state is not None
    assert state.state == "1000.0"
