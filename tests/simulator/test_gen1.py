"""Gen1 over the wire: /shelly, /status with Basic auth, relay, em_data.csv."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from custom_components.shelly_energy.meter.gen1 import basic_authorization
from simulator import CSV_BUSY_BODY, Clock
from tests.loopback_meters import Serve

EM_KEYS = {"power", "reactive", "pf", "voltage", "is_valid", "total", "total_returned"}
EM3_KEYS = {"power", "pf", "current", "voltage", "is_valid", "total", "total_returned"}
CSV_ROW = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d,\d+\.\d\d,\d+\.\d\d,\d+\.\d,\d+\.\d$")


async def test_status_needs_basic_auth(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("gen1_em", password="pw", name="Shed")
    url = server.url
    async with session.get(f"{url}/shelly") as reply:
        shelly = await reply.json()
    assert shelly == {
        "type": "SHEM", "mac": meter.mac, "auth": True, "fw": "20230913-114244/v1.14.0-gcb84623",
        "discoverable": True, "longid": 1, "num_outputs": 1, "num_meters": 0, "num_emeters": 2,
    }  # fmt: skip
    async with session.get(f"{url}/status") as reply:
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"] == f'Basic realm="{meter.device_id}"'
    async with session.get(f"{url}/status", headers=basic_authorization("admin", "nope")) as reply:
        assert reply.status == 401
    meter.set_power(0, 1000)
    meter.set_power(1, -250)
    clock.advance(3600)
    async with session.get(f"{url}/status", headers=basic_authorization("admin", "pw")) as reply:
        status = await reply.json()
    assert [set(emeter) for emeter in status["emeters"]] == [EM_KEYS, EM_KEYS]
    assert status["emeters"][0]["power"] == 1000.0
    assert (status["emeters"][0]["total"], status["emeters"][1]["total_returned"]) == (
        1000.0,
        250.0,
    )
    assert status["emeters"][1]["power"] == -250.0
    assert status["relays"][0]["ison"] is True
    assert (status["unixtime"], status["uptime"], status["mac"]) == (
        int(clock.now()),
        3600,
        meter.mac,
    )
    assert {"connected", "ssid", "ip", "rssi"} == set(status["wifi_sta"])
    assert {"status", "has_update", "new_version", "old_version"} == set(status["update"])
    async with session.get(f"{url}/settings", headers=basic_authorization("admin", "pw")) as reply:
        settings = await reply.json()
    assert settings["device"]["hostname"] == f"shellyem-{meter.mac[-6:]}"
    assert settings["name"] == "Shed"
    assert len(settings["emeters"]) == 2


async def test_3em_status(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("gen1_3em")
    for phase, watts in zip("abc", (100, 200, -50), strict=True):
        meter.set_power(phase, watts)
    async with session.get(f"{server.url}/status") as reply:
        status = await reply.json()
    assert [set(emeter) for emeter in status["emeters"]] == [EM3_KEYS] * 3
    assert status["total_power"] == 250.0
    assert set(status["emeter_n"]) == {"current", "ixsum", "mismatch", "is_valid"}
    assert status["emeter_n"]["ixsum"] > 0
    async with session.get(f"{server.url}/settings") as reply:
        assert (await reply.json())["device"]["hostname"] == f"shellyem3-{meter.mac}"


async def test_plug_is_not_an_energy_meter(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, server = await serve("gen1_plug")
    async with session.get(f"{server.url}/shelly") as reply:
        assert "num_emeters" not in await reply.json()
    async with session.get(f"{server.url}/status") as reply:
        status = await reply.json()
    assert "emeters" not in status
    assert {"power", "is_valid", "total", "counters"} <= set(status["meters"][0])
    async with session.get(f"{server.url}/relay/0?turn=off") as reply:
        assert (await reply.json())["ison"] is False
    async with session.get(f"{server.url}/status") as reply:
        assert (await reply.json())["meters"][0]["power"] == 0.0  # the relay cuts the load


async def test_relay(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("gen1_em")
    async with session.get(f"{server.url}/relay/0?turn=off") as reply:
        assert await reply.json() == {
            "ison": False, "has_timer": False, "timer_started": 0, "timer_duration": 0,
            "timer_remaining": 0, "overpower": False, "source": "http",
        }  # fmt: skip
    assert not meter.relay_on
    async with session.get(f"{server.url}/relay/0?turn=toggle") as reply:
        assert (await reply.json())["ison"] is True
    async with session.get(f"{server.url}/relay/0?turn=sideways") as reply:
        assert reply.status == 400
    async with session.get(f"{server.url}/relay/1") as reply:
        assert reply.status == 404


async def test_reboot_then_invalid_counters(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("gen1_3em")
    meter.set_power("a", 360)
    clock.advance(600)
    meter.reboot(invalid_for=3)
    async with session.get(f"{server.url}/status") as reply:
        emeter = (await reply.json())["emeters"][0]
    assert (emeter["is_valid"], emeter["total"], emeter["total_returned"]) == (False, -1, -1)
    clock.advance(3)
    async with session.get(f"{server.url}/status") as reply:
        emeter = (await reply.json())["emeters"][0]
    assert (emeter["is_valid"], emeter["total"]) == (True, 60.3)


async def test_em_data_csv(serve: Serve, session: aiohttp.ClientSession, clock: Clock) -> None:
    meter, server = await serve("gen1_em", history_days=1)
    async with session.get(f"{server.url}/emeter/1/em_data.csv") as reply:
        lines = (await reply.text()).splitlines()
    assert lines[0] == "Date/time UTC,Active energy Wh (2),Returned energy Wh (2),Min V,Max V"
    assert len(lines) == 1 + 144
    assert all(CSV_ROW.match(line) for line in lines[1:])
    assert lines[1].startswith("2025-05-31 00:00,")
    assert lines[-1].startswith("2025-05-31 23:50,")
    returned = sum(float(line.split(",")[2]) for line in lines[1:])
    assert returned == pytest.approx(meter.counters(1)[1], abs=0.75)  # rows are rounded to 0.01
    async with session.get(f"{server.url}/emeter/2/em_data.csv") as reply:
        assert reply.status == 404


async def test_em_data_csv_one_download_at_a_time(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("gen1_em", history_days=0.5, csv_bytes_per_second=8000)
    url = f"{server.url}/emeter/0/em_data.csv"
    async with session.get(url) as first:
        start = await first.content.readany()  # the transfer has started
        async with session.get(url) as second:
            assert await second.text() == CSV_BUSY_BODY
        whole = start + await first.read()
    assert len(whole.decode().splitlines()) == 1 + 72
    meter.csv_bytes_per_second = None
    async with session.get(url) as third:
        assert (await third.text()).startswith("Date/time UTC")


async def test_overrides_and_delay(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("gen1_em")
    meter.override_reply("set", path="emeters.0.total", value=None)
    async with session.get(f"{server.url}/status") as reply:
        assert (await reply.json())["emeters"][0]["total"] is None
    meter.override_reply("invalid_json")
    async with session.get(f"{server.url}/status") as reply:
        with pytest.raises(ValueError):
            await reply.json()
    meter.override_reply("error", method="settings", code=503, message="busy")
    async with session.get(f"{server.url}/settings") as reply:
        assert (reply.status, await reply.text()) == (503, "busy")
    meter.set_delay(0.3)
    with pytest.raises(TimeoutError):
        await session.get(f"{server.url}/status", timeout=aiohttp.ClientTimeout(total=0.05))


async def test_reboot_endpoint_and_power_loss(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("gen1_em")
    clock.advance(100)
    async with session.get(f"{server.url}/reboot") as reply:
        assert await reply.json() == {"ok": True}
    for _ in range(100):
        if meter.state(read_counters=False).uptime == 0:
            break
        await asyncio.sleep(0.01)
    assert meter.state(read_counters=False).uptime == 0
    clock.advance(10)
    meter.power_loss(60)
    with pytest.raises(aiohttp.ClientError):
        await session.get(f"{server.url}/status")
    clock.advance(60)
    async with session.get(f"{server.url}/status") as reply:
        status = await reply.json()
    assert status["uptime"] == 0
    assert status["emeters"][0]["is_valid"] is False  # right after power returns
    clock.advance(5)
    async with session.get(f"{server.url}/status") as reply:
        assert (await reply.json())["emeters"][0]["is_valid"] is True


async def test_em_data_csv_abandoned_download_frees_the_slot(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    _, server = await serve("gen1_em", history_days=0.5, csv_bytes_per_second=4000)
    url = f"{server.url}/emeter/0/em_data.csv"
    reply = await session.get(url)
    await reply.content.readany()
    reply.close()  # hang up mid-transfer
    for _ in range(100):
        async with session.get(url) as again:
            if (await again.text()) != CSV_BUSY_BODY:
                break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the transfer slot was never freed")
    assert "Error handling request" not in caplog.text
