"""Every path of the setup wizard, against simulated devices over loopback."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_DEADBAND,
    CONF_GENERATION,
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_KIND,
    CONF_LOAD,
    CONF_MODEL,
    CONF_POLL_INTERVAL,
    CONF_REVERSED_CHANNELS,
    CONF_SETTLEMENT,
    CONF_SOLAR,
    CONF_SUPPLY,
    DOMAIN,
    KIND_SITE,
)
from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, serve, setup_entry

OLD_GEN1_FIRMWARE = "20200101-000000/v1.8.0-gold"


def suggested(result: Any, key: str) -> Any:
    """Return the value a form suggests for a field."""
    for marker in result["data_schema"].schema:
        if marker == key:
            return marker.description["suggested_value"]
    raise KeyError(key)


def address(simulator: Simulator, meter: SimulatedMeter) -> str:
    return f"127.0.0.1:{simulator.server(meter).port}"


async def start_meter_flow(hass: HomeAssistant) -> str:
    """Open the wizard and choose "a meter"; return the flow id."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["meter", "site", "emoncms", "virtual_meter"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "meter"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "meter"
    return result["flow_id"]


async def submit(hass: HomeAssistant, flow_id: str, data: dict[str, Any]) -> Any:
    return await hass.config_entries.flow.async_configure(flow_id, data)


@pytest.mark.parametrize(
    ("kind", "title", "generation", "model"),
    [
        ("pro3em", "Mains", 2, "SPEM-003CEBEU"),
        ("gen1_em", "Mains", 1, "SHEM"),
        ("emg4", "Mains", 4, "S4EM-002CXCEU"),
    ],
)
async def test_add_meter_by_address(
    hass: HomeAssistant, simulator: Simulator, kind: str, title: str, generation: int, model: str
) -> None:
    meter = await serve(simulator, kind, name="Mains")
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: f"  {address(simulator, meter)} "})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == title
    assert result["data"] == {
        CONF_HOST: "127.0.0.1",
        CONF_PORT: simulator.server(meter).port,
        CONF_GENERATION: generation,
        CONF_MODEL: model,
    }
    assert result["result"].unique_id == meter.mac
    await hass.async_block_till_done()


async def test_unnamed_meter_is_titled_by_model(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "proem50")
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["title"] == "Shelly Pro EM-50"
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("http://x/y", "invalid_host"),
        ("a b", "invalid_host"),
        ("[shelly.local]:80", "invalid_host"),
        ("host:notaport", "invalid_port"),
        ("127.0.0.1:0", "invalid_port"),
        ("127.0.0.1:65536", "invalid_port"),
        ("[::1]:", "invalid_port"),
    ],
)
async def test_invalid_address(hass: HomeAssistant, host: str, error: str) -> None:
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: host})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_HOST: error}


async def test_unreachable_host_then_right_one(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em")
    meter.set_online(False)
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    meter.set_online(True)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    ("kind", "options", "error"),
    [
        ("plug", {}, "not_energy_meter"),
        ("gen1_plug", {}, "not_energy_meter"),
        ("gen1_em", {"firmware": OLD_GEN1_FIRMWARE}, "unsupported_firmware"),
    ],
)
async def test_refused_devices(
    hass: HomeAssistant, simulator: Simulator, kind: str, options: dict[str, str], error: str
) -> None:
    meter = await serve(simulator, kind, **options)
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}


async def test_same_meter_twice_is_refused_and_its_address_updated(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: 1})
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == simulator.server(meter).port


