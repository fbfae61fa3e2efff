"""Each meter family's entities and values, read over the wire from the simulator."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from syrupy.assertion import SnapshotAssertion

from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, serve, setup_entry


def pin(meter: SimulatedMeter, channel: str, watts: float, volts: float = 230.0) -> None:
    """Pin a channel to exact values (pf 0.8 so that apparent power differs)."""
    meter.set_power(channel, watts, pf=0.8)
    meter.set_voltage(channel, volts)


def registry_table(hass: HomeAssistant, entry_id: str) -> list[dict[str, object]]:
    """Return what a user sees of each entity of an entry, for a snapshot."""
    registry = er.async_get(hass)
    return [
        {
            "entity_id": entity.entity_id,
            "unique_id": entity.unique_id,
            "name": (state.name if (state := hass.states.get(entity.entity_id)) else None),
            "device_class": entity.original_device_class,
            "unit": entity.unit_of_measurement,
            "state_class": (entity.capabilities or {}).get("state_class"),
            "category": entity.entity_category,
            "enabled": entity.disabled_by is None,
        }
        for entity in sorted(
            er.async_entries_for_config_entry(registry, entry_id), key=lambda e: e.entity_id
        )
    ]


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("pro3em", {}),
        ("pro3em", {"profile": "monophase"}),
        ("proem50", {}),
        ("emg3", {}),
        ("emg4", {}),
        ("3em63g3", {}),
        ("gen1_em", {}),
        ("gen1_3em", {}),
    ],
    ids=["pro3em", "pro3em-monophase", "proem50", "emg3", "emg4", "3em63g3", "gen1_em", "gen1_3em"],
)
async def test_entity_set(
    hass: HomeAssistant,
    simulator: Simulator,
    snapshot: SnapshotAssertion,
    kind: str,
    options: dict[str, str],
) -> None:
    meter = await serve(simulator, kind, **options)
    entry = meter_entry(simulator, meter, title="Meter")
    await setup_entry(hass, entry)
    assert registry_table(hass, entry.entry_id) == snapshot
