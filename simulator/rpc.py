"""Gen2+ devices on the wire: JSON-RPC over HTTP and WebSocket, SHA-256 digest auth.

`RpcApi` answers RPC methods from a `SimulatedMeter`, independent of the transport; replies
copy the shapes of real Pro 3EM captures (keys, nesting, rounding). `create_rpc_app` wraps it
in an aiohttp application:

- ``GET /shelly`` (never authenticated): the device info;
- ``GET /rpc`` upgraded to a WebSocket: JSON-RPC frames, several calls in flight, auth inside
  the frames (401 error frame carrying a JSON challenge, then ``auth`` in every frame);
- ``GET /rpc/<Method>?k=v`` (values parsed as JSON where possible) and ``POST /rpc`` (a frame):
  HTTP digest auth (RFC 7616, SHA-256, qop=auth);
- ``GET /emdata/<id>/data.csv`` and ``GET /em1data/<id>/data.csv``: the records as CSV.

Every RPC call is answered after the meter's `rpc_latency_s`; a CSV download starts after it and
streams at `download_bytes_per_second`. While the meter components' values change, every
WebSocket that has sent a call receives a ``NotifyStatus`` each `notify_interval` (a real Pro 3EM
sends one about every second, at the second its values change), with the components that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from .meter import MeterState, SimulatedMeter
from .records import EM1_KEYS, TRIPHASE_KEYS
from .wire import DeferredCalls, dumps, fahrenheit, local_hhmm, request_counter, send_throttled

NO_HANDLER = 404
UNAUTHORIZED = 401
INVALID_ARGUMENT = -103
NOT_FOUND = -105
NONCE_LIFETIME = 600.0  # seconds a digest nonce stays valid
# What `override_reply` calls the data.csv downloads (`error`: that HTTP status; `invalid_json`:
# the message as the whole body).
CSV_OVERRIDE = "data.csv"
# The components a NotifyStatus carries (each whole, as in Shelly.GetStatus), when they changed.
NOTIFIED_COMPONENTS = ("em", "emdata", "em1", "em1data", "switch")
# A notification is sent this long after the clock passed a multiple of the notify interval, so
# that it carries the values of the new second.
_NOTIFY_AFTER_S = 0.002
_WS_HA2_INPUT = "dummy_method:dummy_uri"  # what Shelly hashes as HA2 over WebSocket
_USERNAME = "admin"
_SSID = "Wifi-Network-Name"

# RPC namespace of each component type.
_NAMESPACES = {
    "ble": "BLE",
    "bthome": "BTHome",
    "cloud": "Cloud",
    "em": "EM",
    "em1": "EM1",
    "em1data": "EM1Data",
    "emdata": "EMData",
    "eth": "Eth",
    "modbus": "Modbus",
    "mqtt": "MQTT",
    "switch": "Switch",
    "sys": "Sys",
    "temperature": "Temperature",
    "wifi": "WiFi",
    "ws": "Ws",
}
_COMPONENT_TYPES = {namespace: kind for kind, namespace in _NAMESPACES.items()}
_DATA_COMPONENTS = {"EMData": "emdata", "EM1Data": "em1data"}


def sha256_hex(text: str) -> str:
    """Return the hex SHA-256 of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


class RpcError(Exception):
    """An RPC error reply: `code` and `message` as the device sends them."""

    def __init__(self, code: int, message: str) -> None:
        """Create the error."""
        super().__init__(message)
        self.code = code
        self.message = message


def _time_zone(utc_offset: int) -> str:
    hours = utc_offset // 3600
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"


