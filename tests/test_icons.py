"""Every entity of every kind has an icon of its own: none shows Home Assistant's generic one."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import homeassistant.components
import pytest
from homeassistant.components.recorder.core import Recorder
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.shelly_energy.const import (
    CONF_API_KEY,
    CONF_BATTERY,
    CONF_GRID,
    CONF_HTTP_PORT,
    CONF_INTERVAL,
    CONF_KIND,
    CONF_LOAD,
    CONF_MAC,
    CONF_MAX_RATE,
    CONF_MDNS_GENERATION,
    CONF_MODEL,
    CONF_REGULATION,
    CONF_SETTLEMENT,
    CONF_SHARE,
    CONF_SITE,
    CONF_SMOOTHING,
    CONF_SOLAR,
    CONF_STALE_AFTER,
    CONF_TARIFF,
    CONF_TRANSPORTS,
    CONF_UDP_PORTS,
    CONF_URL,
    CONF_VALUES,
    DOMAIN,
    KIND_EMONCMS,
    KIND_SITE,
    KIND_VIRTUAL_METER,
)
from custom_components.shelly_energy.energy.tariff import FlatPricing, Tariff
from simulator import Simulator
from simulator.emoncms import EmoncmsDouble

from .batteries import free_port
from .conftest import meter_entry, serve, setup_entry

ICONS = json.loads(
    (Path(__file__).parents[1] / "custom_components" / DOMAIN / "icons.json").read_text()
)["entity"]
WRITE_KEY = "0123456789abcdef0123456789abcdef"
READ_KEY = "fedcba9876543210fedcba9876543210"

pytestmark = pytest.mark.usefixtures("all_entities_enabled")


def device_class_icons(platform: str) -> set[str]:
    """Return the device classes that Home Assistant gives an icon of their own on a platform.

    What is left (no device class, or one without an entry) shows the platform's generic icon.
    """
    path = Path(homeassistant.components.__file__).parent / platform / "icons.json"
    return set(json.loads(path.read_text())["entity_component"]) - {"_"}


@pytest.fixture
async def emoncms() -> AsyncIterator[EmoncmsDouble]:
    async with EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY) as server:
        yield server


# The history import needs the recorder; storing every entity's states would only slow the test.
@pytest.mark.parametrize("recorder_config", [{"exclude": {"entity_globs": ["*"]}}])
async def test_every_entity_has_an_icon(
    recorder_mock: Recorder, hass: HomeAssistant, simulator: Simulator, emoncms: EmoncmsDouble
) -> None:
    # Every meter layout (phases and totals, channels, a neutral, Wi-Fi, relays), a site with
    # every role and a tariff, an Emoncms export and a virtual meter.
    meters = {}
    for kind in ("pro3em", "proem50", "gen1_em", "gen1_3em", "emg4"):
        meters[kind] = meter = await serve(simulator, kind)
        await setup_entry(hass, meter_entry(simulator, meter, title=kind))
    mains, circuits, inverters = (meters[kind].mac for kind in ("pro3em", "proem50", "gen1_em"))
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={
            CONF_GRID: [f"{mains}:{phase}" for phase in "abc"],
            CONF_SETTLEMENT: "60",  # the settlement period's sensors too
            CONF_SOLAR: [f"{inverters}:1"],
            CONF_BATTERY: [f"{inverters}:2"],
            CONF_LOAD: [f"{circuits}:1"],
            CONF_TARIFF: Tariff(FlatPricing(0.30), export_price=0.08).to_dict(),
        },
    )
    await setup_entry(hass, site)
    await setup_entry(
        hass,
        MockConfigEntry(
            domain=DOMAIN,
            title="Emoncms",
            data={CONF_KIND: KIND_EMONCMS, CONF_URL: emoncms.url, CONF_API_KEY: WRITE_KEY},
            options={CONF_INTERVAL: 10, CONF_VALUES: ["power"]},
        ),
    )
    await setup_entry(
        hass,
        MockConfigEntry(
            domain=DOMAIN,
            title="Battery meter",
            data={CONF_KIND: KIND_VIRTUAL_METER, CONF_MAC: "A0DD6C00FF01"},
            options={
                CONF_NAME: "Battery meter",
                CONF_SITE: site.entry_id,
                CONF_MODEL: "pro3em",
                CONF_TRANSPORTS: ["udp", "http"],
                CONF_UDP_PORTS: [str(free_port()), str(free_port())],
                CONF_HTTP_PORT: free_port(socket.SOCK_STREAM),
                CONF_MDNS_GENERATION: "2",
                CONF_REGULATION: {
                    CONF_SHARE: 100.0,
                    CONF_STALE_AFTER: 3.0,
                    CONF_SMOOTHING: 0.0,
                    CONF_MAX_RATE: 0.0,
                },
            },
        ),
    )
    entities = er.async_entries_for_config_entry
    registry = er.async_get(hass)
    found = [
        entity
        for entry in hass.config_entries.async_entries(DOMAIN)
        for entity in entities(registry, entry.entry_id)
    ]
    platforms = {entity.domain for entity in found}
    assert platforms == {"sensor", "binary_sensor", "switch", "event"}
    by_device_class = {platform: device_class_icons(platform) for platform in platforms}
    generic = sorted(
        entity.entity_id
        for entity in found
        if entity.original_icon is None
        and entity.translation_key not in ICONS.get(entity.domain, {})
        and entity.original_device_class not in by_device_class[entity.domain]
    )
    assert generic == []
    # Every icon of icons.json belongs to an entity (none left behind by a renamed key).
    used = {(entity.domain, entity.translation_key) for entity in found}
    assert {(platform, key) for platform, keys in ICONS.items() for key in keys} <= used
