"""Virtual meters end to end: a simulated site set up through the real flows, fake batteries.

The site's grid meter is a simulated Pro 3EM polled over loopback; the virtual meter serves it on
loopback UDP ports (and loopback's broadcast address), an HTTP port and a mocked zeroconf. The
virtual meter's monotonic clock is a manual one, so that staleness is exact.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from itertools import pairwise
from typing import Any
from unittest.mock import MagicMock, patch

import aiohttp
import pytest
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_NAME, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    mock_restore_cache,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.shelly_energy.config_flow import export_nodes
from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_GRID_SENSOR,
    CONF_HTTP_PORT,
    CONF_LOAD,
    CONF_MAC,
    CONF_MAX_RATE,
    CONF_MDNS_GENERATION,
    CONF_MODEL,
    CONF_REGULATION,
    CONF_SHARE,
    CONF_SITE,
    CONF_SMOOTHING,
    CONF_SOLAR,
    CONF_STALE_AFTER,
    CONF_TRANSPORTS,
    CONF_UDP_PORTS,
    DOMAIN,
)
from simulator import SimulatedMeter, Simulator

from .batteries import (
    LOOPBACK,
    GrowattClient,
    HoymilesClient,
    MarstekClient,
    check_em_reply,
    free_port,
)
from .conftest import serve, state_of

SERVED = "sensor.battery_meter_served_power"
SERVING = "binary_sensor.battery_meter_serving"
REQUESTS = "sensor.battery_meter_requests_per_minute"
CLIENTS = "sensor.battery_meter_clients"
PAUSE = "switch.battery_meter_pause_serving"
POLL_S = 5  # the meters' default polling interval
LIMIT_S = 3.0  # the default limit


class ManualClock:
    """The virtual meter's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def vm_clock() -> Iterator[ManualClock]:
    clock = ManualClock()
    with patch("custom_components.shelly_energy.virtual_meter_entry._monotonic", clock):
        yield clock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def silence(hass: HomeAssistant) -> Any:
    """Return why the virtual meter is silent (None: it serves)."""
    state = hass.states.get(SERVING)
    assert state is not None
    return state.attributes["reason"]


async def poll(hass: HomeAssistant, vm_clock: ManualClock, seconds: float = POLL_S) -> None:
    """Let a polling interval pass: the meters are read once more."""
    vm_clock.advance(seconds)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds + 1))
    await hass.async_block_till_done(wait_background_tasks=True)


async def fire_timers(hass: HomeAssistant, seconds: float) -> None:
    """Run Home Assistant's timers due within ``seconds`` (the meters' polls among them)."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done(wait_background_tasks=True)


async def flow(hass: HomeAssistant, step: str, data: dict[str, Any]) -> Any:
    """Run the setup wizard's step ``step`` with ``data``; return the last result."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    if result["type"] is not FlowResultType.FORM:
        return result
    result = await hass.config_entries.flow.async_configure(result["flow_id"], data)
    await hass.async_block_till_done()
    return result


async def add_meter(hass: HomeAssistant, simulator: Simulator, meter: SimulatedMeter) -> None:
    result = await flow(hass, "meter", {CONF_HOST: f"127.0.0.1:{simulator.server(meter).port}"})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def add_site(hass: HomeAssistant, **roles: Any) -> ConfigEntry:
    data = {CONF_NAME: "Home", CONF_GRID_METERING: "balanced", **roles}
    result = await flow(hass, "site", data)
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry: ConfigEntry = result["result"]
    return entry


def regulation(**overrides: float) -> dict[str, float]:
    return {
        CONF_SHARE: 100.0,
        CONF_STALE_AFTER: LIMIT_S,
        CONF_SMOOTHING: 0.0,
        CONF_MAX_RATE: 0.0,
        **overrides,
    }