class RpcApi:
    """The RPC methods of one Gen2+ meter, as plain calls: `call(method, params)`."""

    def __init__(
        self, meter: SimulatedMeter, schedule_reboot: Callable[[float], None] | None = None
    ) -> None:
        """Serve `meter`; `schedule_reboot(seconds)` carries out `Shelly.Reboot`."""
        self.meter = meter
        self._schedule_reboot = schedule_reboot or (lambda _delay: meter.reboot())

    # --- components -----------------------------------------------------------------------

    def component_keys(self) -> list[str]:
        """Return the keys of the device's components, e.g. ``em:0``, ``sys``."""
        meter = self.meter
        preset = meter.preset
        keys = ["ble", "bthome", "cloud", "mqtt", "sys", "wifi", "ws"]
        if preset.energy_meter:
            if self._triphase:
                keys += ["em:0", "emdata:0"]
            else:
                for index in range(meter.channel_count):
                    keys += [f"em1:{index}", f"em1data:{index}"]
        if preset.has_relay:
            keys.append("switch:0")
        if preset.pro_line:
            keys += ["eth", "modbus", "temperature:0"]
        return sorted(keys)

    @property
    def _triphase(self) -> bool:
        return self.meter.preset.three_phase and self.meter.profile in (None, "triphase")

    def device_info(self) -> dict[str, Any]:
        """Return `Shelly.GetDeviceInfo` (also `GET /shelly`)."""
        meter = self.meter
        info: dict[str, Any] = {
            "name": meter.name,
            "id": meter.device_id,
            "mac": meter.mac,
            "slot": 0,
            "model": meter.model,
            "gen": meter.gen,
            "fw_id": meter.firmware,
            "ver": meter.version,
            "app": meter.preset.app,
            "auth_en": meter.password is not None,
            "auth_domain": meter.device_id if meter.password is not None else None,
        }
        if meter.profile is not None:
            info["profile"] = meter.profile
        return info

    def status(self, keys: list[str] | None = None) -> dict[str, Any]:
        """Return `Shelly.GetStatus`, or only the components in `keys`."""
        if keys is None:
            self.meter.status_read()
        wanted = self.component_keys() if keys is None else keys
        reads_counters = any(key.startswith(("emdata", "em1data", "switch")) for key in wanted)
        state = self.meter.state(read_counters=reads_counters)
        return {key: self._component_status(key, state) for key in wanted}

    def config(self) -> dict[str, Any]:
        """Return `Shelly.GetConfig`."""
        return {key: self._component_config(key) for key in self.component_keys()}

    def _component_status(self, key: str, state: MeterState) -> dict[str, Any]:
        kind, _, index_text = key.partition(":")
        index = int(index_text or 0)
        match kind:
            case "em":
                return self._em_status(state)
            case "emdata":
                return self._emdata_status(state)
            case "em1":
                return self._em1_status(state, index)
            case "em1data":
                channel = state.channels[index]
                return {
                    "id": index,
                    "total_act_energy": round(channel.energy_in, 2),
                    "total_act_ret_energy": round(channel.energy_out, 2),
                }
            case "switch":
                return self._switch_status(state)
            case "sys":
                return self._sys_status(state)
            case "wifi":
                return {
                    "sta_ip": "127.0.0.1",
                    "status": "got ip",
                    "ssid": _SSID,
                    "rssi": state.rssi,
                    "sta_ip6": [],
                }
            case "eth":
                return {"ip": None, "ip6": None}
            case "temperature":
                return {"id": 0, "tC": state.temperature, "tF": fahrenheit(state.temperature)}
            case "bthome":
                return {"errors": ["bluetooth_disabled"]}
            case "cloud" | "mqtt" | "ws":
                return {"connected": False}
        return {}  # ble, modbus

    def _em_status(self, state: MeterState) -> dict[str, Any]:
        status: dict[str, Any] = {"id": 0}
        for phase, channel in zip("abc", state.channels, strict=True):
            status[f"{phase}_current"] = round(channel.current, 3)
            status[f"{phase}_voltage"] = round(channel.voltage, 1)
            status[f"{phase}_act_power"] = round(channel.power, 1)
            status[f"{phase}_aprt_power"] = round(channel.apparent_power, 1)
            status[f"{phase}_pf"] = round(channel.power_factor, 2)
            status[f"{phase}_freq"] = round(channel.frequency, 1)
            if channel.errors:
                status[f"{phase}_errors"] = list(channel.errors)
            if channel.flags:
                status[f"{phase}_flags"] = list(channel.flags)
        status["n_current"] = None
        status["total_current"] = round(sum(c.current for c in state.channels), 3)
        status["total_act_power"] = round(sum(c.power for c in state.channels), 3)
        status["total_aprt_power"] = round(sum(c.apparent_power for c in state.channels), 3)
        status["user_calibrated_phase"] = []
        if state.errors:
            status["errors"] = list(state.errors)
        return status

    @staticmethod
    def _emdata_status(state: MeterState) -> dict[str, Any]:
        status: dict[str, Any] = {"id": 0}
        for phase, channel in zip("abc", state.channels, strict=True):
            status[f"{phase}_total_act_energy"] = round(channel.energy_in, 2)
            status[f"{phase}_total_act_ret_energy"] = round(channel.energy_out, 2)
        status["total_act"] = round(sum(c.energy_in for c in state.channels), 2)
        status["total_act_ret"] = round(sum(c.energy_out for c in state.channels), 2)
        return status

    @staticmethod
    def _em1_status(state: MeterState, index: int) -> dict[str, Any]:
        channel = state.channels[index]
        status: dict[str, Any] = {
            "id": index,
            "current": round(channel.current, 3),
            "voltage": round(channel.voltage, 1),
            "act_power": round(channel.power, 1),
            "aprt_power": round(channel.apparent_power, 1),
            "pf": round(channel.power_factor, 2),
            "freq": round(channel.frequency, 1),
            "calibration": "factory",
        }
        if errors := (*state.errors, *channel.errors):
            status["errors"] = list(errors)
        if channel.flags:
            status["flags"] = list(channel.flags)
        return status

    def _switch_status(self, state: MeterState) -> dict[str, Any]:
        meter = self.meter
        channel = state.channels[0]
        # A plug measures through its relay; a meter's relay output measures nothing.
        measured = not meter.preset.energy_meter
        by_minute = [float(mwh) for mwh in meter.records.last_import_mwh(0, 3)] if measured else []
        return {
            "id": 0,
            "source": state.relay_source,
            "output": state.relay_on,
            "apower": round(channel.power, 1) if measured else 0.0,
            "voltage": round(channel.voltage, 1),
            "current": round(channel.current, 3) if measured else 0.0,
            "aenergy": {
                "total": round(channel.energy_in, 3) if measured else 0.0,
                "by_minute": by_minute + [0.0] * (3 - len(by_minute)),
                "minute_ts": int(state.time) // 60 * 60,
            },
            "temperature": {"tC": state.temperature, "tF": fahrenheit(state.temperature)},
        }

    def _sys_status(self, state: MeterState) -> dict[str, Any]:
        meter = self.meter
        updates: dict[str, Any] = {}
        if meter.available_beta:
            updates["beta"] = {"version": meter.available_beta}
        if meter.available_update:
            updates["stable"] = {"version": meter.available_update}
        unixtime = int(state.time)
        return {
            "mac": meter.mac,
            "restart_required": False,
            "time": local_hhmm(state.time, meter.utc_offset),
            "unixtime": unixtime,
            "last_sync_ts": unixtime - state.uptime % 3600,
            "uptime": state.uptime,
            "ram_size": 247524,
            "ram_free": 113080,
            "ram_min_free": 97524,
            "fs_size": 524288,
            "fs_free": 180224,
            "cfg_rev": meter.cfg_rev,
            "kvs_rev": 1,
            "schedule_rev": 0,
            "webhook_rev": 0,
            "btrelay_rev": 0,
            "available_updates": updates,
            "reset_reason": 3,
            "utc_offset": meter.utc_offset,
        }

    def _component_config(self, key: str) -> dict[str, Any]:
        kind, _, index_text = key.partition(":")
        index = int(index_text or 0)
        meter = self.meter
        ct_type = meter.preset.ct_type
        match kind:
            case "em":
                return {
                    "id": 0,
                    "name": None,
                    "blink_mode_selector": "active_energy",
                    "phase_selector": "all",
                    "monitor_phase_sequence": False,
                    "ct_type": ct_type,
                    "reverse": {},
                }
            case "em1":
                return {"id": index, "name": None, "ct_type": ct_type, "reverse": False}
            case "switch":
                return {
                    "id": 0,
                    "name": None,
                    "in_mode": "detached",
                    "initial_state": "restore_last",
                    "auto_on": False,
                    "auto_on_delay": 60.0,
                    "auto_off": False,
                    "auto_off_delay": 60.0,
                }
            case "sys":
                return self._sys_config()
            case "wifi":
                return {
                    "ap": {"ssid": meter.device_id, "is_open": True, "enable": False},
                    "sta": {"ssid": _SSID, "is_open": False, "enable": True, "ipv4mode": "dhcp"},
                    "sta1": {"ssid": None, "is_open": True, "enable": False, "ipv4mode": "dhcp"},
                    "roam": {"rssi_thr": -80, "interval": 60},
                }
            case "eth":
                return {
                    "enable": True,
                    "ipv4mode": "dhcp",
                    "ip": None,
                    "netmask": None,
                    "gw": None,
                    "nameserver": None,
                }
            case "temperature":
                return {"id": 0, "name": None, "report_thr_C": 5.0, "offset_C": 0.0}
            case "ble":
                return {"enable": False, "rpc": {"enable": False}, "observer": {"enable": False}}
            case "cloud":
                return {"enable": False, "server": "shelly-103-eu.shelly.cloud:6022/jrpc"}
            case "mqtt":
                return {
                    "enable": False,
                    "server": None,
                    "client_id": meter.device_id,
                    "user": None,
                    "ssl_ca": None,
                    "topic_prefix": meter.device_id,
                    "rpc_ntf": True,
                    "status_ntf": False,
                    "use_client_cert": False,
                    "enable_rpc": True,
                    "enable_control": True,
                }
            case "ws":
                return {"enable": False, "server": None, "ssl_ca": "ca.pem"}
            case "modbus":
                return {"enable": False}
        return {}  # emdata, em1data, bthome

    def _sys_config(self) -> dict[str, Any]:
        meter = self.meter
        device: dict[str, Any] = {
            "name": meter.name,
            "mac": meter.mac,
            "fw_id": meter.firmware,
            "discoverable": True,
            "eco_mode": False,
            "addon_type": None,
        }
        if meter.profile is not None:
            device["profile"] = meter.profile
        return {
            "device": device,
            "location": {"tz": _time_zone(meter.utc_offset), "lat": None, "lon": None},
            "debug": {
                "level": 2,
                "file_level": None,
                "mqtt": {"enable": False},
                "websocket": {"enable": False},
                "udp": {"addr": None},
            },
            "ui_data": {},
            "rpc_udp": {"dst_addr": None, "listen_port": None},
            "sntp": {"server": "time.google.com"},
            "cfg_rev": meter.cfg_rev,
        }

    # --- methods --------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Answer one RPC call; raise `RpcError` for what the device would refuse."""
        namespace, _, name = method.partition(".")
        match method:
            case "Shelly.GetDeviceInfo":
                return self.device_info()
            case "Shelly.GetStatus":
                return self.status()
            case "Shelly.GetConfig":
                return self.config()
            case "Shelly.GetComponents":
                return self._components(params)
            case "Shelly.Reboot":
                delay_ms = _int_param(params, "delay_ms", default=1000)
                self._schedule_reboot(max(0, delay_ms) / 1000)
                return None
            case "Switch.Set" | "Switch.Toggle":
                self.component_key(namespace, params)
                was_on = self.meter.relay_on
                on = not was_on if name == "Toggle" else _bool_param(params, "on")
                self.meter.set_relay(on, source="WS_in")
                return {"was_on": was_on}
        if name in ("GetStatus", "GetConfig") and namespace in _COMPONENT_TYPES:
            key = self.component_key(namespace, params)
            if name == "GetConfig":
                return self._component_config(key)
            return self.status([key])[key]
        if namespace in _DATA_COMPONENTS and name in (
            "GetRecords",
            "GetData",
            "ResetCounters",
            "DeleteAllData",
        ):
            return self._data_call(namespace, name, params)
        raise RpcError(NO_HANDLER, f"No handler for {method}")

    def component_key(self, namespace: str, params: dict[str, Any]) -> str:
        """Return the key of the component a call addresses, or raise."""
        kind = _COMPONENT_TYPES[namespace]
        keys = self.component_keys()
        if kind in keys:  # a singleton such as sys
            return kind
        if not any(key.startswith(f"{kind}:") for key in keys):
            raise RpcError(NO_HANDLER, f"No handler for {namespace}")
        index = _int_param(params, "id")
        key = f"{kind}:{index}"
        if key not in keys:
            raise RpcError(NOT_FOUND, f"Argument 'id', value {index} not found!")
        return key

    def _components(self, params: dict[str, Any]) -> dict[str, Any]:
        offset = _int_param(params, "offset", default=0)
        if _bool_param(params, "dynamic_only", default=False):
            components: list[dict[str, Any]] = []
        else:
            statuses = self.status()
            components = [
                {"key": key, "status": statuses[key], "config": self._component_config(key)}
                for key in self.component_keys()
            ]
        return {
            "components": components[offset:],
            "cfg_rev": self.meter.cfg_rev,
            "offset": offset,
            "total": len(components),
        }

    def _data_call(self, namespace: str, name: str, params: dict[str, Any]) -> Any:
        key = self.component_key(namespace, params)
        meter = self.meter
        match name:
            case "GetRecords":
                return {"data_blocks": meter.records.data_blocks(_ts_param(params, "ts"))}
            case "GetData":
                return self._get_data(key, params)
            case "ResetCounters":
                # EMData resets the three phases, EM1Data its one channel.
                meter.reset_counters(None if namespace == "EMData" else int(key.split(":")[1]))
                return None
        meter.delete_all_data()
        return None

    def _get_data(self, key: str, params: dict[str, Any]) -> dict[str, Any]:
        since = _ts_param(params, "ts")
        until = _ts_param(params, "end_ts")
        _bool_param(params, "add_keys", default=True)  # validated; keys are always sent
        keys, rows = self.data_rows(key, since, until, self.meter.rows_per_call)
        result: dict[str, Any] = {"keys": list(keys), "data": rows.segments}
        if rows.next_ts is not None:
            result["next_record_ts"] = rows.next_ts
        return result

    def data_rows(
        self, key: str, since: int | None, until: int | None, limit: int | None
    ) -> tuple[tuple[str, ...], DataRows]:
        """Return the keys and the rows of an ``emdata:N``/``em1data:N`` component."""
        records = self.meter.records
        segments, next_ts = records.select(since, until, limit)
        keys, row = self._data_row(key)
        blocks = [
            {
                "ts": segment.ts,
                "period": records.period,
                "values": [row(position) for position in range(segment.start, segment.end)],
            }
            for segment in segments
        ]
        return keys, DataRows(blocks, next_ts)

    def csv_lines(
        self, key: str, since: int | None, until: int | None, *, add_keys: bool
    ) -> list[bytes]:
        """Return the lines of a ``data.csv``: the keys (with `add_keys`), then one per record.

        A record's line is its stamp (unix seconds), then its values as in ``GetData``.
        """
        records = self.meter.records
        segments, _ = records.select(since, until, None)
        keys, row = self._data_row(key)
        lines = [(",".join(("timestamp", *keys)) + "\n").encode()] if add_keys else []
        for segment in segments:
            for offset, position in enumerate(range(segment.start, segment.end)):
                cells = ("" if value is None else str(value) for value in row(position))
                stamp = segment.ts + offset * records.period
                lines.append((",".join((str(stamp), *cells)) + "\n").encode())
        return lines

    def _data_row(self, key: str) -> tuple[tuple[str, ...], Callable[[int], list[float | None]]]:
        """Return the keys of an ``emdata:N``/``em1data:N`` component and its row maker."""
        records = self.meter.records
        kind, _, index_text = key.partition(":")
        triphase = kind == "emdata"
        channels = range(self.meter.channel_count) if triphase else [int(index_text)]

        def row(position: int) -> list[float | None]:
            values: list[float | None] = []
            for channel in channels:
                values += records.row(position, channel, fundamental=triphase)
            if triphase:
                values += [None, None, None]  # no neutral CT
            return values

        return (TRIPHASE_KEYS if triphase else EM1_KEYS), row


