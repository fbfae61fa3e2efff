"""Every parser, fed thousands of damaged replies, returns a valid reading or a MeterError.

The seeds are the real captures in tests/fixtures (copies of ../shared/captures) and the
simulator's replies for every meter family; each example damages a seed in one to four
places: a value of another type, null, NaN or Infinity, a huge or negative number, a number
as text, a key removed, the whole reply replaced, or (for bodies) the text cut off.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import (
    Credentials,
    DeviceIdentity,
    read_json_reply,
)
from custom_components.shelly_energy.meter.errors import (
    MalformedReplyError,
    MeterError,
)
from custom_components.shelly_energy.meter.gen1 import parse_settings
from custom_components.shelly_energy.meter.gen1 import parse_status as parse_gen1_status
from custom_components.shelly_energy.meter.records import (
    EnergyRecord,
    GarbageLog,
    RecordMerger,
    read_csv_line,
    read_data_reply,
)
from custom_components.shelly_energy.meter.rpc import (
    RpcClient,
    check_reply,
    meter_info,
    read_blocks,
    record_series,
)
from custom_components.shelly_energy.meter.rpc import parse_status as parse_rpc_status
from custom_components.shelly_energy.meter.snapshot import MeterInfo, MeterSnapshot
from custom_components.shelly_energy.meter.values import (
    EARLIEST_VALID_TS,
    LATEST_VALID_TS,
    MAX_UPTIME_S,
    MIN_RSSI,
)
from simulator import Clock, Gen1Api, RpcApi, SimulatedMeter
from tests.loopback_meters import Serve

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW = 1_750_000_000.0
# Five hundred examples per parser (five times the profile's number), each one to four
# damages to one or two replies: thousands of damaged replies in all, a few seconds a parser.
FUZZ = settings(
    max_examples=5 * settings().max_examples,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def capture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def simulated(kind: str, **options: Any) -> SimulatedMeter:
    return SimulatedMeter(kind, clock=Clock.manual(), seed=3, **options)


GEN1_METERS = [simulated("gen1_em", history_days=0.1), simulated("gen1_3em", history_days=0.1)]
RPC_METERS = [
    simulated("pro3em", history_days=0.02),
    simulated("pro3em", profile="monophase", history_days=0.02),
    simulated("proem50", history_days=0.02),
    simulated("3em63g3"),
    simulated("emg4"),
]
RPC_APIS = [RpcApi(meter) for meter in RPC_METERS]

GEN1_SHELLY = [Gen1Api(meter).shelly() for meter in GEN1_METERS]
GEN1_SETTINGS = [Gen1Api(meter).settings() for meter in GEN1_METERS]
GEN1_STATUS = [Gen1Api(meter).status() for meter in GEN1_METERS]
RPC_DEVICE_INFO = [
    capture("pro3em_shelly_getdeviceinfo_fw1.1.0_aioshelly.json"),
    capture("pro3em_shelly_getdeviceinfo_fw1.6.1_auth_hacore.json"),
    *(api.device_info() for api in RPC_APIS),
]
RPC_STATUS = [
    capture("pro3em_shelly_getstatus_fw1.1.0_aioshelly.json"),
    capture("pro3em_shelly_getstatus_fw1.6.1_hacore.json"),
    {
        "em:0": capture("pro3em_em_getstatus_fw1.6.1_hacore.json"),
        "emdata:0": capture("pro3em_emdata_getstatus_fw1.6.1_hacore.json"),
        "sys": {"unixtime": 1747561101, "uptime": 600},
    },
    *(api.status() for api in RPC_APIS),
]
RPC_CONFIG = [
    capture("pro3em_shelly_getconfig_fw1.1.0_aioshelly.json"),
    *(api.config() for api in RPC_APIS),
]
VIRTUAL_COMPONENT = {
    "key": "boolean:200",
    "status": {"value": True},
    "config": {"id": 200, "name": "Heating allowed", "meta": None},
    "attrs": {"owner": ""},
}
RPC_COMPONENTS = [
    {"components": [VIRTUAL_COMPONENT], "cfg_rev": 12, "offset": 0, "total": 1},
    *(api.call("Shelly.GetComponents", {}) for api in RPC_APIS),
]
INFOS = [
    meter_info(api.device_info(), api.status()) for api in RPC_APIS
]  # three-phase, single-phase channels, with and without a relay
GEN1_INFOS = [
    parse_settings(DeviceIdentity.from_shelly(shelly), settings)
    for shelly, settings in zip(GEN1_SHELLY, GEN1_SETTINGS, strict=True)
]

# What a damaged place gets instead of its value; the odd numbers devices send are drawn
# most often.
ODD_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e300, -1e300, -1, 0, 2**31, 2**63, -(10**12), 5e-324, 10**400]
)
ODD_VALUES = st.one_of(
    ODD_NUMBERS,
    ODD_NUMBERS,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["229.5", "nan", "Infinity", "", "true", "AABBCCDDEEFF"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def places(document: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Return the path of every value in a JSON document, and of every number in it."""
    found: list[tuple[Any, ...]] = []
    numbers: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, node = stack.pop()
        found.append(path)
        if isinstance(node, int | float) and not isinstance(node, bool):
            numbers.append(path)
        elif isinstance(node, dict):
            stack.extend(((*path, key), value) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, index), value) for index, value in enumerate(node))
    return found, numbers


