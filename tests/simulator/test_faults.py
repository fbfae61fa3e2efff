"""The faults real meters show, made on purpose: firmware strings, flapping, damage, IPv6."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import aiohttp
import pytest

from simulator import Clock, MeterServer, SimulatedMeter, Simulator
from simulator.__main__ import parse_meter_spec
from simulator.faults import DAMAGES, garble, number_as_text, wrong_type
from simulator.server import bind_loopback
from tests.loopback_meters import Serve

from .helpers import HOST, rpc_device


async def test_status_firmware_differs_from_shelly(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("gen1_3em")
    meter.set_status_firmware("20230913-114244/v1.14.0-beta2")
    async with session.get(f"{server.url}/shelly") as reply:
        assert (await reply.json())["fw"] == meter.firmware
    async with session.get(f"{server.url}/status") as reply:
        assert (await reply.json())["update"]["old_version"] == "20230913-114244/v1.14.0-beta2"
    meter.set_status_firmware(None)
    async with session.get(f"{server.url}/status") as reply:
        assert (await reply.json())["update"]["old_version"] == meter.firmware


async def test_components_flap_while_the_connection_stays(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        meter.flap_components(every=2)
        layouts = []
        for _ in range(6):
            status = await device.call_rpc("Shelly.GetStatus")
            layouts.append("em:0" in status)
        assert layouts == [True, False, False, True, True, False]
        assert (await device.call_rpc("Shelly.GetDeviceInfo"))["profile"] == "monophase"
        assert device.connected
        assert meter.requests["Shelly.GetStatus"] == 7  # the one aioshelly's initialize sent
        assert meter.requests["/rpc"] == 1  # one WebSocket
        meter.flap_components(None)
        assert ["em:0" in await device.call_rpc("Shelly.GetStatus") for _ in range(3)] == [
            False
        ] * 3
    finally:
        await device.shutdown()


def test_only_a_meter_with_two_profiles_flaps(clock: Clock) -> None:
    with pytest.raises(ValueError, match="cannot flap"):
        SimulatedMeter("proem50", clock=clock).flap_components()
    with pytest.raises(ValueError, match="cannot flap"):
        SimulatedMeter("pro3em", clock=clock).flap_components(every=0)


def test_garble_damages_as_many_places_as_asked() -> None:
    rng = random.Random(4)
    damaged = 0
    for _ in range(200):
        original = {"a": 1.5, "b": {"c": [1, 2, {"d": "x"}]}, "e": None}
        reply = garble(json.loads(json.dumps(original)), rng, fields=1)
        damaged += reply != original
    assert damaged >= 190  # a damage can happen to give the same value (null for null)
    seen: set[str] = set()
    for _ in range(300):
        reply = garble({"v": 230.5}, rng, non_finite=False)
        text = json.dumps(reply)
        assert "NaN" not in text and "Infinity" not in text
        seen.add(type(reply.get("v") if isinstance(reply, dict) else reply).__name__)
    assert {"NoneType", "str", "int", "float", "list", "dict", "bool"} <= seen


def test_damages() -> None:
    rng = random.Random(1)
    assert all(type(wrong_type(7, rng)) is not int for _ in range(50))
    assert number_as_text(229.5, rng) == "229.5"
    assert number_as_text([1], rng) == "nan"
    finite = [damage for damage in DAMAGES if damage.__name__ != "not_finite"]
    assert all(
        not isinstance(value := damage(1.0, rng), float) or math.isfinite(value)
        for damage in finite
        for _ in range(20)
    )


@pytest.mark.parametrize("kind", ["gen1_em", "pro3em"])
async def test_garbled_replies_over_the_wire(
    serve: Serve, session: aiohttp.ClientSession, kind: str
) -> None:
    meter, server = await serve(kind)
    meter.override_reply("garble", count=20, fields=3, seed=9)
    path = "/status" if meter.gen == 1 else "/rpc/Shelly.GetStatus"
    good = await _json(session, f"{server.url}{path}")
    assert good != await _json(session, f"{server.url}{path}")  # the first garbled one ...
    for _ in range(19):
        await _json(session, f"{server.url}{path}")
    assert sorted(await _json(session, f"{server.url}{path}")) == sorted(good)  # ... and over
    assert meter.requests[path] == 22


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as reply:
        return json.loads(await reply.text())  # NaN and Infinity included


@pytest.mark.usefixtures("ipv6_loopback")
@pytest.mark.parametrize("kind", ["gen1_em", "pro3em"])
async def test_a_meter_listens_on_ipv6_loopback(
    clock: Clock, session: aiohttp.ClientSession, kind: str
) -> None:
    simulator = Simulator(clock, control_port=0)
    meter = simulator.add_meter(kind, host="::1")
    async with simulator:
        server = simulator.server(meter)
        assert server.url == f"http://[::1]:{server.port}"
        async with session.get(f"{server.url}/shelly") as reply:
            assert (await reply.json())["mac"] == meter.mac
        async with session.get(f"{simulator.control_url}/meters") as reply:
            assert (await reply.json())[0]["host"] == "::1"
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://{HOST}:{server.port}/shelly")


def test_nothing_but_loopback_is_bound(clock: Clock) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 or ::1 only"):
        bind_loopback(0, "0.0.0.0")
    with pytest.raises(ValueError, match="only"):
        MeterServer(SimulatedMeter("pro3em", clock=clock), host="::")
    simulator = Simulator(clock)
    with pytest.raises(ValueError, match="only"):
        simulator.add_meter("pro3em", host="192.168.1.2")
    assert simulator.meters == []


def test_ipv6_meter_spec() -> None:
    assert parse_meter_spec("pro3em:8081:ipv6=1").host == "::1"
    assert parse_meter_spec("pro3em:ipv6=false").host == HOST
    with pytest.raises(ValueError, match="ipv6"):
        parse_meter_spec("pro3em:ipv6=maybe")
