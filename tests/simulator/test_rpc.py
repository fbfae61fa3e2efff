"""Gen2+ over the wire, with the real aioshelly client and plain aiohttp."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aioshelly.common import get_info
from aioshelly.exceptions import DeviceConnectionError, InvalidAuthError, RpcCallError

from simulator import METER_KINDS, PRESETS, Clock, MeterServer, SimulatedMeter
from simulator.rpc import RpcApi
from tests.loopback_meters import Serve

from .helpers import HOST, digest_authorization, digest_get, rpc_device

# Keys of the real Pro 3EM Shelly.GetStatus capture (firmware 1.6.1).
CAPTURE_STATUS_KEYS = {
    "ble", "bthome", "cloud", "em:0", "emdata:0", "eth", "modbus", "mqtt", "sys",
    "temperature:0", "wifi", "ws",
}  # fmt: skip
CAPTURE_EM_KEYS = {
    f"{phase}_{key}"
    for phase in "abc"
    for key in ("act_power", "aprt_power", "current", "freq", "pf", "voltage")
} | {
    "id",
    "n_current",
    "total_act_power",
    "total_aprt_power",
    "total_current",
    "user_calibrated_phase",
}
CAPTURE_EMDATA_KEYS = {
    f"{phase}_{key}" for phase in "abc" for key in ("total_act_energy", "total_act_ret_energy")
} | {"id", "total_act", "total_act_ret"}
CAPTURE_SYS_KEYS = {
    "available_updates", "btrelay_rev", "cfg_rev", "fs_free", "fs_size", "kvs_rev", "last_sync_ts",
    "mac", "ram_free", "ram_min_free", "ram_size", "reset_reason", "restart_required",
    "schedule_rev", "time", "unixtime", "uptime", "utc_offset", "webhook_rev",
}  # fmt: skip
CAPTURE_DEVICE_INFO_KEYS = {
    "app", "auth_domain", "auth_en", "fw_id", "gen", "id", "mac", "model", "name", "profile",
    "slot", "ver",
}  # fmt: skip


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text else 0


async def test_aioshelly_connects_without_password(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", name="House")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        assert (device.model, device.gen, device.name) == ("SPEM-003CEBEU", 2, "House")
        assert device.firmware_supported
        assert set(device.status) == CAPTURE_STATUS_KEYS
        assert set(device.status["em:0"]) == CAPTURE_EM_KEYS
        assert set(device.status["emdata:0"]) == CAPTURE_EMDATA_KEYS
        assert set(device.status["sys"]) == CAPTURE_SYS_KEYS
        assert device.status["em:0"]["n_current"] is None
        assert device.status["em:0"]["user_calibrated_phase"] == []
        assert set(device.shelly) == CAPTURE_DEVICE_INFO_KEYS
        assert device.config["sys"]["device"]["mac"] == meter.mac
        assert device.config["em:0"]["reverse"] == {}
        assert "ct_type" in device.config["em:0"]
        meter.clock.advance(3600)
        await device.poll()
        em = device.status["em:0"]
        for phase in "abc":
            assert decimals(em[f"{phase}_act_power"]) <= 1
            assert decimals(em[f"{phase}_current"]) <= 3
            assert decimals(device.status["emdata:0"][f"{phase}_total_act_energy"]) <= 2
        assert decimals(em["total_act_power"]) <= 3
        assert device.status["sys"]["uptime"] == 3600
        assert device.status["sys"]["unixtime"] == int(meter.clock.now())
        assert device.status["emdata:0"]["total_act"] > 0
    finally:
        await device.shutdown()


async def test_aioshelly_with_password_and_reauth(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em", password="s3cret")
    info = await get_info(session, HOST, port=server.port)
    assert (info["auth_en"], info["auth_domain"]) == (True, f"shellypro3em-{meter.mac.lower()}")
    device = await rpc_device(session, server.port, "s3cret")
    try:
        await device.initialize()
        assert device.requires_auth
        meter.set_power("a", 1000)
        clock.advance(3600)  # past the nonce lifetime: the client is challenged again
        await device.poll()
        assert device.status["emdata:0"]["a_total_act_energy"] >= 1000.0
        assert await device.call_rpc("EM.GetStatus", {"id": 0}) == device.status["em:0"]
    finally:
        await device.shutdown()


@pytest.mark.parametrize("password", [None, "wrong"])
async def test_aioshelly_wrong_or_missing_password(
    serve: Serve, session: aiohttp.ClientSession, password: str | None
) -> None:
    _, server = await serve("proem50", password="s3cret")
    device = await rpc_device(session, server.port, password)
    try:
        with pytest.raises(InvalidAuthError):
            await device.initialize()
    finally:
        await device.shutdown()


@pytest.mark.parametrize("kind", METER_KINDS)
async def test_get_info_for_every_kind(
    kind: str, serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve(kind)
    info = await get_info(session, HOST, device_mac=meter.mac, port=server.port)
    preset = PRESETS[kind]
    if preset.gen == 1:
        assert "gen" not in info
        assert (info["type"], info["mac"], info["auth"]) == (preset.model, meter.mac, False)
    else:
        assert (info["model"], info["gen"], info["app"], info["id"]) == (
            preset.model, preset.gen, preset.app, meter.device_id,
        )  # fmt: skip
        assert ("profile" in info) == (kind == "pro3em")


@pytest.mark.parametrize("kind", ["proem50", "emg3", "emg4", "3em63g3", "plug"])
async def test_other_gen2_kinds_initialise(
    kind: str, serve: Serve, session: aiohttp.ClientSession
) -> None:
    _, server = await serve(kind)
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        await device.poll()
        status = device.status
        if kind == "3em63g3":
            assert {"em:0", "emdata:0"} <= set(status)
        elif kind == "plug":
            assert not any(key.startswith("em") for key in status)
            assert {
                "id",
                "source",
                "output",
                "apower",
                "voltage",
                "current",
                "aenergy",
                "temperature",
            } == set(status["switch:0"])
            assert set(status["switch:0"]["aenergy"]) == {"total", "by_minute", "minute_ts"}
        else:
            assert {"em1:0", "em1:1", "em1data:0", "em1data:1", "switch:0"} <= set(status)
            assert set(status["em1:0"]) >= {
                "id",
                "current",
                "voltage",
                "act_power",
                "aprt_power",
                "pf",
                "freq",
                "calibration",
            }
            assert set(status["em1data:1"]) == {"id", "total_act_energy", "total_act_ret_energy"}
    finally:
        await device.shutdown()


async def test_http_get_rpc_with_digest(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em", password="pw")
    url = f"http://{HOST}:{server.port}"
    async with session.get(f"{url}/rpc/Shelly.GetDeviceInfo") as reply:
        assert reply.status == 200  # never needs auth
    async with session.get(f"{url}/rpc/EM.GetStatus?id=0") as reply:
        assert reply.status == 401
        challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith('Digest qop="auth", realm="shellypro3em-')
    assert "algorithm=SHA-256" in challenge
    reply = await digest_get(session, server.port, "/rpc/EM.GetStatus?id=0", "pw")
    assert reply.status == 200
    assert (await reply.json())["id"] == 0
    reply = await digest_get(session, server.port, "/rpc/EM.GetStatus?id=0", "nope")
    assert reply.status == 401
    header = digest_authorization(challenge, "GET", "/rpc/Sys.GetStatus", "pw")  # another uri
    async with session.get(
        f"{url}/rpc/EM.GetStatus?id=0", headers={"Authorization": header}
    ) as reply:
        assert reply.status == 401
    meter.set_password(None)
    async with session.get(f"{url}/rpc/EMData.GetStatus?id=0") as reply:
        assert reply.status == 200


async def test_http_errors_and_post_frames(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("proem50")
    url = f"http://{HOST}:{server.port}"
    async with session.get(f"{url}/rpc/Foo.Bar") as reply:
        assert reply.status == 404
        assert await reply.json() == {"code": 404, "message": "No handler for Foo.Bar"}
    async with session.get(f"{url}/rpc/EM1.GetStatus?id=x") as reply:
        assert (reply.status, await reply.json()) == (
            500,
            {"code": -103, "message": "Invalid argument 'id'"},
        )
    async with session.get(f"{url}/rpc/EM1.GetStatus?id=7") as reply:
        assert (await reply.json())["code"] == -105
    async with session.get(f"{url}/rpc/EM.GetStatus?id=0") as reply:
        assert reply.status == 404  # no em:0 on a Pro EM
    frame = {"id": 7, "src": "tester", "method": "Switch.Set", "params": {"id": 0, "on": False}}
    async with session.post(f"{url}/rpc", json=frame) as reply:
        assert await reply.json() == {
            "id": 7,
            "src": meter.device_id,
            "dst": "tester",
            "result": {"was_on": True},
        }
    async with session.get(f"{url}/rpc/Switch.GetStatus?id=0") as reply:
        assert (await reply.json())["output"] is False
    async with session.post(
        f"{url}/rpc", json={"id": 8, "src": "t", "method": "Nope.Nope"}
    ) as reply:
        assert (await reply.json())["error"] == {"code": 404, "message": "No handler for Nope.Nope"}


async def test_ws_frames_several_in_flight(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    async with session.ws_connect(f"http://{HOST}:{server.port}/rpc") as ws:
        for call_id, method in enumerate(("Shelly.GetDeviceInfo", "Sys.GetStatus", "Nope.Nope"), 1):
            await ws.send_str(json.dumps({"id": call_id, "src": "me", "method": method}))
        await ws.send_str("not json")  # ignored, as devices do
        await ws.send_str(
            json.dumps({"src": "me", "method": "Shelly.GetStatus"})
        )  # no id: no reply
        replies = [json.loads((await ws.receive()).data) for _ in range(3)]
        assert [reply["id"] for reply in replies] == [1, 2, 3]
        assert all(reply["src"] == meter.device_id and reply["dst"] == "me" for reply in replies)
        assert replies[1]["result"]["mac"] == meter.mac
        assert replies[2]["error"]["code"] == 404


async def test_ws_auth_challenge_frame(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em", password="pw")
    async with session.ws_connect(f"http://{HOST}:{server.port}/rpc") as ws:
        await ws.send_str(json.dumps({"id": 1, "src": "me", "method": "Shelly.GetStatus"}))
        reply = json.loads((await ws.receive()).data)
        assert reply["error"]["code"] == 401
        challenge = json.loads(reply["error"]["message"])
        assert challenge == {
            "auth_type": "digest", "nonce": int(meter.clock.now()), "nc": 1,
            "realm": meter.device_id, "algorithm": "SHA-256",
        }  # fmt: skip


async def test_get_data_paging_over_http(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    _, server = await serve("pro3em", history_days=1)
    url = f"http://{HOST}:{server.port}/rpc/EMData.GetData"
    start = int(clock.now()) - 1800
    rows: list[Any] = []
    ts: int | None = start
    calls = 0
    while ts is not None:
        async with session.get(
            url, params={"id": 0, "ts": ts, "end_ts": start + 1799, "add_keys": "true"}
        ) as reply:
            page = await reply.json()
        calls += 1
        rows += [value for block in page["data"] for value in block["values"]]
        ts = page.get("next_record_ts")
    assert (len(rows), calls) == (30, 5)
    async with session.get(f"http://{HOST}:{server.port}/rpc/EMData.GetRecords?id=0") as reply:
        assert (await reply.json())["data_blocks"] == [
            {"ts": int(clock.now()) - 86_400, "period": 60, "records": 1440}
        ]


async def test_data_csv(serve: Serve, session: aiohttp.ClientSession, clock: Clock) -> None:
    _, server = await serve("pro3em", history_days=0.1, password="pw")
    start = int(clock.now()) - 600
    uri = f"/emdata/0/data.csv?ts={start}&end_ts={start + 179}&add_keys=true"
    reply = await digest_get(session, server.port, uri, "pw")
    lines = (await reply.text()).splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["timestamp", "a_total_act_energy", "a_fund_act_energy"]
    assert len(header) == 52
    assert [line.split(",")[0] for line in lines[1:]] == [
        str(start),
        str(start + 60),
        str(start + 120),
    ]
    assert lines[1].endswith(",,,")  # no neutral CT
    reply = await digest_get(session, server.port, "/em1data/0/data.csv", "pw")
    assert reply.status == 404  # triphase profile: no em1data


async def test_profile_switch_over_the_wire(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        meter.set_profile("monophase")
        for _ in range(50):
            if not device.connected:
                break
            await asyncio.sleep(0.01)
        assert not device.connected  # the switch drops the connection, like the reboot it is
    finally:
        await device.shutdown()
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        assert device.shelly["profile"] == "monophase"
        assert {"em1:0", "em1:1", "em1:2", "em1data:0"} <= set(device.status)
        assert "em:0" not in device.status
        with pytest.raises(RpcCallError) as raised:
            await device.call_rpc("EM.GetStatus", {"id": 0})
        assert raised.value.code == 404
    finally:
        await device.shutdown()


async def test_offline_and_back_on_the_same_port(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em")
    port = server.port
    device = await rpc_device(session, port)
    try:
        await device.initialize()
        meter.set_online(False)
        with pytest.raises(DeviceConnectionError):
            await device.poll()
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://{HOST}:{port}/shelly")
        meter.set_online(True)
        assert server.port == port
        info = await get_info(session, HOST, port=port)
        assert info["mac"] == meter.mac
        await device.initialize()
        await device.poll()
    finally:
        await device.shutdown()


async def test_reboot_drops_and_refuses_briefly(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("emg3")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        meter.reboot(invalid_for=5)
        with pytest.raises(DeviceConnectionError):
            await device.poll()
        with pytest.raises(DeviceConnectionError):
            await device.initialize()  # connections are reset while it boots
        clock.advance(5)
        await device.initialize()
        assert device.status["sys"]["uptime"] == 5
    finally:
        await device.shutdown()


async def test_shelly_reboot_method(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        await device.trigger_reboot(delay_ms=10)
        for _ in range(100):
            if not device.connected:
                break
            await asyncio.sleep(0.01)
        assert not device.connected
        assert not meter.reachable()
    finally:
        await device.shutdown()


async def test_reply_overrides_and_delay(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    device = await rpc_device(session, server.port)
    try:
        await device.initialize()
        meter.override_reply("set", path="em:0.a_act_power", value=None)
        meter.override_reply("delete", path="emdata:0.total_act")
        await device.poll()
        assert device.status["em:0"]["a_act_power"] is None
        assert "total_act" in device.status["emdata:0"]  # poll() merges into the last status
        assert "total_act" not in await device.call_rpc("Shelly.GetStatus")
        meter.override_reply("error", code=-114, message="Method Shelly.GetStatus failed")
        with pytest.raises(RpcCallError) as raised:
            await device.poll()
        assert raised.value.code == -114
        await device.poll()
        recovered: float | None = device.status["em:0"]["a_act_power"]
        assert recovered is not None
    finally:
        await device.shutdown()
    url = f"http://{HOST}:{server.port}/rpc/Shelly.GetStatus"
    meter.override_reply("invalid_json")
    async with session.get(url) as reply:
        with pytest.raises(json.JSONDecodeError):
            json.loads(await reply.text())
    meter.set_delay(0.5)
    with pytest.raises(TimeoutError):
        await session.get(url, timeout=aiohttp.ClientTimeout(total=0.1))
    meter.set_delay(0)
    async with session.get(url) as reply:
        assert reply.status == 200


async def test_available_updates(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    meter.set_update("1.7.0", beta="1.7.1-beta1")
    meter.set_firmware("20250101-000000/1.5.0-gabcdef0")
    async with session.get(f"http://{HOST}:{server.port}/rpc/Sys.GetStatus") as reply:
        assert (await reply.json())["available_updates"] == {
            "beta": {"version": "1.7.1-beta1"},
            "stable": {"version": "1.7.0"},
        }
    info = await get_info(session, HOST, port=server.port)
    assert (info["fw_id"], info["ver"]) == ("20250101-000000/1.5.0-gabcdef0", "1.5.0")


async def test_notify_status(clock: Clock, session: aiohttp.ClientSession) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    server = MeterServer(meter, notify_interval=0.05)
    await server.start()
    try:
        async with session.ws_connect(f"http://{HOST}:{server.port}/rpc") as ws:
            await ws.send_str(json.dumps({"id": 1, "src": "me", "method": "Shelly.GetDeviceInfo"}))
            assert json.loads((await ws.receive()).data)["id"] == 1
            notification = json.loads((await ws.receive(timeout=2)).data)
            assert notification["method"] == "NotifyStatus"
            assert notification["dst"] == "me"
            assert {"ts", "em:0", "emdata:0"} <= set(notification["params"])
    finally:
        await server.stop()


async def test_quick_offline_online_offline(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em")
    for _ in range(3):
        meter.set_online(False)
        meter.set_online(True)
        meter.set_online(False)
    await asyncio.sleep(0.05)
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(f"{server.url}/shelly")
    meter.set_online(True)
    async with session.get(f"{server.url}/shelly") as reply:
        assert reply.status == 200


async def test_em1data_reset_counters_resets_one_channel(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em", profile="monophase")
    for phase in "abc":
        meter.set_power(phase, 100)
    clock.advance(3600)
    async with session.get(f"{server.url}/rpc/EM1Data.ResetCounters?id=1") as reply:
        assert await reply.json() is None
    assert [meter.counters(channel)[0] for channel in range(3)] == [100.0, 0.0, 100.0]
    async with session.get(f"{server.url}/rpc/EMData.ResetCounters?id=0") as reply:
        assert reply.status == 404  # no emdata:0 in the monophase profile


async def test_notifications_carry_what_changed(
    clock: Clock, session: aiohttp.ClientSession
) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 100)
    server = MeterServer(meter)
    await server.start()
    try:
        assert await server.notify_status() == 0  # nobody called the meter yet
        async with session.ws_connect(f"http://{HOST}:{server.port}/rpc") as ws:
            await ws.send_str(json.dumps({"id": 1, "src": "me", "method": "Shelly.GetStatus"}))
            await ws.receive()
            assert await server.notify_status() == 1  # the first: every meter component
            first = json.loads((await ws.receive(timeout=2)).data)
            assert (first["method"], first["dst"]) == ("NotifyStatus", "me")
            assert set(first["params"]) == {"ts", "em:0", "emdata:0"}
            assert first["params"]["em:0"] == RpcApi(meter).status(["em:0"])["em:0"]
            assert await server.notify_status() == 0  # nothing changed: nothing sent
            meter.set_power("b", 50)
            assert await server.notify_status() == 1  # the power moved, the counters did not
            assert set(json.loads((await ws.receive(timeout=2)).data)["params"]) == {
                "ts",
                "em:0",
            }
            clock.advance(3600)
            assert await server.notify_status() == 1
            params = json.loads((await ws.receive(timeout=2)).data)["params"]
            assert params["ts"] == round(clock.now(), 2)
            assert params["emdata:0"]["a_total_act_energy"] == 100.0
            assert await server.notify_status(everything=True) == 1
            assert set(json.loads((await ws.receive(timeout=2)).data)["params"]) == {
                "ts",
                "em:0",
                "emdata:0",
            }
            assert await server.notify_status(full=True) == 1
            full = json.loads((await ws.receive(timeout=2)).data)
            assert full["method"] == "NotifyFullStatus"
            assert {"sys", "wifi", "em:0", "emdata:0"} <= set(full["params"])
            meter.set_online(False)
            assert await server.notify_status(everything=True) == 0
    finally:
        await server.stop()
    assert await server.notify_status(everything=True) == 0


async def test_every_call_waits_for_the_meters_latency(
    clock: Clock, session: aiohttp.ClientSession
) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, rpc_latency_s=0.1)
    server = MeterServer(meter)
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        async with session.get(f"{server.url}/rpc/Sys.GetStatus") as reply:
            assert reply.status == 200
        async with session.ws_connect(f"{server.url}/rpc") as ws:
            for call in range(3):  # one at a time, as the device answers them
                await ws.send_str(
                    json.dumps({"id": call, "method": "EM.GetStatus", "params": {"id": 0}})
                )
            for _ in range(3):
                await ws.receive(timeout=2)
        assert 0.4 <= loop.time() - began < 1.5
        began = loop.time()
        async with session.get(f"{server.url}/shelly") as reply:  # no RPC: no wait
            assert reply.status == 200
        assert loop.time() - began < 0.1
    finally:
        await server.stop()


async def test_data_csv_streams_at_the_download_rate(
    clock: Clock, session: aiohttp.ClientSession
) -> None:
    meter = SimulatedMeter(
        "pro3em", clock=clock, history_days=0.1, download_bytes_per_second=50_000
    )
    server = MeterServer(meter)
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        async with session.get(f"{server.url}/emdata/0/data.csv?add_keys=true") as reply:
            body = await reply.read()
        took = loop.time() - began
        lines = body.decode().splitlines()
        assert lines[0].split(",")[:2] == ["timestamp", "a_total_act_energy"]
        assert len(lines) == 1 + 144
        assert len(body) / 50_000 - 0.2 < took < len(body) / 50_000 + 1
        meter.override_reply("error", method="data.csv", code=503, message="Busy")
        async with session.get(f"{server.url}/emdata/0/data.csv") as reply:
            assert (reply.status, await reply.text()) == (503, "Busy")
        meter.data_csv = False
        async with session.get(f"{server.url}/emdata/0/data.csv") as reply:
            assert reply.status == 404
    finally:
        await server.stop()
