"""The Emoncms export end to end: simulated meters in, the Emoncms double out, over loopback."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.shelly_energy.const import (
    CONF_API_KEY,
    CONF_BATTERY,
    CONF_GRID,
    CONF_INTERVAL,
    CONF_KIND,
    CONF_NODES,
    CONF_SOLAR,
    CONF_URL,
    CONF_VALUES,
    DOMAIN,
    KIND_EMONCMS,
    KIND_SITE,
)
from simulator import SimulatedMeter, Simulator
from simulator.emoncms import EmoncmsDouble

from .conftest import device_with, meter_entry, poll, serve, setup_entry, state_of

WRITE_KEY = "0123456789abcdef0123456789abcdef"
READ_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
async def emoncms() -> AsyncIterator[EmoncmsDouble]:
    async with EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY) as server:
        yield server


async def mains(hass: HomeAssistant, simulator: Simulator) -> SimulatedMeter:
    meter = await serve(simulator, "pro3em")
    for phase, watts in (("a", 1000.0), ("b", 200.0), ("c", -300.0)):
        meter.set_power(phase, watts)
        meter.set_voltage(phase, 230.0)
    meter.set_counters("a", 5000.0, 0.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="Mains (house)!"))
    return meter


def export_entry(
    emoncms: EmoncmsDouble, key: str = WRITE_KEY, values: list[str] | None = None
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="Emoncms (127.0.0.1)",
        unique_id="emoncms_127.0.0.1",
        data={CONF_KIND: KIND_EMONCMS, CONF_URL: emoncms.url, CONF_API_KEY: key},
        options={CONF_INTERVAL: 10, CONF_VALUES: values or ["power", "energy", "voltage", "site"]},
    )


async def tick(hass: HomeAssistant, freezer: FrozenDateTimeFactory, simulator: Simulator) -> None:
    """Ten seconds pass for the meters and Home Assistant: a poll and an export interval."""
    simulator.clock.advance(10)
    await poll(hass, freezer, 10)


async def test_values_arrive_with_node_names_and_measurement_times(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
) -> None:
    meter = await mains(hass, simulator)
    await setup_entry(hass, export_entry(emoncms))
    for _ in range(3):
        await tick(hass, freezer, simulator)
    node = emoncms.received["Mains_house"]
    times = [time for time, _ in node["power_a"]]
    assert len(times) == 3
    assert times == sorted(set(times))
    assert times[-1] <= simulator.clock.now()
    assert {value for _, value in node["power_a"]} == {1000.0}
    assert {value for _, value in node["power"]} == {900.0}
    assert {value for _, value in node["voltage_c"]} == {230.0}
    assert node["import_kwh_a"][0][1] >= 5.0
    assert sorted(node) == sorted(
        [f"{kind}{suffix}" for kind in ("power", "import_kwh", "export_kwh")
         for suffix in ("_a", "_b", "_c", "")]
        + ["voltage_a", "voltage_b", "voltage_c"]
    )  # fmt: skip
    assert state_of(hass, "sensor.emoncms_127_0_0_1_queued_samples") == "0"
    assert state_of(hass, "sensor.emoncms_127_0_0_1_last_successful_send") != "unknown"
    assert meter.mac  # the node is the meter's name, cleaned, not its MAC


async def test_outage_then_recovery_delivers_every_sample_once_in_order(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await mains(hass, simulator)
    await setup_entry(hass, export_entry(emoncms, values=["power"]))
    await tick(hass, freezer, simulator)
    caplog.set_level(logging.DEBUG)
    emoncms.set_down(True)
    for _ in range(30):  # five minutes of outage
        await tick(hass, freezer, simulator)
    assert int(state_of(hass, "sensor.emoncms_127_0_0_1_queued_samples")) >= 29
    emoncms.set_down(False)
    for _ in range(40):  # the backoff may wait up to 5 minutes
        await tick(hass, freezer, simulator)
    times = [time for time, _ in emoncms.received["Mains_house"]["power_a"]]
    assert len(times) == 71
    assert times == sorted(set(times))
    assert all(later - earlier == 10 for earlier, later in itertools.pairwise(times))
    outage_lines = [
        record
        for record in caplog.records
        if record.name.startswith("custom_components.shelly_energy")
        and record.levelno >= logging.INFO
    ]
    assert [record.levelname for record in outage_lines] == ["WARNING", "INFO"]
    assert WRITE_KEY not in caplog.text
    assert all(
        WRITE_KEY not in f"{request.path}?{request.query_string}" for request in emoncms.requests
    )
    assert all(
        request.headers["Authorization"] == f"Bearer {WRITE_KEY}" for request in emoncms.requests
    )


async def test_the_queue_is_on_disk_within_a_minute_during_an_outage(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
    hass_storage: dict[str, Any],
) -> None:
    await mains(hass, simulator)
    entry = export_entry(emoncms, values=["power"])
    await setup_entry(hass, entry)
    key = f"{DOMAIN}.emoncms.{entry.entry_id}"
    emoncms.set_down(True)
    queued: list[tuple[float, int]] = []  # (when, queue length) at each tick
    for _ in range(60):  # ten minutes of outage, a sample every 10 s: the queue never rests
        await tick(hass, freezer, simulator)
        queued.append((simulator.clock.now(), len(entry.runtime_data.coordinator.queue)))
        on_disk = len(hass_storage.get(key, {}).get("data", {}).get("samples", []))
        # Everything queued over a minute ago is on disk, however often the queue changed since
        # (the write starts a minute after the first unsaved change: it lands within this tick).
        now = simulator.clock.now()
        due = max((length for when, length in queued if when < now - 60), default=0)
        assert on_disk >= due
    assert on_disk >= 53


async def test_a_restart_with_a_queue_delivers_it(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
) -> None:
    await mains(hass, simulator)
    entry = export_entry(emoncms, values=["power"])
    await setup_entry(hass, entry)
    emoncms.set_down(True)
    for _ in range(3):
        await tick(hass, freezer, simulator)
    assert await hass.config_entries.async_unload(entry.entry_id)
    emoncms.set_down(False)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await tick(hass, freezer, simulator)
    assert len(emoncms.received["Mains_house"]["power_a"]) == 4


async def test_the_bound_drops_the_oldest_and_says_how_many(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "custom_components.shelly_energy.export_entry.EXPORT_QUEUE_DAYS",
        30 / 86_400,  # 3 samples at 10 s
    )
    await mains(hass, simulator)
    entry = export_entry(emoncms, values=["power"])
    await setup_entry(hass, entry)
    emoncms.set_down(True)
    for _ in range(5):
        await tick(hass, freezer, simulator)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"emoncms_queue_full_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {
        "name": "Emoncms (127.0.0.1)",
        "count": "2",
        "days": str(30 / 86_400),
    }


async def test_a_refused_key_pauses_until_a_new_key_resumes(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
) -> None:
    await mains(hass, simulator)
    entry = export_entry(emoncms, key=READ_KEY, values=["power"])
    await setup_entry(hass, entry)
    for _ in range(3):
        await tick(hass, freezer, simulator)
    issue_id = f"emoncms_invalid_key_{entry.entry_id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert "Mains_house" not in emoncms.received
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_INTERVAL: 10, CONF_VALUES: ["power"], CONF_API_KEY: "bad"}
    )
    assert result["errors"] == {CONF_API_KEY: "invalid_api_key"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_INTERVAL: 10, CONF_VALUES: ["power"], CONF_API_KEY: WRITE_KEY}
    )
    assert result["step_id"] == "nodes"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"Mains (house)!": "mains"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.data[CONF_API_KEY] == WRITE_KEY
    await tick(hass, freezer, simulator)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    # The samples queued while paused are delivered too, to the node now chosen for them.
    assert len(emoncms.received["mains"]["power_a"]) >= 1
    total = sum(len(inputs["power_a"]) for inputs in emoncms.received.values())
    assert total == 4


async def test_site_flows_are_sent(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
) -> None:
    meter = await mains(hass, simulator)
    inverters = await serve(simulator, "gen1_em")
    inverters.set_power("0", -400.0)
    inverters.set_power("1", 100.0)
    await setup_entry(hass, meter_entry(simulator, inverters, title="Inverters"))
    grid_only = MockConfigEntry(
        domain=DOMAIN,
        title="Garage",
        data={CONF_KIND: KIND_SITE},
        options={CONF_GRID: [f"{meter.mac}:{phase}" for phase in "abc"]},
    )
    full = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={
            CONF_GRID: [f"{meter.mac}:{phase}" for phase in "abc"],
            CONF_SOLAR: [f"{inverters.mac}:1"],
            CONF_BATTERY: [f"{inverters.mac}:2"],
        },
    )
    await setup_entry(hass, grid_only)
    await setup_entry(hass, full)
    await setup_entry(hass, export_entry(emoncms, values=["site"]))
    await tick(hass, freezer, simulator)
    await tick(hass, freezer, simulator)
    garage = emoncms.received["Garage"]
    assert [value for _, value in garage["grid_power"]] == [900.0, 900.0]
    assert sorted(garage) == [
        "grid_export_kwh", "grid_import_kwh", "grid_power", "home_kwh", "home_power"
    ]  # fmt: skip
    home = emoncms.received["Home"]
    assert [value for _, value in home["solar_power"]] == [400.0, 400.0]
    assert [value for _, value in home["battery_power"]] == [-100.0, -100.0]
    assert "Mains_house" not in emoncms.received  # meters' values were not chosen


async def test_flush_action(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "emoncms_flush", {}, blocking=True)
    assert raised.value.translation_key == "no_export"
    await mains(hass, simulator)
    await setup_entry(hass, export_entry(emoncms, values=["power"]))
    emoncms.set_down(True)
    await tick(hass, freezer, simulator)
    await tick(hass, freezer, simulator)
    emoncms.set_down(False)
    response = await hass.services.async_call(
        DOMAIN, "emoncms_flush", {}, blocking=True, return_response=True
    )
    assert response == {
        "exports": {"Emoncms (127.0.0.1)": {"sent": 2, "rejected": 0, "remaining": 0}}
    }


async def test_diagnostics_redact_the_key(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    simulator: Simulator,
    emoncms: EmoncmsDouble,
) -> None:
    await mains(hass, simulator)
    entry = export_entry(emoncms)
    await setup_entry(hass, entry)
    entry.runtime_data.coordinator.record_samples()
    await entry.runtime_data.coordinator.async_flush()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"][CONF_API_KEY] == "**REDACTED**"
    assert WRITE_KEY not in str(diagnostics)
    assert diagnostics["exporter"]["state"] == "sending"
    assert diagnostics["exporter"]["queued"] == 0


async def test_unreadable_saved_queue_starts_empty(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    emoncms: EmoncmsDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = export_entry(emoncms)
    hass_storage[f"{DOMAIN}.emoncms.{entry.entry_id}"] = {
        "version": 1,
        "key": f"{DOMAIN}.emoncms.{entry.entry_id}",
        "data": {"version": 99},
    }
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    assert "unreadable" in caplog.text


async def test_removing_the_export_forgets_its_queue_and_issues(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    emoncms: EmoncmsDouble,
    hass_storage: dict[str, Any],
) -> None:
    await mains(hass, simulator)
    entry = export_entry(emoncms, key=READ_KEY)
    await setup_entry(hass, entry)
    await tick(hass, freezer, simulator)
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert f"{DOMAIN}.emoncms.{entry.entry_id}" not in hass_storage
    assert not any(domain == DOMAIN for domain, _ in ir.async_get(hass).issues)


async def start_export_flow(hass: HomeAssistant) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "emoncms"}
    )


async def test_export_wizard(
    hass: HomeAssistant, simulator: Simulator, emoncms: EmoncmsDouble
) -> None:
    await mains(hass, simulator)
    result: Any = await start_export_flow(hass)
    assert result["step_id"] == "emoncms"
    form = {CONF_INTERVAL: 10, CONF_VALUES: ["power", "energy"]}
    for url, key, error in (
        ("ftp://x", WRITE_KEY, {CONF_URL: "invalid_url"}),
        (emoncms.url, "nope", {CONF_API_KEY: "invalid_api_key"}),
        (emoncms.url, READ_KEY, {CONF_API_KEY: "invalid_api_key"}),
        ("http://127.0.0.1:9", WRITE_KEY, {"base": "cannot_connect_emoncms"}),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**form, CONF_URL: url, CONF_API_KEY: key}
        )
        assert result["errors"] == error
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**form, CONF_URL: f"{emoncms.url}/", CONF_API_KEY: WRITE_KEY}
    )
    assert result["step_id"] == "emoncms_nodes"
    assert result["data_schema"]({}) == {"Mains (house)!": "Mains_house"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"Mains (house)!": "!!!"}
    )
    assert result["errors"] == {"base": "invalid_node"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"Mains (house)!": "house"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Emoncms (127.0.0.1)"
    assert result["data"] == {
        CONF_KIND: KIND_EMONCMS,
        CONF_URL: emoncms.url,
        CONF_API_KEY: WRITE_KEY,
    }
    meter_mac = hass.config_entries.async_entries(DOMAIN)[0].unique_id
    assert result["options"] == {**form, CONF_NODES: {meter_mac: "house"}}
    await hass.async_block_till_done()
    again = await start_export_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        again["flow_id"], {**form, CONF_URL: emoncms.url, CONF_API_KEY: WRITE_KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_node_names_must_differ(
    hass: HomeAssistant, simulator: Simulator, emoncms: EmoncmsDouble
) -> None:
    first = await serve(simulator, "gen1_em")
    second = await serve(simulator, "gen1_em")
    await setup_entry(hass, meter_entry(simulator, first, title="EM"))
    await setup_entry(hass, meter_entry(simulator, second, title="EM"))
    result: Any = await start_export_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: emoncms.url, CONF_API_KEY: WRITE_KEY, CONF_INTERVAL: 10, CONF_VALUES: ["power"]},
    )
    labels = list(result["data_schema"].schema)
    assert labels == ["EM", f"EM ({second.mac})"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"EM": "em", f"EM ({second.mac})": "em"}
    )
    assert result["errors"] == {"base": "duplicate_node"}


async def test_no_history_to_backfill_in_the_export_or_a_meter_without_the_recorder(
    hass: HomeAssistant, simulator: Simulator, emoncms: EmoncmsDouble
) -> None:
    # The backfill action looks through the loaded entries: the export is passed over, and a
    # meter keeps no history without the recorder.
    meter = await mains(hass, simulator)
    export = export_entry(emoncms)
    await setup_entry(hass, export)
    assert export.state is ConfigEntryState.LOADED
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "backfill", {"device_id": device_with(hass, meter.mac).id}, blocking=True
        )
    assert raised.value.translation_key == "not_a_history_device"