async def test_rpc_meter_with_password(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em", password="secret", name="Mains")
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "credentials"
    assert list(result["data_schema"].schema) == [CONF_PASSWORD]
    assert result["description_placeholders"] == {
        "name": "Mains",
        "model": "Shelly Pro 3EM",
        "host": address(simulator, meter),
    }
    result = await submit(hass, flow_id, {CONF_PASSWORD: "wrong"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    result = await submit(hass, flow_id, {CONF_PASSWORD: "secret"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PASSWORD] == "secret"
    assert CONF_USERNAME not in result["data"]
    await hass.async_block_till_done()


async def test_gen1_meter_with_user_and_password(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "gen1_3em", password="secret")
    flow_id = await start_meter_flow(hass)
    result = await submit(hass, flow_id, {CONF_HOST: address(simulator, meter)})
    assert result["step_id"] == "credentials"
    assert list(result["data_schema"].schema) == [CONF_USERNAME, CONF_PASSWORD]
    assert result["description_placeholders"]["name"] == "Shelly 3EM"
    result = await submit(hass, flow_id, {CONF_USERNAME: "admin", CONF_PASSWORD: "nope"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await submit(hass, flow_id, {CONF_USERNAME: "admin", CONF_PASSWORD: "secret"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_USERNAME] == "admin"
    await hass.async_block_till_done()


def zeroconf(simulator: Simulator, meter: SimulatedMeter, **kwargs: Any) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address("127.0.0.1"),
        ip_addresses=[ip_address("127.0.0.1")],
        port=simulator.server(meter).port,
        hostname="shelly.local.",
        type="_shelly._tcp.local.",
        name="3EM Pro._shelly._tcp.local.",
        properties={"gen": str(meter.gen), "app": "Pro3EM"},
        **kwargs,
    )


async def test_discovered_meter(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em", name="Mains")
    result: Any = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf(simulator, meter)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"]["model"] == "Shelly Pro 3EM"
    flows = hass.config_entries.flow.async_progress()
    assert flows[0]["context"]["title_placeholders"] == {"name": "Mains"}
    meter.set_online(False)
    result = await submit(hass, result["flow_id"], {})
    assert result["errors"] == {"base": "cannot_connect"}
    meter.set_online(True)
    result = await submit(hass, result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Mains"
    await hass.async_block_till_done()


async def test_discovered_meter_with_password(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "gen1_em", password="pw")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf(simulator, meter)
    )
    result = await submit(hass, result["flow_id"], {})
    assert result["step_id"] == "credentials"
    result = await submit(hass, result["flow_id"], {CONF_USERNAME: "admin", CONF_PASSWORD: "pw"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    ("kind", "online", "reason"),
    [
        ("plug", True, "not_energy_meter"),
        ("gen1_plug", True, "not_energy_meter"),
        ("pro3em", False, "cannot_connect"),
    ],
)
async def test_discovered_device_refused(
    hass: HomeAssistant, simulator: Simulator, kind: str, online: bool, reason: str
) -> None:
    meter = await serve(simulator, kind)
    meter.set_online(online)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf(simulator, meter)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason


async def test_known_meter_discovered_at_a_new_address(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_HOST: "10.0.0.9"})
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf(simulator, meter)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_HOST] == "127.0.0.1"


async def test_reauth(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em", password="new")
    entry = meter_entry(simulator, meter, password="old", title="Mains")
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {"name": "Mains"}
    result = await submit(hass, result["flow_id"], {CONF_PASSWORD: "still wrong"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await submit(hass, result["flow_id"], {CONF_PASSWORD: "new"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_PASSWORD] == "new"
    await hass.async_block_till_done()


async def test_reconfigure(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "gen1_em")
    other = await serve(simulator, "gen1_3em")
    entry = meter_entry(simulator, meter, title="EM")
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: 8080})
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    assert suggested(result, CONF_HOST) == "127.0.0.1:8080"
    result = await submit(hass, result["flow_id"], {CONF_HOST: "::bad::"})
    assert result["errors"] == {CONF_HOST: "invalid_host"}
    other.set_online(False)
    result = await submit(hass, result["flow_id"], {CONF_HOST: address(simulator, other)})
    assert result["errors"] == {"base": "cannot_connect"}
    other.set_online(True)
    result = await submit(hass, result["flow_id"], {CONF_HOST: address(simulator, other)})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_device"
    result = await entry.start_reconfigure_flow(hass)
    result = await submit(hass, result["flow_id"], {CONF_HOST: address(simulator, meter)})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == simulator.server(meter).port
    await hass.async_block_till_done()


async def test_reconfigure_default_port_shows_the_host_alone(
    hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "gen1_em")
    entry = meter_entry(simulator, meter)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: 80})
    result = await entry.start_reconfigure_flow(hass)
    assert suggested(result, CONF_HOST) == "127.0.0.1"


async def test_meter_options(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter)
    await setup_entry(hass, entry)
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"]
    assert schema({CONF_SUPPLY: {}}) == {
        CONF_POLL_INTERVAL: 5,
        CONF_REVERSED_CHANNELS: [],
        CONF_DEADBAND: 0.0,
        CONF_SUPPLY: {
            "nominal_voltage": "230",
            "nominal_frequency": "50",
            "overvoltage_percent": 10.0,
            "undervoltage_percent": 10.0,
            "spike_percent": 15.0,
            "interruption_percent": 5.0,
            "frequency_percent": 1.0,
            "imbalance_percent": 2.0,
            "start_delay": 10.0,
            "clear_delay": 10.0,
        },
    }
    reversed_selector = schema.schema[CONF_REVERSED_CHANNELS]
    assert reversed_selector.config["options"] == ["a", "b", "c"]
    supply = schema({CONF_SUPPLY: {}})[CONF_SUPPLY]
    base = {CONF_POLL_INTERVAL: 2, CONF_REVERSED_CHANNELS: ["b"], CONF_DEADBAND: 3.5}
    for nominal in ("abc", "30"):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**base, CONF_SUPPLY: {**supply, "nominal_voltage": nominal}}
        )
        assert result["errors"] == {CONF_SUPPLY: "invalid_voltage"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, CONF_SUPPLY: {**supply, "spike_percent": 5.0}}
    )
    assert result["errors"] == {CONF_SUPPLY: "invalid_limits"}
    options = {**base, CONF_SUPPLY: {**supply, "nominal_voltage": "235"}}
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == options
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.supply.detector._limits.overvoltage == 258.5


async def test_meter_options_need_the_meter(hass: HomeAssistant, simulator: Simulator) -> None:
    meter = await serve(simulator, "pro3em")
    entry = meter_entry(simulator, meter)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "meter_not_loaded"


async def start_site_flow(hass: HomeAssistant) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "site"}
    )


async def test_site_needs_meters(hass: HomeAssistant) -> None:
    result = await start_site_flow(hass)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_meters"


async def test_add_site(hass: HomeAssistant, simulator: Simulator) -> None:
    mains = await serve(simulator, "pro3em")
    solar = await serve(simulator, "gen1_em")
    await setup_entry(hass, meter_entry(simulator, mains, title="Mains"))
    await setup_entry(hass, meter_entry(simulator, solar, title="Solar EM"))
    result = await start_site_flow(hass)
    assert result["step_id"] == "site"
    grid_selector = result["data_schema"].schema[CONF_GRID]
    assert grid_selector.config["options"] == [
        {"value": f"{mains.mac}:a", "label": "Mains phase A"},
        {"value": f"{mains.mac}:b", "label": "Mains phase B"},
        {"value": f"{mains.mac}:c", "label": "Mains phase C"},
        {"value": f"{solar.mac}:1", "label": "Solar EM channel 1"},
        {"value": f"{solar.mac}:2", "label": "Solar EM channel 2"},
    ]
    phases = [f"{mains.mac}:{p}" for p in "abc"]
    base = {CONF_NAME: " Home ", CONF_GRID_METERING: "balanced"}
    result = await submit(
        hass, result["flow_id"], {**base, CONF_GRID: phases, CONF_SOLAR: [phases[0]]}
    )
    assert result["errors"] == {"base": "channel_in_two_roles"}
    result = await submit(hass, result["flow_id"], {**base, CONF_LOAD: [f"{solar.mac}:2"]})
    assert result["errors"] == {"base": "no_supply_role"}
    roles = {CONF_GRID: phases, CONF_SOLAR: [f"{solar.mac}:1"], CONF_BATTERY: [], CONF_LOAD: []}
    result = await submit(hass, result["flow_id"], {**base, **roles})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Home"
    assert result["data"] == {CONF_KIND: KIND_SITE}
    assert result["options"] == {
        CONF_GRID_METERING: "balanced",
        CONF_SETTLEMENT: "instant",
        **roles,
    }
    await hass.async_block_till_done()
    again = await start_site_flow(hass)
    result = await submit(hass, again["flow_id"], {**base, **roles})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    site = hass.config_entries.async_entries(DOMAIN)[-1]
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": site.entry_id}
    )
    assert result["reason"] == "not_reconfigurable"


