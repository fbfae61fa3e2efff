"""The RPC methods' replies: the shapes of a real Pro 3EM (or EM1 meter), two decimals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from custom_components.shelly_energy.virtual_meter.guard import ServedValue
from custom_components.shelly_energy.virtual_meter.identity import Identity, MeterModel
from custom_components.shelly_energy.virtual_meter.replies import (
    VALUE_METHODS,
    Replies,
    RpcError,
    dumps,
)

from .conftest import MAC, WALL_START

VALUE = ServedValue(
    power=(1000.0, 0.0, -250.5),
    total=749.5,
    voltage=(229.5, 230.1, 230.0),
    frequency=49.98,
    time=0.0,
)


def replies(model: MeterModel = MeterModel.PRO_3EM) -> Replies:
    return Replies(Identity(model, MAC), clock=lambda: WALL_START + 90.0, started=WALL_START)


def answer(
    method: str, params: dict[str, Any] | None = None, model: MeterModel = MeterModel.PRO_3EM
) -> Any:
    return json.loads(replies(model).answer(method, params or {}, VALUE))


def test_dumps_writes_every_float_with_two_decimals() -> None:
    assert dumps({"a": 120.0, "b": -0.001, "c": 3, "d": [1.005, None, True], "e": "x"}) == (
        '{"a":120.00,"b":0.00,"c":3,"d":[1.00,null,true],"e":"x"}'
    )


def test_em_status_is_a_pro_3em_status() -> None:
    text = replies().answer("EM.GetStatus", {"id": 0}, VALUE)
    assert text == (
        '{"id":0,'
        '"a_current":4.36,"a_voltage":229.50,"a_act_power":1000.00,"a_aprt_power":1000.00,'
        '"a_pf":1.00,"a_freq":49.98,'
        '"b_current":0.00,"b_voltage":230.10,"b_act_power":0.00,"b_aprt_power":0.00,'
        '"b_pf":1.00,"b_freq":49.98,'
        '"c_current":1.09,"c_voltage":230.00,"c_act_power":-250.50,"c_aprt_power":250.50,'
        '"c_pf":1.00,"c_freq":49.98,'
        '"n_current":null,"total_current":5.45,"total_act_power":749.50,'
        '"total_aprt_power":1250.50,"user_calibrated_phase":[]}'
    )


def test_em_status_is_encoded_once_per_value() -> None:
    meter = replies()
    first = meter.answer("EM.GetStatus", {}, VALUE)
    assert meter.answer("EM.GetStatus", {"id": 0}, VALUE) is first
    other = ServedValue((1.0, 2.0, 3.0), 6.0, (230.0, 230.0, 230.0), 50.0, 1.0)
    assert '"total_act_power":6.00' in meter.answer("EM.GetStatus", {}, other)


def test_device_info() -> None:
    assert answer("Shelly.GetDeviceInfo") == {
        "name": None,
        "id": "shellypro3em-02a1b2c3d4e5",
        "mac": MAC,
        "slot": 1,
        "model": "SPEM-003CEBEU",
        "gen": 2,
        "fw_id": "20250508-110717/1.6.1-g8dbd358",
        "ver": "1.6.1",
        "app": "Pro3EM",
        "auth_en": False,
        "auth_domain": None,
        "profile": "triphase",
    }
    em1 = answer("Shelly.GetDeviceInfo", model=MeterModel.EM_GEN3)
    assert (em1["id"], em1["model"], em1["gen"], em1["app"]) == (
        "shellyemg3-02a1b2c3d4e5",
        "S3EM-002CXCEU",
        3,
        "EMG3",
    )
    assert "profile" not in em1


def test_full_status_has_every_component_and_no_cloud() -> None:
    status = answer("Shelly.GetStatus")
    assert sorted(status) == ["ble", "cloud", "em:0", "emdata:0", "mqtt", "sys", "wifi", "ws"]
    assert status["cloud"] == {"connected": False}
    assert status["em:0"]["total_act_power"] == 749.5
    assert status["emdata:0"]["total_act"] == 0.0
    assert status["sys"] == {
        "mac": MAC,
        "restart_required": False,
        "time": "15:08",
        "unixtime": 1_750_000_090,
        "uptime": 90,
        "ram_size": 247524,
        "ram_free": 113080,
        "fs_size": 524288,
        "fs_free": 180224,
        "cfg_rev": 1,
        "kvs_rev": 0,
        "schedule_rev": 0,
        "webhook_rev": 0,
        "available_updates": {},
        "reset_reason": 3,
    }
    assert answer("Sys.GetStatus") == status["sys"]
    assert answer("WiFi.GetStatus") == status["wifi"]
    assert answer("Cloud.GetStatus") == {"connected": False}


def test_em1_models_serve_the_net_power_on_channel_0() -> None:
    status = answer("Shelly.GetStatus", model=MeterModel.PRO_EM_50)
    assert sorted(status) == [
        "ble",
        "cloud",
        "em1:0",
        "em1:1",
        "em1data:0",
        "em1data:1",
        "mqtt",
        "sys",
        "wifi",
        "ws",
    ]
    assert status["em1:0"] == {
        "id": 0,
        "current": 3.27,
        "voltage": 229.5,
        "act_power": 749.5,
        "aprt_power": 749.5,
        "pf": 1.0,
        "freq": 49.98,
        "calibration": "factory",
    }
    assert status["em1:1"]["act_power"] == 0.0
    assert answer("EM1.GetStatus", {"id": 1}, MeterModel.PRO_EM_50) == status["em1:1"]
    assert answer("EM1Data.GetStatus", {"id": 0}, MeterModel.PRO_EM_50) == {
        "id": 0,
        "total_act_energy": 0.0,
        "total_act_ret_energy": 0.0,
    }


def test_config_and_components() -> None:
    config = answer("Shelly.GetConfig")
    assert config["em:0"]["ct_type"] == "120A"
    assert config["sys"]["device"]["mac"] == MAC
    assert config["cloud"] == {"enable": False}
    assert answer("EM.GetConfig", {"id": 0}) == config["em:0"]
    assert answer("Sys.GetConfig") == config["sys"]
    components = answer("Shelly.GetComponents")
    assert components["total"] == len(config) == 8
    assert [item["key"] for item in components["components"]] == sorted(config)
    assert components["components"][2]["status"]["total_act_power"] == 749.5
    assert answer("Script.List") == {"scripts": []}
    methods = answer("Shelly.ListMethods")["methods"]
    assert "EM.GetStatus" in methods
    assert "EM1.GetStatus" not in methods
    assert VALUE_METHODS & set(methods) == {
        "Shelly.GetStatus",
        "Shelly.GetComponents",
        "EM.GetStatus",
    }


@pytest.mark.parametrize(
    ("method", "params", "code", "message"),
    [
        ("Foo.Bar", {}, 404, "No handler for Foo.Bar"),
        ("EM1.GetStatus", {"id": 0}, 404, "No handler for EM1.GetStatus"),  # a Pro 3EM has none
        ("Switch.Set", {}, 404, "No handler for Switch.Set"),
        ("EM.GetStatus", {"id": 1}, -105, "Argument 'id', value 1 not found!"),
        ("EM.GetStatus", {"id": "0"}, -103, "Invalid argument 'id'"),
        ("EM.GetStatus", {"id": True}, -103, "Invalid argument 'id'"),
        ("Sys.Reboot", {}, 404, "No handler for Sys.Reboot"),
    ],
)
def test_errors_are_a_real_shellys(
    method: str, params: dict[str, Any], code: int, message: str
) -> None:
    with pytest.raises(RpcError) as raised:
        replies().answer(method, params, VALUE)
    assert (raised.value.code, raised.value.message) == (code, message)


def test_the_full_status_is_encoded_once_per_second_and_value() -> None:
    now = [WALL_START + 10.2]
    meter = Replies(Identity(MeterModel.PRO_3EM, MAC), clock=lambda: now[0], started=WALL_START)
    first = meter.answer("Shelly.GetStatus", {}, VALUE)
    now[0] += 0.5
    assert meter.answer("Shelly.GetStatus", {"esp": ""}, VALUE) is first
    now[0] += 0.5
    later = meter.answer("Shelly.GetStatus", {}, VALUE)
    assert json.loads(later)["sys"]["uptime"] == json.loads(first)["sys"]["uptime"] + 1
    other = ServedValue((1.0, 2.0, 3.0), 6.0, (230.0, 230.0, 230.0), 50.0, 1.0)
    assert json.loads(meter.answer("Shelly.GetStatus", {}, other))["em:0"]["total_act_power"] == 6.0