@dataclass(slots=True)
class DataRows:
    """`EMData.GetData` blocks and where the next call should start (None: all sent)."""

    segments: list[dict[str, Any]]
    next_ts: int | None


def _int_param(params: dict[str, Any], name: str, *, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise RpcError(INVALID_ARGUMENT, f"Invalid argument '{name}'")
    return value


def _ts_param(params: dict[str, Any], name: str) -> int | None:
    if params.get(name) is None:
        return None
    return _int_param(params, name)


def _bool_param(params: dict[str, Any], name: str, *, default: bool | None = None) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise RpcError(INVALID_ARGUMENT, f"Invalid argument '{name}'")
    return value


def _query_value(text: str) -> Any:
    """Read a query parameter as JSON where it is JSON (``0``, ``true``), else as text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class DigestAuth:
    """Digest authentication of one device: user ``admin``, realm = device id, SHA-256.

    Nonces are the unix time they were issued at and stay valid for `NONCE_LIFETIME`; a
    client may reuse one (aioshelly does, without ``nc``, so ``nc`` defaults to 1).
    """

    _HEADER_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')

    def __init__(self, meter: SimulatedMeter) -> None:
        """Authenticate against `meter`'s current password."""
        self.meter = meter
        self._nonces: dict[int, float] = {}

    def issue_nonce(self) -> int:
        """Return a fresh nonce."""
        now = self.meter.clock.now()
        self._nonces = {n: at for n, at in self._nonces.items() if now - at <= NONCE_LIFETIME}
        nonce = int(now)
        self._nonces.setdefault(nonce, now)
        return nonce

    def ws_challenge(self) -> str:
        """Return the message of a WebSocket 401 error frame: a JSON challenge."""
        return dumps(
            {
                "auth_type": "digest",
                "nonce": self.issue_nonce(),
                "nc": 1,
                "realm": self.meter.device_id,
                "algorithm": "SHA-256",
            }
        )

    def http_challenge(self) -> str:
        """Return the ``WWW-Authenticate`` header of an HTTP 401."""
        realm = self.meter.device_id
        return (
            f'Digest qop="auth", realm="{realm}", nonce="{self.issue_nonce()}", algorithm=SHA-256'
        )

    def check_frame(self, auth: Any) -> bool:
        """Whether a WebSocket frame's ``auth`` object proves the password."""
        if not isinstance(auth, dict):
            return False
        return self._check(auth, sha256_hex(_WS_HA2_INPUT), qop="auth", nc=auth.get("nc", 1))

    def check_header(self, header: str | None, method: str, uri: str) -> bool:
        """Whether an HTTP ``Authorization: Digest ...`` header proves the password."""
        if not header or not header.startswith("Digest "):
            return False
        fields = {
            name: quoted if quoted or not bare else bare
            for name, quoted, bare in self._HEADER_FIELD.findall(header)
        }
        if fields.get("uri") != uri or fields.get("algorithm", "SHA-256") != "SHA-256":
            return False
        ha2 = sha256_hex(f"{method}:{uri}")
        return self._check(fields, ha2, qop=fields.get("qop", ""), nc=fields.get("nc", ""))

    def _check(self, auth: dict[str, Any], ha2: str, *, qop: str, nc: Any) -> bool:
        meter = self.meter
        if meter.password is None:
            return True
        if auth.get("username") != _USERNAME or auth.get("realm") != meter.device_id:
            return False
        nonce = auth.get("nonce")
        try:
            issued = self._nonces.get(int(nonce))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        if issued is None or meter.clock.now() - issued > NONCE_LIFETIME:
            return False
        ha1 = sha256_hex(f"{_USERNAME}:{meter.device_id}:{meter.password}")
        expected = sha256_hex(f"{ha1}:{nonce}:{nc}:{auth.get('cnonce')}:{qop}:{ha2}")
        return expected == auth.get("response")


@dataclass(slots=True)
class _Outcome:
    """How one call ends: a result, an error, or (injected) a reply that is not JSON."""

    result: Any = None
    error: tuple[int, str] | None = None
    invalid: bool = False


_NOT_JSON = '{"id":1,"result":{"em:0":{"a_act_power":'  # a reply cut off mid-way


class RpcServer:
    """The aiohttp application (`app`) of one Gen2+ meter, and its status notifications."""

    def __init__(self, meter: SimulatedMeter, notify_interval: float | None = None) -> None:
        """Serve `meter`; notify every `notify_interval` s while values change (None: never)."""
        self.meter = meter
        self._deferred = DeferredCalls()
        self.api = RpcApi(meter, lambda delay: self._deferred.call_later(delay, meter.reboot))
        self.auth = DigestAuth(meter)
        self._notify_interval = notify_interval
        self._peers: dict[web.WebSocketResponse, str | None] = {}  # socket -> caller's src
        self._notifier: asyncio.Task[None] | None = None
        self._notified: dict[str, Any] = {}  # component key -> the status last notified
        self.app = web.Application(middlewares=[request_counter(meter.requests)])
        self.app.add_routes(
            [
                web.get("/shelly", self._shelly),
                web.get("/rpc", self._websocket),
                web.get("/rpc/{method}", self._http_call),
                web.post("/rpc", self._http_frame),
                web.get("/emdata/{id}/data.csv", self._csv),
                web.get("/em1data/{id}/data.csv", self._csv),
            ]
        )
        self.app.cleanup_ctx.extend([self._deferred.lifetime, self._notifications])

    async def _notifications(self, _app: web.Application) -> AsyncIterator[None]:
        """Run the notifier while the app runs."""
        if self._notify_interval:
            self._notifier = asyncio.create_task(self._notify_loop(self._notify_interval))
        yield
        if self._notifier is not None:
            self._notifier.cancel()
            await asyncio.gather(self._notifier, return_exceptions=True)
            self._notifier = None

    # --- calls ----------------------------------------------------------------------------

    async def _outcome(self, method: str, params: Any) -> _Outcome:
        """Answer an authorised call, with the meter's reply delay and overrides."""
        meter = self.meter
        if delay := meter.reply_delay + meter.rpc_latency_s:
            await asyncio.sleep(delay)
        override = meter.take_override(method)
        if override is not None and override.kind == "error":
            return _Outcome(error=(override.code, override.message))
        if override is not None and override.kind == "invalid_json":
            return _Outcome(invalid=True)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _Outcome(error=(INVALID_ARGUMENT, "Invalid argument 'params'"))
        try:
            result = self.api.call(method, params)
        except RpcError as err:
            return _Outcome(error=(err.code, err.message))
        if override is not None:
            result = override.apply(result)
        return _Outcome(result=result)

    def _frame(self, frame_id: Any, dst: Any, outcome: _Outcome) -> str:
        if outcome.invalid:
            return _NOT_JSON
        reply: dict[str, Any] = {"id": frame_id, "src": self.meter.device_id}
        if dst is not None:
            reply["dst"] = dst
        if outcome.error is not None:
            code, message = outcome.error
            reply["error"] = {"code": code, "message": message}
        else:
            reply["result"] = outcome.result
        return dumps(reply)

    def _needs_auth(self, method: str) -> bool:
        return self.meter.password is not None and method != "Shelly.GetDeviceInfo"

    def _http_denied(self, request: web.Request, method: str) -> web.Response | None:
        """Return the 401 reply when an HTTP request lacks a valid digest, else None."""
        if not self._needs_auth(method):
            return None
        header = request.headers.get("Authorization")
        if self.auth.check_header(header, request.method, request.raw_path):
            return None
        return web.Response(
            status=UNAUTHORIZED,
            text=dumps({"code": UNAUTHORIZED, "message": "Unauthorized"}),
            content_type="application/json",
            headers={"WWW-Authenticate": self.auth.http_challenge()},
        )

    # --- handlers -------------------------------------------------------------------------

    async def _shelly(self, _request: web.Request) -> web.Response:
        return web.json_response(self.api.device_info(), dumps=dumps)

    async def _http_call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if (denied := self._http_denied(request, method)) is not None:
            return denied
        params = {name: _query_value(value) for name, value in request.query.items()}
        outcome = await self._outcome(method, params)
        if outcome.invalid:
            return web.Response(text=_NOT_JSON, content_type="application/json")
        if outcome.error is not None:
            code, message = outcome.error
            status = code if 400 <= code < 600 else 500
            body = dumps({"code": code, "message": message})
            return web.Response(status=status, text=body, content_type="application/json")
        return web.Response(text=dumps(outcome.result), content_type="application/json")

    async def _http_frame(self, request: web.Request) -> web.Response:
        try:
            frame = await request.json()
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("method"), str):
            return web.Response(status=400, text="Bad request")
        if (denied := self._http_denied(request, frame["method"])) is not None:
            return denied
        outcome = await self._outcome(frame["method"], frame.get("params"))
        text = self._frame(frame.get("id"), frame.get("src"), outcome)
        return web.Response(text=text, content_type="application/json")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # Pongs are the meter's to send: a silent meter sends none.
        ws = web.WebSocketResponse(autoping=False)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="WebSocket upgrade expected")
        await ws.prepare(request)
        self._peers[ws] = None
        try:
            async for message in ws:
                if not self.meter.reachable():
                    continue
                if message.type is WSMsgType.TEXT:
                    await self._on_frame(ws, message.data)
                elif message.type is WSMsgType.PING:
                    await ws.pong(message.data)
        finally:
            self._peers.pop(ws, None)
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if not isinstance(frame, dict) or not isinstance(method := frame.get("method"), str):
            return  # not a call: ignore, as devices do
        self.meter.requests[method] += 1
        src = frame.get("src")
        if isinstance(src, str):
            self._peers[ws] = src
        if self._needs_auth(method) and not self.auth.check_frame(frame.get("auth")):
            outcome = _Outcome(error=(UNAUTHORIZED, self.auth.ws_challenge()))
        else:
            outcome = await self._outcome(method, frame.get("params"))
        if frame.get("id") is None or ws.closed:
            return  # a notification: no reply
        with contextlib.suppress(ConnectionError):  # dropped while answering (reboot, offline)
            await ws.send_str(self._frame(frame["id"], src, outcome))

    async def _csv(self, request: web.Request) -> web.StreamResponse:
        namespace = "EMData" if request.path.startswith("/emdata/") else "EM1Data"
        meter = self.meter
        if not meter.data_csv:
            return web.Response(status=404, text="Not Found")
        if (denied := self._http_denied(request, f"{namespace}.GetData")) is not None:
            return denied
        if delay := meter.reply_delay + meter.rpc_latency_s:
            await asyncio.sleep(delay)
        override = meter.take_override(CSV_OVERRIDE)
        if override is not None and override.kind == "error":
            return web.Response(status=override.code, text=override.message)
        if override is not None and override.kind == "invalid_json":
            return web.Response(text=override.message, content_type="text/csv")
        params = {name: _query_value(value) for name, value in request.query.items()}
        params["id"] = _query_value(request.match_info["id"])
        try:
            key = self.api.component_key(namespace, params)
            since, until = _ts_param(params, "ts"), _ts_param(params, "end_ts")
            add_keys = _bool_param(params, "add_keys", default=False)
        except RpcError as err:
            status = 404 if err.code == NO_HANDLER else 400
            return web.Response(
                status=status, text=dumps({"code": err.code, "message": err.message})
            )
        lines = self.api.csv_lines(key, since, until, add_keys=add_keys)
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        await response.prepare(request)
        await send_throttled(response, lines, meter.download_bytes_per_second)
        return response

    # --- notifications --------------------------------------------------------------------

    async def notify_status(self, *, everything: bool = False, full: bool = False) -> int:
        """Send a ``NotifyStatus`` with the meter components whose status changed since the last.

        Each goes whole, as ``Shelly.GetStatus`` has it; with `everything` every meter
        component goes, changed or not; with `full` a ``NotifyFullStatus`` carries the whole
        status. Sent to every open WebSocket that has sent a call (its ``src`` is the
        notification's ``dst``); nothing when nothing changed or the meter is unreachable.
        An override of the method (``NotifyStatus``, ``NotifyFullStatus``) applies to the
        params. Return how many sockets it was sent to.
        """
        meter = self.meter
        peers = [(ws, dst) for ws, dst in self._peers.items() if dst is not None and not ws.closed]
        if not peers or not meter.reachable():
            return 0
        keys = [
            key for key in self.api.component_keys() if key.partition(":")[0] in NOTIFIED_COMPONENTS
        ]
        changed = {
            key: status
            for key, status in self.api.status(keys).items()
            if everything or full or self._notified.get(key) != status
        }
        if not changed:
            return 0
        self._notified.update(changed)
        method = "NotifyFullStatus" if full else "NotifyStatus"
        params = {"ts": round(meter.clock.now(), 2), **(self.api.status() if full else changed)}
        if (override := meter.take_override(method)) is not None:
            params = override.apply(params)
        for ws, dst in peers:
            notification = {"src": meter.device_id, "dst": dst, "method": method}
            with contextlib.suppress(ConnectionError):
                await ws.send_str(dumps({**notification, "params": params}))
        return len(peers)

    async def _notify_loop(self, interval: float) -> None:
        while True:
            # Just after each multiple of the interval: with noise, values change every second.
            await asyncio.sleep(interval - time.time() % interval + _NOTIFY_AFTER_S)
            await self.notify_status()


def create_rpc_app(
    meter: SimulatedMeter, *, notify_interval: float | None = None
) -> web.Application:
    """Return the aiohttp application of a Gen2+ meter (see `RpcServer`)."""
    return RpcServer(meter, notify_interval).app
