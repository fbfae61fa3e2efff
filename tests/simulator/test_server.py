"""Simulator, control API and CLI; lifecycle and cost."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from simulator import Clock, Simulator
from simulator.__main__ import build_parser, build_simulator, parse_meter_spec, serve
from simulator.household import Source

from .helpers import HOST, rpc_device


async def test_simulator_runs_many_meters_and_leaves_nothing_behind(
    clock: Clock, session: aiohttp.ClientSession
) -> None:
    before = asyncio.all_tasks()
    simulator = Simulator(clock, seed=3, control_port=0, notify_interval=0.05)
    kinds = [
        "pro3em",
        "gen1_em",
        "proem50",
        "emg3",
        "3em63g3",
        "emg4",
        "plug",
        "gen1_plug",
        "gen1_3em",
    ]
    for kind in kinds:
        simulator.add_meter(kind)
    assert len({meter.mac for meter in simulator.meters}) == len(kinds)
    async with simulator:
        ports = {simulator.server(meter).port for meter in simulator.meters}
        assert len(ports) == len(kinds) and 0 not in ports
        device = await rpc_device(session, simulator.server(simulator.meters[0]).port)
        await device.initialize()  # an open WebSocket when stopping
        for meter in simulator.meters:
            async with session.get(f"{simulator.server(meter).url}/shelly") as reply:
                assert (await reply.json())["mac"] == meter.mac
    await device.shutdown()
    assert asyncio.all_tasks() == before
    assert simulator.control_url is None


async def test_control_api(clock: Clock, session: aiohttp.ClientSession) -> None:
    simulator = Simulator(clock, control_port=0)
    pro = simulator.add_meter("pro3em", name="Main", mac="AABBCCDDEEFF")
    simulator.add_meter("gen1_em", password="pw")
    async with simulator:
        control = simulator.control_url
        assert control is not None
        async with session.get(f"{control}/meters") as reply:
            listed = await reply.json()
        assert [(m["kind"], m["mac"], m["name"], m["auth"]) for m in listed] == [
            ("pro3em", "AABBCCDDEEFF", "Main", False),
            ("gen1_em", simulator.meters[1].mac, None, True),
        ]
        assert listed[0]["url"] == f"http://{HOST}:{listed[0]['port']}"
        url = f"{control}/meters/aa:bb:cc:dd:ee:ff"
        async with session.post(f"{url}/set_power", json={"channel": "a", "watts": 720}) as reply:
            assert await reply.json() == {"ok": True}
        async with session.post(
            url, json={"action": "voltage_episode", "channel": "a", "volts": 260, "seconds": 30}
        ) as reply:
            assert reply.status == 200
        async with session.post(f"{control}/clock/advance", json={"seconds": 3600}) as reply:
            assert (await reply.json())["now"] == clock.now()
        assert pro.counters("a") == (720.0, 0.0)
        async with session.get(url) as reply:
            shown = await reply.json()
        assert shown["channels"][0]["source"] == "grid@a"
        assert shown["channels"][0]["energy_in"] == 720.0
        async with session.post(f"{url}/set_power", json={"channel": "a"}) as reply:
            assert reply.status == 400
        async with session.post(f"{url}/set_power", json={"channel": "z", "watts": 1}) as reply:
            assert reply.status == 400
            assert "channel" in (await reply.json())["error"]
        async with session.post(f"{url}/explode", json={}) as reply:
            assert reply.status == 404
        async with session.post(f"{url}/set_online", data="nonsense") as reply:
            assert reply.status == 400
        async with session.post(f"{control}/meters/000000000000/reboot") as reply:
            assert reply.status == 404
        async with session.post(f"{url}/set_online", json={"online": False}) as reply:
            assert reply.status == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"{simulator.server(pro).url}/shelly")
        async with session.post(f"{url}/reset_counters") as reply:
            assert reply.status == 200
        assert pro.counters("a") == (0.0, 0.0)
        async with session.get(f"{control}/clock") as reply:
            assert await reply.json() == {"now": clock.now(), "manual": True}


def test_meter_spec_syntax() -> None:
    spec = parse_meter_spec("proem50:8083:password=secret:name=Garage:voltage=120:frequency=60")
    assert (spec.kind, spec.port, spec.seed) == ("proem50", 8083, None)
    assert spec.options == {
        "password": "secret",
        "name": "Garage",
        "nominal_voltage": 120.0,
        "frequency": 60.0,
    }
    spec = parse_meter_spec("gen1_em:wiring=grid,fixed@-1500:seed=4:history_days=2")
    assert spec.port == 0
    assert spec.seed == 4
    assert spec.options == {
        "wiring": [Source("grid"), Source("fixed", watts=-1500)],
        "history_days": 2.0,
    }
    for bad in (
        "pro4em",
        "pro3em:8081:colour=red",
        "pro3em:8081:voltage=high",
        "pro3em:wiring=wind",
    ):
        with pytest.raises(ValueError):
            parse_meter_spec(bad)


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["--meter", "pro3em:8081", "--meter", "gen1_em:8082",
         "--meter", "proem50:8083:password=secret",
         "--control-port", "8090", "--history-days", "0.01", "--seed", "1"]
    )  # fmt: skip
    assert (args.control_port, args.history_days, args.seed, args.csv_rate) == (
        8090,
        0.01,
        1,
        8192.0,
    )
    simulator = build_simulator(args)
    assert [meter.kind for meter in simulator.meters] == ["pro3em", "gen1_em", "proem50"]
    assert [simulator.server(meter).port for meter in simulator.meters] == [8081, 8082, 8083]
    assert simulator.meters[2].password == "secret"
    assert simulator.meters[0].csv_bytes_per_second == 8192.0
    assert len(simulator.meters[0].records) == 14
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--meter", "nope"])
    assert "KIND[:PORT][:OPTION=VALUE]" in capsys.readouterr().err + build_parser().format_help()


async def test_cli_serves_until_stopped(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="simulator")
    args = build_parser().parse_args(
        ["--meter", "pro3em", "--meter", "gen1_3em:password=x", "--control-port", "0"]
    )
    simulator = build_simulator(args)
    stop = asyncio.Event()
    running = asyncio.create_task(serve(simulator, stop))
    for _ in range(100):
        if simulator.control_url:
            break
        await asyncio.sleep(0.01)
    async with session.get(f"{simulator.control_url}/meters") as reply:
        assert len(await reply.json()) == 2
    stop.set()
    await running
    lines = [record.getMessage() for record in caplog.records]
    assert any("pro3em" in line and "http://127.0.0.1:" in line for line in lines)
    assert any("(password protected)" in line for line in lines)
    assert any(line.startswith("control API") for line in lines)


async def test_fifty_meters_polled(clock: Clock, session: aiohttp.ClientSession) -> None:
    simulator = Simulator(clock, seed=5)
    for index in range(50):
        simulator.add_meter(("pro3em", "proem50", "gen1_em")[index % 3])
    async with simulator:

        async def poll(url: str) -> int:
            async with session.get(url) as reply:
                await reply.read()
                return reply.status

        paths = {1: "status", 2: "rpc/Shelly.GetStatus"}
        urls = [f"{simulator.server(meter).url}/{paths[meter.gen]}" for meter in simulator.meters]
        for _ in range(3):
            clock.advance(1)
            assert set(await asyncio.gather(*(poll(url) for url in urls))) == {200}


async def test_control_api_tells_past_powers(clock: Clock, session: aiohttp.ClientSession) -> None:
    simulator = Simulator(clock, control_port=0)
    meter = simulator.add_meter("pro3em", mac="AABBCCDDEEFF", noise=True)
    async with simulator:
        start = int(clock.now())
        powers = []
        for _ in range(3):
            powers.append(meter.state().channels[1].power)
            clock.advance(1)
        url = f"{simulator.control_url}/meters/AABBCCDDEEFF/power"
        query = {"channel": "b", "start": str(start), "end": str(start + 3)}
        async with session.get(url, params=query) as reply:
            assert await reply.json() == powers
        for bad in ({"start": "x", "end": "1"}, {"start": "0", "end": "100000"}, {}):
            async with session.get(url, params=bad) as reply:
                assert reply.status == 400
        async with session.get(f"{simulator.control_url}/meters/001122334455/power") as reply:
            assert reply.status == 404


def test_command_line_of_a_realistic_meter() -> None:
    args = build_parser().parse_args(["--meter", "pro3em:noise=1:data_csv=0", "--meter", "proem50"])
    assert (args.notify, args.rpc_latency, args.download_rate, args.noise) == (
        1.0,
        0.04,
        1_000_000.0,
        False,
    )
    simulator = build_simulator(args)
    first, second = simulator.meters
    assert (first.noise, first.data_csv, second.noise, second.data_csv) == (
        True,
        False,
        False,
        True,
    )
    assert (first.rpc_latency_s, first.download_bytes_per_second) == (0.04, 1_000_000.0)
    quiet = build_simulator(
        build_parser().parse_args(
            [
                "--meter",
                "pro3em",
                "--notify",
                "0",
                "--rpc-latency",
                "0",
                "--download-rate",
                "0",
                "--noise",
            ]
        )
    )
    assert (quiet.meters[0].rpc_latency_s, quiet.meters[0].download_bytes_per_second) == (0.0, None)
    assert quiet.meters[0].noise
