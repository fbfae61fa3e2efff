"""Gen1 /status parsing (Shelly EM and 3EM)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from custom_components.shelly_energy.meter.client import DeviceIdentity
from custom_components.shelly_energy.meter.errors import (
    MalformedReplyError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from custom_components.shelly_energy.meter.gen1 import parse_settings, parse_status
from custom_components.shelly_energy.meter.snapshot import ChannelKind, ChannelReading, MeterInfo

EM = MeterInfo(
    mac="C45BBE6A1B2C",
    model="SHEM",
    model_name="Shelly EM",
    generation=1,
    firmware="20230913-114244/v1.14.0-gcb84623",
    name=None,
    profile=None,
    channel_kind=ChannelKind.CHANNEL,
    channel_ids=("1", "2"),
    has_switch=True,
)
EM3 = MeterInfo(
    mac="C45BBE6A1B2D",
    model="SHEM-3",
    model_name="Shelly 3EM",
    generation=1,
    firmware="20230913-114244/v1.14.0-gcb84623",
    name=None,
    profile=None,
    channel_kind=ChannelKind.PHASE,
    channel_ids=("a", "b", "c"),
    has_switch=True,
)


def em_status(**overrides: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "wifi_sta": {"connected": True, "rssi": -61},
        "unixtime": 1700000000,
        "uptime": 3600,
        "relays": [{"ison": False, "overpower": False}],
        "emeters": [
            {
                "power": 1234.5,
                "reactive": -12.5,
                "pf": 0.98,
                "voltage": 231.4,
                "is_valid": True,
                "total": 5000.2,
                "total_returned": 10.0,
            },
            {
                "power": -800.0,
                "reactive": 3.0,
                "pf": -0.99,
                "voltage": 231.4,
                "is_valid": True,
                "total": 12.5,
                "total_returned": 3000.0,
            },
        ],
        "update": {"status": "idle", "has_update": True, "old_version": EM.firmware},
    }
    status.update(overrides)
    return status


def test_shelly_em() -> None:
    snapshot = parse_status(em_status(), EM, now=1700000000.5)
    assert snapshot.channels == (
        ChannelReading(
            id="1",
            kind=ChannelKind.CHANNEL,
            power=1234.5,
            reactive_power=-12.5,
            power_factor=0.98,
            voltage=231.4,
            energy_in=5000.2,
            energy_out=10.0,
        ),
        ChannelReading(
            id="2",
            kind=ChannelKind.CHANNEL,
            power=-800.0,
            reactive_power=3.0,
            power_factor=-0.99,
            voltage=231.4,
            energy_in=12.5,
            energy_out=3000.0,
        ),
    )
    assert snapshot.total is None
    assert snapshot.switch_on is False
    assert snapshot.rssi == -61
    assert snapshot.uptime == 3600
    assert snapshot.update_available is True
    assert snapshot.time == 1700000000


def test_invalid_measurement_reads_nothing() -> None:
    status = em_status()
    status["emeters"][0] = {"power": 0, "voltage": 0, "is_valid": False, "total": -1}
    snapshot = parse_status(status, EM, now=1.0)
    assert snapshot.channels[0] == ChannelReading(id="1", kind=ChannelKind.CHANNEL)


def test_unsynchronised_clock_and_old_firmware_fields() -> None:
    status = em_status(unixtime=0, update={}, relays=[], wifi_sta={})
    del status["emeters"][1]["pf"]
    snapshot = parse_status(status, EM, now=99.0)
    assert snapshot.time == 99.0
    assert snapshot.channels[1].power_factor is None
    assert snapshot.update_available is None
    assert snapshot.switch_on is None
    assert snapshot.rssi is None


def test_a_clock_far_ahead_of_ours_is_held_near_ours() -> None:
    """One stamp far ahead, and an outage after it: the counters would see no time pass."""
    ahead = parse_status(em_status(unixtime=1700000000 + 86_400), EM, now=1700000000.5)
    assert ahead.time == 1700000010.5
    slightly = parse_status(em_status(unixtime=1700000010), EM, now=1700000000.5)
    assert slightly.time == 1700000010


def em3_status() -> dict[str, Any]:
    return {
        "unixtime": 1700000000,
        "uptime": 5,
        "relays": [{"ison": True}],
        "emeters": [
            {
                "power": 100.0,
                "pf": 0.9,
                "current": 0.5,
                "voltage": 230.0,
                "is_valid": True,
                "total": 1000.0,
                "total_returned": 1.0,
            },
            {
                "power": -50.0,
                "pf": 0.8,
                "current": 0.3,
                "voltage": 231.0,
                "is_valid": True,
                "total": 2000.0,
                "total_returned": 2.0,
            },
            {
                "power": 25.0,
                "pf": 0.7,
                "current": 0.2,
                "voltage": 229.0,
                "is_valid": True,
                "total": 3000.0,
                "total_returned": 3.0,
            },
        ],
        "total_power": 75.5,
        "emeter_n": {"current": 0.4, "ixsum": 0.5, "mismatch": False, "is_valid": True},
    }


def test_shelly_3em_totals_are_summed_from_phases() -> None:
    snapshot = parse_status(em3_status(), EM3, now=1.0)
    assert [c.id for c in snapshot.channels] == ["a", "b", "c"]
    assert snapshot.channels[1].current == 0.3
    assert snapshot.total == ChannelReading(
        id="total",
        kind=ChannelKind.TOTAL,
        power=75.5,
        current=1.0,
        energy_in=6000.0,
        energy_out=6.0,
    )
    assert snapshot.neutral_current == 0.4
    assert snapshot.switch_on is True


def test_shelly_3em_without_total_power_or_valid_neutral() -> None:
    status = em3_status()
    del status["total_power"]
    status["emeter_n"]["is_valid"] = False
    status["emeters"][2]["total"] = None
    snapshot = parse_status(status, EM3, now=1.0)
    assert snapshot.total is not None
    assert snapshot.total.power == 75.0
    assert snapshot.total.energy_in is None  # a phase without its counter: no sum
    assert snapshot.neutral_current is None


def test_shelly_3em_sums_no_phase_counter_that_is_no_counter_value() -> None:
    status = em3_status()
    status["emeters"][0]["total"] = -1  # valid, yet no counter value
    snapshot = parse_status(status, EM3, now=1.0)
    assert snapshot.channels[0].energy_in == -1.0  # its counter refuses it
    assert snapshot.total is not None
    # Not 4999 Wh: a drop of all that phase counted, and more.
    assert (snapshot.total.energy_in, snapshot.total.energy_out) == (None, 6.0)


@pytest.mark.parametrize("status", [{}, {"emeters": [{}]}, {"emeters": "x"}])
def test_status_without_the_emeters_is_malformed(status: dict[str, Any]) -> None:
    with pytest.raises(MalformedReplyError, match="emeters"):
        parse_status(status, EM, now=1.0)


def test_one_bad_emeter_costs_only_its_values() -> None:
    status = em_status()
    status["emeters"][0] = 3
    snapshot = parse_status(status, EM, now=1.0)
    assert snapshot.channels[0] == ChannelReading(id="1", kind=ChannelKind.CHANNEL)
    assert snapshot.channels[1].power == -800.0


def test_settings_of_what_is_no_meter_or_too_old() -> None:
    plug = DeviceIdentity("C45BBE6A1B2E", "SHPLG-S", 1, EM.firmware, False, None)
    with pytest.raises(NotEnergyMeterError):
        parse_settings(plug, {})
    old = DeviceIdentity("C45BBE6A1B2C", "SHEM", 1, "20190101-000000/v1.5.0@abc", False, None)
    with pytest.raises(UnsupportedFirmwareError):
        parse_settings(old, {})
    current = DeviceIdentity("C45BBE6A1B2C", "SHEM", 1, EM.firmware, False, None)
    assert parse_settings(current, {"name": 5, "relays": "yes"}) == replace(EM, has_switch=False)
    assert parse_settings(current, {"name": "Mains", "relays": [{}]}) == replace(EM, name="Mains")
