"""Gen2+ status parsing, checked against replies of real devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from custom_components.shelly_energy.meter.errors import (
    MalformedReplyError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from custom_components.shelly_energy.meter.rpc import check_reply, meter_info, parse_status
from custom_components.shelly_energy.meter.snapshot import (
    ChannelKind,
    ChannelReading,
    MeterChange,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return result


DEVICE_INFO = load("pro3em_shelly_getdeviceinfo_fw1.6.1_auth_hacore.json")
STATUS = load("pro3em_shelly_getstatus_fw1.6.1_hacore.json")


def test_meter_info_of_a_real_pro3em() -> None:
    info = meter_info(DEVICE_INFO, STATUS)
    assert info.mac == "AABBCCDDEEFF"
    assert info.model == "SPEM-003CEBEU"
    assert info.model_name == "Shelly Pro 3EM"
    assert info.generation == 2
    assert info.firmware == "1.6.1"
    assert info.name == "Test Name"
    assert info.profile == "triphase"
    assert info.channel_kind is ChannelKind.PHASE
    assert info.channel_ids == ("a", "b", "c")
    assert info.has_switch is False
    assert info.three_phase


def test_real_pro3em_status_fw161() -> None:
    snapshot = parse_status(STATUS, meter_info(DEVICE_INFO, STATUS), now=1747561101.6)
    assert snapshot.time == 1747561101
    assert snapshot.channels[0] == ChannelReading(
        id="a",
        kind=ChannelKind.PHASE,
        power=2166.2,
        apparent_power=2175.9,
        current=9.592,
        voltage=227.0,
        power_factor=0.99,
        frequency=49.9,
        energy_in=3105576.42,
        energy_out=0.0,
    )
    assert [c.power for c in snapshot.channels] == [2166.2, 3.6, 244.0]
    assert [c.energy_in for c in snapshot.channels] == [3105576.42, 195765.72, 2114072.05]
    assert snapshot.total == ChannelReading(
        id="total",
        kind=ChannelKind.TOTAL,
        power=2413.825,
        apparent_power=2525.779,
        current=11.116,
        energy_in=5415414.19,
        energy_out=0.0,
    )
    assert snapshot.neutral_current is None  # n_current is null without a neutral CT
    assert snapshot.switch_on is None
    assert snapshot.errors == ()
    assert snapshot.rssi == -57
    assert snapshot.uptime == 501683
    assert snapshot.update_available is False


def test_real_pro3em_status_fw110_over_ethernet() -> None:
    status = load("pro3em_shelly_getstatus_fw1.1.0_aioshelly.json")
    info = meter_info(load("pro3em_shelly_getdeviceinfo_fw1.1.0_aioshelly.json"), status)
    snapshot = parse_status(status, info, now=5.0)
    assert [c.energy_out for c in snapshot.channels] == [0.0, 40.7, 985.91]
    assert snapshot.total is not None
    assert snapshot.total.energy_out == 1026.61
    assert snapshot.rssi is None  # wired: the wifi block reports rssi 0
    assert snapshot.update_available is False  # only a beta is offered


def test_stable_update_available() -> None:
    status = {**STATUS, "sys": {**STATUS["sys"], "available_updates": {"stable": {"version": "2"}}}}
    snapshot = parse_status(status, meter_info(DEVICE_INFO, STATUS), now=5.0)
    assert snapshot.update_available is True


def test_odd_values_read_as_missing() -> None:
    em = {**STATUS["em:0"], "a_voltage": None, "b_act_power": "12", "c_pf": True}
    em["errors"] = ["power_meter_failure"]
    em["a_flags"] = ["overvoltage", 3]
    em["b_errors"] = ["out_of_range:voltage"]
    em["n_current"] = 0.25
    sys_ = {**STATUS["sys"], "unixtime": None}
    del em["c_freq"]
    status = {**STATUS, "em:0": em, "sys": sys_}
    snapshot = parse_status(status, meter_info(DEVICE_INFO, STATUS), now=42.0)
    a, b, c = snapshot.channels
    assert a.voltage is None
    assert a.flags == ("overvoltage",)
    assert b.power is None
    assert b.errors == ("out_of_range:voltage",)
    assert c.power_factor is None
    assert c.frequency is None
    assert snapshot.errors == ("power_meter_failure",)
    assert snapshot.neutral_current == 0.25
    assert snapshot.time == 42.0  # before its clock syncs the device has no unixtime


def test_a_clock_far_ahead_of_ours_is_held_near_ours() -> None:
    """Snapshots never go back in time: one stamp ahead would hold every later one there."""
    info = meter_info(DEVICE_INFO, STATUS)
    ahead = {**STATUS, "sys": {**STATUS["sys"], "unixtime": 1747561101 + 86_400}}
    assert parse_status(ahead, info, now=1747561101.5).time == 1747561111.5
    slightly = {**STATUS, "sys": {**STATUS["sys"], "unixtime": 1747561111}}
    assert parse_status(slightly, info, now=1747561101.5).time == 1747561111


MONOPHASE = {
    "em1:0": {
        "id": 0,
        "current": 2.5,
        "voltage": 231.2,
        "act_power": -500.1,
        "aprt_power": 578.0,
        "pf": -0.87,
        "freq": 50.0,
        "calibration": "factory",
    },
    "em1:1": {
        "id": 1,
        "current": 0.1,
        "voltage": 231.0,
        "act_power": 12.0,
        "aprt_power": 23.1,
        "pf": 0.52,
        "freq": 50.0,
        "calibration": "factory",
        "flags": ["count_disabled"],
    },
    "em1data:0": {"id": 0, "total_act_energy": 1000.5, "total_act_ret_energy": 2000.25},
    "em1data:1": {"id": 1, "total_act_energy": 30.0, "total_act_ret_energy": 0.0},
    "switch:0": {"id": 0, "output": True},
    "sys": {"unixtime": 1700000000, "uptime": 10, "available_updates": {}},
    "wifi": {"rssi": -70},
}
PRO_EM_INFO = {
    "mac": "aabbcc001122",
    "model": "SPEM-002CEBEU50",
    "gen": 2,
    "fw_id": "20250508-110717/1.6.1-g8dbd358",
    "ver": "1.6.1",
    "name": None,
}


def test_single_phase_channels() -> None:
    info = meter_info(PRO_EM_INFO, MONOPHASE)
    assert info.mac == "AABBCC001122"
    assert info.model_name == "Shelly Pro EM-50"
    assert info.name is None
    assert info.channel_kind is ChannelKind.CHANNEL
    assert info.channel_ids == ("1", "2")
    assert info.has_switch
    snapshot = parse_status(MONOPHASE, info, now=1.0)
    assert snapshot.channels[0] == ChannelReading(
        id="1",
        kind=ChannelKind.CHANNEL,
        power=-500.1,
        apparent_power=578.0,
        current=2.5,
        voltage=231.2,
        power_factor=-0.87,
        frequency=50.0,
        energy_in=1000.5,
        energy_out=2000.25,
    )
    assert snapshot.channels[1].flags == ("count_disabled",)
    assert snapshot.total is None
    assert snapshot.switch_on is True


def test_another_component_set_is_a_change_and_reads_unavailable() -> None:
    info = meter_info(DEVICE_INFO, STATUS)
    snapshot = parse_status(MONOPHASE, info, now=1.0)
    assert snapshot.changed == MeterChange(
        "components", "phases a, b, c", "channels 1, 2 and a relay"
    )
    assert [reading.id for reading in snapshot.channels] == ["a", "b", "c"]
    assert snapshot.channels[0] == ChannelReading(id="a", kind=ChannelKind.PHASE)
    assert snapshot.switch_on is True


def test_status_without_meter_is_malformed() -> None:
    info = meter_info(DEVICE_INFO, STATUS)
    with pytest.raises(MalformedReplyError, match="em:0"):
        parse_status({"sys": {}}, info, now=1.0)


def test_a_plug_is_not_a_meter() -> None:
    with pytest.raises(NotEnergyMeterError):
        meter_info(
            {"mac": "AABBCC000001", "model": "SNPL-00112EU", "gen": 2, "fw_id": "20250508-1"},
            {"switch:0": {}},
        )


def test_old_firmware_is_refused() -> None:
    old = {**DEVICE_INFO, "fw_id": "20230101-000000/0.14.0-gabc"}
    with pytest.raises(UnsupportedFirmwareError):
        meter_info(old, STATUS)


@pytest.mark.parametrize(
    ("method", "reply", "field"),
    [
        ("Shelly.GetDeviceInfo", [], "Shelly.GetDeviceInfo"),
        ("Shelly.GetDeviceInfo", {**DEVICE_INFO, "mac": 42}, "mac"),
        ("Shelly.GetDeviceInfo", {**DEVICE_INFO, "fw_id": None}, "fw_id"),
        ("Shelly.GetDeviceInfo", {**DEVICE_INFO, "id": ""}, "id"),
        ("Shelly.GetDeviceInfo", {**DEVICE_INFO, "auth_en": "no"}, "auth_en"),
        ("Shelly.GetConfig", None, "Shelly.GetConfig"),
        ("Shelly.GetStatus", 7, "Shelly.GetStatus"),
        ("Shelly.GetComponents", {"total": 0}, "components"),
        ("Shelly.GetComponents", {"components": [], "total": "0"}, "total"),
        ("Shelly.GetComponents", {"components": [3], "total": 1}, "components[0]"),
        ("Shelly.GetComponents", {"components": [{"key": 1}], "total": 1}, "components[0].key"),
        (
            "Shelly.GetComponents",
            {"components": [{"key": "boolean:200", "config": {}, "status": 1}], "total": 1},
            "components[0].status",
        ),
        (
            "Shelly.GetComponents",
            {"components": [{"key": "a", "config": {}, "status": {}, "attrs": []}], "total": 1},
            "components[0].attrs",
        ),
    ],
)
def test_replies_aioshelly_could_not_read_are_refused(method: str, reply: Any, field: str) -> None:
    with pytest.raises(MalformedReplyError) as raised:
        check_reply(method, reply)
    assert raised.value.field == field


def test_replies_aioshelly_reads_pass() -> None:
    check_reply("Shelly.GetDeviceInfo", DEVICE_INFO)
    check_reply("Shelly.GetStatus", STATUS)
    check_reply("Shelly.GetComponents", {"components": [], "cfg_rev": 1, "offset": 0, "total": 0})
    check_reply("EMData.GetData", "anything: not read while connecting")
