"""Reading the meters' stored energy records, from the simulator over loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import aiohttp
import pytest

from custom_components.shelly_energy.meter import gen1
from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import (
    Credentials,
    MeterClient,
)
from custom_components.shelly_energy.meter.errors import (
    MeterAuthError,
    MeterConnectionError,
    NoStoredRecordsError,
)
from custom_components.shelly_energy.meter.gen1 import Gen1Client
from custom_components.shelly_energy.meter.records import (
    EARLIEST_VALID_TS,
    EnergyRecord,
)
from custom_components.shelly_energy.meter.rpc import RpcClient
from simulator import Clock, MeterServer, SimulatedMeter
from simulator.gen1 import Gen1Api
from simulator.rpc import RpcApi
from tests.loopback_meters import Serve

HOST = "127.0.0.1"
DAY = 86400


def client_of(
    session: aiohttp.ClientSession,
    meter: SimulatedMeter,
    server: MeterServer,
    password: str | None = None,
) -> MeterClient:
    credentials = Credentials("admin" if password else None, password)
    if meter.gen == 1:
        return Gen1Client(session, Address(HOST, server.port), credentials)
    return RpcClient(session, Address(HOST, server.port), credentials)


def stored(meter: SimulatedMeter, decimals: int = 3) -> list[EnergyRecord]:
    """Return what the simulated meter keeps, as records (energies as its wire rounds them)."""
    store = meter.records
    segments, _ = store.select(None, None, None)
    result = []
    for segment in segments:
        for offset in range(segment.count):
            energies = [
                store.energy_mwh(segment.start + offset, ch) for ch in range(meter.channel_count)
            ]
            result.append(
                EnergyRecord(
                    ts=segment.ts + offset * store.period,
                    period=store.period,
                    energy_in=tuple(round(imported / 1000, decimals) for imported, _ in energies),
                    energy_out=tuple(round(exported / 1000, decimals) for _, exported in energies),
                )
            )
    return result


async def batches_of(client: MeterClient, since: int | None = None) -> list[list[EnergyRecord]]:
    try:
        return [batch async for batch in client.records(since)]
    finally:
        await client.close()


async def read_all(client: MeterClient, since: int | None = None) -> list[EnergyRecord]:
    return [record for batch in await batches_of(client, since) for record in batch]


@pytest.mark.parametrize(("data_csv", "calls"), [(True, 0), (False, 240)])
async def test_pro3em_records_are_the_stored_ones_and_add_up_to_the_counters(
    serve: Serve, session: aiohttp.ClientSession, data_csv: bool, calls: int
) -> None:
    meter, server = await serve("pro3em", history_days=1, rows_per_call=6, data_csv=data_csv)
    batches = await batches_of(client_of(session, meter, server))
    # 1,440 one-minute records: one day's data.csv, or 240 GetData calls of 6 rows, in batches.
    assert [len(batch) for batch in batches] == [250, 250, 250, 250, 250, 190]
    assert meter.requests["EMData.GetData"] == calls
    assert meter.requests["/emdata/0/data.csv"] == 1
    records = [record for batch in batches for record in batch]
    assert records == stored(meter)
    assert records[0].ts == 1748736000 - DAY
    assert {record.period for record in records} == {60}
    assert all(b.ts - a.ts == 60 for a, b in itertools.pairwise(records))
    for phase in range(3):
        imported, exported = meter.counters(phase)
        assert round(sum(r.energy_in[phase] for r in records) * 1000) == round(imported * 1000)
        assert round(sum(r.energy_out[phase] for r in records) * 1000) == round(exported * 1000)
    assert sum(r.energy_in[0] for r in records) > 500


async def test_since_resumes_at_the_first_record_stamped_then_or_later(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("3em63g3", history_days=1)
    everything = stored(meter)
    assert everything[0].period == 300
    since = everything[100].ts - 30  # inside the period of record 99
    assert await read_all(client_of(session, meter, server), since) == everything[100:]
    latest = everything[-1].ts
    assert await read_all(client_of(session, meter, server), latest) == everything[-1:]
    assert await read_all(client_of(session, meter, server), latest + 60) == []


async def test_the_hole_of_a_power_loss_is_skipped(
    serve: Serve, session: aiohttp.ClientSession, clock: Clock
) -> None:
    meter, server = await serve("pro3em", history_days=0.5)
    clock.advance(600)
    meter.power_loss(3600)
    clock.advance(3600 + 1200)
    assert len(meter.records.blocks) == 2
    first, second = meter.records.blocks
    records = await read_all(client_of(session, meter, server))
    assert records == stored(meter)
    assert len(records) == first.count + second.count == 720 + 10 + 20
    stamps = {record.ts for record in records}
    hole = range(first.ts + first.count * 60, second.ts, 60)
    assert len(hole) == 60
    assert stamps.isdisjoint(hole)
    # Resuming inside the hole starts at the block after it.
    assert await read_all(client_of(session, meter, server), hole[5]) == records[-20:]


async def test_records_stamped_before_the_clock_synced_are_dropped(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", history_days=0.1)
    meter.bogus_records(30)
    everything = stored(meter)
    assert [record.ts for record in everything[:2]] == [1000, 1060]
    records = await read_all(client_of(session, meter, server))
    assert records == everything[30:]
    assert min(record.ts for record in records) >= EARLIEST_VALID_TS


@pytest.mark.parametrize(
    ("kind", "options", "channels"),
    [("pro3em", {"profile": "monophase"}, 3), ("proem50", {}, 2), ("emg4", {}, 2)],
)
async def test_em1_channels_are_merged_by_stamp(
    serve: Serve,
    session: aiohttp.ClientSession,
    kind: str,
    options: dict[str, Any],
    channels: int,
) -> None:
    meter, server = await serve(kind, history_days=0.8, rows_per_call=7, **options)
    records = await read_all(client_of(session, meter, server))
    assert records == stored(meter)
    assert len(records) == 1152
    assert {len(record.energy_in) for record in records} == {channels}
    assert all(sum(record.energy_in[1:]) > 0 for record in records[::60])


async def test_a_row_without_usable_energy_drops_its_record(
    serve: Serve, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    meter, server = await serve("proem50", history_days=0.1, data_csv=False)
    everything = stored(meter)
    # Channel 1's first two GetData replies (6 rows each): a null energy, a row that is no row.
    meter.override_reply("set", method="EM1Data.GetData", path="data.0.values.2.0", value=None)
    meter.override_reply("set", method="EM1Data.GetData", path="data.0.values.4", value="junk")
    with caplog.at_level(logging.DEBUG, logger="custom_components.shelly_energy.meter.records"):
        records = await read_all(client_of(session, meter, server))
    assert records == everything[:2] + everything[3:10] + everything[11:]
    assert caplog.text.count("skipping record rows without usable energy") == 1


async def test_password_protected_meters(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("pro3em", history_days=0.05, password="s3cret")
    assert await read_all(client_of(session, meter, server, "s3cret")) == stored(meter)
    gen1_meter, gen1_server = await serve("gen1_em", history_days=0.5, password="s3cret")
    assert await read_all(client_of(session, gen1_meter, gen1_server, "s3cret")) == stored(
        gen1_meter, 2
    )


@pytest.mark.parametrize("kind", ["pro3em", "gen1_3em"])
async def test_a_changed_password_is_an_auth_error(
    serve: Serve, session: aiohttp.ClientSession, kind: str
) -> None:
    meter, server = await serve(kind, history_days=0.1, password="old")
    client = client_of(session, meter, server, "old")
    await client.connect()
    meter.set_password("new")
    with pytest.raises(MeterAuthError) as raised:
        await read_all(client)
    assert "old" not in str(raised.value) and "new" not in str(raised.value)


async def test_a_meter_without_records_says_so(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", history_days=0.1)
    meter.override_reply("error", method="EMData.GetRecords", code=404, message="No handler")
    with pytest.raises(NoStoredRecordsError, match="keeps no records"):
        await read_all(client_of(session, meter, server))
    meter.override_reply("error", method="EM1Data.GetRecords", code=-105, message="not found")
    meter.set_profile("monophase")
    with pytest.raises(NoStoredRecordsError):
        await read_all(client_of(session, meter, server))
    gen1_meter, gen1_server = await serve("gen1_em", history_days=0.1)
    gen1_meter.override_reply("error", method="emeter", code=404, message="Not Found")
    with pytest.raises(NoStoredRecordsError):
        await read_all(client_of(session, gen1_meter, gen1_server))


@pytest.mark.parametrize("kind", ["pro3em", "gen1_em"])
async def test_a_meter_with_its_records_deleted_yields_nothing(
    serve: Serve, session: aiohttp.ClientSession, kind: str
) -> None:
    meter, server = await serve(kind, history_days=0.1)
    meter.delete_all_data()
    assert await batches_of(client_of(session, meter, server)) == []


@pytest.mark.parametrize(
    ("method", "path", "value"),
    [
        ("EMData.GetRecords", "data_blocks.0.records", 0),
        ("EMData.GetData", "data.0.values", [None, None]),
    ],
)
async def test_empty_blocks_and_unusable_rows_yield_nothing(
    serve: Serve, session: aiohttp.ClientSession, method: str, path: str, value: Any
) -> None:
    meter, server = await serve("pro3em", history_days=2 / 1440, data_csv=False)
    assert len(stored(meter)) == 2
    meter.override_reply("set", method=method, path=path, value=value)
    assert await batches_of(client_of(session, meter, server)) == []


async def test_a_next_record_beyond_the_window_is_left_for_later(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", history_days=3 / 1440, data_csv=False)
    meter.override_reply("set", method="EMData.GetData", path="next_record_ts", value=4 * 10**9)
    assert await read_all(client_of(session, meter, server)) == stored(meter)


@pytest.mark.parametrize(
    ("method", "kind", "path", "value", "message"),
    [
        ("EMData.GetRecords", "set", "data_blocks", None, r"data_blocks is not a list"),
        ("EMData.GetRecords", "set", "data_blocks.0.ts", "soon", r"data_blocks\[0\]\.ts is not"),
        ("EMData.GetRecords", "set", "data_blocks.0.period", 0, r"data_blocks\[0\]\.period"),
        ("EMData.GetData", "set", "keys", None, "keys is not a list"),
        ("EMData.GetData", "set", "keys", ["ts"], "keys lacks the energy keys"),
        ("EMData.GetData", "set", "data", {}, "data is not a list"),
        ("EMData.GetData", "delete", "data.0.values", None, r"data\[0\]\.values is not a list"),
        ("EMData.GetData", "set", "data.0.period", -60, r"data\[0\]\.period is not a period"),
        ("EMData.GetData", "set", "next_record_ts", 1000, "next_record_ts is not a later time"),
        ("EMData.GetData", "set", "next_record_ts", True, "next_record_ts is not a later time"),
        ("EMData.GetData", "error", None, None, "GetData failed: RpcCallError"),
    ],
)
async def test_malformed_gen2_replies_are_connection_errors(
    serve: Serve,
    session: aiohttp.ClientSession,
    method: str,
    kind: str,
    path: str | None,
    value: Any,
    message: str,
) -> None:
    meter, server = await serve("pro3em", history_days=0.1, data_csv=False)
    meter.override_reply(kind, method=method, path=path, value=value)  # type: ignore[arg-type]
    with pytest.raises(MeterConnectionError, match=message):
        await read_all(client_of(session, meter, server))


@pytest.mark.parametrize(
    ("kind", "options", "path"),
    [
        ("pro3em", {}, "/emdata/0/data.csv"),
        ("pro3em", {"profile": "monophase"}, "/em1data/2/data.csv"),
        ("emg4", {"password": "s3cret"}, "/em1data/1/data.csv"),
    ],
)
async def test_records_come_as_one_data_csv_a_day_and_series(
    serve: Serve,
    session: aiohttp.ClientSession,
    kind: str,
    options: dict[str, Any],
    path: str,
) -> None:
    meter, server = await serve(kind, history_days=2.5, **options)
    records = await read_all(client_of(session, meter, server, options.get("password")))
    assert records == stored(meter)
    assert meter.requests[path] == 3  # two whole days and a half
    assert not any(method.endswith(".GetData") for method in meter.requests)


async def test_data_csv_downloads_stream_at_the_meters_speed(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve(
        "pro3em", history_days=60 / 1440, rpc_latency_s=0.05, download_bytes_per_second=40_000
    )
    body = RpcApi(meter, lambda _delay: None).csv_lines("emdata:0", None, None, add_keys=True)
    client = client_of(session, meter, server)
    await client.connect()
    began = asyncio.get_running_loop().time()
    records = await read_all(client)
    took = asyncio.get_running_loop().time() - began
    assert records == stored(meter)
    # GetRecords and the download each wait for the meter, then the 60 rows (about 17 kB) stream.
    assert 0.1 + sum(map(len, body)) / 40_000 <= took < 3


@pytest.mark.parametrize(
    ("kind", "code", "message"),
    [
        ("error", 404, "Not Found"),  # firmware without data.csv
        ("error", 500, "Internal error"),
        ("invalid_json", 200, "<html>Sorry</html>"),  # a body that is not a data.csv
        ("invalid_json", 200, "timestamp,a_avg_voltage\n1748736000,230.1\n"),  # no energies
    ],
)
async def test_a_meter_without_a_usable_data_csv_is_read_with_get_data(
    serve: Serve,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    code: int,
    message: str,
) -> None:
    meter, server = await serve("pro3em", history_days=1.5, rows_per_call=60)
    meter.override_reply(kind, method="data.csv", code=code, message=message)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="custom_components.shelly_energy.meter.rpc"):
        records = await read_all(client_of(session, meter, server))
    assert records == stored(meter)
    assert meter.requests["/emdata/0/data.csv"] == 1  # asked once, then GetData throughout
    # The first day (its window was a download's) in 24 calls, the rest in windows of 250.
    assert meter.requests["EMData.GetData"] == 24 + 5 + 5 + 4
    assert "reading records with GetData" in caplog.text


async def test_data_csv_rows_without_usable_energy_drop_their_records(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", history_days=5 / 1440)
    stamps = [record.ts for record in stored(meter)]
    keys = [f"{phase}_total_act{way}_energy" for phase in "abc" for way in ("", "_ret")]
    rows = [
        ",".join(["timestamp", "a_avg_voltage", *keys]),
        f"{stamps[0]},230.1,1.5,0,1,0,1,0",
        "soon,230.1,1,0,1,0,1,0",  # no stamp
        f"{stamps[1]},230.1,,0,1,0,1,0",  # an energy the meter does not have
        f"{stamps[2]},230.1,nan,0,1,0,1,0",
        f"{stamps[3]},230.1,-2,0,1,0,1,0",
        f"{stamps[4]},230.1,1,0,1",  # cut short
        f"{stamps[4] + 60},230.1,1,0,1,0,1,0",  # after the span asked for
    ]
    meter.override_reply("invalid_json", method="data.csv", message="\n".join(rows))
    assert await read_all(client_of(session, meter, server)) == [
        EnergyRecord(stamps[0], 60, (1.5, 1.0, 1.0), (0.0, 0.0, 0.0))
    ]


async def test_a_refused_data_csv_download_is_an_auth_error(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("pro3em", history_days=0.05, password="s3cret")
    client = client_of(session, meter, server, "s3cret")
    await client.connect()
    meter.set_password("new")
    with pytest.raises(MeterAuthError):
        await read_all(client)
    meter.set_password("s3cret")
    meter.override_reply("error", method="data.csv", code=401, message="Unauthorized")
    client = client_of(session, meter, server)  # no password: no challenge is answered
    with pytest.raises(MeterAuthError):
        await read_all(client)


async def test_an_unreachable_meter_is_a_connection_error(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    meter, server = await serve("gen1_em", history_days=0.1)
    client = client_of(session, meter, server)
    await client.connect()
    meter.set_online(False)
    with pytest.raises(MeterConnectionError, match=r"em_data\.csv failed"):
        await read_all(client)


async def test_gen1_em_data_csv_records(serve: Serve, session: aiohttp.ClientSession) -> None:
    meter, server = await serve("gen1_3em", history_days=4)
    meter.bogus_records(4)
    everything = stored(meter, 2)
    records = await read_all(client_of(session, meter, server))
    assert records == everything[4:]
    assert len(records) == 576
    assert {record.period for record in records} == {600}
    for phase in range(3):
        total = sum(round(record.energy_in[phase] * 100) for record in records)
        assert total == sum(round(record.energy_in[phase] * 100) for record in everything[4:])
    since = records[200].ts - 1
    assert await read_all(client_of(session, meter, server), since) == records[200:]


async def test_gen1_rows_without_usable_energy_are_skipped(
    serve: Serve, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter, server = await serve("gen1_em", history_days=0.1)
    everything = stored(meter, 2)
    original = Gen1Api.em_data_csv

    def spoiled(api: Gen1Api, index: int) -> str:
        lines = original(api, index).splitlines()
        if index == 1:  # a garbled value in channel 2's 3rd row; a line that is no row at all
            stamp = lines[3].split(",")[0]
            lines[3] = f"{stamp},nan,0.00,230.0,231.0"
            lines[5] = f"{lines[5].split(',')[0]},1.00"
            lines.insert(2, "0,1,2,3")
        return "\r\n".join(lines) + "\r\n\r\n"

    monkeypatch.setattr(Gen1Api, "em_data_csv", spoiled)
    records = await read_all(client_of(session, meter, server))
    assert records == everything[:2] + everything[3:4] + everything[5:]


async def test_gen1_downloads_one_file_at_a_time_and_waits_for_a_busy_meter(
    serve: Serve,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter, server = await serve("gen1_em", history_days=1, csv_bytes_per_second=40_000)
    expected = stored(meter, 2)
    monkeypatch.setattr(gen1, "CSV_BUSY_RETRIES", 0)
    client = client_of(session, meter, server)
    # Two reads at once on one client queue for the meter instead of being refused.
    first, second = await asyncio.gather(read_all(client), read_all(client))
    assert first == second == expected

    # Another program downloading: the meter refuses, the client waits and asks again.
    monkeypatch.setattr(gen1, "CSV_BUSY_RETRIES", 200)
    monkeypatch.setattr(gen1, "CSV_BUSY_WAIT", 0.02)
    started = asyncio.Event()

    async def other_download() -> bytes:
        async with session.get(f"{server.url}/emeter/0/em_data.csv") as reply:
            head = await reply.content.readline()
            started.set()
            return head + await reply.read()

    other = asyncio.create_task(other_download())
    await started.wait()
    with caplog.at_level(logging.DEBUG, logger="custom_components.shelly_energy.meter.gen1"):
        assert await read_all(client_of(session, meter, server)) == expected
    assert (await other).startswith(b"Date/time UTC,")
    assert "busy sending another file" in caplog.text


async def test_gen1_gives_up_on_a_meter_that_stays_busy(
    serve: Serve, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file of 15 lines, sent in one piece: the meter then stays busy for about a second.
    meter, server = await serve("gen1_em", history_days=0.1, csv_bytes_per_second=600)
    monkeypatch.setattr(gen1, "CSV_BUSY_WAIT", 0)
    async with session.get(f"{server.url}/emeter/0/em_data.csv") as other:
        await other.content.readline()
        with pytest.raises(MeterConnectionError, match="stayed busy with another transfer"):
            await read_all(client_of(session, meter, server))
        assert (await other.read()).count(b"\n") == 14


@pytest.mark.parametrize(
    ("kind", "code", "error", "message"),
    [
        ("error", 500, MeterConnectionError, "failed: HTTP 500"),
        ("invalid_json", 200, MeterConnectionError, "answered no energy log"),
    ],
)
async def test_gen1_bad_answers(
    serve: Serve,
    session: aiohttp.ClientSession,
    kind: str,
    code: int,
    error: type[Exception],
    message: str,
) -> None:
    meter, server = await serve("gen1_em", history_days=0.1, password="pw")
    meter.override_reply(kind, method="emeter", code=code)  # type: ignore[arg-type]
    with pytest.raises(error, match=message) as raised:
        await read_all(client_of(session, meter, server, "pw"))
    assert "pw" not in str(raised.value)
