"""What a Gen2+ meter pushes over its WebSocket, as the RPC client hands it on."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import Credentials
from custom_components.shelly_energy.meter.rpc import RpcClient
from custom_components.shelly_energy.meter.snapshot import MeterSnapshot
from simulator import Clock, MeterServer
from tests.loopback_meters import Serve

HOST = "127.0.0.1"


async def listening(
    session: aiohttp.ClientSession,
    server: MeterServer,
    password: str | None = None,
    *,
    lost: asyncio.Event | None = None,
) -> tuple[RpcClient, asyncio.Queue[MeterSnapshot]]:
    """Return a connected client (its first read done) and the snapshots it hands on.

    A lost connection sets `lost`.
    """
    client = RpcClient(session, Address(HOST, server.port), Credentials(None, password))
    pushed: asyncio.Queue[MeterSnapshot] = asyncio.Queue()
    client.listen(pushed.put_nowait, (lost or asyncio.Event()).set)
    await client.connect()
    await client.fetch()
    return client, pushed


def is_pushing(client: RpcClient) -> bool:
    """Return `client.pushing` (asked anew each time: mypy narrows a property it saw)."""
    return client.pushing


async def next_push(pushed: asyncio.Queue[MeterSnapshot]) -> MeterSnapshot:
    async with asyncio.timeout(5):
        return await pushed.get()


async def test_a_notification_is_merged_into_the_last_status_read(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em", password="s3cret")
    client, pushed = await listening(session, server, "s3cret")
    read = await client.fetch()
    meter.set_power("a", 1500.0)
    clock.advance(120)
    assert await server.notify_status() == 1
    snapshot = await next_push(pushed)
    phase_a = snapshot.channel("a")
    assert phase_a is not None
    assert phase_a.power == 1500.0
    before = read.channels[0].energy_in
    assert before is not None
    # 1.5 kW for two minutes.
    assert phase_a.energy_in == meter.counters("a")[0] == pytest.approx(before + 50.0, abs=0.01)
    # The meter's clock stamps the notification; its uptime goes on from the last read's.
    assert snapshot.time == round(clock.now(), 2)
    assert read.uptime is not None and snapshot.uptime == read.uptime + 120
    assert snapshot.rssi == read.rssi  # from the last read: notifications carry no Wi-Fi
    await client.close()


async def test_a_full_status_notification_replaces_it(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("proem50")
    client, pushed = await listening(session, server)
    meter.set_power(0, 42.0)
    meter.set_relay(False)
    assert await server.notify_status(full=True) == 1
    snapshot = await next_push(pushed)
    assert (snapshot.channels[0].power, snapshot.switch_on) == (42.0, False)
    await client.close()


async def test_a_push_while_the_status_is_read_keeps_readings_in_order(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em")
    client, pushed = await listening(session, server)
    meter.set_delay(0.3)  # the read's reply is on its way for a while
    read = asyncio.create_task(client.fetch())
    await asyncio.sleep(0.1)
    meter.set_power("a", 500.0)
    clock.advance(5)
    assert await server.notify_status() == 1
    pushed_snapshot = await next_push(pushed)
    meter.set_power("a", 700.0)  # measured after the push: the reply tells it
    meter.set_update("1.7.0")
    snapshot = await read
    # The reply may be older or newer than the push: the push's measurements stay the latest
    # (a repeat), the rest of the status is the reply's.
    assert snapshot.channels == pushed_snapshot.channels
    assert snapshot.total == pushed_snapshot.total
    assert snapshot.update_available is True
    assert snapshot.time >= pushed_snapshot.time
    meter.set_delay(0)
    later = await client.fetch()  # no push meanwhile: the reply's own measurements
    assert later.channels[0].power == 700.0
    await client.close()


async def test_snapshots_never_go_back_in_time(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em")
    client, pushed = await listening(session, server)
    clock.advance(0.75)  # the notification is stamped 0.75 s into a second
    meter.set_power("b", 10.0)
    assert await server.notify_status() == 1
    pushed_at = (await next_push(pushed)).time
    read = await client.fetch()  # the status's clock has whole seconds only
    assert pushed_at % 1 == 0.75
    assert read.time == pushed_at
    await client.close()


async def test_garbled_notifications_never_raise_and_good_values_return(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    meter, server = await serve("pro3em")
    client, pushed = await listening(session, server)
    meter.override_reply("garble", method="NotifyStatus", count=30, fields=3, non_finite=False)
    with caplog.at_level(logging.DEBUG):
        for watts in range(30):
            meter.set_power("c", float(watts))
            await server.notify_status(everything=True)
        await asyncio.sleep(0.2)
    assert "custom_components" not in {
        record.name.split(".")[0] for record in caplog.records if record.levelno >= logging.ERROR
    }
    await client.fetch()  # a full read sets the status right again
    meter.set_power("c", 77.0)
    while not pushed.empty():
        pushed.get_nowait()
    assert await server.notify_status(everything=True) == 1
    assert (await next_push(pushed)).channels[2].power == 77.0
    await client.close()


async def test_no_snapshot_without_a_listener_or_after_closing(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em")
    client = RpcClient(session, Address(HOST, server.port), Credentials())
    await client.connect()
    await client.fetch()
    meter.set_power("a", 1.0)
    assert await server.notify_status() == 1  # nobody listens: nothing happens
    await client.close()
    await asyncio.sleep(0.1)  # the meter sees the WebSocket closed
    meter.set_power("a", 2.0)
    assert await server.notify_status() == 0


async def test_pushing_means_a_push_came_over_the_websocket_open_now(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em")
    client, pushed = await listening(session, server)
    assert not is_pushing(client)  # read, but nothing pushed yet
    meter.set_power("a", 300.0)
    assert await server.notify_status() == 1
    await next_push(pushed)
    assert is_pushing(client)
    await client.connect()  # a new WebSocket: nothing pushed over it yet
    assert not is_pushing(client)
    meter.set_power("a", 400.0)
    await client.fetch()
    assert await server.notify_status() == 1
    await next_push(pushed)
    assert is_pushing(client)
    await client.close()
    assert not is_pushing(client)


async def test_a_websocket_the_meter_closes_is_lost_and_ours_is_not(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em")
    lost = asyncio.Event()
    client, _ = await listening(session, server, lost=lost)
    await client.connect()  # ours replaced: not lost
    await client.fetch()
    await asyncio.sleep(0.1)
    assert not lost.is_set()
    meter.reboot(invalid_for=0)
    async with asyncio.timeout(3):
        await lost.wait()
    lost.clear()
    await client.fetch()  # connects again
    await client.close()
    await asyncio.sleep(0.1)
    assert not lost.is_set()


async def test_after_a_reboot_found_by_another_call_pushes_tell_the_new_uptime(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em")
    client, pushed = await listening(session, server)
    clock.advance(3600)
    await client.fetch()  # up an hour
    meter.reboot(invalid_for=0)
    await asyncio.sleep(0.1)  # the meter closed the WebSocket
    clock.advance(20)
    await client.call("Shelly.GetDeviceInfo", None)  # connects again (a records download)
    meter.set_power("a", 300.0)
    assert await server.notify_status() == 1
    assert (await next_push(pushed)).uptime == 20
    await client.close()


async def test_callers_that_find_the_websocket_lost_at_once_open_one(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A whole read and another call (a records download, the switch) connect once between them.

    Each would otherwise close the other's connection while it opens and read from one that is
    not ready, and a WebSocket would stay open that nothing listens to.
    """
    meter, server = await serve("pro3em")
    lost = asyncio.Event()
    client, pushed = await listening(session, server, lost=lost)
    meter.reboot(invalid_for=0)
    async with asyncio.timeout(3):
        await lost.wait()
    read, info = await asyncio.gather(client.fetch(), client.call("Shelly.GetDeviceInfo", None))
    assert read.uptime == 0
    assert info["mac"] == meter.mac
    assert meter.requests["/rpc"] == 2  # the WebSockets opened: the first, and one again
    meter.set_power("a", 300.0)
    assert await server.notify_status() == 1
    phase_a = (await next_push(pushed)).channel("a")
    assert phase_a is not None
    assert phase_a.power == 300.0
    await client.close()