def damage(document: Any, path: tuple[Any, ...], how: str, odd: Any) -> Any:
    """Return the document with the value at `path` replaced, removed or turned into text."""
    if not path:
        return odd
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if how == "delete":
        del parent[key]
    elif how == "as_text" and isinstance(parent[key], int | float):
        parent[key] = str(parent[key])
    else:
        parent[key] = odd
    return document


# Strategies built once: building them anew for every draw costs more than the parsers.
DAMAGES_PER_REPLY = st.integers(min_value=1, max_value=4)
ANY_PLACE = st.integers(min_value=0, max_value=2**16)
HOW = st.sampled_from(["replace", "replace", "delete", "as_text"])
ONE_IN_EIGHT = st.integers(min_value=0, max_value=7)


def damaged(seeds: Sequence[Any]) -> st.SearchStrategy[Any]:
    """Return a strategy of the seed replies, each damaged in one to four places."""
    return _damaged([json.dumps(seed) for seed in seeds])  # decoding copies faster than deepcopy


@st.composite
def _damaged(draw: st.DrawFn, seeds: Sequence[str]) -> Any:
    document = json.loads(seeds[draw(ANY_PLACE) % len(seeds)])
    for _ in range(draw(DAMAGES_PER_REPLY)):
        found, numbers = places(document)
        # Half the damage goes to numbers: the measurements the parsers read are numbers.
        candidates = numbers if numbers and draw(ONE_IN_EIGHT) < 4 else found
        path = candidates[draw(ANY_PLACE) % len(candidates)]
        document = damage(document, path, draw(HOW), draw(ODD_VALUES))
    return document


@st.composite
def bodies(draw: st.DrawFn, seeds: Sequence[Any]) -> bytes:
    """Draw a damaged reply as the bytes a device sends, perhaps cut off."""
    body = json.dumps(draw(damaged(seeds))).encode()  # NaN and Infinity as devices write them
    if draw(ONE_IN_EIGHT) == 0:
        return body[: draw(ANY_PLACE) % len(body)]
    return body


def outcome[T](parse: Callable[[], T]) -> T | None:
    """Run a parser: its result, or None for a MeterError (which must say what is wrong)."""
    try:
        return parse()
    except MalformedReplyError as err:
        assert err.field
        assert err.field in str(err)
    except MeterError as err:
        assert str(err)
    return None


def assert_finite_or_none(value: Any) -> None:
    assert value is None or (isinstance(value, float) and math.isfinite(value)), value


def assert_valid_snapshot(snapshot: MeterSnapshot, info: MeterInfo) -> None:
    assert [reading.id for reading in snapshot.channels] == list(info.channel_ids)
    readings = [*snapshot.channels, *([snapshot.total] if snapshot.total else [])]
    for reading in readings:
        for name, value in reading._asdict().items():
            if name in ("flags", "errors"):
                assert all(isinstance(item, str) for item in value)
            elif name not in ("id", "kind"):
                assert_finite_or_none(value)
    assert snapshot.time == NOW or EARLIEST_VALID_TS <= snapshot.time < LATEST_VALID_TS
    assert_finite_or_none(snapshot.neutral_current)
    assert snapshot.uptime is None or 0 <= snapshot.uptime <= MAX_UPTIME_S
    assert snapshot.rssi is None or MIN_RSSI <= snapshot.rssi <= 0
    assert snapshot.switch_on in (None, True, False)
    assert snapshot.update_available in (None, True, False)
    assert all(isinstance(error, str) for error in snapshot.errors)


def assert_valid_identity(identity: DeviceIdentity) -> None:
    assert re.fullmatch(r"[0-9A-F]{12}", identity.mac)
    assert identity.model
    assert isinstance(identity.generation, int) and identity.generation >= 1
    assert identity.firmware
    assert identity.name is None or identity.name


