"""The README's Energy dashboard table names sensors that the demo (scripts/develop) creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.shelly_energy.const import DOMAIN
from scripts import develop
from simulator import Simulator
from simulator.__main__ import parse_meter_spec

from .conftest import serve

README = Path(__file__).parents[1] / "README.md"


def section() -> str:
    """Return the README's section on the Energy dashboard."""
    text = README.read_text().split("\n## Setting up the Energy dashboard\n", 1)[1]
    return text.split("\n## ", 1)[0]


def demo_column() -> list[str]:
    """Return the entity ids of the table's demo column, row by row."""
    text = section()
    table = text[text.index("\n|") + 1 :].split("\n\n", 1)[0]
    header, _, *slots = table.splitlines()
    assert header.split("|")[2].strip().startswith("The demo")
    return [entity for row in slots for entity in re.findall(r"sensor\.\w+", row.split("|")[2])]


async def run_flow(hass: HomeAssistant, step: str, *inputs: dict[str, Any]) -> None:
    """Go through the setup wizard as the demo does."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    for user_input in ({"next_step_id": step}, *inputs):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_the_readme_names_the_demos_sensors(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    for text in (develop.MAINS, develop.INVERTERS, develop.HEAT_PUMP):
        spec = parse_meter_spec(text.format(port=0))
        meter = await serve(simulator, spec.kind, seed=spec.seed, **spec.options)
        address = {"host": f"127.0.0.1:{simulator.server(meter).port}"}
        password = () if meter.password is None else ({"password": meter.password},)
        await run_flow(hass, "meter", address, *password)
    await run_flow(hass, "site", develop.SITE)
    await hass.async_block_till_done()

    # Every sensor the section names for the demo, in the table or in the text, exists.
    mentioned = set(re.findall(r"`(sensor\.\w+)`", section()))
    assert [
        entity_id for entity_id in sorted(mentioned) if hass.states.get(entity_id) is None
    ] == []
    named = demo_column()
    assert len(named) == 9  # grid in and out, solar, battery in and out, a device, three powers
    states = {entity_id: hass.states.get(entity_id) for entity_id in named}
    assert [entity_id for entity_id, state in states.items() if state is None] == []
    assert {
        entity_id: (state.attributes["unit_of_measurement"], state.attributes.get("state_class"))
        for entity_id, state in states.items()
        if state is not None
    } == {
        **dict.fromkeys(named[:6], ("kWh", "total_increasing")),
        **dict.fromkeys(named[6:], ("W", "measurement")),
    }