def vm_options(site: ConfigEntry, **overrides: Any) -> dict[str, Any]:
    return {
        CONF_SITE: site.entry_id,
        CONF_MODEL: "pro3em",
        CONF_TRANSPORTS: ["udp", "http", "mdns"],
        CONF_UDP_PORTS: [str(free_port()), str(free_port())],
        CONF_HTTP_PORT: free_port(socket.SOCK_STREAM),
        CONF_MDNS_GENERATION: "2",
        CONF_REGULATION: regulation(),
        **overrides,
    }


async def add_virtual_meter(hass: HomeAssistant, options: dict[str, Any]) -> ConfigEntry:
    result = await flow(hass, "virtual_meter", {CONF_NAME: "Battery meter", **options})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry: ConfigEntry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    return entry


def ports(entry: ConfigEntry) -> tuple[int, int, int]:
    udp = [int(port) for port in entry.options[CONF_UDP_PORTS]]
    return udp[0], udp[1], entry.options[CONF_HTTP_PORT]


class House:
    """A home whose grid connection is metered by a Pro 3EM, with a site on its phases."""

    def __init__(self, mains: SimulatedMeter, site: ConfigEntry) -> None:
        self.mains = mains
        self.site = site

    def set(self, a: float, b: float, c: float) -> None:
        for phase, watts in (("a", a), ("b", b), ("c", c)):
            self.mains.set_power(phase, watts)