@FUZZ
@given(bodies(GEN1_SHELLY + RPC_DEVICE_INFO))
def test_device_info(body: bytes) -> None:
    """/shelly of any generation (the probe, Gen1 connect, Gen2 device info)."""
    reply = outcome(lambda: read_json_reply("/shelly", body))
    if reply is not None and (identity := outcome(lambda: DeviceIdentity.from_shelly(reply))):
        assert_valid_identity(identity)


@FUZZ
@given(st.sampled_from(range(len(GEN1_SHELLY))), damaged(GEN1_SETTINGS))
def test_gen1_settings(position: int, settings: Any) -> None:
    identity = DeviceIdentity.from_shelly(GEN1_SHELLY[position])
    reply = outcome(lambda: read_json_reply("/settings", json.dumps(settings).encode()))
    if reply is not None and (info := outcome(lambda: parse_settings(identity, reply))):
        assert info.name is None or isinstance(info.name, str)
        assert info.has_switch in (True, False)
        assert info.channel_ids == GEN1_INFOS[position].channel_ids


@FUZZ
@given(st.sampled_from(range(len(GEN1_STATUS))), st.data())
def test_gen1_status(position: int, data: st.DataObject) -> None:
    info, body = GEN1_INFOS[position], data.draw(bodies(GEN1_STATUS[position : position + 1]))
    reply = outcome(lambda: read_json_reply("/status", body))
    if reply is not None and (snapshot := outcome(lambda: parse_gen1_status(reply, info, NOW))):
        assert_valid_snapshot(snapshot, info)
        assert snapshot.changed is None


# Each status with the meter it comes from (the three-phase captures: a Pro 3EM's).
RPC_STATUS_OF = [INFOS[0]] * (len(RPC_STATUS) - len(INFOS)) + INFOS


@FUZZ
@given(st.sampled_from(range(len(RPC_STATUS))), st.data())
def test_gen2_status(position: int, data: st.DataObject) -> None:
    status = data.draw(damaged(RPC_STATUS[position : position + 1]))
    # Now and then a status of another layout than the meter was set up with.
    info = RPC_STATUS_OF[position]
    if data.draw(ONE_IN_EIGHT) == 0:
        info = data.draw(st.sampled_from(INFOS))
    if outcome(lambda: check_reply("Shelly.GetStatus", status)) is None and not isinstance(
        status, dict
    ):
        return
    snapshot = outcome(lambda: parse_rpc_status(status, info, NOW))
    if snapshot is not None:
        assert_valid_snapshot(snapshot, info)
        changed = snapshot.changed
        assert changed is None or (changed.what == "components" and changed.was != changed.now)


@FUZZ
@given(damaged(RPC_DEVICE_INFO), damaged(RPC_STATUS))
def test_gen2_device_info_and_status(shelly: Any, status: Any) -> None:
    """What a Gen2+ meter is, from its device info and the status read when connecting."""
    outcome(lambda: check_reply("Shelly.GetDeviceInfo", shelly))
    outcome(lambda: check_reply("Shelly.GetStatus", status))
    if not (isinstance(shelly, dict) and isinstance(status, dict)):
        return  # refused by the checks (RpcClient never gets that far)
    info = outcome(lambda: meter_info(shelly, status))
    if info is not None:
        assert_valid_identity(DeviceIdentity.from_shelly(shelly))
        assert info.channel_ids
        assert info.profile is None or isinstance(info.profile, str)
        assert info.firmware and isinstance(info.firmware, str)


@FUZZ
@given(damaged(RPC_CONFIG))
def test_gen2_config(config: Any) -> None:
    try:
        check_reply("Shelly.GetConfig", config)
    except MalformedReplyError as err:
        assert not isinstance(config, dict)
        assert err.field == "Shelly.GetConfig"
    else:
        assert isinstance(config, dict)  # aioshelly keeps it as it is


@FUZZ
@given(damaged(RPC_COMPONENTS))
def test_gen2_components(reply: Any) -> None:
    """What aioshelly reads of Shelly.GetComponents, checked before it reads it."""
    if outcome(lambda: check_reply("Shelly.GetComponents", reply)) is None:
        return
    # Passed: every place aioshelly indexes into exists with the type it uses.
    assert isinstance(reply["total"], int)
    for component in reply["components"]:
        assert isinstance(component["key"], str)
        assert isinstance(component["config"], dict)
        assert isinstance(component["status"], dict)
        assert isinstance(component.get("attrs", {}), dict)


