"""IPv6 addresses work wherever an address is used: setup, discovery, reconfigure, the
device's link, the switch and the history download (meters served on ::1)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from homeassistant.components.switch.const import DOMAIN as SWITCH_DOMAIN
from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF, ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID, CONF_HOST, CONF_PORT, SERVICE_TURN_OFF
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.shelly_energy.const import DOMAIN
from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import Credentials
from custom_components.shelly_energy.meter.connect import make_client
from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, setup_entry, state_of

pytestmark = pytest.mark.usefixtures("ipv6_loopback")


async def serve_on_ipv6(simulator: Simulator, kind: str, **options: Any) -> SimulatedMeter:
    meter = simulator.add_meter(kind, host="::1", **options)
    await simulator.start()
    return meter


def bracketed(simulator: Simulator, meter: SimulatedMeter) -> str:
    return f"[::1]:{simulator.server(meter).port}"


def configuration_url(hass: HomeAssistant, meter: SimulatedMeter) -> str | None:
    registry = dr.async_get(hass)
    device = next(
        device
        for entry in hass.config_entries.async_entries(DOMAIN)
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
        if (DOMAIN, meter.mac) in device.identifiers
    )
    return device.configuration_url


@pytest.mark.parametrize("kind", ["gen1_em", "pro3em"])
async def test_a_meter_added_by_its_ipv6_address(
    hass: HomeAssistant, simulator: Simulator, kind: str
) -> None:
    meter = await serve_on_ipv6(simulator, kind)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "meter"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: bracketed(simulator, meter)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    port = simulator.server(meter).port
    assert (result["data"][CONF_HOST], result["data"][CONF_PORT]) == ("::1", port)
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    channel = "channel_1" if kind == "gen1_em" else "phase_a"
    assert state_of(hass, f"sensor.{entry.title.lower().replace(' ', '_')}_{channel}_power")
    assert configuration_url(hass, meter) == f"http://[::1]:{port}"


async def test_a_meter_discovered_at_an_ipv6_address(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve_on_ipv6(simulator, "pro3em", name="Mains")
    discovery = ZeroconfServiceInfo(
        ip_address=ip_address("::1"),
        ip_addresses=[ip_address("::1")],
        port=simulator.server(meter).port,
        hostname="shellypro3em.local.",
        type="_shelly._tcp.local.",
        name="Mains._shelly._tcp.local.",
        properties={"gen": "2", "app": "Pro3EM"},
    )
    result: Any = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery
    )
    assert result["description_placeholders"]["host"] == bracketed(simulator, meter)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_HOST] == "::1"
    await hass.async_block_till_done()


async def test_a_discovered_address_that_cannot_work_is_refused(hass: HomeAssistant) -> None:
    discovery = ZeroconfServiceInfo(
        ip_address=ip_address("::1"),
        ip_addresses=[ip_address("::1")],
        port=70000,
        hostname="shellyem.local.",
        type="_shelly._tcp.local.",
        name="EM._shelly._tcp.local.",
        properties={"gen": "2"},
    )
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=discovery
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_reconfigure_shows_and_takes_bracketed_addresses(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve_on_ipv6(simulator, "gen1_3em")
    entry = meter_entry(simulator, meter, title="M")
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    for marker in result["data_schema"].schema:
        assert marker.description["suggested_value"] == bracketed(simulator, meter)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: bracketed(simulator, meter)}
    )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_HOST] == "::1"
    await hass.async_block_till_done()


@pytest.mark.parametrize("kind", ["gen1_em", "proem50"])
async def test_the_switch_over_ipv6(hass: HomeAssistant, simulator: Simulator, kind: str) -> None:
    meter = await serve_on_ipv6(simulator, kind)
    meter.set_relay(True)
    await setup_entry(hass, meter_entry(simulator, meter, title="M"))
    await hass.services.async_call(
        SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: "switch.m_relay"}, blocking=True
    )
    assert meter.relay_on is False


@pytest.mark.parametrize("kind", ["gen1_em", "pro3em"])
async def test_the_history_download_over_ipv6(
    hass: HomeAssistant, simulator: Simulator, kind: str
) -> None:
    meter = await serve_on_ipv6(simulator, kind, history_days=0.5)
    address = Address("::1", simulator.server(meter).port)
    client = make_client(async_get_clientsession(hass), address, meter.gen, Credentials())
    try:
        records = [record async for batch in client.records() for record in batch]
    finally:
        await client.close()
    assert len(records) == len(meter.records)


async def test_a_link_local_configuration_url_is_accepted(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(domain=DOMAIN)
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, "AABBCCDDEEFF")},
        configuration_url=str(Address("fe80::1%eth0", 8080).url()),
    )
    assert device.configuration_url == "http://[fe80::1%eth0]:8080"