async def test_site_options(hass: HomeAssistant, simulator: Simulator) -> None:
    mains = await serve(simulator, "proem50")
    await setup_entry(hass, meter_entry(simulator, mains, title="Pro EM"))
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={CONF_GRID: [f"{mains.mac}:1"], CONF_LOAD: ["GONE:1"]},
    )
    await setup_entry(hass, site)
    result: Any = await hass.config_entries.options.async_init(site.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["roles", "tariff"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "roles"}
    )
    assert result["step_id"] == "roles"
    labels = [o["label"] for o in result["data_schema"].schema[CONF_LOAD].config["options"]]
    assert labels == ["Pro EM channel 1", "Pro EM channel 2", "GONE channel 1"]
    settlements = result["data_schema"].schema[CONF_SETTLEMENT].config["options"]
    assert settlements == ["instant", "15", "30", "60"]
    bad = {
        CONF_GRID: [f"{mains.mac}:1"],
        CONF_LOAD: [f"{mains.mac}:1"],
        CONF_GRID_METERING: "per_phase",
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], bad)
    assert result["errors"] == {"base": "channel_in_two_roles"}
    good = {
        CONF_GRID: [f"{mains.mac}:1"],
        CONF_LOAD: [f"{mains.mac}:2"],
        CONF_GRID_METERING: "per_phase",
        CONF_SETTLEMENT: "15",
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], good)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert site.options == {**good, CONF_SOLAR: [], CONF_BATTERY: []}
    await hass.async_block_till_done()