def _data_replies() -> list[tuple[MeterInfo, int, dict[str, Any]]]:
    replies = []
    for api, info in zip(RPC_APIS, INFOS, strict=True):
        for series in record_series(info):
            method = f"{series.namespace}.GetData"
            reply = api.call(method, {"id": series.ident, "ts": 0})
            replies.append((info, series.ident, reply))
    return replies


DATA_REPLIES = _data_replies()


@FUZZ
@given(st.sampled_from(range(len(DATA_REPLIES))), st.data())
def test_stored_records(position: int, data: st.DataObject) -> None:
    """EMData / EM1Data.GetData pages."""
    info, ident, seed = DATA_REPLIES[position]
    reply = data.draw(damaged([seed]))
    if not isinstance(reply, dict):
        return  # RpcClient.call refuses replies that are no object
    series = next(one for one in record_series(info) if one.ident == ident)
    merger = RecordMerger(len(info.channel_ids))
    collected = outcome(
        lambda: read_data_reply(
            reply,
            series.columns,
            series.positions,
            merger,
            GarbageLog("fuzz"),
            since=0,
            until=LATEST_VALID_TS,
        )
    )
    del collected
    for record in (record for batch in merger.take(250) for record in batch):
        assert_valid_record(record, len(info.channel_ids))


def assert_valid_record(record: EnergyRecord, channels: int) -> None:
    assert 0 <= record.ts < LATEST_VALID_TS
    assert record.period > 0
    for energies in (record.energy_in, record.energy_out):
        assert len(energies) == channels
        assert all(math.isfinite(value) and value >= 0 for value in energies)


RECORD_BLOCKS = [api.call("EMData.GetRecords", {"id": 0}) for api in RPC_APIS[:1]] + [
    api.call("EM1Data.GetRecords", {"id": 0}) for api in RPC_APIS[2:3]
]


@FUZZ
@given(damaged(RECORD_BLOCKS), st.integers(min_value=0, max_value=LATEST_VALID_TS))
def test_record_blocks(reply: Any, start: int) -> None:
    """EMData / EM1Data.GetRecords: where the blocks of records are."""
    if not isinstance(reply, dict):
        return
    spans = outcome(lambda: read_blocks("EMData.GetRecords", reply, start))
    for first, end, period in spans or []:
        assert 0 <= first < end
        assert period > 0
        assert end > start


CSV_LINES = [
    line for meter in GEN1_METERS for line in Gen1Api(meter).em_data_csv(0).splitlines()[1:20]
]


@FUZZ
@given(
    st.sampled_from(CSV_LINES),
    st.lists(st.tuples(st.integers(0, 4), st.text(max_size=12)), max_size=3),
    st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
)
def test_em_data_csv_lines(line: str, replaced: list[tuple[int, str]], cut: int | None) -> None:
    """Gen1 em_data.csv rows: fields replaced by any text, rows cut off."""
    cells = line.split(",")
    for position, text in replaced:
        cells[position % len(cells)] = text
    damaged_line = ",".join(cells)
    if cut is not None:
        damaged_line = damaged_line[:cut]
    row = read_csv_line(damaged_line)
    if row is not None:
        ts, imported, exported = row
        assert isinstance(ts, int)
        for value in (imported, exported):
            assert value is None or (math.isfinite(value) and value >= 0)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_an_object_or_refused(body: bytes) -> None:
    reply = outcome(lambda: read_json_reply("/status", body))
    assert reply is None or isinstance(reply, dict)


INIT_METHODS = ("Shelly.GetDeviceInfo", "Shelly.GetConfig", "Shelly.GetStatus")


@pytest.mark.parametrize("method", [*INIT_METHODS, "Shelly.GetComponents"])
async def test_connecting_through_aioshelly_to_damaged_replies(
    serve: Serve, session: aiohttp.ClientSession, method: str
) -> None:
    """aioshelly reads these replies itself: whatever they hold, only a MeterError comes out."""
    meter, server = await serve("pro3em")
    client = RpcClient(session, Address("127.0.0.1", server.port), Credentials())
    for seed in range(60):
        # No NaN: aioshelly's decoder drops such a frame, and the call waits for its timeout.
        meter.override_reply(
            "garble", method=method, fields=1 + seed % 3, seed=seed, non_finite=False
        )
        try:
            await client.connect()
        except MalformedReplyError as err:
            assert err.field in str(err)
        except MeterError as err:
            assert str(err)
        await client.close()
        meter.clear_reply_overrides()
    assert meter.requests[method] >= 60  # every damaged reply was asked for
