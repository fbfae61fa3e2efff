"""The transports, as fake batteries use them: UDP (Marstek), HTTP and WebSocket (Hoymiles,
Growatt), on loopback only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from custom_components.shelly_energy.virtual_meter.guard import GridReading
from custom_components.shelly_energy.virtual_meter.http import HttpServer
from custom_components.shelly_energy.virtual_meter.identity import MeterModel
from custom_components.shelly_energy.virtual_meter.meter import Transport, VirtualMeter
from custom_components.shelly_energy.virtual_meter.udp import UdpServer, _Protocol
from tests.batteries import (
    BROADCAST,
    LOOPBACK,
    GrowattClient,
    HoymilesClient,
    MarstekClient,
    check_em_reply,
)

from .conftest import ManualClock, make_meter

DEVICE_ID = "shellypro3em-02a1b2c3d4e5"


def udp_server(meter: VirtualMeter, port: int = 0) -> UdpServer:
    return UdpServer(
        lambda data, client: meter.frame(data, client=client, transport=Transport.UDP),
        (LOOPBACK, BROADCAST),
        port,
    )


@pytest.fixture
async def udp(meter: VirtualMeter) -> AsyncIterator[UdpServer]:
    server = udp_server(meter)
    await server.start()
    yield server
    server.close()


@pytest.fixture
async def http(meter: VirtualMeter) -> AsyncIterator[HttpServer]:
    server = HttpServer(meter, LOOPBACK, 0)
    await server.start()
    yield server
    await server.stop()


async def test_marstek_finds_the_meter_by_broadcast_then_polls_it(udp: UdpServer) -> None:
    battery = MarstekClient(udp.port)
    try:
        assert len(battery.request()) == 50  # the B2500's datagram, id 1
        found = await battery.poll(broadcast=True)
        assert found is not None
        assert found.source == (LOOPBACK, udp.port)  # the reply comes from the meter's address
        for _ in range(3):
            reply = await battery.poll()
            assert reply is not None
            assert reply.frame["id"] == battery.request_id
            assert reply.frame["src"] == DEVICE_ID
            assert reply.frame["dst"] == "unknown"
            assert 250 <= len(reply.raw) <= 1024
            assert reply.latency < 0.2
            check_em_reply(reply.raw, reply.frame["result"])
            assert reply.frame["result"]["a_act_power"] == 1000.0
    finally:
        battery.close()


async def test_ids_wrap_and_concurrent_polls_each_get_their_reply(udp: UdpServer) -> None:
    batteries = [MarstekClient(udp.port, first_id=65534) for _ in range(3)]
    try:
        replies = await asyncio.gather(*(battery.poll() for battery in batteries))
        assert [reply.frame["id"] for reply in replies if reply] == [65535] * 3
        assert await batteries[0].poll() is not None
        assert batteries[0].request_id == 1
    finally:
        for battery in batteries:
            battery.close()


async def test_em1_request_on_an_em1_meter(clock: ManualClock) -> None:
    meter = make_meter(clock, MeterModel.EM_GEN3)
    meter.update(GridReading((300.0, 0.0, 0.0), time=clock.now))
    server = udp_server(meter)
    await server.start()
    battery = MarstekClient(server.port, method="EM1.GetStatus")
    try:
        reply = await battery.poll()
        assert reply is not None
        assert reply.frame["src"] == "shellyemg3-02a1b2c3d4e5"
        assert reply.frame["result"]["act_power"] == 300.0
        assert b'"act_power":300.00,' in reply.raw
    finally:
        battery.close()
        server.close()


async def test_udp_goes_silent_while_stale_and_resumes(
    udp: UdpServer, meter: VirtualMeter, clock: ManualClock
) -> None:
    battery = MarstekClient(udp.port)
    try:
        clock.advance(3.5)
        assert await battery.poll(wait_s=0.3) is None
        meter.update(GridReading((-50.0, 0.0, 0.0), time=clock.now))
        reply = await battery.poll()
        assert reply is not None
        assert reply.frame["result"]["total_act_power"] == -50.0
    finally:
        battery.close()


async def test_a_busy_port_is_an_error_and_binds_nothing(
    udp: UdpServer, meter: VirtualMeter
) -> None:
    second = udp_server(meter, udp.port)
    with pytest.raises(OSError, match="in use"):
        await second.start()
    second.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        server = HttpServer(meter, LOOPBACK, taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            await server.start()
        await server.stop()


async def test_hoymiles_pairs_over_http_then_polls_over_a_websocket(
    http: HttpServer, session: aiohttp.ClientSession, meter: VirtualMeter
) -> None:
    battery = HoymilesClient(session, http.port)
    answers = await battery.pair()
    assert answers["/shelly"] == answers["/rpc/Shelly.GetDeviceInfo"]
    assert answers["/shelly"]["id"] == DEVICE_ID
    assert answers["/rpc/EM.GetConfig?id=0"]["id"] == 0
    assert answers["/rpc/Shelly.GetStatus"]["em:0"]["total_act_power"] == 749.5
    assert answers["/rpc/Sys.GetStatus"]["mac"] == "02A1B2C3D4E5"
    await battery.connect()
    try:
        for _ in range(3):
            raw, frame = await battery.call("EM.GetStatus", {"id": 0})
            assert frame["src"] == DEVICE_ID
            assert frame["dst"] == battery.src
            check_em_reply(raw, frame["result"])
        assert battery.websocket is not None
        await battery.websocket.send_bytes(b"binary frames are not RPC")
        _, frame = await battery.call("Foo.Bar")
        assert frame["error"] == {"code": 404, "message": "No handler for Foo.Bar"}
        _, frame = await battery.call("EM.GetStatus")  # the socket stayed open
        assert frame["result"]["total_act_power"] == 749.5
    finally:
        await battery.close()
    assert {seen.transport for seen in meter.recent} == {Transport.HTTP, Transport.WEBSOCKET}


async def test_websocket_and_http_go_silent_while_stale(
    http: HttpServer, session: aiohttp.ClientSession, meter: VirtualMeter, clock: ManualClock
) -> None:
    battery = HoymilesClient(session, http.port)
    await battery.connect()
    try:
        clock.advance(4)
        silent = await battery.send("EM.GetStatus", {"id": 0})
        # The next frame answers the next request: the stale one got none.
        answered = await battery.send("Shelly.GetDeviceInfo")
        _, frame = await battery.receive()
        assert frame["id"] == answered != silent
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await GrowattClient(session, http.port).status()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(
                f"http://{LOOPBACK}:{http.port}/rpc", data='{"id":1,"method":"EM.GetStatus"}'
            ):
                pass
    finally:
        await battery.close()
    meter.update(GridReading((10.0, 20.0, 30.0), time=clock.now))
    _, status = await GrowattClient(session, http.port).status()
    assert status["em:0"]["total_act_power"] == 60.0


async def test_growatt_reads_the_status_without_the_cloud(
    http: HttpServer, session: aiohttp.ClientSession
) -> None:
    raw, status = await GrowattClient(session, http.port).status()
    assert status["cloud"]["connected"] is False
    check_em_reply(raw, status["em:0"])


async def test_http_errors_and_frames(http: HttpServer, session: aiohttp.ClientSession) -> None:
    url = f"http://{LOOPBACK}:{http.port}"
    async with session.get(f"{url}/rpc/Foo.Bar") as response:
        assert response.status == 404
        assert await response.json() == {"code": 404, "message": "No handler for Foo.Bar"}
    async with session.get(f"{url}/rpc/EM.GetStatus?id=2") as response:
        assert response.status == 500
        assert await response.json() == {
            "code": -105,
            "message": "Argument 'id', value 2 not found!",
        }
    async with session.get(f"{url}/rpc") as response:  # not a WebSocket upgrade
        assert response.status == 404
    async with session.post(
        f"{url}/rpc", data='{"id":9,"src":"growatt","method":"EM.GetStatus","params":{"id":0}}'
    ) as response:
        frame = await response.json()
        assert (frame["id"], frame["dst"]) == (9, "growatt")
        assert frame["result"]["total_act_power"] == 749.5


async def test_stopping_closes_open_websockets(
    meter: VirtualMeter, session: aiohttp.ClientSession
) -> None:
    server = HttpServer(meter, LOOPBACK, 0)
    await server.start()
    battery = HoymilesClient(session, server.port)
    await battery.connect()
    await server.stop()
    assert battery.websocket is not None
    message = await battery.websocket.receive()
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await battery.close()


def test_udp_errors_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    # An ICMP "port unreachable" from a battery that went away reaches the protocol as an error.
    caplog.set_level(logging.DEBUG)
    _Protocol(lambda _data, _client: None).error_received(ConnectionRefusedError())
    assert "UDP error" in caplog.text