@pytest.fixture
async def house(hass: HomeAssistant, simulator: Simulator) -> House:
    mains = await serve(simulator, "pro3em", name="Mains")
    await add_meter(hass, simulator, mains)
    site = await add_site(hass, **{CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"]})
    house = House(mains, site)
    house.set(1200.0, -300.0, 100.5)
    return house


async def marstek_poll(port: int, **kwargs: Any) -> Any:
    battery = MarstekClient(port)
    try:
        return await battery.poll(**kwargs)
    finally:
        battery.close()


async def test_every_battery_reads_the_site_and_nothing_once_it_is_stale(
    hass: HomeAssistant,
    house: House,
    vm_clock: ManualClock,
    session: aiohttp.ClientSession,
    mock_async_zeroconf: MagicMock,
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    udp_a, udp_b, http = ports(entry)
    # Until the grid meter's next reading, its age is unknown: nothing is served.
    assert state_of(hass, SERVING) == STATE_OFF
    assert silence(hass) == "no_reading"
    assert await marstek_poll(udp_a, wait_s=0.3) is None
    await poll(hass, vm_clock)
    assert state_of(hass, SERVING) == STATE_ON
    assert state_of(hass, SERVED) == "1000.5"

    # Marstek: broadcast discovery on one port, then unicast on the other.
    device_id = f"shellypro3em-{entry.data[CONF_MAC].lower()}"
    for port, broadcast in ((udp_a, True), (udp_b, False)):
        reply = await marstek_poll(port, broadcast=broadcast)
        assert reply is not None
        assert reply.source == (LOOPBACK, port)
        assert reply.frame["src"] == device_id
        assert 250 <= len(reply.raw) <= 1024
        check_em_reply(reply.raw, reply.frame["result"])
        result = reply.frame["result"]
        assert [result[f"{phase}_act_power"] for phase in "abc"] == [1200.0, -300.0, 100.5]
        assert result["total_act_power"] == 1000.5
        assert result["a_voltage"] > 200  # the meter's own voltage

    # Hoymiles pairs over HTTP, then polls over a WebSocket; Growatt reads the status.
    hoymiles = HoymilesClient(session, http)
    answers = await hoymiles.pair()
    assert answers["/shelly"]["id"] == device_id
    assert answers["/shelly"]["mac"] == entry.data[CONF_MAC]
    await hoymiles.connect()
    raw, frame = await hoymiles.call("EM.GetStatus", {"id": 0})
    check_em_reply(raw, frame["result"])
    assert frame["dst"] == hoymiles.src
    raw, status = await GrowattClient(session, http).status()
    assert status["cloud"] == {"connected": False}
    check_em_reply(raw, status["em:0"])

    # mDNS: the same identity, through Home Assistant's zeroconf.
    announced = [call.args[0] for call in mock_async_zeroconf.async_register_service.call_args_list]
    assert [info.name for info in announced] == [
        f"{device_id}._shelly._tcp.local.",
        f"{device_id}._http._tcp.local.",
    ]
    for info in announced:
        assert info.port == http
        assert info.server == f"{device_id}.local."
        assert info.decoded_properties == {
            "id": device_id,
            "mac": entry.data[CONF_MAC],
            "gen": "2",
            "app": "Pro3EM",
            "ver": "1.6.1",
            "fw_id": "20250508-110717/1.6.1-g8dbd358",
            "model": "SPEM-003CEBEU",
            "arch": "esp32",
        }
        assert info.parsed_addresses() == ["10.10.10.10"]

    # The grid power changes: every transport serves the new value at once.
    house.set(-2000.0, 0.0, 0.0)
    await poll(hass, vm_clock)
    reply = await marstek_poll(udp_a)
    assert reply is not None
    assert reply.frame["result"]["total_act_power"] == -2000.0
    _, frame = await hoymiles.call("EM.GetStatus", {"id": 0})
    assert frame["result"]["a_act_power"] == -2000.0
    assert state_of(hass, SERVED) == "-2000.0"

    # The meter stops delivering readings (polls are late): within the limit, every transport
    # stops answering; the entities say so.
    vm_clock.advance(POLL_S + LIMIT_S)
    assert await marstek_poll(udp_a) is not None  # exactly at the limit: still fresh
    vm_clock.advance(0.01)
    assert await marstek_poll(udp_a, wait_s=0.3) is None
    assert await marstek_poll(udp_b, broadcast=True, wait_s=0.3) is None
    silent = await hoymiles.send("EM.GetStatus", {"id": 0})
    answered = await hoymiles.send("Shelly.GetDeviceInfo")
    _, frame = await hoymiles.receive()
    assert frame["id"] == answered != silent
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await GrowattClient(session, http).status()
    # The entities' status refresh (the expiry timer is a test of its own: here it would run
    # after the next poll, which Home Assistant's clock cannot skip).
    await entry.runtime_data.coordinator.async_refresh()
    assert state_of(hass, SERVING) == STATE_OFF
    assert silence(hass) == "stale"
    assert state_of(hass, SERVED) == STATE_UNAVAILABLE

    # A fresh reading: answering resumes.
    await poll(hass, vm_clock)
    assert state_of(hass, SERVING) == STATE_ON
    reply = await marstek_poll(udp_b)
    assert reply is not None
    assert reply.frame["result"]["total_act_power"] == -2000.0
    _, frame = await hoymiles.call("EM.GetStatus", {"id": 0})
    assert frame["result"]["total_act_power"] == -2000.0
    await hoymiles.close()

    # A restart keeps the identity (the battery keeps its pairing).
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, vm_clock)
    reply = await marstek_poll(udp_a)
    assert reply is not None
    assert reply.frame["src"] == device_id


async def test_a_meter_that_fails_stops_the_virtual_meter_at_once(
    hass: HomeAssistant, house: House, vm_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    udp, _, _ = ports(entry)
    await poll(hass, vm_clock)
    assert await marstek_poll(udp) is not None
    house.mains.set_online(False)
    await poll(hass, vm_clock)
    assert await marstek_poll(udp, wait_s=0.3) is None
    assert silence(hass) == "no_reading"
    assert caplog.text.count("Battery meter is silent: no_reading") == 1
    house.mains.set_online(True)
    await poll(hass, vm_clock)
    await poll(hass, vm_clock)  # the first poll after an outage connects again
    assert await marstek_poll(udp) is not None
    assert caplog.text.count("Battery meter serves again") == 2


async def test_single_channel_grid_is_served_on_phase_a(
    hass: HomeAssistant, simulator: Simulator, vm_clock: ManualClock
) -> None:
    em = await serve(simulator, "gen1_em", name="EM")
    await add_meter(hass, simulator, em)
    em.set_power(0, 850.0)
    site = await add_site(hass, **{CONF_GRID: [f"{em.mac}:1"]})
    entry = await add_virtual_meter(hass, vm_options(site))
    await poll(hass, vm_clock)
    reply = await marstek_poll(ports(entry)[0])
    assert reply is not None
    result = reply.frame["result"]
    assert [result[f"{phase}_act_power"] for phase in "abc"] == [850.0, 0.0, 0.0]
    assert result["total_act_power"] == 850.0


async def test_share_and_em1_model_from_the_options(
    hass: HomeAssistant, house: House, vm_clock: ManualClock
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    mac = entry.data[CONF_MAC]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "virtual_meter"
    options = {
        **entry.options,
        CONF_MODEL: "emg3",
        CONF_TRANSPORTS: ["udp"],
        CONF_REGULATION: regulation(**{CONF_SHARE: 50.0}),
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.data[CONF_MAC] == mac
    await poll(hass, vm_clock)
    battery = MarstekClient(ports(entry)[1], method="EM1.GetStatus")
    try:
        reply = await battery.poll()
    finally:
        battery.close()
    assert reply is not None
    assert reply.frame["src"] == f"shellyemg3-{mac.lower()}"
    assert reply.frame["result"]["act_power"] == 500.25  # half of 1000.5
    assert state_of(hass, SERVED) == "500.25"


async def test_pause_is_silence_and_survives_a_restart(
    hass: HomeAssistant, house: House, vm_clock: ManualClock
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    udp, _, _ = ports(entry)
    await poll(hass, vm_clock)
    await hass.services.async_call("switch", "turn_on", {"entity_id": PAUSE}, blocking=True)
    assert await marstek_poll(udp, wait_s=0.3) is None
    assert silence(hass) == "paused"
    await hass.services.async_call("switch", "turn_off", {"entity_id": PAUSE}, blocking=True)
    assert await marstek_poll(udp) is not None
    # A paused meter is paused again before it listens after a restart.
    await hass.config_entries.async_unload(entry.entry_id)
    mock_restore_cache(hass, [State(PAUSE, STATE_ON)])
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, vm_clock)
    assert state_of(hass, PAUSE) == STATE_ON
    assert await marstek_poll(udp, wait_s=0.3) is None


async def test_requests_and_clients_per_minute(
    hass: HomeAssistant, house: House, vm_clock: ManualClock
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    udp, _, _ = ports(entry)
    vm_clock.now = 60_000.0 - POLL_S
    await poll(hass, vm_clock)  # read at the start of a minute
    other = MarstekClient(udp)
    other.socket.close()  # a second battery, on another loopback address
    other.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.socket.bind(("127.0.0.2", 0))
    try:
        for _ in range(3):
            assert await marstek_poll(udp) is not None
        assert await other.poll() is not None
    finally:
        other.close()
    vm_clock.advance(60)
    await fire_timers(hass, 31)  # the entities' status refresh
    assert state_of(hass, REQUESTS) == "4"
    assert state_of(hass, CLIENTS) == "2"
    assert hass.states.get(CLIENTS).attributes["addresses"] == [  # type: ignore[union-attr]
        "127.0.0.1",
        "127.0.0.2",
    ]


async def test_a_taken_port_raises_a_repair_while_udp_serves(
    hass: HomeAssistant, house: House, vm_clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind((LOOPBACK, 0))
    taken.listen()
    http = taken.getsockname()[1]
    entry = await add_virtual_meter(hass, vm_options(house.site, **{CONF_HTTP_PORT: http}))
    issue_id = f"virtual_meter_port_{entry.entry_id}_http_{http}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "virtual_meter_port_in_use"
    assert issue.translation_placeholders == {
        "name": "Battery meter",
        "transport": "HTTP",
        "port": str(http),
        "error": "Address already in use",
    }
    await poll(hass, vm_clock)
    assert await marstek_poll(ports(entry)[0]) is not None  # UDP serves meanwhile
    # Freed: the next retry listens, and the issue goes.
    taken.close()
    await fire_timers(hass, 61)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    await poll(hass, vm_clock)
    _, status = await GrowattClient(session, http).status()
    assert status["em:0"]["total_act_power"] == 1000.5


async def test_a_port_needing_privileges_says_so(
    hass: HomeAssistant, house: House, vm_clock: ManualClock
) -> None:
    denied = PermissionError(errno.EACCES, "Permission denied")
    with patch(
        "custom_components.shelly_energy.virtual_meter_entry.UdpServer.start", side_effect=denied
    ):
        entry = await add_virtual_meter(hass, vm_options(house.site))
        udp, _, _ = ports(entry)
        issue = ir.async_get(hass).async_get_issue(
            DOMAIN, f"virtual_meter_port_{entry.entry_id}_udp_{udp}"
        )
        assert issue is not None
        assert issue.translation_key == "virtual_meter_port_denied"
        await fire_timers(hass, 61)  # retried, still denied: logged once
    await hass.config_entries.async_unload(entry.entry_id)
    assert not ir.async_get(hass).issues


async def test_mdns_as_generation_3_and_a_name_taken_by_another_device(
    hass: HomeAssistant,
    house: House,
    vm_clock: ManualClock,
    mock_async_zeroconf: MagicMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from zeroconf import NonUniqueNameException  # noqa: PLC0415

    mock_async_zeroconf.async_register_service.side_effect = [None, NonUniqueNameException]
    with patch(
        "homeassistant.components.network.async_get_announce_addresses",
        return_value=["192.0.2.7", "fe80::1"],
    ):
        entry = await add_virtual_meter(hass, vm_options(house.site, **{CONF_MDNS_GENERATION: "3"}))
    info = mock_async_zeroconf.async_register_service.call_args_list[0].args[0]
    assert info.parsed_addresses() == ["192.0.2.7"]  # the servers listen on IPv4 only
    assert info.decoded_properties["gen"] == "3"
    assert info.decoded_properties["app"] == "shellypro3em"
    assert "another device on the network announces" in caplog.text
    await hass.config_entries.async_unload(entry.entry_id)
    assert mock_async_zeroconf.async_unregister_service.call_count == 1


async def test_diagnostics_show_the_last_requests(
    hass: HomeAssistant,
    house: House,
    vm_clock: ManualClock,
    hass_client: ClientSessionGenerator,
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site, **{CONF_TRANSPORTS: ["udp"]}))
    udp, _, _ = ports(entry)
    await poll(hass, vm_clock)
    assert await marstek_poll(udp) is not None
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    served = diagnostics["virtual_meter"]
    assert served["identity"] == {
        "device_id": f"shellypro3em-{entry.data[CONF_MAC].lower()}",
        "mac": entry.data[CONF_MAC],
        "model": "SPEM-003CEBEU",
        "generation": 2,
    }
    assert served["serving"] is True
    assert served["served"] == {"power": [1200.0, -300.0, 100.5], "total": 1000.5}
    assert served["reading"] == {"power": [1200.0, -300.0, 100.5], "age_s": 0.0}
    assert served["endpoints"] == [
        {"transport": "udp", "port": port, "listening": True, "error": None}
        for port in sorted(int(port) for port in entry.options[CONF_UDP_PORTS])
    ]
    assert served["mdns"] == []
    assert served["requests_total"] == 1
    (request,) = served["last_requests"]
    assert {key: request[key] for key in ("client", "transport", "method", "answered")} == {
        "client": "127.0.0.1",
        "transport": "udp",
        "method": "EM.GetStatus",
        "answered": True,
    }


async def test_the_virtual_meter_follows_its_site(
    hass: HomeAssistant, house: House, vm_clock: ManualClock
) -> None:
    entry = await add_virtual_meter(hass, vm_options(house.site))
    udp, _, _ = ports(entry)
    await poll(hass, vm_clock)
    assert await marstek_poll(udp) is not None
    await hass.config_entries.async_unload(house.site.entry_id)
    await hass.async_block_till_done()
    assert await marstek_poll(udp, wait_s=0.3) is None
    assert silence(hass) == "no_reading"
    await hass.config_entries.async_setup(house.site.entry_id)
    await hass.async_block_till_done()
    await poll(hass, vm_clock)
    assert await marstek_poll(udp) is not None


async def test_a_power_sensor_as_the_sites_grid(
    hass: HomeAssistant, simulator: Simulator, vm_clock: ManualClock
) -> None:
    solar = await serve(simulator, "gen1_em", name="Solar")
    await add_meter(hass, simulator, solar)
    p1 = "sensor.p1_power"
    hass.states.async_set(p1, "1.5", {"unit_of_measurement": "kW", "device_class": "power"})
    site = await add_site(
        hass,
        **{CONF_GRID_SENSOR: p1, CONF_SOLAR: [f"{solar.mac}:2"], CONF_GRID_METERING: "per_phase"},
    )
    assert site.options[CONF_GRID_SENSOR] == p1
    entry = await add_virtual_meter(hass, vm_options(site))
    udp, _, _ = ports(entry)
    reply = await marstek_poll(udp)
    assert reply is not None
    result = reply.frame["result"]
    assert [result[f"{phase}_act_power"] for phase in "abc"] == [1500.0, 0.0, 0.0]
    # The site's grid power follows the sensor; its grid energy needs counters it has not.
    assert state_of(hass, "sensor.home_grid_power") == "1500.0"
    assert state_of(hass, "sensor.home_grid_import_energy") == STATE_UNAVAILABLE
    hass.states.async_set(p1, "-250", {"unit_of_measurement": "W", "device_class": "power"})
    await hass.async_block_till_done()
    reply = await marstek_poll(udp)
    assert reply is not None
    assert reply.frame["result"]["total_act_power"] == -250.0
    assert state_of(hass, "sensor.home_grid_power") == "-250.0"
    # A sensor that stops reporting goes stale, and the entities say so when it does; a report
    # of the same value is fresh again.
    vm_clock.advance(LIMIT_S + 0.1)
    assert await marstek_poll(udp, wait_s=0.3) is None
    assert state_of(hass, SERVING) == STATE_ON
    await fire_timers(hass, LIMIT_S + 0.5)
    assert state_of(hass, SERVING) == STATE_OFF
    assert silence(hass) == "stale"
    hass.states.async_set(
        p1, "-250", {"unit_of_measurement": "W", "device_class": "power"}, force_update=True
    )
    await hass.async_block_till_done()
    assert await marstek_poll(udp) is not None
    # Absurd or unusable values are never served.
    for value, unit, reason in (
        ("1e9", "W", "implausible"),
        ("nan", "W", "no_reading"),
        ("unavailable", "W", "no_reading"),
        ("12", "V", "no_reading"),
    ):
        hass.states.async_set(p1, value, {"unit_of_measurement": unit})
        await hass.async_block_till_done()
        assert await marstek_poll(udp, wait_s=0.3) is None
        assert silence(hass) == reason


async def test_the_setup_wizard_checks_the_options(hass: HomeAssistant, house: House) -> None:
    first = await add_virtual_meter(hass, vm_options(house.site, **{CONF_TRANSPORTS: ["udp"]}))
    taken_udp = first.options[CONF_UDP_PORTS][0]
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "virtual_meter"}
    )
    sites = result["data_schema"].schema[CONF_SITE].config["options"]
    assert sites == [{"value": house.site.entry_id, "label": "Home"}]
    base = {CONF_NAME: " Second ", **vm_options(house.site)}
    for overrides, errors in (
        ({CONF_TRANSPORTS: []}, {CONF_TRANSPORTS: "no_transport"}),
        ({CONF_TRANSPORTS: ["udp", "mdns"]}, {CONF_TRANSPORTS: "mdns_needs_http"}),
        ({CONF_UDP_PORTS: []}, {CONF_UDP_PORTS: "invalid_udp_ports"}),
        ({CONF_UDP_PORTS: ["70000"]}, {CONF_UDP_PORTS: "invalid_udp_ports"}),
        ({CONF_UDP_PORTS: ["port"]}, {CONF_UDP_PORTS: "invalid_udp_ports"}),
        ({CONF_UDP_PORTS: [taken_udp]}, {CONF_UDP_PORTS: "port_of_other_meter"}),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**base, **overrides}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == errors
    # A port typed with spaces is kept as its number; the HTTP port as an integer.
    udp, http = str(free_port()), free_port(socket.SOCK_STREAM)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            **base,
            CONF_TRANSPORTS: ["http", "mdns"],
            CONF_UDP_PORTS: [f" {udp} "],
            CONF_HTTP_PORT: float(http),
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Second"
    assert result["options"][CONF_UDP_PORTS] == [udp]
    assert result["options"][CONF_HTTP_PORT] == http
    await hass.async_block_till_done()
    # The options of the first meter may not take the second's HTTP port.
    result = await hass.config_entries.options.async_init(first.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**first.options, CONF_TRANSPORTS: ["udp", "http"], CONF_HTTP_PORT: http},
    )
    assert result["errors"] == {CONF_HTTP_PORT: "port_of_other_meter"}


async def test_virtual_meters_are_no_emoncms_nodes(hass: HomeAssistant, house: House) -> None:
    await add_virtual_meter(hass, vm_options(house.site, **{CONF_TRANSPORTS: ["udp"]}))
    assert [label for label, _, _ in export_nodes(hass, {})] == ["Mains", "Home"]


async def test_a_virtual_meter_needs_a_site(hass: HomeAssistant) -> None:
    result = await flow(hass, "virtual_meter", {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_sites"


async def test_grid_sensor_in_the_sites_options(hass: HomeAssistant, house: House) -> None:
    site = house.site
    grid = site.options[CONF_GRID]
    result = await hass.config_entries.options.async_init(site.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "roles"}
    )
    roles = {CONF_GRID_METERING: "per_phase", CONF_SOLAR: [], CONF_BATTERY: [], CONF_LOAD: []}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**roles, CONF_GRID: grid, CONF_GRID_SENSOR: "sensor.p1_power"}
    )
    assert result["errors"] == {"base": "grid_sensor_and_channels"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**roles, CONF_GRID: [], CONF_GRID_SENSOR: "sensor.p1_power"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert site.options[CONF_GRID_SENSOR] == "sensor.p1_power"
    await hass.async_block_till_done()
    # Leaving the sensor empty removes it.
    result = await hass.config_entries.options.async_init(site.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "roles"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**roles, CONF_GRID: grid}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_GRID_SENSOR not in site.options
    await hass.async_block_till_done()


async def test_a_battery_regulating_on_the_served_value_settles(
    hass: HomeAssistant, simulator: Simulator, vm_clock: ManualClock
) -> None:
    """A Marstek-like loop: each poll, output += 0.9 x grid; the house's grid goes to zero.

    The grid sensor reports every 2 s, as the battery polls: the battery never reads a value it
    already acted on, so it converges without swinging across zero.
    """
    solar = await serve(simulator, "gen1_em", name="Solar")
    await add_meter(hass, simulator, solar)
    p1 = "sensor.p1_power"
    attributes = {"unit_of_measurement": "W", "device_class": "power"}
    house_load, battery_output = 1800.0, 0.0
    hass.states.async_set(p1, str(house_load), attributes)
    site = await add_site(hass, **{CONF_GRID_SENSOR: p1, CONF_SOLAR: [f"{solar.mac}:2"]})
    entry = await add_virtual_meter(hass, vm_options(site, **{CONF_TRANSPORTS: ["udp"]}))
    battery = MarstekClient(ports(entry)[0])
    grids: list[float] = []
    try:
        for _ in range(6):
            reply = await battery.poll()
            assert reply is not None
            grid = reply.frame["result"]["total_act_power"]
            grids.append(grid)
            battery_output += 0.9 * grid
            vm_clock.advance(2)
            hass.states.async_set(p1, str(round(house_load - battery_output, 2)), attributes)
            await hass.async_block_till_done()
    finally:
        battery.close()
    assert grids[0] == 1800.0
    assert all(0 <= later < earlier for earlier, later in pairwise(grids))
    assert grids[-1] < 1.0
