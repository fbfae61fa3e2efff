"""The RPC methods of the virtual meter, answered like a real Shelly Pro 3EM or EM1 meter.

Shapes follow real devices (captures of a Pro 3EM, fw 1.6.1): the components a battery asks for
(`em:0` or `em1:0`/`em1:1`, `emdata:0`/`em1data:N`, `sys`, `wifi`, `cloud`, `mqtt`, `ble`, `ws`),
their status and config, `Shelly.GetDeviceInfo`, `GetStatus`, `GetConfig`, `GetComponents`,
`ListMethods` and `Script.List`. Every number that is not a count is written with two decimals
("120.00", never "120"): one Marstek firmware crashes on an integral power. The energy counters
read 0: the virtual meter counts no energy of its own.

Replies are JSON text. The replies carrying the power are encoded once per served value (the
full status once per second too, for its clock) and reused until the value changes: a poll
costs a look-up, not an encoding.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .guard import ServedValue
from .identity import FIRMWARE_ID, FIRMWARE_VERSION, Identity

NO_HANDLER: Final = 404
INVALID_ARGUMENT: Final = -103
NOT_FOUND: Final = -105
PHASES: Final = ("a", "b", "c")
EM1_CHANNELS: Final = 2
# Methods whose reply carries the power: never answered without a value to serve.
VALUE_METHODS: Final = frozenset(
    {"Shelly.GetStatus", "Shelly.GetComponents", "EM.GetStatus", "EM1.GetStatus"}
)
_NAMESPACES: Final = {
    "BLE": "ble",
    "Cloud": "cloud",
    "EM": "em",
    "EM1": "em1",
    "EM1Data": "em1data",
    "EMData": "emdata",
    "MQTT": "mqtt",
    "Sys": "sys",
    "WiFi": "wifi",
    "Ws": "ws",
}
_INDEXED: Final = frozenset({"em", "em1", "emdata", "em1data"})


class RpcError(Exception):
    """An error reply: ``code`` and ``message`` as a real device sends them."""

    def __init__(self, code: int, message: str) -> None:
        """Create the error."""
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Json:
    """Text that is already JSON, embedded as it is."""

    text: str


def dumps(value: Any) -> str:
    """Return compact JSON with every float written with two decimals."""
    if isinstance(value, Json):
        return value.text
    if isinstance(value, float):
        return f"{round(value, 2) or 0.0:.2f}"
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(key)}:{dumps(item)}" for key, item in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value)


def _em_status(value: ServedValue) -> dict[str, Any]:
    status: dict[str, Any] = {"id": 0}
    currents = []
    for index, phase in enumerate(PHASES):
        watts, volts = value.power[index], value.voltage[index]
        current = abs(watts) / volts if volts > 0 else 0.0
        currents.append(current)
        status[f"{phase}_current"] = current
        status[f"{phase}_voltage"] = volts
        status[f"{phase}_act_power"] = watts
        status[f"{phase}_aprt_power"] = abs(watts)
        status[f"{phase}_pf"] = 1.0
        status[f"{phase}_freq"] = value.frequency
    status["n_current"] = None
    status["total_current"] = sum(currents)
    status["total_act_power"] = value.total
    status["total_aprt_power"] = sum(abs(watts) for watts in value.power)
    status["user_calibrated_phase"] = []
    return status


def _em1_status(value: ServedValue, channel: int) -> dict[str, Any]:
    # An EM1 meter measures one supply: the whole net power on channel 0, channel 1 idle.
    watts = value.total if channel == 0 else 0.0
    volts = value.voltage[0]
    return {
        "id": channel,
        "current": abs(watts) / volts if volts > 0 else 0.0,
        "voltage": volts,
        "act_power": watts,
        "aprt_power": abs(watts),
        "pf": 1.0,
        "freq": value.frequency,
        "calibration": "factory",
    }


class Replies:
    """Answer the RPC methods of one virtual meter."""

    def __init__(
        self,
        identity: Identity,
        *,
        clock: Callable[[], float] = time.time,
        started: float | None = None,
    ) -> None:
        """Answer as ``identity``; ``clock`` is the wall clock (unix s) for `sys`."""
        self.identity = identity
        self._clock = clock
        self._started = clock() if started is None else started
        self._keys = self._component_keys()
        self._kinds = frozenset(key.partition(":")[0] for key in self._keys)
        # Texts of the served value: each meter component's status, and each answer by method
        # and component id; the full status with the second it was made in.
        self._value: ServedValue | None = None
        self._statuses: dict[str, Json] = {}
        self._answers: dict[tuple[str, int], str] = {}
        self._full_status: tuple[int, str] | None = None
        self._config = self._build_config()
        self._config_text = dumps(self._config)

    # --- components -------------------------------------------------------------------------

    def component_keys(self) -> list[str]:
        """Return the keys of the meter's components, e.g. "em:0", "sys"."""
        return list(self._keys)

    def _component_keys(self) -> tuple[str, ...]:
        if self.identity.model.three_phase:
            meters = ["em:0", "emdata:0"]
        else:
            meters = [
                f"{kind}:{index}" for kind in ("em1", "em1data") for index in range(EM1_CHANNELS)
            ]
        return tuple(sorted(["ble", "cloud", "mqtt", "sys", "wifi", "ws", *meters]))

    def device_info(self) -> dict[str, Any]:
        """Return `Shelly.GetDeviceInfo`, also served as `GET /shelly`."""
        identity = self.identity
        info: dict[str, Any] = {
            "name": None,
            "id": identity.device_id,
            "mac": identity.mac,
            "slot": 1,
            "model": identity.model_id,
            "gen": identity.generation,
            "fw_id": FIRMWARE_ID,
            "ver": FIRMWARE_VERSION,
            "app": identity.app,
            "auth_en": False,
            "auth_domain": None,
        }
        if identity.profile is not None:
            info["profile"] = identity.profile
        return info

    def _follow(self, value: ServedValue) -> None:
        """Forget the texts of the previous value."""
        if value is not self._value:
            self._value = value
            self._statuses = {}
            self._answers = {}
            self._full_status = None

    def _meter_status(self, value: ServedValue, key: str) -> Json:
        """Return the status of `em:0` or `em1:N`, encoded once per served value."""
        self._follow(value)
        text = self._statuses.get(key)
        if text is None:
            kind, _, index = key.partition(":")
            status = _em_status(value) if kind == "em" else _em1_status(value, int(index))
            text = self._statuses[key] = Json(dumps(status))
        return text

    def _component_status(self, key: str, value: ServedValue | None) -> Any:
        kind, _, index_text = key.partition(":")
        index = int(index_text or 0)
        match kind:
            case "em" | "em1":
                assert value is not None
                return self._meter_status(value, key)
            case "emdata":
                status: dict[str, Any] = {"id": 0}
                for phase in PHASES:
                    status[f"{phase}_total_act_energy"] = 0.0
                    status[f"{phase}_total_act_ret_energy"] = 0.0
                status["total_act"] = 0.0
                status["total_act_ret"] = 0.0
                return status
            case "em1data":
                return {"id": index, "total_act_energy": 0.0, "total_act_ret_energy": 0.0}
            case "sys":
                return self._sys_status()
            case "wifi":
                # Like a Pro meter on Ethernet: no Wi-Fi connection.
                return {"sta_ip": None, "status": "disconnected", "ssid": None, "rssi": 0}
            case "ble":
                return {}
        return {"connected": False}  # cloud, mqtt, ws: a battery must not wait for the cloud

    def _sys_status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "mac": self.identity.mac,
            "restart_required": False,
            "time": time.strftime("%H:%M", time.gmtime(now)),
            "unixtime": int(now),
            "uptime": max(int(now - self._started), 0),
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

    def _build_config(self) -> dict[str, Any]:
        identity = self.identity
        config: dict[str, Any] = {}
        for key in self.component_keys():
            kind, _, index_text = key.partition(":")
            index = int(index_text or 0)
            match kind:
                case "em":
                    config[key] = {
                        "id": 0,
                        "name": None,
                        "blink_mode_selector": "active_energy",
                        "phase_selector": "all",
                        "monitor_phase_sequence": False,
                        "reverse": {},
                        "ct_type": "120A",
                    }
                case "em1":
                    config[key] = {"id": index, "name": None, "reverse": False, "ct_type": "50A"}
                case "emdata" | "em1data":
                    config[key] = {"id": index}
                case "sys":
                    config[key] = {
                        "device": {
                            "name": None,
                            "mac": identity.mac,
                            "fw_id": FIRMWARE_ID,
                            "discoverable": True,
                            "eco_mode": False,
                            **({"profile": identity.profile} if identity.profile else {}),
                        },
                        "location": {"tz": "UTC", "lat": None, "lon": None},
                        "sntp": {"server": "time.google.com"},
                        "cfg_rev": 1,
                    }
                case "wifi":
                    config[key] = {"ap": {"enable": False}, "sta": {"enable": False}}
                case _:  # ble, cloud, mqtt, ws
                    config[key] = {"enable": False}
        return config

    # --- methods ----------------------------------------------------------------------------

    def methods(self) -> list[str]:
        """Return every method the meter answers."""
        names = {
            "Shelly.GetDeviceInfo",
            "Shelly.GetStatus",
            "Shelly.GetConfig",
            "Shelly.GetComponents",
            "Shelly.ListMethods",
            "Script.List",
        }
        for kind in self._kinds:
            namespace = next(name for name, value in _NAMESPACES.items() if value == kind)
            names.update({f"{namespace}.GetStatus", f"{namespace}.GetConfig"})
        return sorted(names)

    def answer(self, method: str, params: Mapping[str, Any], value: ServedValue | None) -> str:
        """Return the JSON result of a method; ``value`` must be given for `VALUE_METHODS`.

        Raises RpcError for an unknown method or a wrong argument.
        """
        if value is None or method not in VALUE_METHODS:
            return self._answer(method, params, value)
        self._follow(value)
        if method == "Shelly.GetStatus":
            second = int(self._clock())
            if self._full_status is None or self._full_status[0] != second:
                self._full_status = (second, self._answer(method, params, value))
            return self._full_status[1]
        component_id = params.get("id", 0)
        if type(component_id) is not int:  # an argument error, or a bool: not cached
            return self._answer(method, params, value)
        text = self._answers.get((method, component_id))
        if text is None:
            text = self._answers[(method, component_id)] = self._answer(method, params, value)
        return text

    def _answer(self, method: str, params: Mapping[str, Any], value: ServedValue | None) -> str:
        match method:
            case "Shelly.GetDeviceInfo":
                return dumps(self.device_info())
            case "Shelly.GetStatus":
                return dumps(
                    {key: self._component_status(key, value) for key in self.component_keys()}
                )
            case "Shelly.GetConfig":
                return self._config_text
            case "Shelly.GetComponents":
                return dumps(self._components(value))
            case "Shelly.ListMethods":
                return dumps({"methods": self.methods()})
            case "Script.List":
                return dumps({"scripts": []})
        namespace, _, action = method.partition(".")
        kind = _NAMESPACES.get(namespace)
        if kind is None or action not in ("GetStatus", "GetConfig") or kind not in self._kinds:
            raise RpcError(NO_HANDLER, f"No handler for {method}")
        key = kind
        if kind in _INDEXED:
            component_id = _component_id(params)
            key = f"{kind}:{component_id}"
            if key not in self._keys:
                raise RpcError(NOT_FOUND, f"Argument 'id', value {component_id} not found!")
        if action == "GetStatus":
            return dumps(self._component_status(key, value))
        return dumps(self._config[key])

    def _components(self, value: ServedValue | None) -> dict[str, Any]:
        keys = self._keys
        return {
            "components": [
                {
                    "key": key,
                    "status": self._component_status(key, value),
                    "config": self._config[key],
                }
                for key in keys
            ],
            "cfg_rev": 1,
            "offset": 0,
            "total": len(keys),
        }


def _component_id(params: Mapping[str, Any]) -> int:
    """Return the `id` argument (default 0, as the batteries that omit it mean)."""
    value = params.get("id", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RpcError(INVALID_ARGUMENT, "Invalid argument 'id'")
    return value
